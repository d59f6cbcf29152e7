"""MNIST, Fashion-MNIST, KMNIST and CIFAR-10, read through torchvision into one uint8 tensor each.

The files live under the data root in torchvision's layout (e.g. ``<root>/MNIST/raw``). When they
are missing, one download is tried; offline, the error says where the files must go.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import ClassVar

import torch

from vaetool.contracts import Dataset, Split
from vaetool.errors import RuntimeFailure, VaetoolError

SPLITS = ("train", "test")


class _TorchvisionImages(Dataset):
    _source: ClassVar[str]  # the torchvision.datasets class
    _folder: ClassVar[str]  # where torchvision keeps it under the root

    def load(self, split: str, root: Path) -> Split:
        from vaetool import heavy_imports

        datasets = heavy_imports.load("torchvision.datasets")
        if split not in SPLITS:
            raise VaetoolError(f"Unknown split {split!r}; choose train or test.")
        source = getattr(datasets, self._source)
        root = Path(root)
        try:
            dataset = source(str(root), train=split == "train", download=False)
        except RuntimeError:
            dataset = self._download(source, root, split)
        images = torch.as_tensor(dataset.data)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(dataset.targets, dtype=torch.long)
        return Split(images.contiguous(), labels)

    def _download(self, source, root: Path, split: str):
        # torchvision makes its folders before it downloads; a failed download must not leave them.
        made = [p for p in (root / self._folder / "raw", root / self._folder, root, *root.parents) if not p.exists()]
        try:
            # torchvision narrates its download attempts on stdout; the error below says what matters.
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return source(str(root), train=split == "train", download=True)
        except Exception as exc:
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: files another process put there stay
            text = str(exc)
            why = ("its server could not be reached" if "urlopen error" in text or "URLError" in type(exc).__name__
                   else " ".join(text.split())[:160] or type(exc).__name__)
            raise RuntimeFailure(
                f"{self._source} is not under {root} and could not be downloaded ({why}); put torchvision's "
                f"{self._source} files at {root / self._expected_files()}, or point --data-dir or $VAETOOL_DATA "
                "at a folder that has them."
            ) from exc

    def _expected_files(self) -> str:
        return f"{self._folder}/raw/*-ubyte"


class MNIST(_TorchvisionImages):
    """Handwritten digits, 28×28 grey, 60,000 train / 10,000 test (LeCun et al. 1998)."""

    _source, _folder = "MNIST", "MNIST"
    image_shape = (1, 28, 28)
    num_classes = 10
    class_names = tuple(str(d) for d in range(10))


class FashionMNIST(_TorchvisionImages):
    """Zalando clothing images, 28×28 grey, MNIST's sizes (Xiao et al. 2017)."""

    _source, _folder = "FashionMNIST", "FashionMNIST"
    image_shape = (1, 28, 28)
    num_classes = 10
    class_names = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot")


class KMNIST(_TorchvisionImages):
    """Kuzushiji-MNIST: cursive Japanese characters, 28×28 grey, MNIST's sizes (Clanuwat et al. 2018)."""

    _source, _folder = "KMNIST", "KMNIST"
    image_shape = (1, 28, 28)
    num_classes = 10
    class_names = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


class CIFAR10(_TorchvisionImages):
    """32×32 colour photos in 10 classes, 50,000 train / 10,000 test (Krizhevsky 2009)."""

    _source, _folder = "CIFAR10", "cifar-10-batches-py"
    image_shape = (3, 32, 32)
    num_classes = 10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def _expected_files(self) -> str:
        return "cifar-10-batches-py/ (the extracted archive)"
