"""The GPU check's pure parts (no GPU, no training): the refusal without CUDA, speed and
memory arithmetic, the resampled CT's grid, the report; and the shell script refusing on
this CPU machine before it installs or writes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check import (
    GIB,
    format_report,
    iterations_per_second,
    memory_summary,
    resample_to_size,
    resampled_spacing,
)

REPO = Path(__file__).resolve().parents[2]


def test_no_cuda_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problem = gpu_check.cuda_problem()
    assert problem is not None and "no CUDA device" in problem and "scripts/demo.sh" in problem
    for argv in (["require-cuda"], ["train", str(tmp_path)], ["predict", *[str(tmp_path)] * 3]):
        with pytest.raises(SystemExit, match="no CUDA device"):
            gpu_check.main(argv)
    assert not list(tmp_path.iterdir())  # nothing trained or written
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_check.cuda_problem() is None
    assert gpu_check.main(["require-cuda"]) == 0


def test_iterations_per_second_leaves_out_the_first_epoch() -> None:
    assert iterations_per_second([30.0, 10.0, 10.0], 100) == pytest.approx(10.0)
    assert iterations_per_second([4.0], 100) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="no epoch"):
        iterations_per_second([], 100)


def test_memory_summary_against_the_plan() -> None:
    m = memory_summary(
        peak_allocated=6 * GIB,
        peak_reserved=7 * GIB,
        device_total=24 * GIB,
        device_used_now=int(7.5 * GIB),
        reserved_now=7 * GIB,
        estimate_gb=8.0,
        budget_gb=20.25,
    )
    assert m["peak_over_estimate"] == pytest.approx(0.75)
    assert m["outside_torch_gb"] == pytest.approx(0.5)
    assert m["device_gb"] == pytest.approx(24.0)


def test_resampled_ct_keeps_the_field_of_view() -> None:
    assert resampled_spacing((256, 256, 148), (1.4, 1.4, 2.0), (512, 512, 296)) == (
        pytest.approx(0.7),
        pytest.approx(0.7),
        pytest.approx(1.0),
    )
    image = sitk.GetImageFromArray(np.full((5, 6, 8), -300, np.int16))  # z, y, x
    image.SetSpacing((1.5, 1.2, 2.0))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # LPS flipped in-plane
    out = resample_to_size(image, (16, 12, 10))
    assert out.GetSize() == (16, 12, 10) and out.GetPixelID() == image.GetPixelID()
    assert out.GetDirection() == image.GetDirection()

    def corners(img: sitk.Image) -> np.ndarray:
        """Physical corners of the field of view (voxel edges, not centres)."""
        last = [s - 0.5 for s in img.GetSize()]
        return np.array(
            [
                img.TransformContinuousIndexToPhysicalPoint(p)
                for p in ((-0.5, -0.5, -0.5), tuple(last))
            ]
        )

    np.testing.assert_allclose(corners(out), corners(image), atol=1e-9)
    # Inside the field of view the constant image stays constant (air only beyond it).
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out)[2:-2, 2:-2, 2:-2], -300)


def test_report_names_the_numbers() -> None:
    training = {
        "device_name": "Fake GPU",
        "torch": "2.13.0",
        "device_profile": "gpu (Fake GPU, 24.0 GB, budget 20.2 GB)",
        "patch_size": [96, 128, 192],
        "batch_size": 2,
        "classification_shape": [96, 128, 160],
        "num_parameters": 34_000_000,
        "epochs": 3,
        "iterations_per_epoch": 100,
        "num_workers": 7,
        "iterations_per_second": 2.5,
        **memory_summary(
            peak_allocated=15 * GIB,
            peak_reserved=16 * GIB,
            device_total=24 * GIB,
            device_used_now=int(16.5 * GIB),
            reserved_now=16 * GIB,
            estimate_gb=19.4,
            budget_gb=20.25,
        ),
    }
    prediction = {
        "no_mirroring": {"seconds": 12.0, "network_seconds": 9.0, "peak_allocated_gb": 3.0},
        "mirroring": {"seconds": 70.0, "network_seconds": 66.0, "peak_allocated_gb": 3.1},
    }
    text = format_report(
        {
            "training": training,
            "prediction": prediction,
            "ct_source": "P001.nii.gz",
            "ct_size_xyz": [512, 512, 300],
        }
    )
    for expected in (
        "Fake GPU (24.0 GB)",
        "2.50 it/s",
        "peak allocated 15.00 GB = 0.77 x the plan's estimate 19.40 GB",
        "34.0 M parameters",
        "512x512x300 CT (P001.nii.gz)",
        "no mirroring: 12.0 s",
        "mirroring: 70.0 s",
    ):
        assert expected in text, text


def test_the_script_refuses_without_cuda_before_writing(tmp_path: Path) -> None:
    """This venv's torch sees no GPU: the script stops before set-up, data or plans."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run")
    env = {
        **os.environ,
        "AUTOJOINT_VENV": sys.prefix,
        "GPU_CHECK_DIR": str(tmp_path / "run"),
    }
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "no CUDA device" in proc.stderr and "refusing to run" in proc.stderr
    assert not (tmp_path / "run").exists()
