"""``autojoint_export_onnx``: a model's networks as ONNX graphs, with the preprocessing spec
another runtime needs to reproduce the pipeline around them.

Per fold two graphs, each with a dynamic batch axis and checked against torch with
onnxruntime on random input before the files are kept:

- ``fold_X_segmentation.onnx``: one sliding-window tile ``patch (B, C, *patch_size)`` ->
  ``logits`` and ``probabilities (B, K, *patch_size)``, the eta-fused map of every scale
  (the plan's fusion is inside the graph);
- ``fold_X_diagnosis.onnx``: the whole-scan view ``view (B, C, *classification_shape)`` ->
  ``logits`` and ``probabilities (B, num_classes)`` (the view is segmented inside, as the
  joint network diagnoses from its lesion map).

What stays outside the graphs, and is stated in ``preprocessing.json`` (docs/model_sharing.md,
"ONNX"): crop, normalisation, transpose, resampling, the Gaussian-weighted sliding window
and mirroring, the fold mean, and the way back to the input grid. Not exportable: the
segmentation graph of a plan with the cross-stitch stem, whose tiles read the whole-scan
view at their own place (a data-dependent crop); its diagnosis graph is exported.

Imports ``onnx`` and ``onnxruntime`` (the ``export`` extra) only when called.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autojoint import __version__
from autojoint.inference.ensemble import load_ensemble
from autojoint.inference.predict_options import PredictOptions, model_folds
from autojoint.io.files import DIR_MODE, write_json
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan

logger = logging.getLogger(__name__)

OPSET = 17
# Largest |onnxruntime - torch| accepted on random input, logits and probabilities alike
# (float32 graphs; measured 2e-6 on the tiny test network, 6e-6 on the demo's).
TOLERANCE = 1e-4
SPEC_FILE = "preprocessing.json"
SPEC_SCHEMA_VERSION = 1
_CHECK_BATCH = 2  # the check runs a batch other than the traced one: the batch axis is free
# The sliding window's Gaussian tile weighting (sliding_window.gaussian_importance).
_SIGMA_SCALE = 1 / 8


class _Segmentation(torch.nn.Module):
    """One tile -> the fused segmentation, as the sliding window computes it."""

    def __init__(self, net: JointNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales = self.net.seg(patch)
        return self.net.fused_logits(scales), self.net.fused_probabilities(scales)


class _Diagnosis(torch.nn.Module):
    """The whole-scan view -> class logits and probabilities, as the engine computes them."""

    def __init__(self, net: JointNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, logits, _ = self.net.classify(view)
        return logits, torch.softmax(logits, dim=1)


def require_onnx() -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxruntime`` modules.

    Raises:
        RuntimeError: they are not installed (names the extra to install).
    """
    try:
        return importlib.import_module("onnx"), importlib.import_module("onnxruntime")
    except ImportError as err:
        raise RuntimeError(
            f"ONNX export needs onnx and onnxruntime ({err}); install the 'export' extra: "
            "pip install 'autojoint[export]'."
        ) from err


