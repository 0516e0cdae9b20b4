"""Data-parallel training (torch.distributed DDP): one process per GPU, or gloo on CPU.

A run is distributed when it is launched under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment, read only by the CLI and passed here as a :class:`DistributedContext`) or when
``--num-gpus N`` > 1 spawns N processes itself. The plan's batch is the GLOBAL batch: each
rank trains on its share (:func:`split_batch`), DDP averages the gradients, so N ranks
take the same steps as one process with the whole batch (up to float summation order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    init_method: str = "env://"  # torchrun's MASTER_ADDR/PORT, or tcp://HOST:PORT

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, plots and the validation summary."""
        return self.rank == 0


def context_from_env(env: Mapping[str, str]) -> DistributedContext:
    """The context torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (or none);
    the CLI passes ``os.environ``."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    return DistributedContext(
        rank=int(env.get("RANK", "0")),
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", env.get("RANK", "0"))),
    )


def split_batch(global_batch_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(offset, size)`` of ``rank``'s share of the global batch; the first
    ``global % world`` ranks take one sample more.

    Raises:
        ValueError: fewer samples than ranks.
    """
    if global_batch_size < world_size:
        raise ValueError(
            f"the plan's batch size {global_batch_size} cannot be split over {world_size} "
            "processes; use fewer GPUs or a plan with a larger batch."
        )
    base, extra = divmod(global_batch_size, world_size)
    size = base + int(rank < extra)
    offset = rank * base + min(rank, extra)
    return offset, size


def init_process_group(ctx: DistributedContext, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo otherwise); rendezvous from
    ``MASTER_ADDR``/``MASTER_PORT`` (set by torchrun or by :func:`spawn_training`)."""
    if not ctx.is_distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, init_method=ctx.init_method, rank=ctx.rank, world_size=ctx.world_size
    )


def destroy_process_group(ctx: DistributedContext) -> None:
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: dict[str, float], ctx: DistributedContext) -> dict[str, float]:
    """Mean of each value over the ranks (identity when not distributed)."""
    if not ctx.is_distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def barrier(ctx: DistributedContext) -> None:
    if ctx.is_distributed and dist.is_initialized():
        dist.barrier()


def free_port() -> int:
    """A TCP port free on this host, for a self-spawned rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
