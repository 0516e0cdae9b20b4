"""Device selection: auto prefers CUDA, then MPS, then the CPU; explicit choices are checked."""

from __future__ import annotations

import os

import pytest
import torch

from autojoint.runtime import devices
from autojoint.runtime.devices import resolve_device


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_order(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(devices, "_mps_available", lambda: mps)
    assert resolve_device("auto").type == expected


def test_explicit_device_overrides_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_missing_accelerator_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match="no MPS device"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


# Half a tensor's elements go to the pool's second thread: a subnormal product left nonzero
# there means that thread does not flush. The flag is set before any torch work, or, as the
# control that shows the probe can fail, after the pool has started.
_WORKER_PROBE = """
import sys
import torch
from autojoint.runtime.devices import (
    SUBNORMAL_BITS, denormals_flushed, flush_denormals, start_worker_threads_flushed
)
torch.set_num_threads(2)
if sys.argv[1] == "started":
    start_worker_threads_flushed()
if sys.argv[1] == "late":
    torch.rand(1 << 22).sum()  # starts the worker threads before the flag
    flush_denormals()
def job():
    x = torch.full((1 << 22,), SUBNORMAL_BITS, dtype=torch.int32).view(torch.float32)
    print(denormals_flushed(), int(torch.count_nonzero(x * 1.5)))
if sys.argv[1] == "early":
    flush_denormals()
job()
"""


def _probe_workers(when: str) -> tuple[bool, int]:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_PROBE, when],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    flushed, nonzero = done.stdout.split()[-2:]
    return flushed == "True", int(nonzero)


def test_flushing_before_torch_starts_its_threads_reaches_every_thread() -> None:
    """Subnormal activations (a U-Net trained without gradient under weight decay) made a
    training step ~10x slower on x86; flushed before torch starts its worker threads, every
    thread flushes them, set afterwards only the calling thread."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats to zero")
    assert _probe_workers("early") == (True, 0)
    flushed, nonzero = _probe_workers("late")
    assert flushed and nonzero > 0  # set late, the worker thread keeps computing subnormals


def test_worker_threads_started_in_a_scope_keep_flushing_after_it() -> None:
    """What training and prediction do first: outside any scope, the calling thread computes
    subnormals again while the worker thread started inside one still flushes them."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats to zero")
    flushed, nonzero = _probe_workers("started")
    assert not flushed and 0 < nonzero < 1 << 22


def test_flush_denormals_zeroes_subnormals_and_keeps_normal_numbers() -> None:
    from autojoint.runtime.devices import SUBNORMAL_BITS, denormals_flushed, flush_denormals

    subnormal = torch.tensor([SUBNORMAL_BITS], dtype=torch.int32).view(torch.float32)
    was = denormals_flushed()  # an earlier in-process training may have set it
    torch.set_flush_denormal(False)
    try:
        assert not denormals_flushed()
        assert (subnormal * 1.5).item() == pytest.approx(1.5 * 1.4693679e-39, rel=1e-6)
        if not flush_denormals():
            pytest.skip("this CPU cannot flush subnormal floats to zero")
        assert denormals_flushed()
        assert (subnormal * 1.5).item() == 0.0
        tiny = torch.tensor([2e-38])  # normal numbers are untouched
        assert (tiny * 1.5).item() == pytest.approx(3e-38, rel=1e-6)
    finally:
        torch.set_flush_denormal(was)
