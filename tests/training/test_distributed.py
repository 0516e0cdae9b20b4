"""DDP on CPU (gloo, 2 processes): ranks stay identical and match one process that trains
on the whole global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    context_from_env,
    destroy_process_group,
    free_port,
    init_process_group,
    split_batch,
)
from autojoint.training.schedule import make_optimizer
from autojoint.training.step import make_grad_scaler, train_step
from tests.fingerprints import tiny_plan
from tests.helpers import seeded_net, train_step_options

GLOBAL_BATCH = 4
STEPS = 3


def _global_batch(plan: Plan, step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    k, shape, view = plan.num_labels, (8, 16, 16), (8, 16, 16)
    return {
        "data": torch.randn(GLOBAL_BATCH, 1, *shape, generator=g),
        "seg": torch.randint(0, k, (GLOBAL_BATCH, *shape), generator=g),
        "cls_data": torch.randn(GLOBAL_BATCH, 1, *view, generator=g),
        "cls_seg": torch.randint(0, k, (GLOBAL_BATCH, *view), generator=g),
        "diagnosis": torch.tensor([0, 1, 2, 0]),
        "has_mask": torch.ones(GLOBAL_BATCH, dtype=torch.bool),
    }


def _train(plan: Plan, model: torch.nn.Module, net: JointNet, rank: int, world: int) -> None:
    params = list(net.parameters())
    opt = make_optimizer("sgd", params, 1e-2, 3e-5)
    scaler = make_grad_scaler(torch.device("cpu"))
    offset, size = split_batch(GLOBAL_BATCH, world, rank)
    for step in range(STEPS):
        batch = {k: v[offset : offset + size] for k, v in _global_batch(plan, step).items()}
        train_step(model, net, batch, opt, scaler, **train_step_options(plan, params))


def _rank(rank: int, world: int, port: int, plan: Plan, out: Path) -> None:
    torch.set_num_threads(1)
    ctx = DistributedContext(rank, world, rank, f"tcp://127.0.0.1:{port}")
    init_process_group(ctx, torch.device("cpu"))
    try:
        net = seeded_net(plan)
        _train(plan, DistributedDataParallel(net), net, rank, world)
        mean = all_reduce_mean({"x": float(rank)}, ctx)
        torch.save({"state": net.state_dict(), "mean": mean["x"]}, out / f"rank{rank}.pt")
    finally:
        destroy_process_group(ctx)


def test_two_gloo_ranks_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    plan = tiny_plan(shape=(8, 16, 16))
    mp.spawn(_rank, args=(2, free_port(), plan, tmp_path), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["mean"] == r1["mean"] == 0.5
    single = seeded_net(plan)
    _train(plan, single, single, 0, 1)
    reference = single.state_dict()
    init = seeded_net(plan).state_dict()
    moved = 0
    for key, value in reference.items():
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(r0["state"][key], value, rtol=1e-4, atol=1e-5, msg=key)
        moved += int(not torch.equal(value, init[key]))
    assert moved > len(reference) // 2  # the steps really trained


def test_batch_split_and_context() -> None:
    assert [split_batch(5, 2, r) for r in range(2)] == [(0, 3), (3, 2)]
    assert [split_batch(4, 4, r) for r in range(4)] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert context_from_env({}) == DistributedContext()
    ctx = context_from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (1, 2, False, True)
    with pytest.raises(ValueError, match="cannot be split"):
        split_batch(1, 2, 0)
