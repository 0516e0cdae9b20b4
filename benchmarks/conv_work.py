"""Convolution work of one forward pass, counted with hooks.

Imports only ``torch``, so that the same count runs on autojoint's networks
(``benchmarks/train_step.py``) and, inside nnU-Net's own venv, on nnU-Net's
(``benchmarks/peers/nnunet_driver.py work``): one counting rule for both sides of the
speed table's work-per-step comparison.
"""

from __future__ import annotations

import math

import torch


def conv_macs(net: torch.nn.Module, *inputs: torch.Tensor | None) -> float:
    """Multiply-accumulates of every convolution in one forward call of ``net`` on
    ``inputs`` (hooks on Conv/ConvTranspose 1-3D; the rest of the work, norms,
    activations, losses, is small beside them and not counted)."""
    total = 0.0

    def count(module: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, torch.nn.modules.conv._ConvNd)
        per_voxel = math.prod(module.kernel_size) * module.in_channels * module.out_channels
        per_voxel /= module.groups
        # A convolution does per_voxel / out_channels work per OUTPUT element; a transposed
        # one scatters each INPUT voxel through the whole kernel.
        if module.transposed:
            total += args[0].numel() / module.in_channels * per_voxel
        else:
            total += out.numel() / module.out_channels * per_voxel

    hooks = [
        m.register_forward_hook(count)
        for m in net.modules()
        if isinstance(m, torch.nn.modules.conv._ConvNd)
    ]
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return total
