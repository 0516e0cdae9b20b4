"""Plan real 2D CT slices (Inf-Net's MedSeg COVID-19 set: JPG slices, binary infection
masks) stored the way a converter stores them: one 2D NIfTI per slice, spacing 1 mm."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.schema import Plan
from autojoint.preprocessing.preprocess import load_preprocessed
from tests.shared_data import SHARED_DATA

SLICES = SHARED_DATA / "infnet_semiseg" / "Dataset" / "TrainingSet" / "LungInfection-Train"
NAMES = ("0", "1", "10", "11", "12")

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def raw_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = SLICES / "Doctor-label"
    if not (src / "Imgs" / "0.jpg").is_file():
        pytest.skip(f"../shared/data absent: {src} not found (Inf-Net 2D CT slices)")
    raw = tmp_path_factory.mktemp("infnet") / "raw"
    for name in NAMES:
        image = sitk.ReadImage(str(src / "Imgs" / f"{name}.jpg"))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "GT" / f"{name}.png")))
        label = sitk.GetImageFromArray((mask > 127).astype(np.uint8))
        label.CopyInformation(image)
        for img, sub, suffix in ((image, "imagesTr", "_0000"), (label, "labelsTr", "")):
            (raw / sub).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(img, str(raw / sub / f"infnet_{name}{suffix}.nii.gz"))
    meta = {
        "channel_names": {"0": "slice"},  # 8-bit grey values, not HU: per-image z-score
        "labels": {"background": 0, "infection": 1},
        "numTraining": len(NAMES),
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return raw


def test_real_2d_slices_plan_the_2d_configuration(raw_2d: Path, tmp_path: Path) -> None:
    plan = plan_and_preprocess(raw_2d, tmp_path, gpu_memory_gb=8.0)
    assert Plan.load(tmp_path / "plans.json") == plan
    fp = json.loads((tmp_path / "fingerprint.json").read_text(encoding="utf-8"))
    assert fp["is_2d"] and len(fp["cases"]) == len(NAMES)
    sizes = []
    for name, case in zip(NAMES, fp["cases"], strict=True):
        size = sitk.ReadImage(str(SLICES / "Doctor-label" / "Imgs" / f"{name}.jpg")).GetSize()
        assert case["shape"] == [1, size[1], size[0]]
        sizes.append((size[1], size[0]))
        assert case["lesion_components"]["infection"]  # every chosen slice is infected
    assert plan.configuration == "2d" and plan.lowres is None and plan.two_d is None
    assert plan.is_2d
    assert plan.target_spacing == (1.0, 1.0, 1.0)  # no spacing in a JPG: 1 mm
    assert plan.patch_size[0] == 1 and plan.classification_shape is None
    assert all(
        k[0] == 1 and s[0] == 1
        for k, s in zip(plan.topology.kernel_sizes, plan.topology.strides, strict=True)
    )
    # A whole median slice (after cropping to non-zero pixels) fits an 8 GB GPU.
    stride = plan.topology.total_stride
    assert all(
        m - p < s for m, p, s in zip(plan.median_shape, plan.patch_size, stride, strict=True)
    )
    assert math.prod(plan.patch_size) <= math.prod(np.max(sizes, axis=0))
    assert plan.normalization[0].scheme == "zscore"
    # Preprocessing keeps each slice one slice.
    case = load_preprocessed(tmp_path / "preprocessed_2d", "infnet_0")
    assert case.data.shape[:2] == (1, 1) and case.seg is not None and case.seg.shape[0] == 1
