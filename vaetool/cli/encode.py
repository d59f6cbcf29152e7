"""``vaetool encode``: images, folders or a dataset split → posterior means and log-variances."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.common import check_output, handle_errors, labels_for, open_model
from vaetool.errors import VaetoolError


class Method(str, Enum):
    auto = "auto"
    pca = "pca"
    tsne = "tsne"


@handle_errors
def encode(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Image files or folders of images.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Latents as .npy, .csv, .json or .safetensors. \\[default: print a table]",
                                                   rich_help_panel=options.OUTPUT_PANEL)] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Encode a dataset split instead of files, e.g. mnist.")] = None,
    split: Annotated[str, typer.Option(help="train or test, with --data.")] = "test",
    limit: Annotated[Optional[int], typer.Option(help="Encode only the first N images of the split.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where datasets are stored. \\[default: $VAETOOL_DATA, else the user cache]")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw the latent space, coloured by label, as a PNG.",
                                                 rich_help_panel=options.OUTPUT_PANEL)] = None,
    method: Annotated[Method, typer.Option(help="How to project to 2-D for --plot: the latent itself if 2-D, else PCA (auto), or t-SNE.",
                                           rich_help_panel=options.OUTPUT_PANEL)] = Method.auto,
    label: options.Label = None,
    invert: options.Invert = None,
    model: options.Model = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    seed: options.Seed = 0,
) -> None:
    """Encode images into the posterior q(z|x): its mean and log-variance per image.

    A model with a discrete (vq) latent writes each image's code indices instead, and --plot
    draws the codebook vectors they choose.

      vaetool encode digit.png drawings/ -o latents.json
      vaetool encode --data mnist --split test -o latents.npy --plot latents.png --method tsne
    """
    import numpy as np
    import torch

    from vaetool import images, latentfile, metrics, plots
    from vaetool.training import build_dataset

    if output is not None:
        latentfile.check_suffix(output)
    if plot is not None:
        check_output(plot, (".png",))
    if bool(inputs) == bool(data):
        raise VaetoolError("Give image files or folders, or --data with a dataset name, but not both or neither.")
    vae = open_model(model, runs_dir, device)
    if data:
        from vaetool.datasets import data_root

        # The model's own dataset comes with the options it was trained on (size, subset, …).
        recorded = vae.config.get("dataset_options", {}) if data == vae.config.get("dataset") else {}
        dataset, _ = build_dataset(data, recorded)
        if tuple(dataset.image_shape) != vae.input_shape:
            raise VaetoolError(f"{data} has {tuple(dataset.image_shape)} images but the model takes {vae.input_shape}.")
        chosen = dataset.load(split, data_root(data_dir))
        count = len(chosen) if limit is None else min(limit, len(chosen))
        x = chosen.images[:count].float() / 255
        y = chosen.labels[:count] if chosen.labels is not None else None
        names = [f"{data}/{split}/{i}" for i in range(count)]
    else:
        x, names = images.load_images(inputs, vae.input_shape, invert, vae.config.get("background"))
        y = labels_for(vae, label, len(x))
    condition = y if vae.conditional else None
    if vae.conditional and condition is None:
        raise VaetoolError(f"This model is conditional: give --label, a class from 0 to {vae.num_classes - 1}.")
    labels = y.cpu().numpy() if y is not None else None
    if vae.discrete:
        codes = metrics.codes(vae, x, condition)
        result = latentfile.Latents.of_codes(codes.numpy(), labels, names)
        # What the decoder sees: the codebook vectors the codes choose, one row per image.
        with torch.no_grad():
            mean = vae.latent.embed(codes.to(vae.device)).double().cpu().numpy()
    else:
        means, log_vars = metrics.posterior_moments(vae, x, condition)
        mean, log_var = means.float().numpy(), log_vars.float().numpy()
        if vae.autoencoder:
            log_var = np.full_like(mean, np.nan)  # a deterministic encoder has no variance
        result = latentfile.Latents(mean, log_var, labels, names)
    if output is not None:
        latentfile.write(output, result)
        what = f"codes of {result.rows.shape[1]} positions" if result.discrete else f"latents of dimension {mean.shape[1]}"
        typer.echo(f"Wrote {len(result.rows)} {what} to {output}")
    else:
        _print_table(result)
    if plot is not None:
        class_names = vae.config.get("class_names") or None
        used = plots.latent_scatter(mean, labels, plot, method=method.value, class_names=class_names, seed=seed)
        typer.echo(f"Wrote {plot} ({used})")


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
