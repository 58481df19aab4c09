"""Running the engine under ``torchrun``: one process per device, DistributedDataParallel.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` the engine joins
the process group (NCCL on CUDA, gloo on the CPU), shards the data, sums its metrics across
ranks and leaves files to rank 0. ``run.batch_size`` is the *global* batch: each of N processes
takes ``batch_size / N``, so a 1-process and an N-process run take the same optimiser steps.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .config import ConfigError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; ``world == 1`` is a plain single-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we started the process group, so we end it

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> list[float]:
        """Element-wise sum over ranks, read back once (the epoch's one host sync)."""
        if self.distributed:
            dist.all_reduce(values)
        return values.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on any: ranks must leave the loop together."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (the run folder's name, chosen once)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank: rank 0 may still be writing files when the others finish, and a
        rank that tore its process group down while a peer still used it sometimes aborted
        ("terminate called without an active exception")."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when there is one; CUDA ranks take the GPU of their local rank."""
    rank, world, local = env_rank()
    if world <= 1:
        return DistContext(), device
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"run.device = {device.type!r} cannot run under torchrun; use \"cuda\" or \"cpu\"")
    if dist.is_initialized():  # the caller set it up and will tear it down
        return DistContext(dist.get_rank(), dist.get_world_size(), local, False), device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local, True), device


def per_rank_batch(batch_size: int, world: int) -> int:
    """The global batch split evenly, or a ConfigError that names multiples that would split."""
    if batch_size % world:
        low = max(world, batch_size // world * world)
        raise ConfigError(f"run.batch_size = {batch_size} is the global batch and does not split evenly across {world} "
                          f"processes; use a multiple of {world} such as {low} or {low + world}")
    return batch_size // world


def shard_order(n: int, epoch: int, seed: int, rank: int, world: int, shuffle: bool) -> torch.Tensor:
    """The positions this rank visits in one epoch, exactly as ``DistributedSampler`` picks them.

    Shuffled: one permutation seeded by ``seed + epoch`` (the same on every rank), padded by
    repeating its start to a multiple of ``world``, then every ``world``-th from ``rank``; so the
    ranks' k-th batches together are the 1-process run's k-th batch. Unshuffled (validation):
    every ``world``-th position, unpadded, so summed counts are exact.
    """
    if not shuffle:
        return torch.arange(rank, n, world)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    total = math.ceil(n / world) * world
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[:total - n]])
    return order[rank:total:world]


def launch_command(configs: Sequence[str], nproc: int, extra: Sequence[str] = (), tee: bool = False,
                   log_dir: str | None = None) -> list[str]:
    """The local multi-process launch: torchrun (as a module of this Python) on this machine.

    ``tee``: every rank's output reaches the console prefixed ``[default<rank>]:``, so a reader
    can tell rank 0's events from the others' lines (what the GUI launches); torchrun also keeps
    each rank's full output under ``log_dir`` (default: a temporary folder).
    """
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: give the number of processes to start, 1 or more (usually one per GPU)")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            *(["--tee", "3"] if tee else []), *(["--log-dir", str(log_dir)] if log_dir else []), "-m", "spp_gui", "train", *map(str, configs), *extra]


def cluster_command(configs: Sequence[str], nproc: int, nnodes: int, endpoint: str) -> str:
    """The torchrun line to run on every node of a cluster (same line everywhere)."""
    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"--nproc {nproc} --nnodes {nnodes}: both must be 1 or more")
    return shlex.join(["torchrun", f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
                       f"--rdzv_endpoint={endpoint}", "-m", "spp_gui", "train", *configs])
