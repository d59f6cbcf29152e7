"""Turning tensors into pictures and pictures into tensors: grids, PNG files, image files in."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from vaetool.errors import VaetoolError, no_file
from vaetool.io import atomic_write

# GIF frame rates: a frame's delay is 2 to 65,535 hundredths of a second (shorter ones browsers slow down).
MIN_FPS, MAX_FPS = 0.01, 50.0

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The most pixels vaetool draws into one picture, or into all the frames of one GIF: a 5,800-pixel
# square, some 400 MB while it is composed.
MAX_PICTURE_PIXELS = 1 << 25


def default_zoom(height: int) -> int:
    """Nearest-neighbour upscaling that makes small images comfortable to look at (~96 px)."""
    return max(1, 96 // height)


def grid(images, nrow: int = 8, zoom: int | None = None, pad: int = 2) -> np.ndarray:
    """A uint8 ``(H, W, C)`` grid of images ``(N, C, H, W)`` in [0, 1], ``nrow`` per row, upscaled by ``zoom``."""
    import torch

    images = torch.as_tensor(images).detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    zoom = zoom or default_zoom(h)
    check_picture_size(grid_pixels(n, h, w, nrow, zoom, pad), zoom)
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


def grid_pixels(n: int, height: int, width: int, nrow: int = 8, zoom: int | None = None, pad: int = 2) -> int:
    """How many pixels :func:`grid` draws for ``n`` images of ``height``×``width``."""
    zoom = zoom or default_zoom(height)
    cols = max(1, min(nrow, n))
    rows = -(-n // cols)
    return (rows * (height * zoom + pad) + pad) * (cols * (width * zoom + pad) + pad)


def check_picture_size(pixels: int, zoom: int | None) -> None:
    """Refuse, before drawing, a picture too large to hold in memory (a mistyped ``--zoom``)."""
    if zoom is not None and zoom < 1:
        raise VaetoolError(f"--zoom must be at least 1, not {zoom}.")
    if pixels > MAX_PICTURE_PIXELS:
        # With --zoom 1 (or none given) it is the number of images that is too large, not the zoom.
        remedy = "choose a smaller --zoom" if zoom and zoom > 1 else "draw fewer images (-n, --steps)"
        raise VaetoolError(f"{'--zoom ' + str(zoom) if zoom else 'This picture'} would draw {pixels:,} pixels; "
                           f"the limit is {MAX_PICTURE_PIXELS:,}, so {remedy}.")


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 image array as PNG, atomically."""
    data = png_bytes(array)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def to_tensor(image, shape: tuple[int, int, int]):
    """A PIL image as a uint8 ``(C, H, W)`` tensor with the given channels and size."""
    import torch
    from PIL import Image

    channels, height, width = shape
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent drawings are meant to be seen on white: composite before dropping alpha.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def open_image(path, name: str | None = None, max_pixels: int | None = None):
    """Open an image file (a path or a binary file object) with PIL; one clear sentence if it is not
    an image, or if it has more than ``max_pixels`` pixels. ``name`` is what the message calls it."""
    from PIL import Image, UnidentifiedImageError

    name = name or str(path)
    try:
        with warnings.catch_warnings():  # PIL's warning about large images: vaetool's own limit is max_pixels
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise VaetoolError(f"{name} is {image.width}×{image.height} pixels; at most {max_pixels:,} are read.")
            image.load()
        return image
    except UnidentifiedImageError as exc:
        raise VaetoolError(f"{name} is not an image file that vaetool can read (PNG, JPEG, BMP, GIF, WebP or TIFF).") from exc
    except (OSError, Image.DecompressionBombError) as exc:
        raise VaetoolError(f"{name} is not an image file that vaetool can read ({exc}).") from exc


def background(images) -> str:
    """``"dark"`` or ``"light"``: the mean of the border pixels of uint8 or [0, 1] images ``(N, C, H, W)``."""
    import torch

    images = torch.as_tensor(images).float()
    scale = 255.0 if images.max() > 1 else 1.0
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    return "light" if border.mean() / scale > 0.5 else "dark"


