"""Augmentation presets and batch loading (batchgenerators transforms).

Presets (``--augmentation``):

- ``none``: the patches as cropped.
- ``light``: Gaussian noise, gamma and mirroring.
- ``default`` (nnU-Net's recipe): rotation and scaling, Gaussian noise, Gaussian blur,
  brightness, contrast, low-resolution simulation, gamma (plain and inverted), mirroring.

Spatial transforms draw one set of parameters per sample and apply it to image and mask
alike (image with linear interpolation, mask with nearest neighbour, order 0). The patch and
the whole-scan classification view are augmented independently, each with its image/mask
pair (``data``/``seg`` and ``cls_data``/``cls_seg``); the view is never cropped.

Mirroring is along every spatial axis of the preprocessed arrays (plan axis order, coarsest
first); the axes are recorded in the checkpoint and ``trainer_config.json`` (see
docs/training.md) so that the predictor mirrors over the same axes at test time.

The batch's ``patch_box`` (where the patch lies in its view, for the cross-stitch stem) is
kept up to date by the mirroring of either view (:class:`MirrorTransformWithBox`). Rotation
and scaling are about the patch's centre, so the box stays centred on the patch but no longer
bounds it exactly (the box is the unrotated, unscaled crop; scaling by up to 0.7-1.4 and
rotating by up to 30 degrees, each in 20% of the samples); the same holds for the view's own
rotation and scaling. The box is exact for the ``none`` and ``light`` presets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import (
    GaussianBlurTransform,
    GaussianNoiseTransform,
)
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

from autojoint.data.loader import JointDataLoader

AUGMENTATION_PRESETS = ("none", "light", "default")
MAX_ROTATION_DEG = 30.0
SCALE_RANGE = (0.7, 1.4)
# Above this ratio of coarsest to finest spacing, rotate only in-plane (about axis 0), as
# nnU-Net does for thick-slice data: out-of-plane rotation would smear the thick slices.
ANISOTROPY_THRESHOLD = 3.0


@dataclass(frozen=True)
class AugmentationSpec:
    """What a preset does to one training run (stored with the checkpoint).

    Attributes:
        preset: one of :data:`AUGMENTATION_PRESETS`.
        mirror_axes: spatial axes (0 = first after the channel axis) mirrored in training.
        rotation_axes: axes rotated about (0 = in-plane only for anisotropic spacing).
        loaded_patch_size: crop size the loader reads before the spatial transform crops
            ``patch_size`` from its centre (equal to ``patch_size`` without rotation).
        interpolation_order: order of the image interpolation in spatial transforms.
    """

    preset: str
    mirror_axes: tuple[int, ...]
    rotation_axes: tuple[int, ...]
    loaded_patch_size: tuple[int, ...]
    interpolation_order: int = 1

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _rotation_matrix(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(3)
    i, j = [a for a in range(3) if a != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def enlarged_patch_size(
    patch_size: Sequence[int], rotation_axes: Sequence[int], max_angle: float, min_scale: float
) -> tuple[int, ...]:
    """Extent of the box that holds ``patch_size`` after any rotation up to ``max_angle``
    (radians) about ``rotation_axes`` and a zoom-out to ``min_scale``, so the rotated patch
    is cut from image rather than padding. Bounded by the patch's corners at the extreme
    angles (the extent of a rotated box is monotone in each angle up to 45 degrees)."""
    half = np.asarray(patch_size, float) / 2
    corners = np.array(np.meshgrid(*[[-h, h] for h in half], indexing="ij")).reshape(3, -1)
    extent = np.abs(corners).max(axis=1)
    for signs in np.ndindex(*(3,) * len(rotation_axes)):
        m = np.eye(3)
        for axis, sign in zip(rotation_axes, signs, strict=True):
            m = _rotation_matrix(axis, (sign - 1) * max_angle) @ m
        extent = np.maximum(extent, np.abs(m @ corners).max(axis=1))
    size = np.ceil(2 * extent / min_scale).astype(int)
    return tuple(int(max(s, p)) for s, p in zip(size, patch_size, strict=True))


def augmentation_spec(
    preset: str, patch_size: Sequence[int], spacing: Sequence[float]
) -> AugmentationSpec:
    """The :class:`AugmentationSpec` of ``preset`` for a plan's patch size and spacing.

    Raises:
        ValueError: unknown preset.
    """
    patch = tuple(int(p) for p in patch_size)
    if preset not in AUGMENTATION_PRESETS:
        raise ValueError(f"unknown augmentation '{preset}'; choose one of {AUGMENTATION_PRESETS}.")
    if preset == "none":
        return AugmentationSpec(preset, (), (), patch)
    mirror = tuple(range(len(patch)))
    if preset == "light":
        return AugmentationSpec(preset, mirror, (), patch)
    anisotropic = max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD
    single_slice = patch[0] == 1
    rotation = (0,) if anisotropic or single_slice else (0, 1, 2)
    loaded = enlarged_patch_size(patch, rotation, math.radians(MAX_ROTATION_DEG), SCALE_RANGE[0])
    if single_slice:
        # A 2D plan's patch is one slice: rotate and scale in its plane only (the spatial
        # transform runs in 2D, see view_transforms). Rotating it out of plane would read
        # padding above and below the slice, and a loaded crop hundreds of slices thick.
        loaded = (1, *loaded[1:])
    return AugmentationSpec(preset, mirror, rotation, loaded)


class MirrorTransformWithBox(MirrorTransform):
    """batchgenerators' ``MirrorTransform`` (the same random draws, the same flips) that also
    mirrors the batch's ``patch_box`` (``(B, 2, D)``, see ``autojoint.data.loader.patch_box``)
    so it keeps saying where the patch lies in the view.

    Mirroring the patch along an axis swaps that axis's first and last face (the patch now
    runs backwards through the view); mirroring the view (``is_view``) maps each coordinate
    ``u`` to ``1 - u``. Batches without a ``patch_box`` are mirrored as by the parent class.
    """

    def __init__(
        self,
        axes: Sequence[int],
        data_key: str = "data",
        label_key: str = "seg",
        *,
        is_view: bool = False,
        box_key: str = "patch_box",
    ) -> None:
        super().__init__(axes=tuple(axes), data_key=data_key, label_key=label_key)
        self.is_view = is_view
        self.box_key = box_key

    def __call__(self, **data_dict: np.ndarray) -> dict:
        data = data_dict[self.data_key]
        seg = data_dict.get(self.label_key)
        box = data_dict.get(self.box_key)
        box = None if box is None else np.array(box, np.float32)
        for b in range(len(data)):
            if not np.random.uniform() < self.p_per_sample:
                continue
            # The draws of batchgenerators' augment_mirroring, in its order: one per listed
            # axis that the sample has (axis 2 only for 3D samples).
            for axis in range(min(3, data[b].ndim - 1)):
                if axis in self.axes and np.random.uniform() < 0.5:
                    data[b] = np.flip(data[b], axis + 1)
                    if seg is not None:
                        seg[b] = np.flip(seg[b], axis + 1)
                    if box is not None:
                        face = box[b, :, axis]
                        box[b, :, axis] = 1.0 - face if self.is_view else face[::-1]
        data_dict[self.data_key] = data
        if seg is not None:
            data_dict[self.label_key] = seg
        if box is not None:
            data_dict[self.box_key] = box
        return data_dict


def _spatial(
    spec: AugmentationSpec, out_size: Sequence[int], data_key: str, label_key: str, order: int
) -> SpatialTransform:
    angle = math.radians(MAX_ROTATION_DEG)
    ranges = [(-angle, angle) if a in spec.rotation_axes else (0.0, 0.0) for a in range(3)]
    return SpatialTransform(
        list(out_size),
        patch_center_dist_from_border=None,
        do_elastic_deform=False,
        do_rotation=True,
        angle_x=ranges[0],
        angle_y=ranges[1],
        angle_z=ranges[2],
        p_rot_per_axis=1.0,
        do_scale=True,
        scale=SCALE_RANGE,
        border_mode_data="constant",
        border_cval_data=0,
        order_data=order,
        border_mode_seg="constant",
        border_cval_seg=0,
        order_seg=0,
        random_crop=False,
        data_key=data_key,
        label_key=label_key,
        p_el_per_sample=0,
        p_scale_per_sample=0.2,
        p_rot_per_sample=0.2,
        independent_scale_for_each_axis=False,
    )


def view_transforms(
    spec: AugmentationSpec,
    out_size: Sequence[int],
    data_key: str = "data",
    label_key: str = "seg",
    *,
    order: int | None = None,
    is_view: bool = False,
) -> list[AbstractTransform]:
    """The preset's transforms for one image/mask pair, ending at ``out_size`` voxels.

    Args:
        order: image interpolation order of the spatial transform (default: the spec's);
            the mask always uses nearest neighbour.
        is_view: the pair is the whole-scan view (its mirroring mirrors ``patch_box``'s
            coordinates rather than the patch's faces).
    """
    if spec.preset == "none":
        return []
    noise = GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_sample=0.1, data_key=data_key)
    gamma = GammaTransform(
        (0.7, 1.5),
        invert_image=False,
        per_channel=True,
        retain_stats=True,
        p_per_sample=0.3,
        data_key=data_key,
    )
    mirror = MirrorTransformWithBox(spec.mirror_axes, data_key, label_key, is_view=is_view)
    if spec.preset == "light":
        return [noise, gamma, mirror]
    ignore = (0,) if spec.rotation_axes == (0,) else None  # keep thick slices thick
    order = spec.interpolation_order if order is None else order
    if out_size[0] == 1:  # one slice: batchgenerators' 2D spatial transform, in-plane only
        spatial: list[AbstractTransform] = [
            _SingleSlice(False, (data_key, label_key)),
            _spatial(spec, out_size[1:], data_key, label_key, order),
            _SingleSlice(True, (data_key, label_key)),
        ]
    else:
        spatial = [_spatial(spec, out_size, data_key, label_key, order)]
    return [
        *spatial,
        noise,
        GaussianBlurTransform(
            (0.5, 1.0),
            different_sigma_per_channel=True,
            p_per_sample=0.2,
            p_per_channel=0.5,
            data_key=data_key,
        ),
        BrightnessMultiplicativeTransform((0.75, 1.25), p_per_sample=0.15, data_key=data_key),
        ContrastAugmentationTransform(p_per_sample=0.15, data_key=data_key),
        SimulateLowResolutionTransform(
            zoom_range=(0.5, 1.0),
            per_channel=True,
            p_per_channel=0.5,
            order_downsample=0,
            order_upsample=3,
            p_per_sample=0.25,
            ignore_axes=ignore,
            data_key=data_key,
        ),
        GammaTransform(
            (0.7, 1.5),
            invert_image=True,
            per_channel=True,
            retain_stats=True,
            p_per_sample=0.1,
            data_key=data_key,
        ),
        gamma,
        mirror,
    ]


def training_transforms(
    spec: AugmentationSpec, patch_size: Sequence[int], view_shape: Sequence[int] | None
) -> Compose:
    """The patch's transforms (cropping the loaded patch to ``patch_size``), then the
    whole-scan view's (``view_shape``; None when the plan has no diagnosis)."""
    transforms = view_transforms(spec, patch_size)
    if view_shape is not None:
        transforms += view_transforms(spec, view_shape, "cls_data", "cls_seg", is_view=True)
    return Compose(transforms)


class _SingleSlice(AbstractTransform):
    """Drop the slice axis of one-slice arrays ``(B, C, 1, Y, X)`` -> ``(B, C, Y, X)``, or
    put it back (``add=True``), so that a 2D plan's patches go through the 2D spatial
    transform."""

    def __init__(self, add: bool, keys: Sequence[str]) -> None:
        self.add = add
        self.keys = tuple(keys)

    def __call__(self, **data_dict: np.ndarray) -> dict:
        for key in self.keys:
            arr = data_dict.get(key)
            if arr is None:
                continue
            if self.add:
                data_dict[key] = arr[:, :, None]
            elif arr.shape[2] != 1:
                raise ValueError(f"{key}: expected one slice, got shape {arr.shape}")
            else:
                data_dict[key] = arr[:, :, 0]
        return data_dict


class _ViewSegChannel(AbstractTransform):
    """Give ``cls_seg`` the channel axis batchgenerators' spatial transforms expect, or
    remove it again (``add=False``)."""

    def __init__(self, add: bool) -> None:
        self.add = add

    def __call__(self, **data_dict: np.ndarray) -> dict:
        seg = data_dict.get("cls_seg")
        if seg is not None:
            data_dict["cls_seg"] = seg[:, None] if self.add else seg[:, 0]
        return data_dict


class WorkerAugmenter(MultiThreadedAugmenter):
    """batchgenerators' ``MultiThreadedAugmenter`` with a public :meth:`close`.

    batchgenerators 0.25 has no public way to stop the worker processes: its ``_finish``
    does it, called only from ``restart`` and ``__del__``. Leaving it to ``__del__`` ties
    the shutdown to garbage collection (a traceback that holds the iterator keeps the
    workers running, e.g. through the final validation) and takes its forced path.
    """

    def close(self) -> None:
        """Stop the workers and the pin-memory thread and wait for them (workers still alive
        after 10 s are terminated). Harmless when already closed."""
        self._finish()


@contextmanager
def batch_iterator(
    loader: JointDataLoader,
    num_workers: int,
    seed: int,
    transforms: Compose | None = None,
) -> Iterator[SingleThreadedAugmenter | WorkerAugmenter]:
    """:func:`make_batch_iterator` whose worker processes stop when the block ends, also on
    an error or ``KeyboardInterrupt``."""
    batches = make_batch_iterator(loader, num_workers, seed, transforms)
    try:
        yield batches
    finally:
        if isinstance(batches, WorkerAugmenter):
            batches.close()


def make_batch_iterator(
    loader: JointDataLoader,
    num_workers: int,
    seed: int,
    transforms: Compose | None = None,
) -> SingleThreadedAugmenter | WorkerAugmenter:
    """Batches in the main process (``num_workers == 0``) or in worker processes (stop them
    with ``close()``, or use :func:`batch_iterator`).

    Arrays stay numpy inside workers and become tensors in the trainer: converting in the
    workers makes torch's shared-memory cleanup race at shutdown (see ../shared/STACK.md).
    """
    chain = Compose(
        [
            _ViewSegChannel(True),
            *(transforms.transforms if transforms else []),
            _ViewSegChannel(False),
        ]
    )
    if num_workers <= 0:
        return SingleThreadedAugmenter(loader, chain)
    return WorkerAugmenter(
        loader,
        chain,
        num_processes=num_workers,
        num_cached_per_queue=2,
        seeds=[seed + i for i in range(num_workers)],
        pin_memory=False,
    )
