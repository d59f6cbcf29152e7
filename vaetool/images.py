"""Turning tensors into pictures and pictures into tensors: grids, PNG files, image files in."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaetool.errors import VaetoolError
from vaetool.io import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def default_zoom(height: int) -> int:
    """Nearest-neighbour upscaling that makes small images comfortable to look at (~96 px)."""
    return max(1, 96 // height)


def grid(images, nrow: int = 8, zoom: int | None = None, pad: int = 2) -> np.ndarray:
    """A uint8 ``(H, W, C)`` grid of images ``(N, C, H, W)`` in [0, 1], ``nrow`` per row, upscaled by ``zoom``."""
    import torch

    images = torch.as_tensor(images).detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    zoom = zoom or default_zoom(h)
    images = images.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3)
    h, w = h * zoom, w * zoom
    cols = min(nrow, n)
    rows = -(-n // cols)
    canvas = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad) * 0.5
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    array = (canvas * 255).round().byte().permute(1, 2, 0).numpy()
    return array[..., 0] if c == 1 else array


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 image array as PNG, atomically."""
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def to_tensor(image, shape: tuple[int, int, int]):
    """A PIL image as a uint8 ``(C, H, W)`` tensor with the given channels and size."""
    import torch
    from PIL import Image

    channels, height, width = shape
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def open_image(path: str | Path):
    """Open an image file with PIL; one clear sentence if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError) as exc:
        raise VaetoolError(f"{path} is not an image file that vaetool can read ({exc}).") from exc
