"""Training batches read from a memory-mapped uint8 cache by worker processes.

For datasets too large to hold on the training device. An epoch is the same random order the
resident path uses, cut into the same batches; a batch is one fancy-indexed read of its rows from
the ``.npy`` cache, done in a ``DataLoader`` worker while the device computes the previous steps,
and handed over in pinned memory on CUDA so the copy overlaps too. Streaming changes only where
the bytes come from: the model sees the same batches in the same order as when resident.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from vaetool.contracts import Split

MAX_WORKERS = 4
PREFETCH = 4  # batches each worker reads ahead


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 2) - 1))


class _EpochBatches(TorchDataset):
    """Item i is step ``first_step + i`` of the epoch: this process's rows of that global batch.

    It holds the cache's path, not its bytes, and maps the file in each worker on first use, so
    a worker started by spawn (macOS, Windows) does not receive a copy of the data.
    """

    def __init__(self, file: Path, labels: torch.Tensor | None, order: torch.Tensor, batch_size: int,
                 first_step: int, steps: int, group):
        self.file, self.labels, self.order = file, labels, order
        self.batch_size, self.first_step, self.steps, self.group = batch_size, first_step, steps, group
        self._array = None

    def __len__(self) -> int:
        return self.steps - self.first_step

    def __getitem__(self, i: int):
        if self._array is None:
            self._array = np.load(self.file, mmap_mode="r", allow_pickle=False)
        mine, size = self.group.batch(self.order, self.first_step + i, self.batch_size)
        images = torch.from_numpy(np.ascontiguousarray(self._array[mine.numpy()]))
        labels = self.labels[mine] if self.labels is not None else None
        return images, labels, size


class Batches:
    """The streamed counterpart of the trainer's resident data: ``epoch()`` yields
    ``(images uint8, labels or None, global batch size)`` per step, images still on the host."""

    streamed = True

    def __init__(self, split: Split, labelled: bool, device: torch.device, group, workers: int | None = None):
        cached = np.load(split.file, mmap_mode="r", allow_pickle=False)
        if cached.dtype != np.uint8 or tuple(cached.shape) != tuple(split.images.shape):
            raise ValueError(f"{split.file} does not hold the split's images ({cached.dtype}, {cached.shape})")
        self.file = Path(split.file)
        self.labels = split.labels if labelled else None
        self.pin = device.type == "cuda"
        self.workers = default_workers() if workers is None else workers
        self.group = group

    def epoch(self, order: torch.Tensor, batch_size: int, first_step: int, steps: int):
        batches = _EpochBatches(self.file, self.labels, order, batch_size, first_step, steps, self.group)
        # A generator of its own: the DataLoader draws its workers' seeds from it, and drawing them
        # from the global one would shift the training noise away from the resident path's.
        loader = DataLoader(batches, batch_size=None, shuffle=False, num_workers=self.workers,
                            pin_memory=self.pin, prefetch_factor=PREFETCH if self.workers else None,
                            generator=torch.Generator())
        yield from loader
