"""Reuse freed CPU memory in the sliding window instead of handing it back to the kernel.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above
its mmap threshold (at most 32 MB on 64-bit) with a fresh ``mmap`` and returns it with
``munmap`` on free, so a 3D network whose activations are tens to hundreds of MB maps,
page-faults, zeroes and unmaps the same memory for every tile batch: predicting a real CT
at an 8 GB plan's patch on the CPU spent a quarter of its CPU time in the kernel, and reuse
made it 1.46x faster (docs/benchmarks.md "Memory allocator"). Inside
:func:`reusing_freed_memory` large blocks come from the heap and the heap is not trimmed,
so a freed block is reused at once (as CUDA's caching allocator does for GPU memory); on
leaving it glibc's defaults come back and the free heap is returned.

Scoped to the tile loop, not process-wide: PyTorch asks for 64-byte aligned blocks
(``posix_memalign``), which need a little more than the block they freed, so a heap that
also serves Python's small objects keeps growing past its holes. Process-wide, a
prediction's peak memory grew by 64 % on a real CT and a training step at nnU-Net's
56 x 192 x 192 patch ran out of 18 GB where glibc's defaults needed 13 GB; around the tile
loop alone (the result buffers allocated outside it, the free heap returned after it) the
prediction's peak grew by 6 %. Training therefore keeps glibc's defaults. Only glibc on
Linux has these knobs (``mallopt``); elsewhere nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping

logger = logging.getLogger(__name__)

# glibc's mallopt parameters and their defaults (malloc.h, malloc.c).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
# Free memory at the heap's top beyond this is returned to the kernel: the largest int
# (mallopt takes an int), so in practice only when the scope ends.
_NO_TRIM = 2**31 - 1
# Environment variables through which a user tunes glibc's malloc (or replaces it): when
# one is set, their choice stands.
USER_MALLOC_VARIABLES = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)

_state = {"enabled": True, "depth": 0}
_lock = threading.Lock()


def user_tuned_malloc(environ: Mapping[str, str]) -> str | None:
    """The variable in ``environ`` by which the user already chose a malloc setting or
    another allocator (``LD_PRELOAD`` of jemalloc / tcmalloc / mimalloc), or None."""
    for name in USER_MALLOC_VARIABLES:
        if environ.get(name):
            return name
    preload = environ.get("LD_PRELOAD", "").lower()
    if any(lib in preload for lib in ("jemalloc", "tcmalloc", "mimalloc")):
        return "LD_PRELOAD"
    return None


def allow_memory_reuse(enabled: bool) -> None:
    """Switch :func:`reusing_freed_memory` on (the default) or off for this process (the
    CLI switches it off for ``AUTOJOINT_SYSTEM_MALLOC`` or a user's own malloc settings)."""
    _state["enabled"] = bool(enabled)


def memory_reuse_allowed() -> bool:
    """Whether :func:`reusing_freed_memory` is switched on (:func:`allow_memory_reuse`)."""
    return bool(_state["enabled"])


@functools.cache
def _glibc() -> tuple[Callable[[int, int], int], Callable[[int], int]] | None:
    """glibc's ``mallopt`` and ``malloc_trim``, or None on other platforms / C libraries
    (looked up once: every tile loop asks)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it; musl has mallopt too)
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return mallopt, trim


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[bool]:
    """Within: glibc serves large blocks from the heap and does not trim it; yields whether
    that took (False when switched off or not glibc). Nested scopes share the outer one.

    Process-wide while it lasts (malloc has one state): other threads' allocations are
    served the same way meanwhile.
    """
    libc = _glibc() if _state["enabled"] else None
    if libc is None:
        yield False
        return
    mallopt, trim = libc
    with _lock:
        _state["depth"] += 1
        ok = True
        if _state["depth"] == 1:
            ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NO_TRIM) == 1
    try:
        yield ok
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                trim(0)
