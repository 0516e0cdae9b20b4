"""``autojoint.api.Predictor``: the command's per-case core in memory, so a prediction
equals ``autojoint_predict``'s for the same image and options, from a SimpleITK image or a
numpy array with its geometry."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from autojoint.api import Predictor
from autojoint.cli import predict as cli_predict
from tests.inference.tiny_workdir import make_tiny_workdir


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    raw, work, _ = make_tiny_workdir(root, num_cases=3)
    inputs = root / "inputs"
    inputs.mkdir()
    shutil.copy(raw / "imagesTr" / "case_001_0000.nii.gz", inputs)
    out = root / "out"
    args = ["-i", str(inputs), "-o", str(out), "-w", str(work), "--no-tta", "--step-size", "1"]
    assert cli_predict.main([*args, "--save-probabilities", "--evidence"]) == 0
    return {"work": work, "image": inputs / "case_001_0000.nii.gz", "out": out}


def test_predict_equals_the_command(tiny: dict[str, Path]) -> None:
    predictor = Predictor.from_work_dir(tiny["work"], device="cpu", use_tta=False, step_fraction=1)
    image = sitk.ReadImage(str(tiny["image"]))
    result = predictor.predict(image)
    out = tiny["out"]
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_001.nii.gz")))
    np.testing.assert_array_equal(result.mask, expected)
    assert result.mask_image.GetSize() == image.GetSize()
    np.testing.assert_allclose(result.mask_image.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(result.mask_image.GetDirection(), image.GetDirection())
    written = np.load(out / "case_001_probabilities.npz")["probabilities"]
    assert result.probabilities is not None
    np.testing.assert_array_equal(result.probabilities.astype(np.float16), written)
    evidence = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_001_evidence.nii.gz")))
    assert result.evidence is not None and result.evidence_image is not None
    np.testing.assert_allclose(result.evidence, evidence, atol=1e-6)
    record = json.loads((out / "case_001.json").read_text(encoding="utf-8"))
    assert result.diagnosis == record["diagnosis"]
    assert result.class_probabilities == pytest.approx(record["probabilities"], abs=1e-7)
    assert predictor.classes == tuple(record["probabilities"])


def test_numpy_input_with_its_geometry_equals_the_image(tiny: dict[str, Path]) -> None:
    predictor = Predictor.from_work_dir(tiny["work"], device="cpu", use_tta=False, step_fraction=1)
    image = sitk.ReadImage(str(tiny["image"]))
    array = sitk.GetArrayFromImage(image)
    before = array.copy()
    from_image = predictor.predict(image, evidence=None, probabilities=False)
    from_array = predictor.predict(
        array,
        spacing=image.GetSpacing()[::-1],
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
        evidence=None,
        probabilities=False,
    )
    np.testing.assert_array_equal(from_array.mask, from_image.mask)
    assert from_array.class_probabilities == from_image.class_probabilities
    assert from_array.probabilities is None and from_array.evidence is None
    np.testing.assert_array_equal(array, before)  # the input is not modified
    channels = predictor.predict(array[None], spacing=image.GetSpacing()[::-1], evidence=None)
    assert channels.mask.shape == array.shape


def test_bad_inputs_say_what_to_pass(tiny: dict[str, Path]) -> None:
    predictor = Predictor.from_work_dir(tiny["work"], device="cpu", use_tta=False)
    array = np.zeros((12, 40, 40), np.float32)
    with pytest.raises(ValueError, match="spacing"):
        predictor.predict(array)
    with pytest.raises(ValueError, match="1 channel"):
        predictor.predict(np.stack([array, array]), spacing=(2.5, 0.8, 0.8))
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(np.full_like(array, np.nan), spacing=(2.5, 0.8, 0.8))
    with pytest.raises(ValueError, match="unknown evidence"):
        predictor.predict(array, spacing=(2.5, 0.8, 0.8), evidence="nope")
