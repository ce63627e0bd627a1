"""Data parallelism over torch.distributed: N processes train one model, each on a slice of every batch.

Every rank runs the same program with the same seed, so the random draws, the data order and the
initial weights agree everywhere. Each rank takes its slice of each *global* batch (``trainer.batch_size``)
and of each random draw (``sharded_draw``), and gradients are averaged across ranks before every
optimizer step (``World.average_``). N ranks therefore compute what one process computes on the global
batch, up to float summation order. Only rank 0 writes logs, grids and checkpoints.

Gradients are all-reduced by hand (one flat buffer per update) rather than through the
DistributedDataParallel wrapper, because DDP's reducer does not support the double backward of
gradient penalties nor several forwards per backward (several discriminator steps per generator step, a
frozen discriminator in the generator step). BatchNorm uses each rank's local batch statistics, as under DDP; its running
statistics are taken from rank 0 after every step (DDP's ``broadcast_buffers``).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from gantrain.errors import UserError


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the GPU index on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """Each rank's own GPU; the CPU is shared."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.distributed else device

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the ranks, in one all-reduce of one flat buffer."""
        if not self.distributed or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.size
        for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            tensor.copy_(part.view_as(tensor))

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Logged scalars averaged over ranks: the global batch's value, not rank 0's half of it."""
        if not self.distributed or not values:
            return dict(values)
        flat = torch.tensor(list(values.values()), dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(flat)
        return {name: float(value) / self.size for name, value in zip(values, flat.tolist())}

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any, so all ranks stop at the same step."""
        if not self.distributed:
            return flag
        tensor = torch.tensor([1 if flag else 0], device=self._collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def share_buffers(self, networks: Iterable[nn.Module]) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere."""
        if not self.distributed:
            return
        for net in networks:
            for buffer in net.buffers():
                dist.broadcast(buffer, src=0)

    def wait_for_all(self) -> None:
        if self.distributed:
            dist.barrier()

    def check_same_weights(self, networks: Iterable[nn.Module]) -> None:
        """Raise if the ranks' weights differ at all: they must, by construction, stay bitwise equal.

        Run before each checkpoint (which only rank 0 writes), so a rank that drifted never goes unnoticed.
        """
        if not self.distributed:
            return
        flat = torch.cat([p.detach().reshape(-1).float() for net in networks for p in net.parameters()])
        low, high = flat.clone(), flat.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            gap = float((high - low).abs().max())
            raise RuntimeError(f"data-parallel ranks hold different weights (largest difference {gap:.3g})")

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


_world = World()


def current_world() -> World:
    return _world


def join_world(device: torch.device) -> World:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); one process otherwise.

    NCCL on CUDA, gloo on the CPU.
    """
    global _world
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        _world = World()
        return _world
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"rank {rank} needs GPU {local_rank} but this machine has {torch.cuda.device_count()}; "
                            "start at most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _world = World(rank, size, local_rank)
    return _world


def leave_world() -> None:
    global _world
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()  # free gloo's threads now, not during interpreter shutdown (where they can abort the process)
    _world = World()


def sharded_draw(sampler: Callable[..., torch.Tensor], n: int, *shape: int, **options: object) -> torch.Tensor:
    """``sampler(n, *shape)`` for this rank: the whole global draw is made, and this rank's slice kept.

    So N ranks with n samples each draw exactly the numbers one process draws for N*n samples.
    """
    world = current_world()
    if not world.distributed:
        return sampler(n, *shape, **options)
    return sampler(n * world.size, *shape, **options)[world.rank * n:(world.rank + 1) * n]
