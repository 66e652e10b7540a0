"""Data-parallel training across processes with DistributedDataParallel, launched by torchrun:

    torchrun --nproc_per_node 2 -m charrnn train --corpus tinyshakespeare --batch-size 64
    torchrun --nnodes 2 --node-rank R --master-addr HOST --nproc_per_node 8 -m charrnn train ...

torchrun sets WORLD_SIZE / RANK / LOCAL_RANK; without them (or with WORLD_SIZE=1) `setup` returns None
and training runs in one process as always. The backend is NCCL when the device is CUDA (one GPU per
local rank), gloo otherwise.

The global batch is the one a single process would train on: every rank builds the same plan and takes
its own rows of each (B, T) batch,

    rank r: rows [r*B/W, (r+1)*B/W)          B = --batch-size (global), W = world size

so each rank carries the state of its own streams, and because every share has the same size the
gradient DDP averages over ranks is exactly the gradient of the global batch's mean loss. Clipping and
the optimizer then see identical gradients on every rank and the weights stay identical.

Rank 0 alone writes the run directory (config, metrics, checkpoints) and reports events; evaluation
runs on rank 0 while the others wait at a barrier. Every step the ranks agree, in one small all-reduce,
on the loss to report, on the budget's progress (it sets the learning rate) and on whether to stop, so
a time budget or Ctrl-C ends every rank at the same step. A checkpoint holds the carried state of all
B streams (gathered from the ranks), so a run resumes with any world size that divides B, or in one
process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from charrnn.core.errors import CharRNNError


@dataclass
class DistContext:
    """This process's place in a data-parallel run."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """The rows of each global batch this rank trains on."""
        share = batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around the model; construction broadcasts rank 0's weights to every rank."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    def agree(self, loss: torch.Tensor, progress: float, time_up: bool, stop: bool) -> tuple[float, float, bool, bool]:
        """One all-reduce per step -> the mean loss over ranks (the global batch's loss), rank 0's
        progress through the budget and whether its clock ran out, and whether any rank was asked to stop."""
        main = 1.0 if self.is_main else 0.0
        t = torch.tensor([loss.detach().float().item(), main * progress, main * time_up, float(stop)],
                         dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        loss_sum, prog, up, stops = t.tolist()
        return loss_sum / self.world, prog, up > 0, stops > 0

    def gather_rows(self, state):
        """Carried state (layers, B/W, H) of every rank -> (layers, B, H) in row order, on every rank."""
        if state is None:
            return None
        if isinstance(state, tuple):
            return tuple(self.gather_rows(s) for s in state)
        parts = [torch.empty_like(state) for _ in range(self.world)]
        dist.all_gather(parts, state.detach().contiguous())
        return torch.cat(parts, dim=1)

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


def setup(device: str, batch_size: int) -> DistContext | None:
    """Join the process group torchrun describes in the environment; None for a one-process run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if batch_size % world:
        raise CharRNNError(
            f"--batch-size {batch_size} must be a multiple of the world size {world}: each of the {world} "
            f"processes trains on an equal share of every batch"
        )
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    elif device in ("auto", "cpu"):
        dev = torch.device("cpu")
    else:
        raise CharRNNError(f"--device {device} is not supported for multi-process training (use cuda or cpu)")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return DistContext(rank, world, dev)


def teardown(ctx: DistContext | None) -> None:
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True outside torchrun, and in torchrun's rank 0: the one process that writes and prints."""
    return int(os.environ.get("RANK", "0")) == 0
