"""Several processes, one model: data-parallel training under ``torchrun``.

``torchrun --nproc-per-node N -m vaetool train ...`` (or ``vaetool train --nproc N``, which runs
that) starts N copies of the same command. Each reads ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` from its environment, joins one process group (NCCL between GPUs, gloo between
CPU processes), and trains a replica of the model wrapped in ``DistributedDataParallel``, which
averages gradients across processes during the backward pass.

The division of labour, so that N processes train the model one process would:

- every process holds the whole dataset and shuffles it with the same seed, so all agree on the
  epoch's order; of each global batch of ``--batch-size`` examples, process r takes the r-th of
  N near-equal slices;
- every process draws the reparameterisation noise ε of the whole global batch and keeps its
  rows, so the noise is what one process would have drawn;
- each process's loss is weighted by its share of the global batch, so the averaged gradient is
  the gradient of the global batch's mean loss;
- running sums and the stop request (Ctrl-C) are summed across processes at fixed steps;
- only rank 0 evaluates, draws the progress bar and writes files; the others wait for it.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch

from vaetool import devices
from vaetool.errors import VaetoolError


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes. ``Group()`` is a single process."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process reports and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch (the r-th of ``world`` near-equal parts)."""
        return rows.tensor_split(self.world)[self.rank] if self.active else rows

    def batch(self, order: torch.Tensor, step: int, batch_size: int) -> tuple[torch.Tensor, int]:
        """This process's rows of step ``step`` of an epoch in ``order``, and the global batch's size.

        The one definition of an epoch's batches, which resident and streamed data both use.
        """
        rows = order[step * batch_size:(step + 1) * batch_size]
        return self.shard(rows), len(rows)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over every process (a copy; a no-op for one process)."""
        if not self.active:
            return values
        values = values.clone()
        torch.distributed.all_reduce(values)
        return values

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device_name: str | None) -> tuple[Group, torch.device]:
    """The process group and this process's device; joins the group on first call under torchrun.

    Under torchrun, ``auto`` and ``cuda`` mean the GPU numbered by ``LOCAL_RANK``, one per process.
    """
    if not launched():
        return Group(), devices.resolve(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    name = str(device_name or "auto").lower()
    if name in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise VaetoolError(f"Process {local_rank} on this node has no GPU: the node has "
                               f"{torch.cuda.device_count()}; start at most that many per node.")
        device = torch.device("cuda", local_rank)
    elif name == "auto":
        device = torch.device("cpu")
    else:
        device = devices.resolve(name)
    if device.type == "mps":
        raise VaetoolError("Distributed training runs on CUDA GPUs or on CPUs; MPS has no backend for it.")
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return Group(rank, world), device


def _leave() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
