"""Lung fields of a chest CT from thresholds, morphology and connected components.

DeepSC-COVID masks the CT with a lung mask before both tasks (docs/methods.md, "References"); we
compute one without any trained model, so it works offline and on any scanner:

1. *air*: voxels below ``air_threshold_hu`` (-400 HU keeps aerated lung at about -850 and
   ground-glass at -750..-600; consolidation is added back by step 5);
2. *inside the body*: the body is the largest component above ``body_threshold_hu`` with
   its holes filled slice by slice; air outside it (room, table, gaps between arms and
   torso) and air touching a slice's border is dropped;
3. *lung-like components*: 3D components of pure gas (median below ``gas_median_hu``:
   bowel, stomach; aerated lung holds tissue and vessels, median about -850) are dropped,
   then those smaller than ``min_component_fraction`` of the largest (table, noise);
4. *trachea*: the airway lumen is pure air (below ``airway_threshold_hu``; aerated lung
   holds tissue) forming a thin tube near the midline; pure-air pieces whose axial
   cross-section is below ``airway_max_area_mm2`` are grouped in 3D, and groups that run
   along the midline for at least ``airway_min_length_mm`` are removed with a one-voxel
   rim of partial-volume wall (trachea, main bronchi, air in the oesophagus). Where the
   right lung touches the trachea, the lumen joins the lung piece in a slice at -400 HU
   but not at the pure-air threshold. The lung apices are also thin but lie laterally;
5. *fill*: an axial closing of ``closing_radius_mm`` and filling of holes smaller than
   ``max_hole_area_mm2`` per slice bring back vessels, consolidation and juxta-pleural
   lesions enclosed by aerated lung; larger holes are the mediastinum where both lungs
   meet in front of and behind it, and stay out.

Arrays are ``(Z, Y, X)`` with Z the axial (slice) axis and ``spacing`` in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LungMaskOptions:
    """Thresholds of :func:`lung_mask`; the defaults suit adult chest CT in HU."""

    air_threshold_hu: float = -400.0
    body_threshold_hu: float = -300.0
    gas_median_hu: float = -940.0
    min_component_fraction: float = 0.1
    min_volume_ml: float = 5.0
    airway_threshold_hu: float = -950.0
    airway_max_area_mm2: float = 450.0
    airway_min_length_mm: float = 20.0
    midline_band: float = 0.15
    closing_radius_mm: float = 4.0
    max_hole_area_mm2: float = 2000.0


def _inplane(structure_2d: np.ndarray) -> np.ndarray:
    """A 3D structuring element acting within each axial slice only."""
    out = np.zeros((3, *structure_2d.shape), bool)
    out[1] = structure_2d
    return out


def _disk(radius_yx: tuple[float, float]) -> np.ndarray:
    ry, rx = (max(int(np.floor(r)), 0) for r in radius_yx)
    y, x = np.ogrid[-ry : ry + 1, -rx : rx + 1]
    return (y / max(radius_yx[0], 1e-6)) ** 2 + (x / max(radius_yx[1], 1e-6)) ** 2 <= 1.0


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice (padding makes the first and last slices count too)."""
    padded = np.pad(mask, ((1, 1), (0, 0), (0, 0)))
    return ndimage.binary_fill_holes(padded, structure=_inplane(np.ones((3, 3), bool)))[1:-1]


def body_mask(image: np.ndarray, threshold_hu: float) -> np.ndarray:
    """The patient's body: largest component above ``threshold_hu``, holes filled per slice.

    Shape:
        ``(Z, Y, X)`` -> ``(Z, Y, X)`` bool.
    """
    dense = image > threshold_hu
    labels, n = ndimage.label(dense)
    if n == 0:
        return dense
    sizes = np.bincount(labels.ravel())[1:]
    return _fill_slices(labels == int(np.argmax(sizes)) + 1)


