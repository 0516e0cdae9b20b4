"""Training precision (``autojoint_train --precision``): float32 on the CPU unless bfloat16 is
asked for, float16 with loss scaling on CUDA; a bfloat16 step really runs the network in
bfloat16 and keeps float32 weights."""

from __future__ import annotations

import math

import pytest
import torch

from autojoint.runtime.devices import training_autocast_dtype
from autojoint.training.step import make_grad_scaler, train_step
from tests.fingerprints import tiny_plan
from tests.helpers import random_batch, seeded_net, train_step_options


def test_training_precision_per_device() -> None:
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert training_autocast_dtype(cpu) is None  # auto: opt-in on the CPU, unlike prediction
    assert training_autocast_dtype(mps) is None
    assert training_autocast_dtype(cuda) == torch.float16
    assert training_autocast_dtype(cuda, "float32") is None
    assert training_autocast_dtype(cpu, "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="not offered on mps"):
        training_autocast_dtype(mps, "bfloat16")


def test_loss_scaling_only_for_float16() -> None:
    cpu = torch.device("cpu")
    assert not make_grad_scaler(cpu).is_enabled()
    assert not make_grad_scaler(cpu, torch.bfloat16).is_enabled()


@pytest.mark.parametrize(
    ("dtype", "conv_dtype"), [(None, torch.float32), (torch.bfloat16, torch.bfloat16)]
)
def test_step_runs_the_network_in_the_asked_dtype(
    dtype: torch.dtype | None, conv_dtype: torch.dtype
) -> None:
    plan = tiny_plan()
    net = seeded_net(plan)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, 1e-3)
    seen: list[torch.dtype] = []
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    first_conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in params]
    batch = random_batch(plan)
    kwargs = train_step_options(plan, params)
    parts = train_step(
        net,
        net,
        batch,
        optimizer,
        make_grad_scaler(torch.device("cpu"), dtype),
        autocast_dtype=dtype,
        **kwargs,
    )
    assert seen and set(seen) == {conv_dtype}
    assert math.isfinite(float(parts.total.detach()))
    assert all(p.dtype == torch.float32 for p in params)  # master weights stay float32
    if dtype is None:  # (bfloat16 may skip the step: see the test below)
        assert any(not torch.equal(a, p.detach()) for a, p in zip(before, params, strict=True))


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_step_with_an_infinite_gradient_is_skipped(
    caplog: pytest.LogCaptureFixture, value: float
) -> None:
    """Clipping an infinite norm would zero every gradient while Adam still counts the
    step: the step is skipped instead (weights and optimiser state untouched), with a
    warning. Seen for real with bfloat16 autocast on one CPU thread."""
    plan = tiny_plan()
    net = seeded_net(plan)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, 1e-3)
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    first_conv.weight.register_hook(lambda g: torch.full_like(g, value))
    before = [p.detach().clone() for p in params]
    kwargs = train_step_options(plan, params)
    scaler = make_grad_scaler(torch.device("cpu"), torch.bfloat16)
    with caplog.at_level("WARNING"):
        train_step(
            net, net, random_batch(plan), optimizer, scaler, autocast_dtype=torch.bfloat16, **kwargs
        )
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, params, strict=True))
    assert optimizer.state_dict()["state"] == {}  # Adam never stepped
    assert all(p.grad is None for p in params)
    assert (
        "training step skipped: non-finite gradient norm under torch.bfloat16 autocast"
        in caplog.text
    )
