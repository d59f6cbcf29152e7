"""``vaetool interpolate``: a path through latent space between images (or latents)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.common import (check_output, condition_label, dataset_images, handle_errors, import_torch,
                                labels_for, layer_note, literal, open_model, read_latents, write_pictures)
from vaetool.errors import VaetoolError


class Method(str, Enum):
    slerp = "slerp"
    lerp = "lerp"


@handle_errors
def interpolate(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Two or more images (or latent files); the path goes through them in order.",
                                                           show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help=".gif animation, or .png strip.",
                                         rich_help_panel=options.OUTPUT_PANEL)] = Path("interpolation.gif"),
    z: Annotated[Optional[list[str]], typer.Option("--z", help="A latent given inline instead of an image (repeatable).")] = None,
    steps: Annotated[int, typer.Option(help="Images per segment, both ends included.")] = 10,
    method: Annotated[Method, typer.Option(help="slerp keeps the path at typical prior norms; lerp is a straight line.")] = Method.slerp,
    bounce: options.Bounce = True,
    fps: options.Fps = 12.0,
    data: options.OptionalPickData = None,
    label: options.PickLabel = None,
    index: options.PickIndex = None,
    split: options.PickSplit = "test",
    seed: Annotated[Optional[int], typer.Option(help="With --data --label: random images of each label, drawn with "
                                                     "this seed. \\[default: the first of each]",
                                                rich_help_panel=options.DATA_PANEL)] = None,
    data_dir: options.DataDir = None,
    invert: options.Invert = None,
    model: options.Model = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    allow_nonfinite: options.AllowNonfinite = False,
    layer: options.Layer = None,
    zoom: options.Zoom = None,
) -> None:
    """Interpolate between the posterior means of images and decode the path.

    For a model with a discrete (vq) latent the path goes between the images' codes, swapping one
    position's code at a time (--method does not apply).

      vaetool interpolate a.png b.png -o anim.gif
      vaetool interpolate --data mnist --label 2,7 -o two-to-seven.gif   [dim]# the first 2 and 7 of the test split[/dim]
      vaetool interpolate --data mnist --index 0,1,2 -o strip.png
      vaetool interpolate a.png b.png c.png --steps 16 --method lerp -o strip.png
      vaetool interpolate a.png b.png -m runs/mlp-mnist-ae -o ae.gif     [dim]# the same for an autoencoder[/dim]
    """
    torch = import_torch()

    from vaetool import images, latentfile, latents

    check_output(output, (".gif", ".png"), inputs=inputs)
    if data is not None and inputs:
        raise VaetoolError("Give image files, or --data with --label or --index, not both.")
    condition = condition_label(label, index) if data is None else None
    vae = open_model(model, runs_dir, device, allow_nonfinite, layer)

    def point(encoded):  # where a path starts or ends: the posterior mean, or a discrete latent's codes
        return vae.latent.codes(encoded) if vae.discrete else encoded.mean

    points = []
    if data is not None:
        x, y, picked = dataset_images(vae, data, split=split, label=label, index=index, data_dir=data_dir,
                                      per_label=1, seed=seed)
        with torch.no_grad():
            points.append(point(vae.encode(x, y)))
        # A conditional model's whole path is decoded with the first image's class.
        condition = int(y[0]) if y is not None else None
    image_paths = [p for p in inputs or [] if p.suffix.lower() not in latentfile.SUFFIXES]
    with torch.no_grad():
        for path in inputs or []:  # keep the order the user gave
            if path.suffix.lower() in latentfile.SUFFIXES:
                points.append(torch.from_numpy(read_latents(vae, path).rows).to(vae.device))
            else:
                x, _ = images.load_images([path], vae.input_shape, invert, vae.config.get("background"))
                points.append(point(vae.encode(x.to(vae.device), labels_for(vae, condition, len(x)))))
        for text in z or []:
            row = literal(text)
            row = row if isinstance(row, list) else [row]
            kind = (int,) if vae.discrete else (int, float)
            if not all(isinstance(v, kind) and not isinstance(v, bool) for v in row):
                raise VaetoolError(f"--z takes comma-separated {'whole numbers (codes)' if vae.discrete else 'numbers'}, "
                                   f"not {text!r}.")
            points.append(torch.tensor([row], dtype=torch.long if vae.discrete else torch.float32, device=vae.device))
        if not points:
            raise VaetoolError("Give two or more images (or latent files, or --z values) to interpolate between.")
        for point in points:
            if point.shape[-1] != vae.latent_dim:
                raise VaetoolError(f"The model's latent has {vae.latent_dim} dimensions{layer_note(vae)}; a given latent "
                                   f"has {point.shape[-1]}.")
        points = torch.cat(points)
        if len(points) < 2:
            raise VaetoolError(f"Interpolation needs two or more points; got {len(points)}"
                               f"{' (' + str(len(image_paths)) + ' image)' if image_paths else ''}.")
        if vae.discrete:
            size = vae.latent.codebook_size
            if points.min() < 0 or points.max() >= size:
                raise VaetoolError(f"Codes must lie in 0 to {size - 1} for this model's codebook of {size}.")
            route = vae.latent.embed(latents.code_path(points, steps))
        else:
            route = latents.path(points, steps, method.value)
        frames = vae.decode(route, labels_for(vae, condition, len(route)))
    if output.suffix.lower() == ".gif":
        if bounce:
            frames = torch.cat([frames, frames.flip(0)[1:-1]])
        write_pictures(frames, output, zoom, fps)
    else:
        write_pictures(frames, output, zoom, nrow=len(frames) if len(frames) <= 32 else steps)
    ends = f" ({', '.join(picked.names)})" if data is not None else ""
    typer.echo(f"Wrote {len(frames)} frames to {output}{ends}")
