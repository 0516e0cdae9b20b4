"""Lung masks: a synthetic chest with known answers, then real CTs against references."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from autojoint.arrays.cropping import bbox_of
from autojoint.cli import plan as cli_plan
from autojoint.io.image_io import ImageGeometry
from autojoint.planning.schema import Plan
from autojoint.preprocessing.lung_mask import lung_bbox, lung_crop, lung_mask
from autojoint.preprocessing.preprocess import preprocess_arrays
from tests.shared_data import shared_data_or_skip
from tests.synthetic import make_raw_dataset

PLANS = Path(__file__).resolve().parents[2] / "plans"
LOBES = (10, 11, 12, 13, 14)  # TotalSegmentator v2: left upper/lower, right upper/middle/lower
LEFT_LOBES, RIGHT_LOBES = (10, 11), (12, 13, 14)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


def phantom() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """40 slices x 96 x 96 at 2.5 x 1.5 x 1.5 mm: body, two lungs with a vessel and a
    consolidation inside, a trachea running from the top slice into the lungs, bowel gas
    below them, and air in a hollow table under the body."""
    shape = (40, 96, 96)
    z, y, x = np.indices(shape)
    img = np.full(shape, -1000.0, np.float32)
    body = ((y - 44) / 36.0) ** 2 + ((x - 48) / 44.0) ** 2 < 1
    img[body] = 30.0
    parts = {}
    lungs = np.zeros(shape, bool)
    for cx in (28, 68):
        lungs |= (((y - 44) / 22.0) ** 2 + ((x - cx) / 14.0) ** 2 < 1) & (z >= 8) & (z < 34)
    img[lungs] = -860.0
    vessel = lungs & (((y - 44) ** 2 + (x - 28) ** 2) < 4)
    img[vessel] = 40.0
    consolidation = lungs & (
        ((z - 20) / 3.0) ** 2 + ((y - 40) / 4.0) ** 2 + ((x - 66) / 4.0) ** 2 < 1
    )
    img[consolidation] = 20.0
    trachea = ((y - 40) ** 2 + (x - 48) ** 2 < 16) & (z >= 26)
    img[trachea] = -1000.0
    carina = (z >= 24) & (z < 27) & (np.abs(y - 40) < 3) & (x > 30) & (x < 66)  # bronchi
    img[carina] = -1000.0
    bowel = ((z - 3) ** 2 / 9.0 + (y - 50) ** 2 / 64.0 + (x - 48) ** 2 / 100.0) < 1
    img[bowel] = -1000.0
    table = (y >= 86) & (y < 90) & (x > 10) & (x < 86)
    img[table] = 200.0
    img[(y >= 87) & (y < 89) & (x > 14) & (x < 82)] = -1000.0  # air inside the table
    rng = np.random.default_rng(0)
    img += rng.normal(0, 10, shape).astype(np.float32)
    parts.update(lungs=lungs, trachea=trachea, bowel=bowel, body=body, consolidation=consolidation)
    return img, parts


def test_phantom_lungs_found_and_the_rest_excluded() -> None:
    img, parts = phantom()
    mask = lung_mask(img, (2.5, 1.5, 1.5))
    assert dice(mask, parts["lungs"]) > 0.95
    # the trachea down to the carina (z 24..26, where the bronchi enter both lungs) is out
    assert not mask[27:][parts["trachea"][27:]].any()
    assert not (mask & parts["bowel"]).any()
    assert not (mask & ~parts["body"]).any()
    assert mask[parts["consolidation"]].mean() > 0.9  # lesions are inside the lung mask
    x = np.indices(mask.shape)[2]
    for side in (x < 48, x >= 48):  # both lungs (joined only by the bronchi at the carina)
        assert mask[parts["lungs"] & side].mean() > 0.95


def test_no_lung_gives_empty_mask_and_no_bbox() -> None:
    img = np.full((10, 32, 32), 40.0, np.float32)
    mask = lung_mask(img, (2.0, 1.0, 1.0))
    assert not mask.any() and lung_bbox(mask, (2.0, 1.0, 1.0)) is None


def test_bbox_margin_in_mm_is_clipped() -> None:
    mask = np.zeros((10, 20, 20), bool)
    mask[4:6, 5:8, 0:3] = True
    assert lung_bbox(mask, (2.0, 1.0, 1.0), margin_mm=4.0) == ((2, 8), (1, 12), (0, 7))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="3D"):
        lung_mask(np.zeros((4, 4)), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        lung_mask(np.zeros((4, 4, 4)), (1.0, 0.0, 1.0))


def _read(path) -> tuple[np.ndarray, tuple[float, float, float], sitk.Image]:
    img = sitk.ReadImage(str(path))
    sp = img.GetSpacing()
    return sitk.GetArrayFromImage(img).astype(np.float32), (sp[2], sp[1], sp[0]), img


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "example_ct.nii.gz"])
def test_totalsegmentator_lobes_as_reference(name: str) -> None:
    """Lung bases at 3 mm; example_ct_sm is slices 82..111 of example_ct, where the lobe
    labels are. Dice of our mask vs the lobe union measured: 0.965 on both."""
    ref_dir = shared_data_or_skip("totalsegmentator", "tests", "reference_files")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_dir / "example_seg.nii.gz")))
    img, spacing, _ = _read(ref_dir / name)
    mask = lung_mask(img, spacing)
    if name == "example_ct.nii.gz":
        offset = img.shape[0] - seg.shape[0]
        sm = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_dir / "example_ct_sm.nii.gz")))
        np.testing.assert_array_equal(img[offset:], sm)  # the slab the labels belong to
        assert not mask[:offset].any() or mask[:offset].sum() < 0.05 * mask.sum()
        mask = mask[offset:]
    ref = np.isin(seg, LOBES)
    assert dice(mask, ref) > 0.93
    for side in (LEFT_LOBES, RIGHT_LOBES):  # both lungs found
        assert mask[np.isin(seg, side)].mean() > 0.9
    organs = (seg > 0) & ~ref  # liver, spleen, bowel, ribs...: body, not lung
    assert (mask & organs).sum() < 0.03 * mask.sum()


def _tracked_trachea(img: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Independent trachea: the midline air hole of the most superior slice, followed down
    slice by slice while its cross-section stays below 4 cm² (it widens into the lungs)."""
    out = np.zeros(img.shape, bool)
    width = img.shape[2]
    prev = None
    for k in range(img.shape[0] - 1, -1, -1):  # these scans are LPS: the last slice is superior
        labels, n = ndimage.label(img[k] < -900)
        pieces = []
        for g in range(1, n + 1):
            piece = labels == g
            area = piece.sum() * spacing[1] * spacing[2]
            touches = piece[0].any() or piece[-1].any() or piece[:, 0].any() or piece[:, -1].any()
            if touches or area > 400 or area < 20:
                continue
            if prev is None:
                if abs(np.nonzero(piece)[1].mean() - width / 2) < 0.1 * width:
                    pieces.append(piece)
            elif (piece & prev).any():
                pieces.append(piece)
        if not pieces:
            if prev is not None:
                break
            continue
        prev = np.logical_or.reduce(pieces)
        out[k] = prev
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["P001", "cap001", "normal001"])
def test_real_chest_ct_lungs_body_and_trachea(case: str) -> None:
    path = shared_data_or_skip("covid_ct_md", "nifti_ds2", f"{case}.nii.gz")
    img, spacing, itk = _read(path)
    assert itk.GetDirection()[8] > 0
    mask = lung_mask(img, spacing)
    volume_l = mask.sum() * np.prod(spacing) / 1e6
    assert 2.5 < volume_l < 8.0  # adult lungs (measured 6.1, 6.1, 3.5 L)
    # both lungs: each half of the body (split at the centre of the mask) holds >= 35%
    xs = np.nonzero(mask)[2]
    body = np.stack([ndimage.binary_fill_holes(sl > -500) for sl in img])  # per axial slice
    body_x = np.nonzero(body.any(axis=(0, 1)))[0]
    centre = (body_x[0] + body_x[-1]) / 2
    assert 0.35 < (xs < centre).mean() < 0.65
    # body excluded: no voxel outside the body, almost no soft tissue or bone inside
    assert not (mask & ~body).any()
    assert (img[mask] > -300).mean() < 0.06
    assert -900 < img[mask].mean() < -650
    # trachea: found independently, and (nearly) none of it in the lung mask
    trachea = _tracked_trachea(img, spacing)
    assert trachea.sum() * np.prod(spacing) / 1000 > 5  # > 5 mL of trachea found
    assert (mask & trachea).sum() < 0.05 * trachea.sum()


