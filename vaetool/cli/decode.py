"""``vaetool decode``: latents from a file or the command line → images."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.output import counted
from vaetool.cli.common import (check_output, generator, handle_errors, import_torch, labels_for, layer_note,
                                literal, open_model, read_latents, write_pictures)
from vaetool.errors import VaetoolError


@handle_errors
def decode(
    latents: Annotated[Optional[Path], typer.Argument(help="A latent file written by encode (.npy, .csv, .json, .safetensors).",
                                                      show_default=False)] = None,
    z: Annotated[Optional[list[str]], typer.Option("--z", help="A latent given inline, e.g. --z 0.5,-1.2,0,... (repeatable); for a vq model, code indices, e.g. --z 3,17,0,...")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help=".png grid, or .gif with one image per frame.",
                                         rich_help_panel=options.OUTPUT_PANEL)] = Path("decoded.png"),
    label: options.Label = None,
    sample_pixels: Annotated[bool, typer.Option("--sample-pixels", help="Draw pixels from p(x|z) instead of showing its mean.")] = False,
    model: options.Model = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    allow_nonfinite: options.AllowNonfinite = False,
    layer: options.Layer = None,
    seed: options.Seed = 0,
    zoom: options.Zoom = None,
    fps: options.Fps = 4.0,
) -> None:
    """Decode latents into images: the mean of p(x|z) (or a sample with --sample-pixels).

    A model with a discrete (vq) latent decodes code indices: a file written by its encode, or --z
    with one whole number per position.

      vaetool encode digits/ -o z.json && vaetool decode z.json -o back.png
      vaetool decode --z 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0 -o zero.png
    """
    import numpy as np
    torch = import_torch()

    check_output(output, (".png", ".gif"), inputs=[latents] if latents else ())
    if (latents is None) == (not z):
        raise VaetoolError("Give a latent file or --z values, not both or neither.")
    vae = open_model(model, runs_dir, device, allow_nonfinite, layer)
    file_labels = None
    if latents is not None:
        read = read_latents(vae, latents)
        values = read.rows
        if (read.labels >= 0).all():
            file_labels = read.labels
    else:
        rows = [literal(text) for text in z]
        rows = [row if isinstance(row, list) else [row] for row in rows]
        if vae.discrete and any(not all(isinstance(v, int) and not isinstance(v, bool) for v in row) for row in rows):
            raise VaetoolError(f"This model's {vae.config['latent']} latent takes code indices: --z takes "
                               "comma-separated whole numbers, e.g. --z 3,17,0.")
        if any(not all(isinstance(v, (int, float)) for v in row) for row in rows):
            raise VaetoolError("--z takes comma-separated numbers, e.g. --z 0.5,-1.2.")
        if len({len(row) for row in rows}) > 1:
            raise VaetoolError("Every --z must have the same number of values.")
        values = np.array(rows, dtype=np.int64 if vae.discrete else np.float32)
    what = "positions" if vae.discrete else "dimensions"
    if values.ndim != 2:
        raise VaetoolError(f"Latents must be one row per image, (N, {vae.latent_dim}); these have shape {values.shape}.")
    if values.shape[1] != vae.latent_dim:
        raise VaetoolError(f"The model's latent has {vae.latent_dim} {what}{layer_note(vae)}; these latents have "
                           f"{values.shape[1]}.")
    if vae.discrete:
        size = vae.latent.codebook_size
        if len(values) and (values.min() < 0 or values.max() >= size):
            raise VaetoolError(f"Codes must lie in 0 to {size - 1} for this model's codebook of {size}.")
        zs = vae.latent.embed(torch.from_numpy(values).to(vae.device))
    elif not np.isfinite(values).all():
        raise VaetoolError("The latents contain values that are not finite numbers.")
    else:
        zs = torch.from_numpy(values).to(vae.device)
    if vae.conditional and label is None and file_labels is not None:
        y = torch.from_numpy(file_labels).long().to(vae.device)
        labels_for(vae, int(y.max()), 1)  # refuses labels outside the model's classes
        labels_for(vae, int(y.min()), 1)
    else:
        y = labels_for(vae, label, len(zs))
    with torch.no_grad():
        pictures = vae.decode(zs, y, sample=sample_pixels, generator=generator(vae, seed))
    write_pictures(pictures, output, zoom, fps)
    typer.echo(f"Wrote {counted(len(pictures), 'image')} to {output}")
