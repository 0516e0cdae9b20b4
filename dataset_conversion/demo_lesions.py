"""Synthetic lesions for the demo generator: count, size, density and location by diagnosis.

The lesions reproduce published COVID-19 vs community-acquired pneumonia (CAP) findings
(DeepSC-COVID), so the diagnosis depends on the whole scan rather than on any single voxel:

* count: COVID-19 ~4.4 lesions per scan, CAP ~1.7, normal 0;
* volume: lesion/lung ratio ~14% for COVID-19 (widely varying sizes), ~4.4% for CAP;
* density: COVID-19 mostly ground-glass; CAP a ground-glass rim around a consolidated core;
* location: COVID-19 peripheral (~62% subpleural) in both lungs; CAP central (~25%),
  clustered, often in one lung.

Split from ``generate_demo`` (as ``demo_anatomy`` is) so the findings the diagnosis relies on
read on their own, apart from the anatomy and the dataset writing. Arrays are ``(Z, Y, X)``;
sizes in mm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dataset_conversion.demo_anatomy import Grid, Lung

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


def paint_lesions(
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
