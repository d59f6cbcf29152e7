"""``vaetool encode``: images, folders or a dataset split → posterior means and log-variances."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool import picking
from vaetool.cli import options
from vaetool.cli.output import counted
from vaetool.cli.common import check_output, condition_label, handle_errors, import_torch, labels_for, open_model
from vaetool.errors import VaetoolError


class Method(str, Enum):
    auto = "auto"
    pca = "pca"
    tsne = "tsne"


@handle_errors
def encode(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Image files or folders of images.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Latents as .npy, .csv, .json or .safetensors. \\[default: print a table, unless --plot]",
                                                   rich_help_panel=options.OUTPUT_PANEL)] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Encode a dataset split instead of files, e.g. mnist.",
                                                rich_help_panel=options.DATA_PANEL)] = None,
    split: options.PickSplit = "test",
    label: options.PickLabel = None,
    index: options.PickIndex = None,
    limit: Annotated[Optional[int], typer.Option(help="Encode only the first N images of the split (of those --label picks).",
                                                 rich_help_panel=options.DATA_PANEL)] = None,
    data_dir: options.DataDir = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw the latent space, coloured by label, as a PNG (several models: side by side).",
                                                 rich_help_panel=options.OUTPUT_PANEL)] = None,
    method: Annotated[Method, typer.Option(help="How to project to 2-D for --plot: the latent itself if 2-D, else PCA (auto), or t-SNE.",
                                           rich_help_panel=options.OUTPUT_PANEL)] = Method.auto,
    annotate: Annotated[Optional[bool], typer.Option("--annotate/--no-annotate", help="Write each point's name (file name or dataset index) beside it in --plot. \\[default: for up to 50 image files]",
                                                     rich_help_panel=options.OUTPUT_PANEL)] = None,
    invert: options.Invert = None,
    model: options.Models = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    allow_nonfinite: options.AllowNonfinite = False,
    layer: options.Layer = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the -o file if it exists (never a model or checkpoint).",
                                        rich_help_panel=options.OUTPUT_PANEL)] = False,
    seed: options.Seed = 0,
) -> None:
    """Encode images into the posterior q(z|x): its mean and log-variance per image.

    A model with a discrete (vq) latent writes each image's code indices instead, and --plot
    draws the codebook vectors they choose.

      vaetool encode digit.png drawings/ -o latents.json --plot z.png
      vaetool encode --data mnist --split test -o latents.npy --plot latents.png --method tsne
      vaetool encode --data mnist --label 2,7 --limit 500 --plot z.png
      vaetool encode --data mnist --limit 2000 --plot z.png -m runs/a -m runs/b   [dim]# side by side[/dim]
    """
    import numpy as np
    torch = import_torch()

    from vaetool import images, latentfile, metrics, plots

    if output is not None:
        check_output(output, latentfile.SUFFIXES, force, inputs=inputs)
    if plot is not None and str(plot).startswith("-"):  # `--plot -o z.png`: the flag after it taken as its file
        raise VaetoolError(f"--plot takes the file to draw to, as in --plot z.png; it was given {str(plot)!r}, "
                           "the next flag.")
    if plot is not None:
        check_output(plot, (".png",), inputs=inputs)
    if plot is None and (method.value != "auto" or annotate is not None):  # else silently nothing to apply to
        flag = "--method" if method.value != "auto" else "--annotate or --no-annotate"
        raise VaetoolError(f"{flag} chooses how --plot draws the latent space; give --plot FILE.png with it.")
    if bool(inputs) == bool(data):
        raise VaetoolError("Give image files or folders, or --data with a dataset name, but not both or neither.")
    if limit is not None and limit < 1:
        raise VaetoolError(f"--limit must be at least 1, not {limit}.")
    models = model or [None]
    if len(models) > 1 and output is not None:
        raise VaetoolError("-o writes the latents of one model; give one --model, or only --plot for several.")
    condition = condition_label(label, index) if not data else None
    results = []
    for chosen_model in models:
        vae = open_model(chosen_model, runs_dir, device, allow_nonfinite, layer)
        if data:
            picked = picking.from_options(data, split=split, label=label, index=index, data_dir=data_dir, model=vae)
            count = len(picked) if limit is None else min(limit, len(picked))
            x = picked.floats()[:count]
            y = picked.labels[:count] if picked.labels is not None else None
            names = picked.names[:count]
        else:
            x, names = images.load_images(inputs, vae.input_shape, invert, vae.config.get("background"))
            y = labels_for(vae, condition, len(x))
        if vae.conditional and y is None:
            raise VaetoolError(f"This model is conditional: give --label, a class from 0 to {vae.num_classes - 1}.")
        labels = y.cpu().numpy() if y is not None else None
        if vae.discrete:
            codes = metrics.codes(vae, x, y if vae.conditional else None)
            # What --plot draws: the codebook vectors the codes choose, which the decoder sees.
            with torch.no_grad():
                chosen = vae.latent.embed(codes.to(vae.device)).double().cpu().numpy()
            results.append((vae, latentfile.Latents.of_codes(codes.numpy(), labels, names), chosen))
            continue
        means, log_vars = metrics.posterior_moments(vae, x, y if vae.conditional else None)
        mean, log_var = means.float().numpy(), log_vars.float().numpy()
        if not (np.isfinite(mean).all() and (vae.autoencoder or np.isfinite(log_var).all())):
            raise VaetoolError(f"{_model_name(vae)} encodes these images to values that are not finite numbers: "
                               "its weights, finite as they are, overflow float32 on the way.")
        if vae.autoencoder:
            log_var = np.full_like(mean, np.nan)  # a deterministic encoder has no variance
        results.append((vae, latentfile.Latents(mean, log_var, labels, names), mean))
    fewest = 3 if method.value == "tsne" else 2  # t-SNE's perplexity must stay below the count
    if plot is not None and len(results[0][1].names) < fewest:
        raise VaetoolError(f"--plot {'with --method tsne ' if fewest == 3 else ''}needs at least {fewest} images, "
                           f"not {len(results[0][1].names)}.")
    if output is not None:
        written = results[0][1]
        latentfile.write(output, written)
        what = counted(len(written.rows), "code" if written.discrete else "latent")
        what += " of" if written.discrete else " of dimension"
        unit = " positions" if written.discrete else ""
        typer.echo(f"Wrote {what} {written.rows.shape[1]}{unit} to {output}")
    elif len(results) == 1 and plot is None:  # a plot alone is what was asked for: no table of 2,000 rows
        _print_table(results[0][1])
    if plot is not None:
        show_names = annotate if annotate is not None else (not data and len(results[0][1].names) <= 50)
        class_names = results[0][0].config.get("class_names") or None
        panels = [(_model_name(vae) if len(results) > 1 else "", points, r.labels, r.names if show_names else None)
                  for vae, r, points in results]
        used = plots.latent_scatters(panels, plot, method=method.value, class_names=class_names, seed=seed)
        typer.echo(f"Wrote {plot} ({', '.join(sorted(set(used)))}{f', {len(results)} models' if len(results) > 1 else ''})")


def _model_name(vae) -> str:
    path = vae.source
    return path.parent.name if path.name == "model.safetensors" else path.stem


def _print_table(latents) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = latents.rows
    shown = min(rows.shape[1], 8)
    title = f"codes ({rows.shape[1]} positions)" if latents.discrete else f"posterior means ({rows.shape[1]}-D)"
    table = Table(title=title, title_justify="left")
    table.add_column("image")
    table.add_column("label")
    for d in range(shown):
        table.add_column(f"{'c' if latents.discrete else 'z'}{d}", justify="right")
    if rows.shape[1] > shown:
        table.add_column("…")
    for i in range(min(len(rows), 50)):
        label = "" if latents.labels[i] < 0 else str(int(latents.labels[i]))
        cells = [str(int(v)) if latents.discrete else f"{v:+.2f}" for v in rows[i, :shown]]
        table.add_row(latents.names[i], label, *cells, *([""] if rows.shape[1] > shown else []))
    Console().print(table)