def _keep_lung_like(
    mask: np.ndarray, image: np.ndarray, options: LungMaskOptions, min_voxels: float
) -> np.ndarray:
    """Components of ``mask`` that are not pure gas and are large enough (step 3)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    # medians only of components that can matter, each inside its own box (fast)
    idx = np.flatnonzero((sizes >= min_voxels) & (sizes >= 0.01 * sizes.max())) + 1
    boxes = ndimage.find_objects(labels)
    medians = np.array(
        [float(np.median(image[boxes[g - 1]][labels[boxes[g - 1]] == g])) for g in idx]
    )
    lung_like = idx[medians >= options.gas_median_hu]
    if len(lung_like) == 0:
        return np.zeros_like(mask)
    largest = sizes[lung_like - 1].max()
    keep = lung_like[sizes[lung_like - 1] >= options.min_component_fraction * largest]
    return np.isin(labels, keep)


def _border_touching(mask: np.ndarray) -> np.ndarray:
    """Voxels of 2D (per-slice) components of ``mask`` that touch the slice border."""
    labels, n = ndimage.label(mask, structure=_inplane(np.ones((3, 3), bool)))
    if n == 0:
        return np.zeros_like(mask)
    edge = np.concatenate(
        [
            labels[:, 0].ravel(),
            labels[:, -1].ravel(),
            labels[:, :, 0].ravel(),
            labels[:, :, -1].ravel(),
        ]
    )
    return np.isin(labels, np.unique(edge[edge > 0]))


def airway_mask(
    candidates: np.ndarray,
    image: np.ndarray,
    spacing: tuple[float, float, float],
    options: LungMaskOptions,
) -> np.ndarray:
    """Trachea-like parts of ``candidates``: pure air, thin, midline, long in z (step 4).

    Shape:
        ``(Z, Y, X)`` bool and HU -> ``(Z, Y, X)`` bool.
    """
    if not candidates.any():
        return np.zeros_like(candidates)
    lumen = candidates & (image < options.airway_threshold_hu)
    slices, n = ndimage.label(lumen, structure=_inplane(np.ones((3, 3), bool)))
    if n == 0:
        return np.zeros_like(candidates)
    area = np.bincount(slices.ravel())[1:] * spacing[1] * spacing[2]
    thin = np.isin(slices, np.flatnonzero(area < options.airway_max_area_mm2) + 1)
    xs = np.flatnonzero(candidates.any(axis=(0, 1)))
    centre, width = (xs[0] + xs[-1]) / 2.0, float(xs[-1] - xs[0] + 1)
    groups, _m = ndimage.label(thin)
    out = np.zeros_like(candidates)
    for g, box in enumerate(ndimage.find_objects(groups), start=1):
        if box is None:
            continue
        part = groups[box] == g
        length = (box[0].stop - box[0].start) * spacing[0]
        cx = box[2].start + float(np.nonzero(part)[2].mean())
        if (
            length >= options.airway_min_length_mm
            and abs(cx - centre) <= options.midline_band * width
        ):
            out[box] |= part
    return ndimage.binary_dilation(out, structure=_inplane(np.ones((3, 3), bool)))


def lung_mask(
    image: np.ndarray,
    spacing: tuple[float, float, float],
    options: LungMaskOptions | None = None,
) -> np.ndarray:
    """Both lungs of a chest CT in HU, trachea and everything outside the body excluded.

    Args:
        image: HU values, axial slices along axis 0.
        spacing: voxel size in mm, ``(z, y, x)``.
        options: thresholds; see :class:`LungMaskOptions`.

    Returns:
        Boolean lung mask; all False when no lung-like air is found (e.g. not a chest CT).

    Shape:
        ``(Z, Y, X)`` -> ``(Z, Y, X)``.

    Raises:
        ValueError: ``image`` is not 3D or ``spacing`` has not three positive values.
    """
    opts = options or LungMaskOptions()
    if image.ndim != 3:
        raise ValueError(f"lung_mask needs a 3D (Z, Y, X) array, got shape {image.shape}.")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive mm values (z, y, x), got {spacing}.")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    body = body_mask(image, opts.body_threshold_hu)
    air = (image < opts.air_threshold_hu) & body
    air &= ~_border_touching(air)
    air = _keep_lung_like(air, image, opts, opts.min_volume_ml / voxel_ml)
    airways = airway_mask(air, image, spacing, opts)
    air &= ~airways
    air = _keep_lung_like(air, image, opts, opts.min_volume_ml / voxel_ml)
    radius = (opts.closing_radius_mm / spacing[1], opts.closing_radius_mm / spacing[2])
    disk = _inplane(_disk(radius))
    pad = disk.shape[1] // 2 + 1, disk.shape[2] // 2 + 1
    padded = np.pad(air, ((1, 1), (pad[0], pad[0]), (pad[1], pad[1])))
    closed = ndimage.binary_closing(padded, structure=disk)[
        1:-1, pad[0] : -pad[0], pad[1] : -pad[1]
    ]
    lungs = closed | air
    holes = _fill_slices(lungs) & ~lungs
    labels, n = ndimage.label(holes, structure=_inplane(np.ones((3, 3), bool)))
    if n:
        area = np.bincount(labels.ravel())[1:] * spacing[1] * spacing[2]
        lungs |= np.isin(labels, np.flatnonzero(area <= opts.max_hole_area_mm2) + 1)
    lungs &= body & ~airways
    labels, n = ndimage.label(lungs)  # crumbs the airway cut may leave
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return sizes[labels] >= opts.min_volume_ml / voxel_ml


def lung_bbox(
    mask: np.ndarray, spacing: tuple[float, float, float], margin_mm: float = 10.0
) -> tuple[tuple[int, int], ...] | None:
    """Half-open bounding box of ``mask`` grown by ``margin_mm`` (clipped); None if empty."""
    if not mask.any():
        return None
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        grow = int(np.ceil(margin_mm / spacing[axis]))
        out.append((max(int(nz[0]) - grow, 0), min(int(nz[-1]) + 1 + grow, mask.shape[axis])))
    return tuple(out)


def lung_crop(
    data: np.ndarray,
    spacing: tuple[float, float, float],
    mode: str,
    channel_names: dict[str, str],
    *,
    margin_mm: float = 10.0,
) -> tuple[np.ndarray, tuple[tuple[int, int], ...] | None]:
    """The plan's ``lung_mask`` option applied to one case before cropping.

    ``"off"`` returns ``data`` unchanged and no box (the caller crops to the body);
    ``"crop"`` returns the lung box grown by ``margin_mm``; ``"mask"`` also sets every voxel
    outside the lungs to its channel's minimum (air), which normalisation then clips to
    the lowest value, as DeepSC-COVID masks its input. No lung found: no box, data
    unchanged (the body crop then applies), so a failed mask never empties a case.

    Shape:
        data ``(C, Z, Y, X)`` -> ``(C, Z, Y, X)`` (a new array only in ``"mask"`` mode).

    The lungs are found on the first channel named ``CT`` (they need HU).

    Raises:
        ValueError: unknown ``mode``, or no CT channel in ``channel_names``.
    """
    if mode not in ("off", "crop", "mask"):
        raise ValueError(f"lung_mask mode must be 'off', 'crop' or 'mask', got '{mode}'.")
    if mode == "off":
        return data, None
    names = [channel_names[k] for k in sorted(channel_names, key=int)]
    ct = [i for i, n in enumerate(names) if n.strip().upper() == "CT"]
    if not ct:
        raise ValueError(
            f"lung_mask '{mode}' needs a channel named CT (HU values); channels: {names}."
        )
    lungs = lung_mask(data[ct[0]], spacing)
    box = lung_bbox(lungs, spacing, margin_mm)
    if box is None:
        return data, None
    if mode == "mask":
        low = data.reshape(data.shape[0], -1).min(axis=1)
        data = np.where(lungs[None], data, low[:, None, None, None]).astype(data.dtype)
    return data, box
