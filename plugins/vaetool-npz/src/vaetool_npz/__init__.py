"""Images from a NumPy ``.npz`` file for vaetool, registered as the dataset ``npz``."""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from vaetool.contracts import Dataset, Split
from vaetool.errors import VaetoolError

__version__ = "0.1.0"
__all__ = ["NpzImages"]

_SPLITS = ("train", "test")
_COLOURS = (1, 3)


class NpzImages(Dataset):
    """Images, and optionally labels and ground-truth factors, from a ``.npz`` file of yours
    (``numpy.savez`` or ``numpy.savez_compressed``).

    Keys in the file:

    - ``images``: uint8 (0 to 255) or bool, shaped ``(N, H, W)`` (grey), ``(N, H, W, C)`` or
      ``(N, C, H, W)`` with C of 1 or 3. When both layouts would fit, ``(N, H, W, C)`` is read.
    - ``labels`` (optional): non-negative integers ``(N,)``, the class of each image; with
      ``class_names`` (optional), strings naming the classes 0, 1, ….
    - ``factors`` (optional): numbers ``(N, F)``, ground-truth generative factors (dSprites' latent
      values, say); with ``factor_names`` (optional), F strings. Without names they are called
      ``factor_0``, ``factor_1``, ….

    Options:

    - ``path``: the file. A relative path that does not exist as given is looked up in the data
      root: ``$VAETOOL_DATA`` when the dataset is built, and the root that ``load`` receives
      (``--data-dir``) when it is loaded.
    - ``test_fraction``: the share of the images held out as the test split, drawn by a
      generator seeded with ``seed``; each split keeps the file's order.
    """

    def __init__(self, path: str = "", test_fraction: float = 0.1, seed: int = 0):
        if not isinstance(path, str) or not path:
            raise VaetoolError("The npz dataset needs the file to read: give --data-opt path=FILE.npz.")
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise VaetoolError(f"test_fraction must lie between 0 and 1 for the npz dataset, not {test_fraction!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise VaetoolError(f"seed must be a whole number for the npz dataset, not {seed!r}.")
        self.path, self.test_fraction, self.seed = path, float(test_fraction), seed
        env = os.environ.get("VAETOOL_DATA")
        self.file = self._find(Path(env).expanduser() if env else None)
        self._arrays: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None
        self._read_description()

    # -- finding and describing the file ------------------------------------------------------------

    def _find(self, root: Path | None) -> Path:
        given = Path(self.path).expanduser()
        candidates = [given] + ([root / given] if root is not None and not given.is_absolute() else [])
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        where = " or ".join(str(c) for c in candidates)
        hint = "" if given.is_absolute() else "; give its full path, or put it in the data root ($VAETOOL_DATA)"
        raise VaetoolError(f"There is no .npz file at {where}{hint}.")

    def _open(self, file: Path):
        try:
            data = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise VaetoolError(f"{file} is not a NumPy .npz file ({type(exc).__name__}: {exc}).") from exc
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise VaetoolError(f"{file} holds a single array (.npy), not an .npz archive with an 'images' key; "
                               "write it with numpy.savez(path, images=...).")
        return data

    def _read_description(self) -> None:
        with self._open(self.file) as data:
            keys = set(data.files)
            if "images" not in keys:
                raise VaetoolError(f"{self.file} has no 'images' key (it has {', '.join(sorted(keys)) or 'none'}); "
                                   "the npz dataset reads images from 'images'.")
            shape, dtype = _header(self.file, "images") or _full_header(self.file, data, "images")
            self._layout, self.image_shape = _layout(self.file, shape, dtype)
            self.size = shape[0]
            if self.size < 2:
                raise VaetoolError(f"{self.file} holds {self.size} image(s); training needs at least two.")
            self.class_names = ()
            if "labels" in keys:
                labels = self._labels(data)
                self.class_names = self._class_names(data, keys, int(labels.max()) + 1 if len(labels) else 0)
            elif "class_names" in keys:
                raise VaetoolError(f"{self.file} has class_names but no labels.")
            self.num_classes = len(self.class_names)
            self.factor_names = self._factor_names(data, keys)

    def _labels(self, data) -> np.ndarray:
        labels = _array(self.file, data, "labels")
        if labels.ndim != 1 or len(labels) != self.size or labels.dtype.kind not in "iu":
            raise VaetoolError(f"The labels in {self.file} are {labels.dtype} {labels.shape}; the npz dataset takes "
                               f"one integer class per image, shaped ({self.size},).")
        if len(labels) and labels.min() < 0:
            raise VaetoolError(f"The labels in {self.file} include {labels.min()}; classes are numbered from 0.")
        return labels

    def _class_names(self, data, keys: set[str], needed: int) -> tuple[str, ...]:
        if "class_names" not in keys:
            return tuple(str(i) for i in range(needed))
        names = _array(self.file, data, "class_names")
        if names.ndim != 1 or names.dtype.kind not in "US" or len(names) < needed:
            raise VaetoolError(f"The class_names in {self.file} must be {needed} or more strings, one per class; "
                               f"they are {names.dtype} {names.shape}.")
        return tuple(_text(n) for n in names)

    def _factor_names(self, data, keys: set[str]) -> tuple[str, ...]:
        if "factors" not in keys:
            if "factor_names" in keys:
                raise VaetoolError(f"{self.file} has factor_names but no factors.")
            return ()
        shape, dtype = _header(self.file, "factors") or _full_header(self.file, data, "factors")
        if len(shape) not in (1, 2) or shape[0] != self.size or dtype.kind not in "biuf":
            raise VaetoolError(f"The factors in {self.file} are {dtype} {shape}; the npz dataset takes numbers shaped "
                               f"({self.size}, F), one row of factors per image.")
        count = shape[1] if len(shape) == 2 else 1
        if "factor_names" not in keys:
            return tuple(f"factor_{i}" for i in range(count))
        names = _array(self.file, data, "factor_names")
        if names.ndim != 1 or names.dtype.kind not in "US" or len(names) != count:
            raise VaetoolError(f"The factor_names in {self.file} must be {count} strings, one per factor; "
                               f"they are {names.dtype} {names.shape}.")
        return tuple(_text(n) for n in names)

    # -- loading --------------------------------------------------------------------------------------

    def load(self, split: str, root: Path | None = None) -> Split:
        """The ``train`` or ``test`` split; ``root`` is where a relative ``path`` is looked up."""
        if split not in _SPLITS:
            raise VaetoolError(f"The npz dataset has no split {split!r}; use one of {', '.join(_SPLITS)}.")
        images, labels, factors = self._everything(Path(root).expanduser() if root is not None else None)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed))
        n_test = min(self.size - 1, max(1, math.ceil(self.test_fraction * self.size)))
        chosen = (order[:n_test] if split == "test" else order[n_test:]).sort().values
        return Split(images[chosen],
                     labels[chosen] if labels is not None else None,
                     factors[chosen] if factors is not None else None)

    def _everything(self, root: Path | None):
        if self._arrays is not None:
            return self._arrays
        try:
            file = self._find(root)
        except VaetoolError:
            file = self.file  # not under this root: the file found when the dataset was built
        with self._open(file) as data:
            if "images" not in data.files:
                raise VaetoolError(f"{file} has no 'images' key.")
            raw = _array(file, data, "images")
            layout, shape = _layout(file, raw.shape, raw.dtype)
            if shape != self.image_shape or len(raw) != self.size:
                raise VaetoolError(f"{file} holds {len(raw)} images of {shape}, but the dataset was built from "
                                   f"{self.file} with {self.size} of {self.image_shape}.")
            images = torch.from_numpy(np.ascontiguousarray(raw))
            if images.dtype == torch.bool:
                images = images.to(torch.uint8).mul_(255)
            if layout == "NHW":
                images = images.unsqueeze(1)
            elif layout == "NHWC":
                images = images.permute(0, 3, 1, 2).contiguous()
            labels = torch.from_numpy(self._labels(data).astype(np.int64)) if self.num_classes else None
            factors = None
            if self.factor_names:
                values = _array(file, data, "factors").astype(np.float32)
                factors = torch.from_numpy(values.reshape(len(values), -1))
        self._arrays = (images, labels, factors)
        return self._arrays


