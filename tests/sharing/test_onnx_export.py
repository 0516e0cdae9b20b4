"""ONNX export: each fold's graphs match torch (checked at export, and again here through
the tiny predictor's own tiles), with a dynamic batch axis and a preprocessing spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.cli import export_onnx as cli_export_onnx
from autojoint.inference.ensemble import load_ensemble
from autojoint.io.case_loading import load_channels
from autojoint.preprocessing.preprocess import preprocess_arrays
from tests.inference.tiny_workdir import make_tiny_workdir

onnx = pytest.importorskip("onnx", reason="the 'export' extra (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed")

TOLERANCE = 1e-4


def test_graphs_equal_torch_on_a_real_case(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    raw, work, plan = make_tiny_workdir(tmp_path, num_cases=2, folds=("0",))
    out = tmp_path / "onnx"
    assert cli_export_onnx.main(["-w", str(work), "-o", str(out)]) == 0
    spec = json.loads((out / "preprocessing.json").read_text(encoding="utf-8"))
    assert spec["patch_size"] == list(plan.patch_size)
    assert spec["classification_shape"] == list(plan.classification_shape)
    assert spec["labels"] == plan.labels and spec["classes"] == list(plan.classes)
    assert [c["normalization"]["scheme"] for c in spec["channels"]] == ["ct"]
    assert set(spec["graphs"]) == {"fold_0_segmentation.onnx", "fold_0_diagnosis.onnx"}
    assert all(g["max_abs_diff"] < TOLERANCE for g in spec["graphs"].values())
    # A real preprocessed case (not the export's random check): its first tiles, batch 2,
    # and its whole-scan view give torch's logits within the tolerance.
    net = load_ensemble(work, ["0"], torch.device("cpu")).nets[0]
    data, geo = load_channels([raw / "imagesTr" / "case_000_0000.nii.gz"])
    pre = preprocess_arrays("case_000", data, geo, None, plan)
    pz, py, px = plan.patch_size
    # Padded with its minimum to at least a patch, as the sliding window pads.
    sizes = zip(plan.patch_size, pre.data.shape[1:], strict=True)
    short = [(0, 0)] + [(0, max(p - s, 0)) for p, s in sizes]
    data = np.pad(pre.data, short, constant_values=float(pre.data.min()))
    z0, y0 = data.shape[1] - pz, data.shape[2] - py
    tiles = np.stack([data[:, :pz, :py, :px], data[:, z0 : z0 + pz, y0 : y0 + py, :px]])
    assert tiles.shape[2:] == tuple(plan.patch_size)
    seg = ort.InferenceSession(str(out / "fold_0_segmentation.onnx"))
    logits, probs = seg.run(None, {"patch": tiles.astype(np.float32)})
    with torch.no_grad():
        scales = net.seg(torch.from_numpy(tiles))
        np.testing.assert_allclose(logits, net.fused_logits(scales).numpy(), atol=TOLERANCE)
        np.testing.assert_allclose(probs, net.fused_probabilities(scales).numpy(), atol=TOLERANCE)
    diag = ort.InferenceSession(str(out / "fold_0_diagnosis.onnx"))
    view = pre.cls_data[None].astype(np.float32)
    logits, probs = diag.run(None, {"view": view})
    with torch.no_grad():
        _, expected, _ = net.classify(torch.from_numpy(view))
    np.testing.assert_allclose(logits, expected.numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # An existing output folder is never overwritten.
    assert cli_export_onnx.main(["-w", str(work), "-o", str(out)]) == 1
