"""Binarized MNIST: the fixed binarization of Larochelle & Murray (AISTATS 2011), from its ``.amat`` files.

The literature's "static MNIST" log-likelihood tables (e.g. Tomczak & Welling 2018, static rows) are
measured on these exact images: one stochastic binarization of MNIST, drawn once and published as
``binarized_mnist_train.amat`` (50,000 images), ``binarized_mnist_valid.amat`` (10,000) and
``binarized_mnist_test.amat`` (10,000). Nothing is downloaded: the user puts the three files under
``<root>/BinarizedMNIST/`` (or ``<root>/``). Each line is one image, 784 values 0 or 1 separated by
spaces, row-major 28×28. Images come out as uint8 0 or 255 with no labels (the files have none);
train them with the ``bernoulli`` likelihood (any ``binarize`` leaves a binary image unchanged).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaetool.contracts import Dataset, Split
from vaetool.errors import VaetoolError

FOLDER = "BinarizedMNIST"
FILES = {"train": "binarized_mnist_train.amat", "valid": "binarized_mnist_valid.amat",
         "test": "binarized_mnist_test.amat"}
TRAIN_SPLITS = ("train", "train+valid")
_PIXELS = 28 * 28
_ALLOWED = frozenset(b"01 \t\r\n")


class BinarizedMNIST(Dataset):
    """The 1×28×28 binary images of the binarized-MNIST files.

    Options: ``train_split`` — ``train`` (the 50,000 training images; the validation set stays
    held out) or ``train+valid`` (all 60,000, as papers do for their final runs).
    """

    image_shape = (1, 28, 28)

    def __init__(self, train_split: str = "train"):
        if train_split not in TRAIN_SPLITS:
            raise VaetoolError(f"train_split must be one of {', '.join(TRAIN_SPLITS)}, not {train_split!r}.")
        self.train_split = train_split

    def load(self, split: str, root: Path) -> Split:
        if split not in ("train", "test"):
            raise VaetoolError(f"Unknown split {split!r}; choose train or test.")
        parts = ["test"] if split == "test" else self.train_split.split("+")
        images = torch.cat([torch.from_numpy(read_amat(find(root, FILES[part]))) for part in parts])
        return Split(images.view(-1, *self.image_shape).mul_(255).contiguous())


def find(root: Path, name: str) -> Path:
    """One of the ``.amat`` files under ``root``, or a clear error naming where it was looked for."""
    root = Path(root)
    places = (root / FOLDER, root)
    for folder in places:
        if (folder / name).is_file():
            return folder / name
    raise VaetoolError(f"The binarized-MNIST file {name} is in neither {places[0]} nor {places[1]}; put "
                       f"{', '.join(FILES.values())} into one of them, or point --data-dir or $VAETOOL_DATA "
                       "at a folder that has them.")


def read_amat(path: Path) -> np.ndarray:
    """The images of one ``.amat`` file as uint8 0/1, ``(N, 784)``; a clear error for anything else."""
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    allowed = np.zeros(256, dtype=bool)
    allowed[list(_ALLOWED)] = True
    if not allowed[data].all():
        raise VaetoolError(f"{path} is not a binarized-MNIST file: it holds characters other than 0, 1 and spaces.")
    is_digit = (data == ord("0")) | (data == ord("1"))
    starts = np.concatenate([[0], np.flatnonzero(data == ord("\n")) + 1])
    starts = starts[starts < len(data)]
    counts = np.add.reduceat(is_digit, starts, dtype=np.int64) if len(starts) else np.zeros(0, dtype=np.int64)
    counts = counts[counts > 0]  # blank lines
    if len(counts) == 0 or (counts != _PIXELS).any():
        raise VaetoolError(f"{path} is not a binarized-MNIST file: each line must hold {_PIXELS} values 0 or 1.")
    return (data[is_digit] - ord("0")).reshape(len(counts), _PIXELS)
