"""Shapes: binary 2-D sprites with known generative factors, drawn on the fly.

A procedural re-creation of dSprites (Matthey, Higgins, Hassabis and Lerchner, "dSprites:
Disentanglement testing Sprites dataset", 2017, https://github.com/deepmind/dsprites-dataset):
one white sprite on a black background, generated from five independent factors on exactly
the dSprites grid,

- shape: square, ellipse, heart (also the class label)
- scale: 6 values in [0.5, 1]
- orientation: 40 values in [0, 2π]
- pos_x, pos_y: 32 values each in [0, 1]

for 3·6·40·32·32 = 737,280 combinations. Nothing is downloaded: the images are rendered
(vectorised, in chunks) from implicit shape equations, so the same options always give the
same pixels. Positions are in image coordinates: pos_x grows to the right, pos_y downwards.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from vaetool.contracts import Dataset, Split
from vaetool.errors import VaetoolError

# Sprite geometry, in fractions of the image side so every size shows the same scene.
# At scale 1 the square's half-side is 1/6: it spans a third of the image, and at scale 0.5
# is still about 5 pixels across at 32x32.
_HALF_SIDE = 1 / 6
# Furthest any sprite reaches from its centre, at any rotation: the square's corner.
# (The ellipse reaches 1.2 and the heart 1.25 half-sides, both inside this.)
_REACH = math.sqrt(2) * _HALF_SIDE
# Sprite centres keep this far from the edges so that, as in dSprites, the largest sprite
# never leaves the frame. The extra 1/16 is one pixel at the smallest allowed size, so no pixel
# of the border row or column is ever lit.
_MARGIN = _REACH + 1 / 16
_MIN_SIZE = 16
# Sample points rendered at once: keeps the working buffers to tens of MB whatever the size.
_CHUNK_SAMPLES = 1 << 21
_SPLITS = ("train", "test")


def factor_values() -> dict[str, Tensor]:
    """The possible values of each factor, in dSprites order (``Shapes.factor_names``).

    The shape factor holds the class index (0 square, 1 ellipse, 2 heart) as a float.
    """
    return {
        "shape": torch.arange(3, dtype=torch.float32),
        "scale": torch.linspace(0.5, 1.0, 6),
        "orientation": torch.linspace(0.0, 2 * math.pi, 40),
        "pos_x": torch.linspace(0.0, 1.0, 32),
        "pos_y": torch.linspace(0.0, 1.0, 32),
    }


def _grid_counts() -> tuple[int, ...]:
    return tuple(len(v) for v in factor_values().values())


def _unravel(flat: Tensor) -> Tensor:
    # Row-major over the factor counts: shape varies slowest, pos_y fastest (dSprites order).
    columns = []
    for count in reversed(_grid_counts()):
        columns.append(flat % count)
        flat = flat // count
    return torch.stack(columns[::-1], dim=1)


def grid_indices() -> Tensor:
    """Factor indices of the whole grid, int64 ``(737280, 5)``, in dSprites order.

    Shape varies slowest and pos_y fastest, so row ``i`` is image ``i`` of dSprites.
    """
    return _unravel(torch.arange(math.prod(_grid_counts())))


def indices_to_values(indices: Tensor) -> Tensor:
    """Turn factor indices ``(N, 5)`` into factor values, float32 ``(N, 5)``."""
    indices = torch.as_tensor(indices, dtype=torch.long)
    columns = [values[indices[:, i]] for i, values in enumerate(factor_values().values())]
    return torch.stack(columns, dim=1)


def _check_size(size: int) -> None:
    if size < _MIN_SIZE:
        raise VaetoolError(f"Shapes needs an image size of at least {_MIN_SIZE} pixels, got {size}.")


# Each shape in its own frame, where one unit is the half-side at scale 1 and v points up:
# (stretch_u, stretch_v, shift_v) map the sprite frame onto the shape's equation, and the
# predicate says which points are inside.
def _in_square(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs_(), v.abs_()) <= 1


def _in_ellipse(u: Tensor, v: Tensor) -> Tensor:
    return u.mul_(u).add_(v.mul_(v)) <= 1


def _in_heart(u: Tensor, v: Tensor) -> Tensor:
    # (x² + y² − 1)³ ≤ x² y³, the classic heart: lobes up, point down.
    u2, v2 = u.mul_(u), v * v
    r = (u2 + v2).sub_(1)
    return r.mul(r).mul_(r) <= u2.mul_(v2).mul_(v)


_SHAPES = (
    (1.0, 1.0, 0.0, _in_square),
    # Semi-axes 1.2 and 0.6: unequal, so the orientation shows.
    (1 / 1.2, 1 / 0.6, 0.0, _in_ellipse),
    # The heart spans y in [-1, 1.24]; centring it on y = 0.25 puts every point within 1.25.
    (1.0, 1.0, 0.25, _in_heart),
)


def render(factors: Tensor, size: int) -> Tensor:
    """Draw sprites from their factor *values*, uint8 ``(N, 1, size, size)`` of 0 or 255.

    ``factors`` is ``(N, 5)``: shape (0, 1 or 2), scale, orientation in radians, pos_x and
    pos_y in [0, 1]. Values between grid points are allowed (a rotation by π/2, say).
    Positions 0 and 1 put the sprite's centre as near the edges as the largest sprite allows.
    """
    _check_size(size)
    factors = torch.as_tensor(factors, dtype=torch.float32)
    if factors.ndim != 2 or factors.shape[1] != 5:
        raise ValueError(f"factors must be (N, 5), got {tuple(factors.shape)}")
    shape = factors[:, 0].long()
    if not torch.equal(shape.float(), factors[:, 0]) or ((shape < 0) | (shape >= len(_SHAPES))).any():
        raise ValueError("the shape factor must be 0, 1 or 2")
    if (factors[:, 1] <= 0).any():
        raise ValueError("the scale factor must be positive")
    out = torch.zeros(len(factors), 1, size, size, dtype=torch.uint8)
    # Only a window around each sprite is drawn, the smallest that holds it at any angle.
    # Images are grouped by shape and window, so each chunk is one equation on one grid.
    window = (2 * torch.ceil(_REACH * factors[:, 1] * size) + 3).long().clamp(max=size)
    group = shape * (size + 1) + window
    order = torch.argsort(group, stable=True)
    groups, counts = torch.unique_consecutive(group[order], return_counts=True)
    first = 0
    for group_id, count in zip(groups.tolist(), counts.tolist()):
        shape_id, side = divmod(group_id, size + 1)
        chunk = max(1, _CHUNK_SAMPLES // (2 * side) ** 2)
        for start in range(first, first + count, chunk):
            images = order[start:min(start + chunk, first + count)]
            _paste(out, images, _render_chunk(shape_id, factors[images], size, side))
        first += count
    return out


def _render_chunk(shape_id: int, factors: Tensor, size: int, window: int) -> tuple[Tensor, Tensor, Tensor]:
    _, scale, angle, pos_x, pos_y = factors.unbind(1)
    n = len(factors)
    stretch_u, stretch_v, shift_v, predicate = _SHAPES[shape_id]
    centre_x = (_MARGIN + pos_x * (1 - 2 * _MARGIN)) * size
    centre_y = (_MARGIN + pos_y * (1 - 2 * _MARGIN)) * size
    # Clamping keeps the window in the frame; it still covers the sprite, which is inside.
    left = (centre_x.floor().long() - window // 2).clamp(0, size - window)
    top = (centre_y.floor().long() - window // 2).clamp(0, size - window)
    # 2x2 samples per pixel, lit when at least two are inside the sprite: edges follow the
    # shape's area better than one sample at the pixel centre.
    offsets = (torch.arange(2 * window) + 0.5) / 2
    unit = (scale * _HALF_SIDE * size)[:, None]
    # Sample coordinates relative to the centre in sprite units, y pointing up. They are
    # separable (x per column, y per row), so the rotation is done on (n, W) vectors and
    # only the final sums are broadcast to (n, W, W).
    x = (left[:, None] + offsets - centre_x[:, None]) / unit
    y = (centre_y[:, None] - top[:, None] - offsets) / unit
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]
    # Rotating the frame by -orientation turns the sprite by +orientation (anticlockwise).
    u = (stretch_u * cos * x)[:, None, :] + (stretch_u * sin * y)[:, :, None]
    v = (-stretch_v * sin * x)[:, None, :] + (stretch_v * cos * y + shift_v)[:, :, None]
    inside = predicate(u, v).view(torch.uint8)
    # Count the 2x2 samples inside each pixel: pairs of columns, then pairs of rows (plain
    # adds, far faster than a strided sum on CPU).
    hits = inside.view(n, 2 * window, window, 2)
    hits = (hits[..., 0] + hits[..., 1]).view(n, window, 2, window)
    hits = hits[:, :, 0] + hits[:, :, 1]
    lit = (hits >= 2).view(torch.uint8).mul_(255)
    return lit, top, left


def _paste(out: Tensor, images: Tensor, drawn: tuple[Tensor, Tensor, Tensor]) -> None:
    lit, top, left = drawn
    size, window = out.shape[-1], lit.shape[-1]
    span = torch.arange(window)
    # Flat positions in `out` of every window pixel; put_ is the fastest scatter on CPU.
    where = ((images * size * size)[:, None, None] + ((top[:, None] + span) * size)[:, :, None]
             + (left[:, None] + span)[:, None, :])
    out.view(-1).put_(where, lit)


class Shapes(Dataset):
    """dSprites-style sprites with ground-truth factors, rendered from a seed.

    Options:

    - ``size``: image side in pixels (32 or 64 look like dSprites; at least 16).
    - ``n_train``, ``n_test``: number of images when ``grid`` is off. Their factor
      combinations are drawn uniformly from the grid without replacement, by one generator
      seeded with ``seed``, so the two splits never share an image.
    - ``seed``: the seed of that draw (and of the grid's test split).
    - ``grid``: the full dSprites grid of 737,280 images instead; a seeded random 10% is the
      test split and the rest the train split, each kept in dSprites order. ``n_train`` and
      ``n_test`` are ignored.

    ``factor_values`` lists the possible values of each factor; a split's ``factors`` hold
    values (not indices), float32 ``(N, 5)`` in ``factor_names`` order, and its labels are the
    shape index.
    """

    num_classes = 3
    class_names = ("square", "ellipse", "heart")
    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")

    def __init__(self, size: int = 32, n_train: int = 20000, n_test: int = 2000,
                 seed: int = 0, grid: bool = False):
        _check_size(size)
        total = math.prod(_grid_counts())
        if n_train < 0 or n_test < 0:
            raise VaetoolError(f"Shapes needs non-negative n_train and n_test, got {n_train} and {n_test}.")
        if not grid and n_train + n_test > total:
            raise VaetoolError(f"Shapes has {total} distinct images: ask for at most that many in "
                               f"n_train + n_test, or use grid=True for all of them.")
        self.size = int(size)
        self.n_train = int(n_train)
        self.n_test = int(n_test)
        self.seed = int(seed)
        self.grid = bool(grid)
        self.image_shape = (1, self.size, self.size)
        self.factor_values = factor_values()

    def split_indices(self, split: str) -> Tensor:
        """Factor indices, int64 ``(N, 5)``, of the images in ``split`` (nothing is rendered)."""
        if split not in _SPLITS:
            raise VaetoolError(f"Shapes has no split {split!r}: use one of {', '.join(_SPLITS)}.")
        total = math.prod(_grid_counts())
        generator = torch.Generator().manual_seed(self.seed)
        # One permutation serves both splits: disjoint slices of the same uniform draw.
        order = torch.randperm(total, generator=generator)
        if self.grid:
            n_test = total // 10
            flat = order[:n_test] if split == "test" else order[n_test:]
            flat = flat.sort().values
        else:
            flat = order[:self.n_train] if split == "train" else order[self.n_train:self.n_train + self.n_test]
        return _unravel(flat)

    def load(self, split: str, root: Path | None = None) -> Split:
        """Render ``split`` ("train" or "test"); ``root`` is unused, nothing is downloaded."""
        indices = self.split_indices(split)
        factors = indices_to_values(indices)
        return Split(images=render(factors, self.size), labels=indices[:, 0].clone(), factors=factors)