def test_lung_crop_modes() -> None:
    img, parts = phantom()
    data = img[None]
    spacing = (2.5, 1.5, 1.5)
    same, box = lung_crop(data, spacing, "off", {"0": "CT"})
    assert same is data and box is None
    cropped, box = lung_crop(data, spacing, "crop", {"0": "CT"})
    assert cropped is data and box is not None
    inside = np.zeros(img.shape, bool)
    inside[tuple(slice(a, b) for a, b in box)] = True
    assert inside[parts["lungs"]].all() and not inside[parts["bowel"]].all()
    masked, box_m = lung_crop(data, spacing, "mask", {"0": "CT"})
    assert box_m == box
    lungs = lung_mask(img, spacing)
    np.testing.assert_array_equal(masked[0][lungs], img[lungs])
    assert (masked[0][~lungs] == img.min()).all()
    with pytest.raises(ValueError, match="channel named CT"):
        lung_crop(data, spacing, "crop", {"0": "CT_8bit"})
    with pytest.raises(ValueError, match="'off', 'crop' or 'mask'"):
        lung_crop(data, spacing, "lungs", {"0": "CT"})


def test_preprocessing_crops_to_the_lungs_only_when_planned() -> None:
    """The plan's lung_mask field drives the one call in preprocess_arrays; "off" (the
    default) keeps the body crop, so older plans preprocess as before."""
    plan = Plan.load(PLANS / "reference_demo_plan.json")
    assert plan.lung_mask == "off"
    img, _parts = phantom()
    geo = ImageGeometry((40, 96, 96), (2.5, 1.5, 1.5), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    body = preprocess_arrays("c", img[None], geo, None, plan)
    lungs = preprocess_arrays("c", img[None], geo, None, replace(plan, lung_mask="crop"))
    assert body.bbox == bbox_of(img > -500)
    assert lungs.bbox == lung_bbox(lung_mask(img, geo.spacing), geo.spacing)
    assert np.prod([b - a for a, b in lungs.bbox]) < np.prod([b - a for a, b in body.bbox])


def test_plan_cli_stores_the_option_and_refuses_non_ct(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3)
    work = tmp_path / "work"
    assert cli_plan.main(["-d", str(raw), "-w", str(work), "--no-preprocess"]) == 0
    assert Plan.load(work / "plans.json").lung_mask == "off"
    args = ["-d", str(raw), "-w", str(work), "--no-preprocess", "--lung-mask", "mask"]
    assert cli_plan.main(args) == 0
    plan = Plan.load(work / "plans.json")
    assert plan.lung_mask == "mask" and "lung_mask" in plan.reasons
    meta = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
    meta["channel_names"] = {"0": "MR"}
    (raw / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    assert cli_plan.main(args) == 1
    assert "needs a channel named CT" in capsys.readouterr().err
