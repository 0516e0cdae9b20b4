"""Deterministic synthetic chest-CT dataset in the nnU-Net v2 raw layout.

The demo data lets the whole pipeline (planning, training, inference, evaluation) run
without real scans. The lesions reproduce published COVID-19 vs community-acquired
pneumonia (CAP) findings (DeepSC-COVID), so the diagnosis depends on the whole scan
rather than on any single voxel:

* count: COVID-19 ~4.4 lesions per scan, CAP ~1.7, normal 0;
* volume: lesion/lung ratio ~14% for COVID-19 (widely varying sizes), ~4.4% for CAP;
* density: COVID-19 mostly ground-glass; CAP a ground-glass rim around a consolidated core;
* location: COVID-19 peripheral (~62% subpleural) in both lungs; CAP central (~25%),
  clustered, often in one lung.

Every size is relative to the field of view, so a small ``fov_mm`` gives a miniature
chest with the same statistics that runs fast on a CPU. Arrays are ``(Z, Y, X)``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from autojoint.io.files import atomic_write
from autojoint.io.image_io import write_sitk_image
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

logger = logging.getLogger(__name__)

DIAGNOSES: tuple[str, ...] = ("COVID-19", "CAP", "normal")
LABELS: dict[str, int] = {"background": 0, "ground_glass": 1, "consolidation": 2}
PERIPHERAL_RHO = 0.75  # centre in the outer 25% of the lung radius = subpleural
# A consolidated core is one solid blob of at least this many voxels; a smaller one (a
# small lesion on a coarse grid) stays ground-glass. Radiologists call consolidation a
# dense region, not a speck, and a speck cannot be learnt from one voxel of evidence.
MIN_CORE_VOXELS = 20
# Core radius as a fraction of the lesion's main ellipsoid. CAP: a large core, so that
# consolidation is the second density peak of DeepSC-COVID's finding 3 (about a third of
# the lesion voxels); COVID-19: most lesions pure ground-glass, some with a small core.
CAP_CORE = (0.6, 0.8)
COVID_CORE = (0.35, 0.5)
COVID_CORE_P = 0.3
_COUNT_P = {
    "COVID-19": {3: 0.45, 4: 0.12, 5: 0.15, 6: 0.13, 7: 0.15},
    "CAP": {1: 0.55, 2: 0.20, 3: 0.25},
}
# identity for most scans; flipped axes test that consumers honour the direction cosines
_DIRECTIONS = ((1.0, 1.0, 1.0), (-1.0, -1.0, 1.0), (-1.0, 1.0, 1.0))
_CASE_FILE = re.compile(r"(demo_\d+)(?:_0000)?\.nii\.gz")


@dataclass(frozen=True)
class LesionInfo:
    """Design record of one lesion, so the placement targets can be checked directly.

    Attributes:
        centre_zyx: voxel index of the lesion centre.
        lung: ``"right"`` or ``"left"``.
        rho: normalised in-slice radius of the centre (0 lung axis, 1 pleura).
        peripheral: ``rho >= PERIPHERAL_RHO`` (centre in the subpleural band).
        volume_mm3: volume as drawn, before overlap with other lesions.
        core_mm3: volume of its consolidated core (0 for a pure ground-glass lesion).
    """

    centre_zyx: tuple[int, int, int]
    lung: str
    rho: float
    peripheral: bool
    volume_mm3: float
    core_mm3: float = 0.0


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


def _place_centre(
    grid: Grid,
    lung_id: np.ndarray,
    lung: Lung,
    side: int,
    rng: np.random.Generator,
    *,
    rho_range: tuple[float, float],
    peripheral: bool,
    anchor: tuple[np.ndarray, float] | None,
    placed: list[tuple[np.ndarray, float]],
    r0: float,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Rejection-sample a lesion centre (a voxel centre in lung ``side``).

    Wanted: ``peripheral`` status, and lesions far enough apart to stay separate connected
    components, so the drawn count is the count a reader sees. CAP lesions after the first
    sit next to ``anchor`` (clustered). Constraints are dropped after 40 tries.
    """
    fallback = None
    for attempt in range(60):
        if anchor is None:
            p = lung.point(
                rng.uniform(*rho_range), rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.85)
            )
        else:
            u = rng.normal(size=3)
            p = anchor[0] + u / np.linalg.norm(u) * 1.8 * (anchor[1] + r0)
        p, idx = grid.snap(p)
        if lung_id[idx] != side + 1:
            continue
        fallback = fallback or (p, idx)
        apart = all(np.linalg.norm(p - q) >= 1.6 * (rq + r0) for q, rq in placed)
        if attempt >= 40 or (apart and (lung.rho(p) >= PERIPHERAL_RHO) == peripheral):
            return p, idx
    if fallback is None:  # degenerate tiny lung: take its most central voxel
        idx = tuple(int(v) for v in np.argwhere(lung_id == side + 1).mean(0).round())
        fallback = grid.snap(np.array([grid.z[idx[0]], grid.y[idx[1]], grid.x[idx[2]]]))
    return fallback


