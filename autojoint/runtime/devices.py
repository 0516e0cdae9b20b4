"""Which device trains and predicts (``auto`` picks CUDA, then Apple's MPS, then the CPU),
and the mixed precision both use on it."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

AUTOCAST_DTYPE = torch.float16
"""Autocast precision on CUDA, for training (with loss scaling) and prediction alike:
float16 runs on every CUDA GPU, where bfloat16 needs Ampere or newer."""


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


def mixed_precision(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``AUTOCAST_DTYPE`` on CUDA, as training runs there; on the CPU and MPS
    a no-op, so their results stay exactly those of float32."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=AUTOCAST_DTYPE)
    return contextlib.nullcontext()
