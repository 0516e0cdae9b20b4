"""Deterministic synthetic chest-CT dataset in the nnU-Net v2 raw layout.

The demo data lets the whole pipeline (planning, training, inference, evaluation) run
without real scans. A case is the anatomy of ``demo_anatomy`` plus the lesions of
``demo_lesions``, which reproduce published COVID-19 vs community-acquired pneumonia
(CAP) findings (DeepSC-COVID), so the diagnosis depends on the whole scan rather than on
any single voxel.

Every size is relative to the field of view, so a small ``fov_mm`` gives a miniature
chest with the same statistics that runs fast on a CPU. Arrays are ``(Z, Y, X)``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dataset_conversion.demo_anatomy import (
    HU_AIR,
    NOISE_SD,
    TEXTURE_SD,
    Grid,
    Lung,
    ellipse_q,
    paint_anatomy,
    paint_vessels,
    smooth_field,
)
from dataset_conversion.demo_lesions import LesionInfo, paint_lesions
from dataset_conversion.raw_writer import ConvertedCase, write_raw_dataset

logger = logging.getLogger(__name__)

DIAGNOSES: tuple[str, ...] = ("COVID-19", "CAP", "normal")
LABELS: dict[str, int] = {"background": 0, "ground_glass": 1, "consolidation": 2}
# identity for most scans; flipped axes test that consumers honour the direction cosines
_DIRECTIONS = ((1.0, 1.0, 1.0), (-1.0, -1.0, 1.0), (-1.0, 1.0, 1.0))
_CASE_FILE = re.compile(r"(demo_\d+)(?:_0000)?\.nii\.gz")


@dataclass(frozen=True, eq=False)
class DemoCase:
    """One synthetic scan (``eq=False``: comparing arrays has no single truth value).

    Attributes:
        case_id: e.g. ``demo_007``.
        diagnosis: one of ``DIAGNOSES``.
        image: int16 Hounsfield units, ``(Z, Y, X)``.
        label: uint8 ``(Z, Y, X)``; 0 background, 1 ground-glass, 2 consolidation.
        spacing_zyx: voxel size in mm, project order ``(z, y, x)``.
        origin_xyz: ITK origin in mm.
        direction: ITK direction cosines, 9 values row-major.
        lung_mask: bool ``(Z, Y, X)``; lesions never leave it (HU alone cannot tell,
            consolidation is soft-tissue dense).
        lesions: design record per lesion (empty for normal scans).
    """

    case_id: str
    diagnosis: str
    image: np.ndarray
    label: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: tuple[float, ...]
    lung_mask: np.ndarray
    lesions: tuple[LesionInfo, ...] = ()


def generate_case(
    case_id: str,
    diagnosis: str,
    rng: np.random.Generator,
    *,
    fov_mm: float = 340.0,
    z_extent_mm: float = 300.0,
) -> DemoCase:
    """Synthesise one chest CT and its lesion labels.

    Args:
        case_id: identifier stored on the result (not used for randomness).
        diagnosis: one of ``DIAGNOSES``; decides lesion count, size, density and location.
        rng: the only source of randomness, so a seeded generator reproduces the case.
        fov_mm: in-plane field of view; all anatomy scales with it.
        z_extent_mm: cranio-caudal extent of the scan.

    Returns:
        The case with an int16 HU image, a uint8 label map and its geometry.

    Raises:
        ValueError: on an unknown diagnosis or a non-positive / too small extent.
    """
    if diagnosis not in DIAGNOSES:
        raise ValueError(f"unknown diagnosis {diagnosis!r}; expected one of {DIAGNOSES}.")
    _check_extent(fov_mm, z_extent_mm)
    sxy, sz = float(rng.uniform(0.6, 1.0)), float(rng.uniform(1.0, 5.0))
    n_xy = max(16, round(fov_mm / sxy))
    shape = (max(4, round(z_extent_mm / sz)), n_xy, n_xy)
    grid = Grid.make(shape, (sz, sxy, sxy))
    r = fov_mm / 2 * float(rng.uniform(0.93, 1.0))
    z0, z1 = (np.array([-0.42, 0.42]) + rng.uniform(-0.03, 0.03, 2)) * z_extent_mm
    lungs = tuple(
        Lung(
            name,
            sign * 0.36 * r,
            0.0,
            0.28 * r * float(rng.uniform(0.96, 1.04)),
            0.42 * r * float(rng.uniform(0.96, 1.04)),
            float(z0),
            float(z1),
        )
        for name, sign in (("right", -1.0), ("left", 1.0))
    )
    image = np.full(shape, HU_AIR, np.float32)
    lung_id = paint_anatomy(image, grid, r, lungs, rng)
    paint_vessels(image, lung_id, grid, lungs, max(0.006 * fov_mm, 0.75 * sxy), rng)
    cell = 0.03 * fov_mm
    texture = smooth_field(shape, (cell / sz, cell / sxy, cell / sxy), rng)
    label = np.zeros(shape, np.uint8)
    lesions = paint_lesions(image, label, lung_id, grid, lungs, texture, diagnosis, rng)
    texture *= TEXTURE_SD
    body = ellipse_q(grid.y, grid.x, 0.05 * r, 0.0, 0.62 * r, 0.85 * r) <= 1.0
    np.add(image, texture, out=image, where=body[None])
    del texture
    for start in range(0, shape[0], 16):  # slabs: no second full-size float array
        slab = image[start : start + 16]
        slab += NOISE_SD * rng.standard_normal(slab.shape, dtype=np.float32)
    np.clip(image, -1024, 3071, out=image)
    direction = np.diag(_DIRECTIONS[int(rng.choice(3, p=[0.7, 0.15, 0.15]))])
    half_xyz = (np.array(shape[::-1]) - 1) / 2 * np.array([sxy, sxy, sz])
    origin = rng.uniform(-40, 40, 3) - direction @ half_xyz  # volume centre near (0, 0, 0)
    return DemoCase(
        case_id,
        diagnosis,
        np.rint(image).astype(np.int16),
        label,
        (sz, sxy, sxy),
        (float(origin[0]), float(origin[1]), float(origin[2])),
        tuple(float(v) for v in direction.ravel()),
        lung_id > 0,
        lesions,
    )


def _check_extent(fov_mm: float, z_extent_mm: float) -> None:
    """Reject extents that would give an empty or sub-lung-sized volume."""
    if not fov_mm > 0 or not z_extent_mm > 0:
        raise ValueError(f"fov_mm ({fov_mm}) and z_extent_mm ({z_extent_mm}) must be positive.")
    if fov_mm < 20 or z_extent_mm < 10:
        raise ValueError(
            f"fov_mm must be >= 20 and z_extent_mm >= 10 (got {fov_mm}, "
            f"{z_extent_mm}); smaller volumes cannot hold two lungs with lesions."
        )


def _to_image(array: np.ndarray, case: DemoCase) -> sitk.Image:
    """An image or label on the case geometry (spacing reversed to ITK's x, y, z)."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(reversed(case.spacing_zyx)))
    img.SetOrigin(case.origin_xyz)
    img.SetDirection(case.direction)
    return img


def _remove_stale(out_dir: Path, split: str, ids: list[str]) -> None:
    """Delete demo cases of an earlier, larger run: nnU-Net would train on any file present."""
    for folder in (out_dir / f"images{split}", out_dir / f"labels{split}"):
        for path in sorted(folder.glob("demo_*.nii.gz")):
            match = _CASE_FILE.fullmatch(path.name)
            if match and match.group(1) not in ids:
                logger.warning("removing stale %s", path)
                path.unlink()
    if not ids:
        (out_dir / f"diagnoses{split}.csv").unlink(missing_ok=True)


def _split_cases(
    split: str,
    ids: list[str],
    seed: int,
    split_key: int,
    fov_mm: float,
    z_extent_mm: float,
) -> Iterator[ConvertedCase]:
    """Generate one split (``Tr`` or ``Ts``) with balanced, shuffled diagnoses, in id order."""
    order = np.random.default_rng([seed, split_key]).permutation(len(ids))
    diagnoses = [DIAGNOSES[int(i) % len(DIAGNOSES)] for i in order]
    for i, (case_id, diagnosis) in enumerate(zip(ids, diagnoses, strict=True)):
        # one stream per case: a case does not change when other cases are added
        case = generate_case(
            case_id,
            diagnosis,
            np.random.default_rng([seed, split_key, i]),
            fov_mm=fov_mm,
            z_extent_mm=z_extent_mm,
        )
        yield ConvertedCase(
            case_id,
            (_to_image(case.image, case),),
            _to_image(case.label, case),
            diagnosis,
            source=f"generated demo case {case_id} (seed {seed})",
            split=split,
        )


def generate_dataset(
    out_dir: Path,
    *,
    num_train: int,
    num_test: int = 0,
    seed: int = 0,
    fov_mm: float = 340.0,
    z_extent_mm: float = 300.0,
) -> None:
    """Write a complete nnU-Net v2 raw dataset of synthetic chest CTs to ``out_dir``.

    The files go through :func:`dataset_conversion.raw_writer.write_raw_dataset` (the one
    writer of the raw layout) in place, so a rerun refreshes the demo and keeps other files.

    Args:
        out_dir: dataset folder (created; ``demo_*`` cases of earlier runs are replaced).
        num_train: cases in ``imagesTr``/``labelsTr``/``diagnosesTr.csv`` (>= 1).
        num_test: held-out cases in ``imagesTs``/``labelsTs``/``diagnosesTs.csv``; their
            ids continue after the training ids so the two sets never share a case.
        seed: the same seed reproduces identical arrays.
        fov_mm: in-plane field of view; ~100 gives a fast CPU demo.
        z_extent_mm: cranio-caudal extent.

    Raises:
        ValueError: on a bad count, seed or extent (checked before anything is written).
    """
    for name, value, low in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 0),
        ("seed", seed, 0),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low} (got {value}).")
    _check_extent(fov_mm, z_extent_mm)
    out_dir = Path(out_dir)
    ids = [f"demo_{i:03d}" for i in range(num_train + num_test)]
    train_ids, test_ids = ids[:num_train], ids[num_train:]
    _remove_stale(out_dir, "Tr", train_ids)
    _remove_stale(out_dir, "Ts", test_ids)
    cases = itertools.chain(
        _split_cases("Tr", train_ids, seed, 0, fov_mm, z_extent_mm),
        _split_cases("Ts", test_ids, seed, 1, fov_mm, z_extent_mm),
    )
    write_raw_dataset(
        out_dir,
        cases,
        labels=LABELS,
        classes=DIAGNOSES,
        name="AutoJointDemo",
        description=(
            f"Synthetic chest CT (seed {seed}, fov {fov_mm} mm, z {z_extent_mm} mm) "
            "with COVID-19 / CAP / normal lesion patterns after DeepSC-COVID: "
            "count, lesion/lung volume, density and location differ by class."
        ),
        num_cases=len(ids),
        in_place=True,
        sort_diagnoses=False,
    )
    logger.info("wrote %d training and %d test cases to %s", num_train, num_test, out_dir)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``autojoint_generate_demo``).

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success; bad arguments exit with status 2 and a message (argparse).
    """
    parser = argparse.ArgumentParser(
        prog="autojoint_generate_demo",
        description="Write a deterministic synthetic chest-CT dataset (nnU-Net v2 raw layout: "
        "imagesTr, labelsTr, dataset.json, diagnosesTr.csv) whose COVID-19, CAP "
        "and normal cases follow published lesion count/volume/density/location "
        "findings. Use --fov-mm 100 --z-extent-mm 100 for a fast CPU demo.",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="dataset folder")
    parser.add_argument("--num-train", type=int, default=30, help="training cases (default 30)")
    parser.add_argument("--num-test", type=int, default=0, help="held-out cases (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--fov-mm",
        type=float,
        default=340.0,
        help="in-plane field of view in mm; anatomy scales with it (default 340)",
    )
    parser.add_argument(
        "--z-extent-mm", type=float, default=300.0, help="cranio-caudal extent in mm (default 300)"
    )
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        generate_dataset(
            args.output,
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seed,
            fov_mm=args.fov_mm,
            z_extent_mm=args.z_extent_mm,
        )
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