def image_files(paths) -> list[Path]:
    """The image files named by ``paths``, folders expanded (sorted); a clear error for anything else."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise VaetoolError(f"The folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            if path.exists():  # a pipe, device or socket
                raise no_file(path, "image file")
            raise VaetoolError(f"There is no file or folder {path}.")
    return files


def load_images(paths, shape: tuple[int, int, int], invert: bool | None = None,
                model_background: str | None = None):
    """Image files as a float tensor ``(N, C, H, W)`` in [0, 1] shaped for a model, and their names.

    Any size and colour is converted to the model's channels and size. ``invert=None`` inverts an
    image whose background (border) is light when the model was trained on dark-background data, as
    for black-ink drawings fed to an MNIST model, and the other way round; True/False forces it.
    """
    import torch

    files = image_files(paths)
    images = torch.stack([to_tensor(open_image(f), shape) for f in files]).float() / 255
    return match_background(images, invert, model_background), [f.name for f in files]


def match_background(images, invert: bool | None = None, model_background: str | None = None):
    """Float images ``(N, C, H, W)`` in [0, 1], each inverted when ``invert`` says so or, with
    ``invert=None``, when its background differs from ``model_background`` (see :func:`load_images`)."""
    for i in range(len(images)):
        flip = invert if invert is not None else (
            model_background is not None and background(images[i:i + 1]) != model_background)
        if flip:
            images[i] = 1 - images[i]
    return images


def gif_bytes(frames: list[np.ndarray], fps: float = 12.0) -> bytes:
    """The bytes of an animated GIF that loops forever, ``fps`` frames per second."""
    import imageio.v3 as iio

    if not MIN_FPS <= fps <= MAX_FPS:
        raise VaetoolError(f"The GIF's frame rate (--fps) must lie in {MIN_FPS:g} to {MAX_FPS:g} frames a second, not {fps:g}.")

    return iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)


def save_gif(frames: list[np.ndarray], path: str | Path, fps: float = 12.0) -> None:
    """An animated GIF that loops forever, ``fps`` frames per second, written atomically."""
    data = gif_bytes(frames, fps)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def png_bytes(array: np.ndarray) -> bytes:
    """The bytes of a PNG of a uint8 image array."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def with_row_labels(array: np.ndarray, labels: list[str], rows: int, pad: int = 2) -> np.ndarray:
    """A grid from :func:`grid` with a text label at the left of each of its ``rows`` rows."""
    from PIL import Image, ImageDraw

    height = array.shape[0]
    pitch = (height - pad) / rows
    font = _font(int(max(10, min(18, pitch * 0.3))))
    width = int(max(font.getlength(text) for text in labels)) + 12
    canvas = Image.new("RGB", (width + array.shape[1], height), (255, 255, 255))
    canvas.paste(Image.fromarray(array).convert("RGB"), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for r, text in enumerate(labels):
        draw.text((6, pad + r * pitch + (pitch - pad) / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(canvas)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def captioned_grid(images, captions: list[str], nrow: int = 8, zoom: int | None = None, pad: int = 2) -> np.ndarray:
    """A grid like :func:`grid` with each image's caption (one or more lines) written under it."""
    from PIL import Image, ImageDraw

    tiles = [grid(images[i:i + 1], nrow=1, zoom=zoom, pad=0) for i in range(len(images))]
    h, w = tiles[0].shape[:2]
    font_size = int(max(9, min(14, w * 0.14)))
    font = _font(font_size)
    lines = max(text.count("\n") + 1 for text in captions) if captions else 0
    line_height = font_size + 3
    cell_w = max(w, int(max((font.getlength(line) for text in captions for line in text.split("\n")), default=0)) + 4)
    cell_h = h + lines * line_height + 2
    cols = min(nrow, len(tiles))
    rows = -(-len(tiles) // cols)
    canvas = Image.new("RGB", (cols * (cell_w + pad) + pad, rows * (cell_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (tile, text) in enumerate(zip(tiles, captions)):
        r, k = divmod(i, cols)
        left, top = pad + k * (cell_w + pad), pad + r * (cell_h + pad)
        canvas.paste(Image.fromarray(tile).convert("RGB"), (left + (cell_w - w) // 2, top))
        for j, line in enumerate(text.split("\n")):
            draw.text((left + cell_w / 2, top + h + 2 + j * line_height), line, fill=(0, 0, 0), font=font, anchor="mt")
    return np.asarray(canvas)


def class_labels(config: dict, classes) -> list[str]:
    """Row labels for a model's classes: the class name, or its number when the names are the numbers."""
    names = list(config.get("class_names") or [])
    return [names[k] if k < len(names) and names[k] != str(k) else f"class {k}" for k in classes]
