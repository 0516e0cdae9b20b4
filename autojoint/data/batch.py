"""The training batch: what the loader yields (numpy) and what the losses take (tensors).

:class:`autojoint.data.loader.JointDataLoader` yields a :class:`Batch`; the augmentation
(batchgenerators transforms) keeps its keys and shapes, and
:func:`autojoint.training.step.batch_to_device` turns it into a :class:`TensorBatch` for
the network and :func:`autojoint.losses.joint.joint_loss`.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import numpy as np
import torch


class Batch(TypedDict):
    """A training batch of B samples as the loader yields it.

    ``patch`` is the loaded patch size (larger than the plan's patch when a spatial
    augmentation follows, which crops back to it), ``view`` the plan's
    ``classification_shape``, D = 3. Augmentation keeps keys and shapes; it may change the
    dtypes of ``data``/``seg`` (:func:`autojoint.training.step.batch_to_device` casts).

    Shape:
        data: ``(B, C, *patch)`` float32, normalised image patches.
        seg: ``(B, 1, *patch)`` int16 label values (zeros for a case without a mask).
        cls_data: ``(B, C, *view)`` float32 whole-scan views (``(B, C, 1, 1, 1)`` zeros
            without diagnosis classes).
        cls_seg: ``(B, *view)`` int16 label values of the views.
        diagnosis: ``(B,)`` int64 index into the plan's classes, -1 when unknown.
        has_mask: ``(B,)`` bool, the case has a lesion mask (else its ``seg`` is no
            reference and is masked out of the segmentation loss).
        patch_box: ``(B, 2, D)`` float32 where each patch lies in its case and view
            (:func:`autojoint.data.loader.patch_box`).
        keys: the B case ids.
    """

    data: np.ndarray
    seg: np.ndarray
    cls_data: np.ndarray
    cls_seg: np.ndarray
    diagnosis: np.ndarray
    has_mask: np.ndarray
    patch_box: np.ndarray
    keys: list[str]


class TensorBatch(TypedDict):
    """A :class:`Batch` on the training device, as the network and the losses take it.

    Shape:
        data: ``(B, C, *patch)`` float32.
        seg: ``(B, *patch)`` int64 (no channel axis).
        cls_data: ``(B, C, *view)`` float32.
        cls_seg: ``(B, *view)`` int64.
        diagnosis: ``(B,)`` int64, -1 when unknown.
        has_mask: ``(B,)`` bool.
        patch_box: ``(B, 2, D)`` float32; absent from batches built without one (the
            cross-stitch stem requires it).
    """

    data: torch.Tensor
    seg: torch.Tensor
    cls_data: torch.Tensor
    cls_seg: torch.Tensor
    diagnosis: torch.Tensor
    has_mask: torch.Tensor
    patch_box: NotRequired[torch.Tensor]
