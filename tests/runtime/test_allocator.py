"""Reusing freed memory in the sliding window (runtime/allocator.py): inside the scope a
freed large block is reused without new page faults, on leaving it glibc's behaviour comes
back, and the CLI leaves a user's own malloc settings alone."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from autojoint.cli.common import SYSTEM_MALLOC_ENV, configure_malloc
from autojoint.runtime import allocator
from autojoint.runtime.allocator import memory_reuse_allowed, user_tuned_malloc

BLOCK_PAGES = (64 << 20) // resource.getpagesize()

# Allocates, fills and frees a 64 MB block with the C library's malloc three times to
# settle, then three times counting minor page faults (each page of a freshly mapped block
# faults once): inside the scope, after leaving it, and in an outer scope after an inner one
# ended. Prints the three counts and what the scope yielded. (glibc's behaviour itself:
# PyTorch's 64-byte aligned blocks reuse less well, docs/benchmarks.md "Memory allocator".)
FAULTS = """
import ctypes, resource, sys
from autojoint.runtime.allocator import allow_memory_reuse, reusing_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
allow_memory_reuse(sys.argv[1] == "on")
def touch():
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
def faults():
    for _ in range(3):
        touch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        touch()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with reusing_freed_memory() as took:
    inside = faults()
after = faults()
with reusing_freed_memory():
    with reusing_freed_memory():
        pass
    nested = faults()
print(inside, after, nested, took)
"""


def _run(mode: str) -> tuple[int, int, int, bool]:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    inside, after, nested, took = out.stdout.split()
    return int(inside), int(after), int(nested), took == "True"


@pytest.mark.skipif(allocator._glibc() is None, reason="malloc tuning exists for glibc only")
def test_freed_blocks_are_reused_inside_the_scope_only() -> None:
    inside, after, nested, took = _run("on")
    assert took
    # Three reuses of a 64 MB block: (almost) no page mapped again inside the scope ...
    assert inside < 3 * BLOCK_PAGES // 10, (inside, after, nested)
    # ... each one mapped afresh after it (glibc maps blocks this large), ...
    assert after > 3 * BLOCK_PAGES // 2, (inside, after, nested)
    # ... and leaving an inner scope keeps the outer one's setting.
    assert nested < 3 * BLOCK_PAGES // 10, (inside, after, nested)


@pytest.mark.skipif(allocator._glibc() is None, reason="malloc tuning exists for glibc only")
def test_switched_off_the_scope_changes_nothing() -> None:
    inside, after, _, took = _run("off")
    assert not took
    assert inside > 3 * BLOCK_PAGES // 2, (inside, after)


def test_cli_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(allocator._state, "enabled", True)
    for name in (SYSTEM_MALLOC_ENV, "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    configure_malloc()
    assert memory_reuse_allowed()
    monkeypatch.setenv(SYSTEM_MALLOC_ENV, "1")
    configure_malloc()
    assert not memory_reuse_allowed()
    monkeypatch.delenv(SYSTEM_MALLOC_ENV)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")  # the user's own choice stands
    configure_malloc()
    assert not memory_reuse_allowed()
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    configure_malloc()
    assert memory_reuse_allowed()


def test_user_tuned_malloc_known_answers() -> None:
    assert user_tuned_malloc({}) is None
    assert user_tuned_malloc({"PATH": "/usr/bin", "LD_PRELOAD": "libfoo.so"}) is None
    assert user_tuned_malloc({"MALLOC_TRIM_THRESHOLD_": "0"}) == "MALLOC_TRIM_THRESHOLD_"
    assert user_tuned_malloc({"MALLOC_MMAP_MAX_": ""}) is None  # empty = not set
    preload = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    assert user_tuned_malloc(preload) == "LD_PRELOAD"
    assert user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}) == "GLIBC_TUNABLES"
