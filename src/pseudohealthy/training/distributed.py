"""PyTorch DistributedDataParallel set-up for ``torchrun`` (gloo on CPU, nccl on CUDA).

Launched without torchrun (no ``WORLD_SIZE`` > 1) everything is a single process. Under torchrun
each rank trains on its share of every global batch and DDP averages the gradients, so N processes
with global batch B follow the same trajectory as one process with batch B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pseudohealthy.errors import UserError


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's part of a global batch of ``n`` (interleaved, equal sizes)."""
        return slice(self.rank, n, self.world)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str) -> tuple[Rank, torch.device]:
    """Join the process group torchrun set up (if any); returns this rank and its device."""
    if world_size() == 1:
        return Rank(), torch.device(device)
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if torch.cuda.device_count() <= local:
            raise UserError(f"rank {dist.get_rank()}: LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(local)
    return Rank(dist.get_rank(), dist.get_world_size()), torch.device(f"cuda:{local}" if cuda else "cpu")


def mean_over_ranks(value: torch.Tensor, rank: Rank) -> float:
    """The mean of a scalar over all ranks (for logging)."""
    value = value.detach().float().reshape(1).clone()
    if rank.world > 1:
        dist.all_reduce(value)
        value /= rank.world
    return float(value.item())


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        dist.barrier()
