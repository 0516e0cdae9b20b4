"""MosMedData -> autojoint: the published layout rebuilt around two real masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.io.dataset import load_raw_dataset
from dataset_conversion.convert_mosmed import convert_mosmed, main
from dataset_conversion.raw_writer import ConversionError
from tests.dataset_conversion.helpers import assert_same_grid, read, write_like, write_volume
from tests.shared_data import shared_data_or_skip

pytestmark = pytest.mark.realdata

REAL_MASKS = ("study_0255", "study_0256")


def make_mosmed(root: Path, masks: Path) -> Path:
    """Registry (with its byte-order mark and /studies/... paths), two CT-1 studies on the
    grids of two real masks, a CT-0 study without mask, and a listed study not on disk."""
    rows = ["\ufeffstudy_id,category,study_file,mask_file"]
    rows.append("1,CT-0,/studies/CT-0/study_0001.nii.gz,")
    rows.append("2,CT-0,/studies/CT-0/study_0002.nii.gz,")  # not downloaded
    for name in REAL_MASKS:
        mask = sitk.ReadImage(str(masks / f"{name}_mask.nii.gz"))
        lesion = sitk.GetArrayFromImage(mask) > 0
        ct = np.where(lesion, -600, -850).astype(np.int16)  # lungs with ground-glass lesions
        write_like(ct, mask, root / "studies" / "CT-1" / f"{name}.nii.gz")
        (root / "masks").mkdir(exist_ok=True)
        (root / "masks" / f"{name}_mask.nii.gz").symlink_to(masks / f"{name}_mask.nii.gz")
        num = int(name.split("_")[1])
        rows.append(f"{num},CT-1,/studies/CT-1/{name}.nii.gz,/masks/{name}_mask.nii.gz")
    write_volume(
        np.full((5, 16, 16), -900, np.int16),
        root / "studies" / "CT-0" / "study_0001.nii.gz",
        spacing_zyx=(8.0, 0.7, 0.7),
    )
    (root / "dataset_registry.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def mosmed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    masks = shared_data_or_skip("mosmed_masks", "masks")
    return make_mosmed(tmp_path_factory.mktemp("mosmed") / "COVID19_1110", masks)


def test_severity_is_the_diagnosis_and_real_masks_survive(mosmed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["-i", str(mosmed), "-o", str(out)]) == 0
    ds = load_raw_dataset(out)
    assert ds.classes == ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
    assert ds.labels == {"background": 0, "lesion": 1}
    by_id = {c.case_id: c for c in ds.cases}
    assert sorted(by_id) == ["study_0001", "study_0255", "study_0256"]
    assert by_id["study_0001"].diagnosis == "CT-0" and by_id["study_0001"].label_path is None
    for name in REAL_MASKS:
        case = by_id[name]
        assert case.diagnosis == "CT-1" and case.label_path is not None
        new, new_img = read(case.label_path)
        ref, ref_img = read(mosmed / "masks" / f"{name}_mask.nii.gz")
        np.testing.assert_array_equal(new, ref)  # voxel for voxel, values {0, 1}
        assert set(np.unique(new)) == {0, 1} and new.dtype == np.uint8
        assert_same_grid(new_img, ref_img)
        assert new_img.GetSpacing()[2] == pytest.approx(8.0)  # the 8 mm slices stay
        assert_same_grid(read(case.image_paths[0])[1], new_img)


def test_mask_off_its_study_grid_is_refused(mosmed: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in mosmed.iterdir():
        if p.name != "studies":
            (src / p.name).symlink_to(p)
    study = mosmed / "studies" / "CT-1" / "study_0255.nii.gz"
    img = sitk.ReadImage(str(study))
    img.SetOrigin(tuple(o + 5.0 for o in img.GetOrigin()))  # 5 mm shift: not rounding
    (src / "studies" / "CT-1").mkdir(parents=True)
    sitk.WriteImage(img, str(src / "studies" / "CT-1" / "study_0255.nii.gz"))
    with pytest.raises(ConversionError, match="study_0255_mask.*not on the image grid"):
        convert_mosmed(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_registry_or_mask_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "dataset_registry.csv: not found" in capsys.readouterr().err
    write_volume(np.zeros((2, 4, 4), np.int16), tmp_path / "studies" / "CT-2" / "study_0300.nii.gz")
    (tmp_path / "dataset_registry.csv").write_text(
        "study_id,category,study_file,mask_file\n300,CT-2,/studies/CT-2/study_0300.nii.gz,"
        "/masks/study_0300_mask.nii.gz\n",
        encoding="utf-8",
    )
    assert main(["-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "study_0300_mask.nii.gz listed but not found" in capsys.readouterr().err
