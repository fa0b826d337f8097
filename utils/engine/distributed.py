"""torchrun / DistributedDataParallel helpers.

Launch with `torchrun --nproc_per_node=N train.py ...` (multi-node: add --nnodes,
--node_rank, --rdzv_endpoint). torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them
the run is a single process and every helper here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.cli import pick_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by torchrun; return (info, this process's device).

    CUDA ranks use nccl and one GPU each (LOCAL_RANK); CPU ranks use gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), pick_device(device_name)
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world_size,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")  # MPS has no collective backend
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return info, device


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_flags(info: DistInfo, flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags across ranks (one collective), so that every rank
    takes the same branch (skip a bad step, stop on a signal) and DDP never deadlocks."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def all_true(info: DistInfo, flag: torch.Tensor) -> torch.Tensor:
    """A boolean tensor that is True on every rank only if it is True on all of them; stays on
    the device (no wait for the host)."""
    if not info.enabled:
        return flag
    t = flag.to(torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.bool()


def gather_objects(info: DistInfo, obj):
    """List of `obj` from every rank (in rank order); [obj] when not distributed."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj):
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
