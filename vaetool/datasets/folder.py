"""Any folder of images. Images in sub-folders are labelled by the sub-folder's name."""
from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from vaetool.contracts import Dataset, Split
from vaetool.datasets import cache
from vaetool.errors import VaetoolError
from vaetool.images import IMAGE_SUFFIXES, open_image


MAX_SIZE = 8192  # pixels along a side: decoding to a larger size is a mistyped option


def _is_image(path: Path) -> bool:
    try:
        open_image(path)
        return True
    except VaetoolError:
        return False


class ImageFolder(Dataset):
    """Every image below ``path``, decoded once into a uint8 cache on disk and memory-mapped from it
    (see :mod:`vaetool.datasets.cache`), so a folder larger than memory trains by streaming.

    Images are converted to ``channels`` (default: grey if the first image is grey, else RGB) and
    resized to ``size``×``size`` (default: the first image's size). When the images sit in two or
    more sub-folders, the sub-folder names are the class labels. A seeded ``test_fraction`` of the
    images is held out as the test split.
    """

    def __init__(self, path: str = ".", size: int | None = None, channels: int | None = None,
                 test_fraction: float = 0.1, seed: int = 0):
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise VaetoolError(f"The image folder {self.path} does not exist.")
        if not 0 < test_fraction < 1:
            raise VaetoolError(f"test_fraction must lie between 0 and 1, not {test_fraction}.")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE):
            raise VaetoolError(f"size must be a whole number of pixels from 1 to {MAX_SIZE}, not {size!r}.")
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(self.files) < 2:
            readable = [f for f in self.files if _is_image(f)]
            others = f" ({self.files[0].name} is named as one but is not an image)" if len(readable) < len(self.files) else ""
            raise VaetoolError(f"The folder {self.path} holds {len(readable)} image(s){others}; training needs at "
                               "least two.")
        first = open_image(self.files[0])
        if channels is None:
            channels = 1 if first.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
        if channels not in (1, 3):
            raise VaetoolError(f"channels must be 1 or 3, not {channels}.")
        height, width = (size, size) if size else (first.height, first.width)
        self.image_shape = (channels, height, width)
        self.test_fraction, self.seed = test_fraction, seed
        folders = sorted({p.parent.relative_to(self.path).as_posix() for p in self.files})
        labelled = len(folders) >= 2 and "." not in folders
        self.class_names = tuple(folders) if labelled else ()
        self.num_classes = len(self.class_names)

    def _splits(self) -> dict[str, list[int]]:
        order = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(self.seed))
        n_test = max(1, math.ceil(self.test_fraction * len(self.files)))
        return {"train": order[n_test:].tolist(), "test": order[:n_test].tolist()}

    @cached_property
    def _cached(self) -> tuple[dict[str, list[int]], dict[str, Path]]:
        splits = self._splits()
        return splits, cache.load_or_build(self.path, self.files, self.image_shape, splits)

    def load(self, split: str, root: Path | None = None) -> Split:
        if split not in ("train", "test"):
            raise VaetoolError(f"Unknown split {split!r}; choose train or test.")
        splits, files = self._cached
        # Copy-on-write: a writable view for torch, and the file itself never changes.
        images = torch.from_numpy(np.load(files[split], mmap_mode="c", allow_pickle=False))
        labels = None
        if self.num_classes:
            index = {name: i for i, name in enumerate(self.class_names)}
            labels = torch.tensor([index[self.files[i].parent.relative_to(self.path).as_posix()]
                                   for i in splits[split]])
        return Split(images, labels, file=files[split])