@dataclass(frozen=True)
class GraphCheck:
    """One exported graph and how far onnxruntime's outputs were from torch's."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_abs_diff: float


def _export_graph(module: torch.nn.Module, example: torch.Tensor, path: Path, name: str) -> None:
    """Trace ``module`` on ``example`` into ``path`` with a dynamic batch axis."""
    axes = {name: {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}}
    with warnings.catch_warnings():
        # The TorchScript-based exporter (the dynamo one needs onnxscript, not an extra of
        # ours) warns that it is deprecated; instance norm always uses the input's
        # statistics, so its "train=True" notice changes nothing; tracer warnings flag
        # Python branches on shapes, fixed here but the batch's, which _check_graph then
        # runs at another batch size against torch.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[name],
            output_names=["logits", "probabilities"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _check_graph(
    module: torch.nn.Module, path: Path, name: str, shape: Sequence[int], seed: int
) -> float:
    """max |onnxruntime - torch| over both outputs on a random batch of ``shape``.

    Raises:
        ValueError: the difference exceeds :data:`TOLERANCE`, or onnx's checker refuses
            the graph.
    """
    onnx, ort = require_onnx()
    onnx.checker.check_model(str(path))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(_CHECK_BATCH, *shape, generator=generator)
    with torch.no_grad():
        expected = [t.numpy() for t in module(x)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: x.numpy()})
    diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))
    if not diff < TOLERANCE:
        raise ValueError(
            f"{path}: onnxruntime differs from torch by {diff:.2e} (> {TOLERANCE:g}); the "
            "graph is not kept. Report it with the plan's network switches."
        )
    return diff


def preprocessing_spec(
    plan: Plan, folds: Sequence[str], mirror_axes: Sequence[Sequence[int]]
) -> dict[str, Any]:
    """``preprocessing.json``: the pipeline around the graphs (docs/model_sharing.md)."""
    return {
        "schema_version": SPEC_SCHEMA_VERSION,
        "autojoint_version": __version__,
        "axis_order": "arrays (C, Z, Y, X) as SimpleITK's GetArrayFromImage gives them; "
        "spacing (z, y, x) mm",
        "channels": [
            {"index": int(k), "name": v, "normalization": dataclasses.asdict(n)}
            for (k, v), n in zip(plan.channel_names.items(), plan.normalization, strict=True)
        ],
        "normalization_rule": "ct: (clip(x, clip_low, clip_high) - mean) / std; zscore: "
        "(x - mean(x)) / max(std(x), 1e-8) over the cropped image",
        "crop": {
            "lung_mask": plan.lung_mask,
            "rule": "off: the bounding box of the body (a CT channel: voxels above the air "
            "threshold of autojoint/arrays/cropping.py; other channels: non-zero voxels); "
            "crop/mask: the lungs + 10 mm (autojoint/preprocessing/lung_mask.py). Outside "
            "the crop the mask is background.",
        },
        "transpose_forward": list(plan.transpose_forward),
        "transpose_backward": list(plan.transpose_backward),
        "target_spacing": list(plan.target_spacing),
        "resampling": "cropped, normalised, transposed image to target_spacing: cubic spline "
        "with anti-aliasing; an axis 3x coarser than the others or more is resampled on its "
        "own (autojoint/preprocessing/resample.py). Back to the input grid: probabilities "
        "linearly (anti-aliased), transposed back, argmax, pasted into the crop",
        "patch_size": list(plan.patch_size),
        "sliding_window": {
            "step_fraction": PredictOptions.step_fraction,
            "tile_weighting": "Gaussian, sigma = patch * 1/8 per axis, peak 1, floor 1e-3",
            "gaussian_sigma_scale": _SIGMA_SCALE,
            "padding": "a volume smaller than the patch is padded with its minimum",
            "mirror_axes": {f: list(a) for f, a in zip(folds, mirror_axes, strict=True)},
            "mirroring": "test-time augmentation: the mean over every subset of mirror_axes "
            "(flip the tile, predict, flip back)",
        },
        "classification_shape": None
        if plan.classification_shape is None
        else list(plan.classification_shape),
        "classification_view": "the cropped, normalised, transposed scan resized to "
        "classification_shape (linear, order 1, anti-aliased)",
        "eta": list(plan.eta),
        "view_eta": list(plan.classification_eta),
        "fusion": plan.network.fusion,
        "fusion_note": "inside the graphs: segmentation 'probabilities' are the eta-fused map",
        "ensemble": "the mean of the folds' probabilities (segmentation and diagnosis)",
        "labels": dict(plan.labels),
        "classes": list(plan.classes),
    }


def export_onnx(work_dir: Path, output_dir: Path, options: PredictOptions) -> dict[str, GraphCheck]:
    """Write each fold's graphs and ``preprocessing.json`` into ``output_dir`` (first into
    a temp folder beside it, then renamed; an existing ``output_dir`` is refused).

    Raises:
        RuntimeError: onnx or onnxruntime is missing.
        FileExistsError: ``output_dir`` exists.
        FileNotFoundError, ValueError: as :func:`~autojoint.inference.predict_options.model_folds`
            and ``load_ensemble``; a graph that differs from torch.
    """
    require_onnx()
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir}: exists; name a new folder for the ONNX files.")
    folds, variant = model_folds(Path(work_dir), options)
    cpu = torch.device("cpu")
    ens = load_ensemble(
        Path(work_dir), folds, cpu, options.configuration, options.checkpoint, variant
    )
    plan = ens.plan
    channels = len(plan.channel_names)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.onnx-", dir=output_dir.parent))
    checks: dict[str, GraphCheck] = {}
    try:
        for i, (fold, net) in enumerate(zip(folds, ens.nets, strict=True)):
            graphs: list[tuple[str, torch.nn.Module, str, tuple[int, ...]]] = []
            if plan.network.cross_stitch:
                logger.warning(
                    "fold %s: no segmentation graph: with the cross-stitch stem each tile reads "
                    "the whole-scan view at its own place (docs/model_sharing.md, ONNX)",
                    fold,
                )
            else:
                graphs.append(
                    ("segmentation", _Segmentation(net), "patch", (channels, *plan.patch_size))
                )
            if plan.classification_shape is not None:
                view = (channels, *plan.classification_shape)
                graphs.append(("diagnosis", _Diagnosis(net), "view", view))
            for kind, module, name, shape in graphs:
                path = staged / f"fold_{fold}_{kind}.onnx"
                _export_graph(module.eval(), torch.zeros(1, *shape), path, name)
                diff = _check_graph(module, path, name, shape, seed=i)
                checks[path.name] = GraphCheck(
                    path.name, (name,), ("logits", "probabilities"), diff
                )
                logger.info("%s: max |onnxruntime - torch| = %.1e", path.name, diff)
        spec = preprocessing_spec(plan, folds, ens.mirror_axes)
        spec["graphs"] = {
            name: {**dataclasses.asdict(c), "tolerance": TOLERANCE, "opset": OPSET}
            for name, c in checks.items()
        }
        write_json(spec, staged / SPEC_FILE)
        os.chmod(staged, DIR_MODE)  # mkdtemp's 0o700 would hide the folder from colleagues
        staged.rename(output_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    logger.info("wrote %d ONNX graph(s) and %s into %s", len(checks), SPEC_FILE, output_dir)
    return checks
