"""Which device trains and predicts (``auto`` picks CUDA, then Apple's MPS, then the CPU),
and the mixed precision both use on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

AUTOCAST_DTYPE = torch.float16
"""Autocast precision on CUDA, for training (with loss scaling) and prediction alike:
float16 runs on every CUDA GPU, where bfloat16 needs Ampere or newer."""

PRECISION_CHOICES = ("auto", "float32", "bfloat16")
"""``--precision`` of ``autojoint_predict`` and ``autojoint_train``: ``float32`` turns
autocast off, ``bfloat16`` forces bfloat16 autocast, ``auto`` is float16 on CUDA and, on a
CPU with native bfloat16 instructions, bfloat16 for prediction (:func:`autocast_dtype`)
but float32 for training (:func:`training_autocast_dtype`)."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda[:N]`` or ``mps`` as a ``torch.device``.

    Asking for an accelerator that torch cannot see is an error, not a silent CPU run.

    Raises:
        ValueError: unknown device name.
        RuntimeError: the requested accelerator is not available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"--device {name} was requested but torch sees no CUDA device; use --device "
                "auto or cpu."
            )
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise RuntimeError(
                "--device mps was requested but torch sees no MPS device; use --device auto or cpu."
            )
        return torch.device("mps")
    raise ValueError(f"unknown device '{name}'; use one of {DEVICE_CHOICES} (or cuda:N).")


def cpu_supports_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX).

    Only there does bfloat16 autocast pay: oneDNN then runs the convolutions about 2x faster
    than in float32 (docs/benchmarks.md, "CPU options"); without them torch emulates
    bfloat16 and is slower than float32.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


SUBNORMAL_BITS = 1 << 20
"""The bits of a float32 subnormal, 1.47e-39 (the smallest normal float32 is 1.18e-38); made
from bits because converting a float literal is itself flushed once the flag is on."""


def flush_denormals() -> bool:
    """From now on, the calling thread and the threads it starts later treat subnormal
    floats as zero, in all their floating-point code (torch, numpy, Python floats); returns
    whether the CPU supports it (x86 with SSE3, ARM). autojoint itself scopes it with
    :func:`subnormals_flushed`; this is for a caller that wants it for a whole process."""
    return bool(torch.set_flush_denormal(True))


def denormals_flushed() -> bool:
    """Whether this thread treats subnormal floats as zero (torch has no getter)."""
    subnormal = torch.tensor([SUBNORMAL_BITS], dtype=torch.int32).view(torch.float32)
    return bool((subnormal * 1.5).item() == 0.0)


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[bool]:
    """Inside: the calling thread treats subnormal floats as zero; after: its previous
    state is back. Yields whether the CPU supports it (x86 with SSE3, ARM).

    Why: layers whose weights shrink without a gradient (the U-Net of a classification-only
    run under weight decay) produce activations below float32's smallest normal number,
    1.2e-38, which x86 CPUs compute about ten times slower: one training step of such a
    model took 142 s without the flag and 13.5 s with it (docs/benchmarks.md, "Subnormal
    floats"). It changes only values below 1.2e-38. Scoped to the network's computations
    (a training step, the inference engine) because, left on for a whole process, it made
    scipy's KD-tree crash (a segmentation fault in the MONAI reference of
    tests/evaluation/test_surfels.py). torch's worker threads copy the flag when they start
    and keep it: those started inside a scope flush for good (they run only torch's
    kernels), those started earlier never do, so only the calling thread is sure to.
    """
    was = denormals_flushed()
    supported = flush_denormals()
    try:
        yield supported
    finally:
        if not was:
            torch.set_flush_denormal(False)


def start_worker_threads_flushed() -> None:
    """Start torch's CPU worker threads inside :func:`subnormals_flushed`, so that every
    later scope flushes on all threads, not only on the calling one.

    Why: a worker thread copies the flag once, when it starts. Training (``train_fold``)
    and model loading (``load_ensemble``) call this first; a no-op when the workers already
    run (a caller's earlier parallel torch operation started them, as reading a checkpoint
    would), and with one thread.
    """
    if torch.get_num_threads() < 2:
        return
    with subnormals_flushed():
        torch.ones(1 << 20).add_(1.0)  # large enough for every thread to take a share


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype prediction uses on ``device`` for ``precision``
    (:data:`PRECISION_CHOICES`); None = float32, no autocast.

    Raises:
        ValueError: an unknown precision, or bfloat16 on a device that cannot run it.
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision '{precision}'; use one of {PRECISION_CHOICES}.")
    if precision == "float32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bfloat16" else AUTOCAST_DTYPE
    if device.type == "cpu":
        return torch.bfloat16 if precision == "bfloat16" or cpu_supports_bfloat16() else None
    if precision == "bfloat16":
        raise ValueError(
            f"--precision bfloat16 is not offered on {device.type}; use auto or float32."
        )
    return None


def training_autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype training uses on ``device`` for ``precision``
    (``autojoint_train --precision``); None = float32.

    ``auto`` keeps float16 with loss scaling on CUDA and float32 elsewhere: unlike
    prediction, bfloat16 training on the CPU is opt-in (about 1.7x faster per step here,
    but measured on one demo training only; docs/training.md "Precision").

    Raises:
        ValueError: an unknown precision, or bfloat16 on a device that cannot run it.
    """
    if precision == "auto":
        return AUTOCAST_DTYPE if device.type == "cuda" else None
    return autocast_dtype(device, precision)


def mixed_precision(
    device: torch.device, precision: str = "auto"
) -> contextlib.AbstractContextManager[Any]:
    """Autocast for prediction on ``device`` (:func:`autocast_dtype`): float16 on CUDA, as
    training runs there; bfloat16 on a CPU with native bfloat16 instructions; otherwise a
    no-op, so the results are exactly those of float32."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
