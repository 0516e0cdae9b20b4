"""MSD-Net's preset on the real 2D MedSeg slices (issue 10): convert, plan the 2d
configuration, train a few iterations with the MSD-Net blocks and the class-weighted focal
loss, predict 2D masks on the input grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.cli import plan as cli_plan
from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.planning.schema import Plan
from autojoint.runtime.checkpoint import load_checkpoint
from dataset_conversion.convert_medseg import main_slices
from tests.shared_data import shared_data_or_skip

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
NUM_TRAIN = 8


def test_msd_net_preset_trains_and_predicts_on_real_slices(tmp_path: Path) -> None:
    src = shared_data_or_skip("infnet_semiseg", "Dataset")
    converted = tmp_path / "converted"
    assert main_slices(["-i", str(src), "-o", str(converted)]) == 0
    # A small subset keeps the test fast: the first training slices, two test slices.
    raw = tmp_path / "raw"
    meta = json.loads((converted / "dataset.json").read_text(encoding="utf-8"))
    images = sorted((converted / "imagesTr").glob("*_0000.nii.gz"))[:NUM_TRAIN]
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True)
    for img in images:
        case = img.name[: -len("_0000.nii.gz")]
        shutil.copy(img, raw / "imagesTr" / img.name)
        shutil.copy(converted / "labelsTr" / f"{case}.nii.gz", raw / "labelsTr")
    tests = sorted((converted / "imagesTs").glob("*_0000.nii.gz"))[:2]
    for img in tests:
        shutil.copy(img, raw / "imagesTs" / img.name)
    meta["numTraining"] = NUM_TRAIN
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    assert set(meta["labels"].values()) == {0, 1, 2}

    work = tmp_path / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work), "--gpu-memory-gb", "0.15"]) == 0
    plan = json.loads((work / "plans.json").read_text(encoding="utf-8"))
    assert plan["configuration"] == "2d" and plan["patch_size"][0] == 1
    weights = plan["loss"]["voxel_class_weights"]
    assert len(weights) == 3 and weights[0] < min(weights[1:])  # background is most frequent

    args = ["all", "-w", str(work), "-c", "2d", "--preset", "msd-net"]
    args += ["--epochs", "1", "--iterations-per-epoch", "2", "--skip-validation"]
    assert cli_train.main(args) == 0
    ckpt = next((work / "variants" / "msd-net" / "2d").rglob("checkpoint_final.pt"))
    saved = Plan.from_dict(load_checkpoint(ckpt)["plan"])
    net = saved.network
    assert net.pyramid_conv and net.channel_attention and net.residual_refinement
    assert saved.loss.segmentation == "focal" and saved.loss.voxel_class_weights == tuple(weights)

    out = tmp_path / "pred"
    predict = ["-i", str(raw / "imagesTs"), "-o", str(out), "-w", str(work), "-c", "2d"]
    predict += ["--variant", "msd-net"]
    assert cli_predict.main([*predict, "--no-tta"]) == 0
    for img in tests:
        case = img.name[: -len("_0000.nii.gz")]
        ref, pred = sitk.ReadImage(str(img)), sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert pred.GetDimension() == 2 and pred.GetSize() == ref.GetSize()
        np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing())
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2}
