"""``vaetool compare``: trained models side by side on the same test data."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.common import handle_errors
from vaetool.errors import VaetoolError


@handle_errors
def compare(
    models: Annotated[list[Path], typer.Argument(help="Model files or run directories (e.g. runs/*).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write a report: .html (self-contained), .md (images beside it) or .json.",
                                                   rich_help_panel=options.OUTPUT_PANEL)] = None,
    iw_samples: Annotated[int, typer.Option(help="Importance samples K for the log p(x) estimate (the literature uses 5000; 0 skips it).")] = 100,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N test images. \\[default: the whole test split]")] = None,
    sample_quality: Annotated[bool, typer.Option("--sample-quality/--no-sample-quality", help="Score samples with a classifier trained once per dataset (labelled datasets).")] = True,
    disentanglement: Annotated[bool, typer.Option("--disentanglement/--no-disentanglement", help="β-VAE, FactorVAE, MIG, DCI and SAP scores, for datasets with ground-truth factors (shapes).")] = True,
    disentanglement_scale: Annotated[float, typer.Option(help="Multiplies disentanglement_lib's sample counts (1: the published protocol, over an hour per model on a CPU; 0.05 takes minutes).")] = 1.0,
    pairs: Annotated[Optional[str], typer.Option(help="Interpolate between test images of these labels, one row per pair, e.g. 2:7,1:8 (the first image of each label). \\[default: the first two test images]")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where datasets are stored. \\[default: $VAETOOL_DATA, else the user cache]")] = None,
    device: options.Device = "auto",
    allow_nonfinite: options.AllowNonfinite = False,
    seed: options.Seed = 0,
) -> None:
    """Compare models on the same held-out data: a table, verdicts, and (with -o) pictures and plots.

    All numbers are nats per test image. The ELBO uses β = 1 whatever β a model was trained with,
    so models are comparable; "agg. KL" is how far the aggregate posterior is from the prior; FD is a
    Fréchet distance of classifier features between samples and test images (lower is better).

      vaetool compare runs/linear runs/mlp runs/conv
      vaetool compare runs/* -o report.html --iw-samples 1000
      vaetool compare runs/ae runs/vae -o report.md --pairs 2:7,1:8
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from vaetool import compare as comparison
    from vaetool import devices, picking, registry, report
    from vaetool.datasets import data_root

    if output is not None:
        report.check_format(output)
    if limit is not None and limit < 1:
        raise VaetoolError(f"--limit must be at least 1, not {limit}.")
    if not disentanglement_scale > 0:
        raise VaetoolError(f"--disentanglement-scale must be positive, not {disentanglement_scale}.")
    if iw_samples < 0:
        raise VaetoolError(f"--iw-samples must be 0 or more, not {iw_samples}.")
    pair_labels = _pairs(pairs)
    console = Console()
    entries = comparison.load_entries(models, devices.resolve(device), allow_nonfinite=allow_nonfinite)
    config = entries[0].config
    dataset, _ = registry.build("dataset", config["dataset"], config.get("dataset_options", {}))
    root = data_root(data_dir)
    test = dataset.load("test", root)
    count = len(test) if limit is None else min(limit, len(test))
    test_images = test.images[:count].float() / 255
    test_labels = test.labels[:count] if test.labels is not None else None
    ends = None
    if pair_labels is not None:
        ends = []
        for a, b in pair_labels:
            picked = picking.pick(dataset, test, name=config["dataset"], labels=[a, b], per_label=1)
            ends.append((picked.floats(), picked.labels, f"{a} to {b} (#{picked.indices[0]}, #{picked.indices[1]})"))
    needs_train = any(e.config["architecture"] == "linear" and e.config["likelihood"] == "gaussian" for e in entries)
    train_images = dataset.load("train", root).images.float() / 255 if needs_train else None

    classifier, accuracy = None, None
    if sample_quality and dataset.num_classes:
        from vaetool import classifier as quality

        with console.status(f"Loading (or training, once) the {config['dataset']} classifier for sample quality…"):
            classifier, info = quality.load_or_train(config["dataset"], config.get("dataset_options", {}),
                                                     data_dir=data_dir, device=str(entries[0].model.device))
        accuracy = info.get("accuracy")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        tasks = {}

        def progress(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=done)

        comparison.evaluate(entries, test_images, test_labels, iw_samples=iw_samples, seed=seed,
                            train_images=train_images, classifier=classifier, progress=progress,
                            disentanglement_scale=disentanglement_scale if disentanglement else None, data_dir=data_dir)
    verdicts = comparison.verdicts(entries)

    cols = comparison.columns(entries)
    table = Table(title=f"{len(entries)} models on {count:,} {config['dataset']} test images (nats per image)",
                  title_justify="left")
    table.add_column("model", style="bold")
    table.add_column("description")
    for _, heading, _, _ in cols:
        table.add_column(heading, justify="right")
    for e in entries:
        cells = []
        for key, _, fmt, direction in cols:
            value = e.numbers.get(key)
            text = "—" if value is None else fmt.format(value)
            cells.append(f"[bold green]{text}[/]" if e.name in comparison.best(entries, key, direction) else text)
        table.add_row(e.name, e.label, *cells)
    console.print(table)
    for verdict in verdicts:
        console.print(f"• {verdict}", highlight=False)
    if output is not None:
        settings = {"dataset": config["dataset"], "test_images": count, "iw_samples": iw_samples, "seed": seed,
                    "classifier_accuracy": accuracy,
                    "disentanglement_scale": disentanglement_scale if any("mig" in e.numbers for e in entries) else None}
        report.write(output, entries, verdicts, comparison.pictures(entries, test_images, test_labels, seed, ends), settings)
        console.print(f"Wrote {output}")


def _pairs(text: str | None) -> list[tuple[str, str]] | None:
    """``"2:7,1:8"`` → ``[("2", "7"), ("1", "8")]``."""
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in text.split(",")):
        a, sep, b = part.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise VaetoolError(f"--pairs takes label pairs such as 2:7,1:8, not {text!r}.")
        out.append((a.strip(), b.strip()))
    return out