# -- reading arrays -----------------------------------------------------------------------------------

def _header(file: Path, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of ``key`` from its .npy header alone, without decompressing the array."""
    try:
        with zipfile.ZipFile(file) as archive, archive.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None
    return tuple(shape), dtype


def _full_header(file: Path, data, key: str) -> tuple[tuple[int, ...], np.dtype]:
    array = _array(file, data, key)  # a header _header cannot parse: read the array itself
    return array.shape, array.dtype


def _array(file: Path, data, key: str) -> np.ndarray:
    try:
        return data[key]
    except ValueError as exc:  # object arrays need pickle, which is never allowed here
        raise VaetoolError(f"The {key!r} array in {file} cannot be read without pickle ({exc}); "
                           "store numbers and strings as plain NumPy arrays.") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise VaetoolError(f"The {key!r} array in {file} is damaged ({type(exc).__name__}: {exc}).") from exc


def _layout(file: Path, shape: tuple[int, ...], dtype: np.dtype) -> tuple[str, tuple[int, int, int]]:
    """How the image axes are laid out ("NHW", "NHWC" or "NCHW"), and the image shape (C, H, W)."""
    if dtype != np.uint8 and dtype != np.bool_:
        hint = " Convert with (images * 255).round().astype(numpy.uint8)." if dtype.kind == "f" else ""
        raise VaetoolError(f"The images in {file} are {dtype}; the npz dataset takes uint8 images (0 to 255) "
                           f"or bool masks.{hint}")
    if len(shape) not in (3, 4) or min(shape[1:]) < 1:
        raise VaetoolError(f"The images in {file} are shaped {tuple(shape)}; the npz dataset takes (N, H, W), "
                           "(N, H, W, C) or (N, C, H, W) with C of 1 (grey) or 3 (RGB).")
    if len(shape) == 3:
        return "NHW", (1, shape[1], shape[2])
    if shape[3] in _COLOURS:
        return "NHWC", (shape[3], shape[1], shape[2])
    if shape[1] in _COLOURS:
        return "NCHW", (shape[1], shape[2], shape[3])
    raise VaetoolError(f"The images in {file} are shaped {tuple(shape)}; the npz dataset takes (N, H, W), "
                       "(N, H, W, C) or (N, C, H, W) with C of 1 (grey) or 3 (RGB).")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