def _lesion_mask(
    grid: Grid,
    in_lung: Callable[[tuple[slice, ...]], np.ndarray],
    texture: np.ndarray,
    centre: np.ndarray,
    idx: tuple[int, int, int],
    radius: float,
    volume: float,
    rng: np.random.Generator,
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """An irregular blob (2-4 overlapping ellipsoids, texture-roughened edge) in the lung.

    The radius is refined up to twice so pleural clipping does not shrink the volume
    ratio. Returns the box, the lesion mask in it, and the main ellipsoid's normalised
    squared radius (which places the consolidated core).
    """
    blobs = [(np.zeros(3), rng.uniform(0.8, 1.2, 3))]
    for _ in range(int(rng.integers(1, 4))):
        u = rng.normal(size=3)
        blobs.append(
            (u / np.linalg.norm(u) * rng.uniform(0.4, 0.8), np.full(3, rng.uniform(0.45, 0.75)))
        )
    voxel_mm3 = float(np.prod([a[1] - a[0] for a in (grid.z, grid.y, grid.x)]))
    for _ in range(3):
        box = grid.box(centre - 1.7 * radius, centre + 1.7 * radius)
        zz, yy, xx = grid.sub(box)
        qs = [
            ((zz - centre[0] - radius * o[0]) / (radius * s[0])) ** 2
            + ((yy - centre[1] - radius * o[1]) / (radius * s[1])) ** 2
            + ((xx - centre[2] - radius * o[2]) / (radius * s[2])) ** 2
            for o, s in blobs
        ]
        lesion = (np.minimum.reduce(qs) + 0.25 * texture[box] <= 1.0) & in_lung(box)
        lesion[tuple(i - b.start for i, b in zip(idx, box, strict=True))] = True
        vol = float(np.count_nonzero(lesion)) * voxel_mm3
        if 0.8 * volume <= vol <= 1.25 * volume:
            break
        radius *= float(np.clip((volume / vol) ** (1 / 3), 0.75, 1.6))
    return box, lesion, qs[0]


def _paint_lesions(
    image: np.ndarray,
    label: np.ndarray,
    lung_id: np.ndarray,
    grid: Grid,
    lungs: tuple[Lung, ...],
    texture: np.ndarray,
    diagnosis: str,
    rng: np.random.Generator,
) -> tuple[LesionInfo, ...]:
    """Place lesions whose count, size, density and location follow the class findings."""
    if diagnosis == "normal":
        return ()
    covid = diagnosis == "COVID-19"
    counts, probs = zip(*_COUNT_P[diagnosis].items(), strict=True)
    n = int(rng.choice(counts, p=probs))
    voxel_mm3 = float(np.prod([a[1] - a[0] for a in (grid.z, grid.y, grid.x)]))
    lung_vol = float(np.count_nonzero(lung_id)) * voxel_mm3
    if covid:  # widely varying sizes, spread over both lungs, mostly subpleural
        total = float(np.clip(rng.normal(0.14, 0.035), 0.06, 0.26))
        share = np.maximum(rng.dirichlet(np.full(n, 0.9)), 0.15 / n)
        sides = np.roll(np.arange(n) % 2, int(rng.integers(2)))
        peripheral = rng.random(n) < 0.62
    else:  # similar sizes, clustered around the first lesion, usually in one lung
        total = float(np.clip(rng.normal(0.044, 0.01), 0.02, 0.07))
        share = rng.dirichlet(np.full(n, 8.0))
        sides = np.full(n, rng.integers(2)) if rng.random() < 0.8 else rng.integers(0, 2, n)
        peripheral = np.full(n, rng.random() < 0.25)
    volumes = total * lung_vol * share / share.sum()
    placed: list[tuple[np.ndarray, float]] = []
    infos: list[LesionInfo] = []
    for k in range(n):
        side = int(sides[k])
        lung = lungs[side]
        r0 = (3 * volumes[k] / (4 * np.pi)) ** (1 / 3) / 1.15  # the union inflates volume
        rho_range = (0.76, 0.95) if peripheral[k] else ((0.15, 0.74) if covid else (0.0, 0.5))
        anchor = placed[0] if not covid and placed and side == int(sides[0]) else None
        centre, idx = _place_centre(
            grid,
            lung_id,
            lung,
            side,
            rng,
            rho_range=rho_range,
            peripheral=bool(peripheral[k]),
            anchor=anchor,
            placed=placed,
            r0=r0,
        )
        placed.append((centre, r0))
        core = (
            rng.uniform(*CAP_CORE)
            if not covid
            else (rng.uniform(*COVID_CORE) if rng.random() < COVID_CORE_P else 0.0)
        )
        ggo_hu, cons_hu = rng.uniform(-750, -600), rng.uniform(-40, 100)
        radius = max(r0, 0.75 * float(grid.x[1] - grid.x[0]))
        box, lesion, q_main = _lesion_mask(
            grid,
            lambda b, s=side: lung_id[b] == s + 1,
            texture,
            centre,
            idx,
            radius,
            volumes[k],
            rng,
        )
        solid = _core_mask(lesion, q_main, core)
        hu = np.where(solid, np.float32(cons_hu), np.float32(ggo_hu))
        sub = image[box]
        sub[lesion] = np.maximum(sub, hu)[lesion]  # vessels stay visible through GGO
        label[box] = np.maximum(label[box], np.where(solid, 2, lesion).astype(np.uint8))
        rho = lung.rho(centre)
        infos.append(
            LesionInfo(
                idx,
                lung.name,
                rho,
                rho >= PERIPHERAL_RHO,
                float(np.count_nonzero(lesion)) * voxel_mm3,
                float(np.count_nonzero(solid)) * voxel_mm3,
            )
        )
    return tuple(infos)


def _core_mask(lesion: np.ndarray, q_main: np.ndarray, core: float) -> np.ndarray:
    """The consolidated core: the largest connected part of the lesion inside ``core`` times
    the main ellipsoid, kept only when it has at least ``MIN_CORE_VOXELS`` voxels.

    ``core = 0`` means no core: ``q <= 0`` would otherwise mark the snapped centre voxel.
    Stray fragments (the texture cuts the lesion edge) are dropped so each core is one blob.
    """
    if core <= 0:
        return np.zeros_like(lesion)
    solid = lesion & (q_main <= core**2)
    parts, n = ndimage.label(solid, structure=np.ones((3, 3, 3)))
    if n == 0:
        return solid
    sizes = np.bincount(parts.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < MIN_CORE_VOXELS:
        return np.zeros_like(lesion)
    return parts == largest


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
    lesions = _paint_lesions(image, label, lung_id, grid, lungs, texture, diagnosis, rng)
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


def _write_volume(array: np.ndarray, case: DemoCase, path: Path) -> None:
    """Write an image or label on the case geometry (spacing reversed to ITK's x, y, z)."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(reversed(case.spacing_zyx)))
    img.SetOrigin(case.origin_xyz)
    img.SetDirection(case.direction)
    write_sitk_image(img, path)


def _write_text(path: Path, text: str) -> None:
    """Write a small text file (JSON, CSV) atomically."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), binary=True)


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


def _write_split(
    out_dir: Path,
    split: str,
    ids: list[str],
    seed: int,
    split_key: int,
    fov_mm: float,
    z_extent_mm: float,
) -> None:
    """Generate and write one split (``Tr`` or ``Ts``) with balanced, shuffled diagnoses."""
    _remove_stale(out_dir, split, ids)
    if not ids:
        return
    img_dir, lab_dir = out_dir / f"images{split}", out_dir / f"labels{split}"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, split_key]).permutation(len(ids))
    diagnoses = [DIAGNOSES[int(i) % len(DIAGNOSES)] for i in order]
    jobs = list(zip(ids, diagnoses, strict=True))
    for i, (case_id, diagnosis) in enumerate(tqdm(jobs, desc=f"demo{split}", unit="case")):
        # one stream per case: a case does not change when other cases are added
        case = generate_case(
            case_id,
            diagnosis,
            np.random.default_rng([seed, split_key, i]),
            fov_mm=fov_mm,
            z_extent_mm=z_extent_mm,
        )
        _write_volume(case.image, case, img_dir / f"{case_id}_0000.nii.gz")
        _write_volume(case.label, case, lab_dir / f"{case_id}.nii.gz")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", "diagnosis"])
    writer.writerows(jobs)
    _write_text(out_dir / f"diagnoses{split}.csv", buf.getvalue())


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
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [f"demo_{i:03d}" for i in range(num_train + num_test)]
    _write_split(out_dir, "Tr", ids[:num_train], seed, 0, fov_mm, z_extent_mm)
    _write_split(out_dir, "Ts", ids[num_train:], seed, 1, fov_mm, z_extent_mm)
    meta = {
        "name": "AutoJointDemo",
        "description": (
            f"Synthetic chest CT (seed {seed}, fov {fov_mm} mm, z {z_extent_mm} mm) "
            "with COVID-19 / CAP / normal lesion patterns after DeepSC-COVID: "
            "count, lesion/lung volume, density and location differ by class."
        ),
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": num_train,
        "file_ending": ".nii.gz",
        "classes": list(DIAGNOSES),
    }
    _write_text(out_dir / "dataset.json", json.dumps(meta, indent=2) + "\n")
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
