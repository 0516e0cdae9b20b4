"""Augmentation pipeline and batch loading (batchgenerators transforms).

Only the segmentation patch is augmented spatially (mirroring); the whole-scan view keeps
its anatomy, which the diagnosis relies on (left/right lung balance, periphery).
"""

from __future__ import annotations

from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.color_transforms import GammaTransform
from batchgenerators.transforms.noise_transforms import GaussianNoiseTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform

from autojoint.data.loader import JointDataLoader


def training_transforms() -> Compose:
    """Mirroring on every axis, Gaussian noise and gamma, on ``data``/``seg`` only."""
    return Compose(
        [
            GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_sample=0.1),
            GammaTransform(
                gamma_range=(0.7, 1.5),
                invert_image=False,
                per_channel=True,
                retain_stats=True,
                p_per_sample=0.3,
            ),
            MirrorTransform(axes=(0, 1, 2), data_key="data", label_key="seg"),
        ]
    )


def make_batch_iterator(
    loader: JointDataLoader, num_workers: int, seed: int
) -> SingleThreadedAugmenter | MultiThreadedAugmenter:
    """Batches in the main process (``num_workers == 0``) or in worker processes.

    Arrays stay numpy inside workers and become tensors in the trainer: converting in the
    workers makes torch's shared-memory cleanup race at shutdown (see ../shared/STACK.md).
    """
    transforms = training_transforms()
    if num_workers <= 0:
        return SingleThreadedAugmenter(loader, transforms)
    return MultiThreadedAugmenter(
        loader,
        transforms,
        num_processes=num_workers,
        num_cached_per_queue=2,
        seeds=[seed + i for i in range(num_workers)],
        pin_memory=False,
    )
