"""Fingerprint and plan three real chest CTs (COVID-CT-MD: COVID-19, CAP, normal)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from autojoint.pipeline import plan_and_preprocess
from autojoint.planning.schema import Plan
from tests.shared_data import SHARED_DATA

REAL = SHARED_DATA / "covid_ct_md"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def real_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REAL / "cases.csv").is_file():
        pytest.skip(f"../shared/data absent: {REAL} not found (real COVID-CT-MD chest CTs)")
    raw = tmp_path_factory.mktemp("real") / "raw"
    (raw / "imagesTr").mkdir(parents=True)
    rows = []
    with open(REAL / "cases.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            (raw / "imagesTr" / f"{row['case_id']}_0000.nii.gz").symlink_to(REAL / row["file"])
            rows.append((row["case_id"], row["diagnosis"]))
    with open(raw / "diagnosesTr.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("case", "diagnosis"), *rows])
    meta = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(rows),
        "file_ending": ".nii.gz",
        "classes": ["COVID-19", "CAP", "Normal"],
    }
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return raw


def test_real_ct_plan(real_raw: Path, tmp_path: Path) -> None:
    plan = plan_and_preprocess(real_raw, tmp_path, preprocess=False, gpu_memory_gb=8.0)
    assert Plan.load(tmp_path / "plans.json") == plan
    fp = json.loads((tmp_path / "fingerprint.json").read_text(encoding="utf-8"))
    # cases.csv: z spacing 2.0 mm for all three; in-plane 1.18, 1.27, 1.50 mm -> median 1.27.
    np.testing.assert_allclose(plan.target_spacing, (2.0, 1.2695, 1.2695), atol=1e-3)
    for case in fp["cases"]:
        assert all(c <= s for c, s in zip(case["shape_after_crop"], case["shape"], strict=True))
        assert math.prod(case["shape_after_crop"]) < math.prod(case["shape"])  # air cropped
        assert case["lesion_components"] == {}  # no masks in this data
    stats = fp["intensity"][0]
    # Real HU: the lungs (about -850) must be inside the sampled range, bone above it.
    assert stats["percentile_00_5"] < -800
    assert stats["percentile_99_5"] > 150
    assert plan.normalization[0].scheme == "ct"
    assert fp["diagnosis_counts"] == {"COVID-19": 1, "CAP": 1, "Normal": 1}
    stride = plan.topology.total_stride
    assert all(p % s == 0 for p, s in zip(plan.patch_size, stride, strict=True))
    # 2 mm slices vs 1.27 mm in-plane is within 2x: all axes are pooled from the start.
    assert plan.topology.strides[1] == (2, 2, 2)
