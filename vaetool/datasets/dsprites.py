"""dSprites: the original file of 737,280 64×64 binary sprites with their generative factors.

Matthey, Higgins, Hassabis and Lerchner, "dSprites: Disentanglement testing Sprites dataset",
2017, https://github.com/deepmind/dsprites-dataset. Nothing is downloaded: the user puts
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` under the data root (``<root>/dsprites/`` or
``<root>/``). For the same scene rendered on the fly, offline, see the ``shapes`` dataset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaetool.contracts import Dataset, Split
from vaetool.datasets.shapes import factor_values
from vaetool.errors import VaetoolError

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SOURCE = "https://github.com/deepmind/dsprites-dataset"
_SPLITS = ("train", "test")
_FACTOR_COUNTS = (3, 6, 40, 32, 32)


class DSprites(Dataset):
    """The dSprites images, 1×64×64, 0 or 255, with five ground-truth factors.

    Options:

    - ``test_fraction``: the share of images in the test split (between 0 and 1).
    - ``seed``: the seed of the random split; each split is kept in the file's order.

    A split's ``factors`` are the factor *indices* from the file's ``latents_classes`` (the
    constant colour column dropped), as float32 ``(N, 5)`` in ``factor_names`` order: shape (3),
    scale (6), orientation (40), pos_x (32), pos_y (32). ``factor_values`` gives the value of each
    index (the dSprites grid); the labels are the shape index.
    """

    num_classes = 3
    class_names = ("square", "ellipse", "heart")
    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    image_shape = (1, 64, 64)

    def __init__(self, test_fraction: float = 0.1, seed: int = 0):
        if not 0 < test_fraction < 1:
            raise VaetoolError(f"dsprites needs a test_fraction between 0 and 1, not {test_fraction}.")
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self.factor_values = factor_values()

    @staticmethod
    def find(root: Path) -> Path:
        """The dSprites file under ``root``, or a clear error naming where it was looked for."""
        root = Path(root)
        places = (root / "dsprites", root)
        for folder in places:
            if (folder / FILE).is_file():
                return folder / FILE
        raise VaetoolError(f"The dSprites file {FILE} is in neither {places[0]} nor {places[1]}; download it from "
                           f"{SOURCE} into one of them, or point --data-dir or $VAETOOL_DATA at a folder that has it.")

    def load(self, split: str, root: Path) -> Split:
        if split not in _SPLITS:
            raise VaetoolError(f"dsprites has no split {split!r}: use one of {', '.join(_SPLITS)}.")
        path = self.find(root)
        try:
            # No pickle: the file's `metadata` entry is a pickled dict, and is never read.
            with np.load(path, allow_pickle=False) as archive:
                classes = archive["latents_classes"]
                indices = self._indices(len(classes), split)
                images = archive["imgs"]
        except (OSError, ValueError, KeyError) as exc:
            raise VaetoolError(f"{path} is not a readable dSprites file ({type(exc).__name__}: {exc}).") from exc
        if images.shape[1:] != (64, 64) or len(images) != len(classes) or classes.ndim != 2 or classes.shape[1] != 6:
            raise VaetoolError(f"{path} does not hold dSprites' 64×64 images and 6 latent classes per image.")
        factors = torch.from_numpy(classes[indices, 1:].astype(np.float32))
        if (factors < 0).any() or (factors >= torch.tensor(_FACTOR_COUNTS)).any():
            raise VaetoolError(f"{path} has latent classes outside dSprites' grid {_FACTOR_COUNTS}.")
        pixels = torch.from_numpy(images[indices].astype(np.uint8, copy=False)).unsqueeze(1)
        pixels.mul_(255)  # the file's pixels are 0 or 1
        return Split(images=pixels, labels=factors[:, 0].long(), factors=factors)

    def _indices(self, n: int, split: str) -> np.ndarray:
        # One permutation serves both splits: disjoint slices of the same seeded draw.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_test = int(round(n * self.test_fraction))
        chosen = order[:n_test] if split == "test" else order[n_test:]
        return chosen.sort().values.numpy()
