"""One optimisation step and the per-epoch validation loss, shared by single-process and
DDP training (the DDP test drives :func:`train_step` directly)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autojoint.data.batch import Batch, TensorBatch
from autojoint.data.loader import JointDataLoader
from autojoint.losses.joint import LossParts, joint_loss
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import LossOptions, LossWeights, Plan
from autojoint.runtime.devices import AUTOCAST_DTYPE, subnormals_flushed

logger = logging.getLogger(__name__)

LOSS_TERMS = ("total", "seg", "cls", "task_aware")


def batch_to_device(batch: Batch, device: torch.device) -> TensorBatch:
    """Loader batch (numpy) -> tensors the losses take: masks int64 without channel axis;
    ``patch_box`` (where each patch lies in its view, for the cross-stitch stem) float32,
    when the batch has one."""
    tensors: TensorBatch = {
        "data": torch.from_numpy(np.ascontiguousarray(batch["data"], np.float32)).to(device),
        "seg": torch.from_numpy(batch["seg"][:, 0].astype(np.int64)).to(device),
        "cls_data": torch.from_numpy(np.ascontiguousarray(batch["cls_data"], np.float32)).to(
            device
        ),
        "cls_seg": torch.from_numpy(batch["cls_seg"].astype(np.int64)).to(device),
        "diagnosis": torch.from_numpy(batch["diagnosis"]).to(device),
        "has_mask": torch.from_numpy(batch["has_mask"]).to(device),
    }
    if "patch_box" in batch:
        box = np.ascontiguousarray(batch["patch_box"], np.float32)
        tensors["patch_box"] = torch.from_numpy(box).to(device)
    return tensors


def make_grad_scaler(
    device: torch.device, dtype: torch.dtype | None = AUTOCAST_DTYPE
) -> torch.amp.GradScaler:
    """Loss scaling for float16 autocast on CUDA (a no-op elsewhere, and for bfloat16, whose
    range is float32's)."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype == torch.float16)


@subnormals_flushed()
def train_step(
    model: nn.Module,
    net: JointNet,
    batch: TensorBatch,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    weights: LossWeights,
    class_weights: torch.Tensor,
    loss_options: LossOptions,
    use_view: bool,
    grad_clip: float,
    params: Iterable[nn.Parameter],
    autocast_dtype: torch.dtype | None = None,
) -> LossParts:
    """Forward (under autocast to ``autocast_dtype`` unless None), the total loss
    (docs/methods.md), backward, clip the
    global gradient norm of ``params`` to ``grad_clip``, optimiser step.

    Args:
        model: what runs the forward pass: ``net`` itself or its DDP wrapper.
        net: the bare network (eta, classifier weights for the task-aware loss).
        scaler: loss scaling (enabled for float16 autocast on CUDA only).
        autocast_dtype: ``runtime.devices.training_autocast_dtype``.
        batch: tensors of :func:`batch_to_device`; its ``patch_box`` is required with
            ``use_view`` when the network has the cross-stitch stem.
    """
    optimizer.zero_grad(set_to_none=True)
    device_type = batch["data"].device.type
    dtype = autocast_dtype or AUTOCAST_DTYPE
    with torch.autocast(device_type, dtype=dtype, enabled=autocast_dtype is not None):
        view = batch["cls_data"] if use_view else None
        output = model(batch["data"], view, batch.get("patch_box"))
        parts = joint_loss(net, output, batch, weights, class_weights, loss_options)
    scaler.scale(parts.total).backward()
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(list(params), grad_clip)
    if not scaler.is_enabled() and not bool(torch.isfinite(norm)):
        # Clipping an infinite norm zeroes every gradient, and the optimiser would still
        # advance its moments on them: skip the step, as loss scaling does for float16.
        # Seen with bfloat16 autocast on the CPU: oneDNN gave one conv weight an infinite
        # gradient on one thread where two threads gave a finite one.
        # No value in the message: the norm of infinite gradients comes out as inf or NaN
        # depending on the kernel torch picks, and clipping has already turned them to NaN.
        optimizer.zero_grad(set_to_none=True)
        logger.warning(
            "training step skipped: non-finite gradient norm%s",
            f" under {autocast_dtype} autocast" if autocast_dtype is not None else "",
        )
        return parts
    scaler.step(optimizer)
    scaler.update()
    return parts


@torch.no_grad()
@subnormals_flushed()
def validation_loss(
    net: JointNet,
    plan: Plan,
    pre_dir: Path,
    case_ids: list[str],
    *,
    weights: LossWeights,
    class_weights: torch.Tensor,
    num_batches: int,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """Mean terms of the total loss over ``num_batches`` un-augmented batches of validation
    patches (a third holding a lesion voxel, as in training). A fresh loader seeded by ``seed``
    makes it a pure function of the weights: the same batches every epoch, nothing to
    checkpoint."""
    if not case_ids or num_batches < 1:
        return {}
    loader = JointDataLoader(
        pre_dir,
        case_ids,
        patch_size=plan.patch_size,
        batch_size=plan.batch_size,
        classes=plan.classes,
        seed=seed,
    )
    net.eval()
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    for _ in range(num_batches):
        batch = batch_to_device(loader.generate_train_batch(), device)
        view = batch["cls_data"] if plan.has_diagnosis else None
        output = net(batch["data"], view, batch["patch_box"])
        parts = joint_loss(net, output, batch, weights, class_weights, plan.loss)
        for k in sums:
            sums[k] += float(getattr(parts, k))
    net.train()
    return {f"val_loss_{k}": v / num_batches for k, v in sums.items()}
