"""Capture and restore every random stream of a training run, for exact resumption.

States are converted to tensors and plain Python values so checkpoints keep loading with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from autojoint.data.loader import JointDataLoader


def _mt_to_dict(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _mt_from_dict(d: dict[str, Any]) -> tuple:
    keys = d["keys"].numpy().astype(np.uint32)
    return (d["name"], keys, d["pos"], d["has_gauss"], d["cached"])


def _python_to_dict(state: tuple) -> dict[str, Any]:
    version, internal, gauss_next = state
    return {
        "version": int(version),
        "internal": torch.tensor(internal, dtype=torch.int64),
        "gauss_next": gauss_next,
    }


def _python_from_dict(d: dict[str, Any]) -> tuple:
    return (d["version"], tuple(int(v) for v in d["internal"].tolist()), d["gauss_next"])


def _generator_to_dict(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's 128-bit integers are stored as strings: safe to unpickle, exact to restore.
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _generator_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": d["bit_generator"],
        "state": {k: int(v) for k, v in d["state"].items()},
        "has_uint32": d["has_uint32"],
        "uinteger": d["uinteger"],
    }


def capture_rng_state(loader: JointDataLoader) -> dict[str, Any]:
    """torch (CPU and CUDA), numpy's and Python's global generators (batchgenerators'
    transforms use both), the
    loader's shuffling RandomState and its patch-sampling Generator."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _mt_to_dict(tuple(np.random.get_state(legacy=True))),
        "python": _python_to_dict(random.getstate()),
        "loader_shuffle": _mt_to_dict(loader.rs.get_state()),
        "loader_sampling": _generator_to_dict(loader.rng),
    }


def restore_rng_state(state: dict[str, Any], loader: JointDataLoader) -> None:
    """Inverse of :func:`capture_rng_state` (for the in-process loader)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(_mt_from_dict(state["numpy"]))
    random.setstate(_python_from_dict(state["python"]))
    loader.rs.set_state(_mt_from_dict(state["loader_shuffle"]))
    loader.rng.bit_generator.state = _generator_from_dict(state["loader_sampling"])
