"""``vaetool traverse``: vary one latent dimension at a time and watch what it controls."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.common import (check_output, condition_label, dataset_images, handle_errors, import_torch,
                                labels_for, literal, open_model, refuse_discrete)
from vaetool.errors import VaetoolError


@handle_errors
def traverse(
    image: Annotated[Optional[Path], typer.Argument(help="Start from this image's posterior mean. \\[default: z = 0]",
                                                    show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help=".png grid (a row per dimension), or .gif with every row moving together.",
                                         rich_help_panel=options.OUTPUT_PANEL)] = Path("traverse.png"),
    dims: Annotated[Optional[str], typer.Option(help="Dimensions to show, e.g. 0,3,5. \\[default: up to 10, most informative first]")] = None,
    span: Annotated[float, typer.Option("--range", help="Each dimension goes from its start value −R to +R.")] = 3.0,
    steps: Annotated[int, typer.Option(help="Values per dimension.")] = 9,
    bounce: options.Bounce = True,
    fps: options.Fps = 8.0,
    data: options.OptionalPickData = None,
    label: options.PickLabel = None,
    index: options.PickIndex = None,
    split: options.PickSplit = "test",
    data_dir: options.DataDir = None,
    invert: options.Invert = None,
    model: options.Model = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    allow_nonfinite: options.AllowNonfinite = False,
    layer: options.Layer = None,
    zoom: options.Zoom = None,
    factors: Annotated[Optional[bool], typer.Option(
        "--factors/--no-factors", show_default=False,
        help="Label each row with the ground-truth factor its dimension captures best. \\[default: when the "
             "model's dataset has factors, e.g. shapes; --factors insists]",
        rich_help_panel=options.OUTPUT_PANEL)] = None,
) -> None:
    """Traverse latent dimensions one at a time around a start point (Higgins et al. 2017).

    Rows are ordered by each dimension's average KL on the test data (recorded at training): the
    informative dimensions first; dimensions with KL ≈ 0 are unused and change nothing. When the
    model's dataset has ground-truth factors (shapes), each row also names the factor its dimension
    captures best, with the mutual information normalised by the factor's entropy (1: all of it).

      vaetool traverse -o traverse.png
      vaetool traverse digit.png --dims 0,1,2 --range 2 -o traverse.gif
      vaetool traverse --data mnist --label 3 -o traverse-3.png     [dim]# from the test split's first 3[/dim]
    """
    torch = import_torch()

    from vaetool import disentanglement, images, latents

    check_output(output, (".png", ".gif"), inputs=[image] if image else ())
    if steps < 2:
        raise VaetoolError(f"--steps must be at least 2, not {steps}.")
    if not 0 < span <= 1e6:  # inf (or 1e300, past float32) would decode nothing but NaN
        raise VaetoolError(f"--range must be positive and at most 1e6, not {span:g}.")
    if data is not None and image is not None:
        raise VaetoolError("Start from an image file, or from --data with --label or --index, not both.")
    vae = open_model(model, runs_dir, device, allow_nonfinite, layer)
    refuse_discrete(vae, "traverse moves one continuous latent dimension at a time",
                    "have no direction to move along; change an encoded image's codes and decode them instead")
    if data is not None:
        x, y, picked = dataset_images(vae, data, split=split, label=label, index=index, data_dir=data_dir, per_label=1)
        if len(x) != 1:
            raise VaetoolError(f"traverse starts from one image; {len(x)} were picked ({', '.join(picked.names)}).")
    else:
        y = labels_for(vae, condition_label(label, index), 1)
    start_from = picked.names[0] if data is not None else "the image" if image is not None else "z = 0"
    with torch.no_grad():
        if data is not None:
            start = vae.encode(x, y).mean[0]
        elif image is not None:
            x, _ = images.load_images([image], vae.input_shape, invert, vae.config.get("background"))
            if len(x) != 1:
                raise VaetoolError(f"traverse starts from one image; {image} holds {len(x)}.")
            start = vae.encode(x.to(vae.device), y).mean[0]
        else:
            start = torch.zeros(vae.latent_dim, device=vae.device)
        kl = vae.recorded_kl_per_dim()  # None for a prior without a per-dimension KL
        if kl is None and (image is not None or data is not None):
            kl = latents.kl_per_dimension(vae, x, y).tolist()
        if dims is not None:
            chosen = literal(dims)
            chosen = chosen if isinstance(chosen, list) else [chosen]
            if not all(isinstance(d, int) for d in chosen):
                raise VaetoolError(f"--dims takes comma-separated dimension numbers, not {dims!r}.")
        else:
            order = sorted(range(vae.latent_dim), key=lambda d: -kl[d]) if kl else list(range(vae.latent_dim))
            chosen = order[:10]
        offsets = torch.linspace(-span, span, steps, device=vae.device)
        grid_z = latents.traversal(start, chosen, torch.zeros_like(offsets))  # validates the dimensions
        grid_z[torch.arange(len(chosen)), :, chosen] = start[chosen][:, None] + offsets
        flat = grid_z.reshape(-1, vae.latent_dim)
        pictures = vae.decode(flat, y.expand(len(flat)) if y is not None else None)
    pictures = pictures.reshape(len(chosen), steps, *pictures.shape[1:])
    captured = disentanglement.captured_factors(vae, data_dir, required=bool(factors)) if factors is not False else None
    names = [f"z{d}" + (f"  KL {kl[d]:.2f}" if kl else "") + (f"  {captured[d]}" if captured else "") for d in chosen]
    if output.suffix.lower() == ".png":
        array = images.grid(pictures.flatten(0, 1), nrow=steps, zoom=zoom)
        images.save_png(images.with_row_labels(array, names, rows=len(chosen)), output)
    else:
        order = list(range(steps)) + (list(range(steps - 2, 0, -1)) if bounce else [])
        per_frame = images.grid_pixels(len(chosen), *pictures.shape[-2:], min(len(chosen), 5), zoom)
        images.check_picture_size(len(order) * per_frame, zoom)
        frames = [images.grid(pictures[:, i], nrow=min(len(chosen), 5), zoom=zoom) for i in order]
        images.save_gif(frames, output, fps)
    shown = [f"{d} ({captured[d].split()[0]})" if captured else str(d) for d in chosen]
    typer.echo(f"Wrote {output}: dimensions {', '.join(shown)} from "
               f"{start_from}, ±{span:g} in {steps} steps")
