"""``vaetool sample``: images decoded from the prior."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from vaetool.cli import options
from vaetool.cli.common import (check_output, generator, handle_errors, import_torch, labels_for, open_model,
                                refuse_discrete, write_pictures)
from vaetool.errors import VaetoolError


@handle_errors
def sample(
    n: Annotated[int, typer.Option("-n", "--num", help="How many samples (with --manifold: -n 400 is a 20×20 grid).")] = 64,
    output: Annotated[Path, typer.Option("--output", "-o", help=".png grid, or .gif: a smooth walk through the samples.",
                                         rich_help_panel=options.OUTPUT_PANEL)] = Path("samples.png"),
    temperature: Annotated[float, typer.Option(help="Scale of the prior: z ~ N(0, T²I); for a vq latent it divides the code prior's logits. Below 1 trades variety for quality.")] = 1.0,
    label: options.Label = None,
    manifold: Annotated[bool, typer.Option("--manifold", help="For a 2-D latent: decode a grid over the prior's quantiles.")] = False,
    sample_pixels: Annotated[bool, typer.Option("--sample-pixels", help="Draw pixels from p(x|z) instead of showing its mean.")] = False,
    model: options.Model = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    allow_nonfinite: options.AllowNonfinite = False,
    layer: options.Layer = None,
    seed: options.Seed = 0,
    zoom: options.Zoom = None,
    fps: options.Fps = 12.0,
) -> None:
    """Decode samples from the prior p(z) into a grid (or a GIF that walks between them).

    A conditional model draws the class given by --label, or one row per class without it. A model
    with a discrete (vq) latent draws codes from its prior over codes; its GIF shows one sample a frame.

      vaetool sample -n 64 -o samples.png
      vaetool sample --label 3 --temperature 0.8
      vaetool sample --manifold -n 400 -o manifold.png     [dim]# models with --latent-dim 2[/dim]
    """
    torch = import_torch()

    from vaetool import latents

    check_output(output, (".png", ".gif"))
    if n < 1:
        raise VaetoolError(f"-n must be at least 1, not {n}.")
    if not 0 < temperature <= 1e6:  # inf would decode nothing but NaN
        raise VaetoolError(f"--temperature must be positive and at most 1e6, not {temperature:g}.")
    vae = open_model(model, runs_dir, device, allow_nonfinite, layer)
    rng = generator(vae, seed)
    nrow = 8
    if manifold:
        refuse_discrete(vae, "--manifold lays a grid over a continuous 2-D latent", "form no such grid")
        if vae.latent_dim != 2:
            raise VaetoolError(f"--manifold needs a model with a 2-D latent; this one has {vae.latent_dim} dimensions.")
        if vae.config["prior"] != "standard-normal":
            raise VaetoolError(f"--manifold lays its grid on the standard normal's quantiles; this model's prior is "
                               f"{vae.config['prior']}.")
        side = max(2, math.isqrt(n))
        z, nrow = latents.manifold(side, device=vae.device), side
        y = labels_for(vae, label, len(z))
    elif vae.conditional and label is None:  # one row per class, the same z in every row
        per_class = max(1, n // vae.num_classes)
        z = vae.sample_latents(per_class, rng, temperature).repeat(vae.num_classes, 1)
        y = torch.arange(vae.num_classes, device=vae.device).repeat_interleave(per_class)
        nrow = per_class
    else:
        z = vae.sample_latents(n, rng, temperature)
        y = labels_for(vae, label, n)
    with torch.no_grad():
        if output.suffix.lower() == ".gif" and not vae.discrete:
            z = latents.path(torch.cat([z, z[:1]]), steps=12, method="slerp")  # a loop through every sample
            y = y[:1].expand(len(z)) if y is not None else None
        pictures = vae.decode(z, y, sample=sample_pixels, generator=rng)
    if vae.conditional and label is None and not manifold and output.suffix.lower() == ".png":
        from vaetool import images

        array = images.grid(pictures, nrow=nrow, zoom=zoom)
        images.save_png(images.with_row_labels(array, images.class_labels(vae.config, range(vae.num_classes)),
                                               rows=vae.num_classes), output)
    else:
        write_pictures(pictures, output, zoom, fps, nrow=nrow)
    typer.echo(f"Wrote {output}")
