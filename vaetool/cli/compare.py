"""``vaetool compare``: trained models side by side on the same test data."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.common import handle_errors, import_torch
from vaetool.errors import VaetoolError

# The quick protocol (the default) and the published one (--full): importance samples, test images
# for the importance-weighted estimate (None: all), and the multiple of disentanglement_lib's counts.
QUICK = {"iw_samples": 100, "iw_images": 500, "disentanglement_scale": 0.01}
FULL = {"iw_samples": 5000, "iw_images": None, "disentanglement_scale": 1.0}


@handle_errors
def compare(
    models: Annotated[list[Path], typer.Argument(help="Model files or run directories (e.g. runs/*).", show_default=False)],
    output: Annotated[Optional[list[Path]], typer.Option("--output", "-o", help="Also write a report: .html (self-contained), .md (images beside it) or .json; repeat for several.",
                                                         rich_help_panel=options.OUTPUT_PANEL, show_default=False)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout instead of the table (progress stays on stderr).",
                                        rich_help_panel=options.OUTPUT_PANEL)] = False,
    full: Annotated[bool, typer.Option("--full", help="The published protocol: K = 5000 over every test image and disentanglement_lib's full sample counts (an hour or more per model on a CPU).")] = False,
    iw_samples: Annotated[Optional[int], typer.Option(help="Importance samples K for the log p(x) estimate (0 skips it). \\[default: 100; 5000 with --full]", show_default=False)] = None,
    iw_images: Annotated[Optional[int], typer.Option(help="Estimate log p(x) on the first N test images. \\[default: 500; all with --full]", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N test images. \\[default: the whole test split]")] = None,
    sample_quality: Annotated[bool, typer.Option("--sample-quality/--no-sample-quality", help="Score samples with a classifier trained once per dataset (labelled datasets).")] = True,
    disentanglement: Annotated[bool, typer.Option("--disentanglement/--no-disentanglement", help="β-VAE, FactorVAE, MIG, DCI and SAP scores, for datasets with ground-truth factors (shapes).")] = True,
    disentanglement_scale: Annotated[Optional[float], typer.Option(help="Multiplies disentanglement_lib's sample counts: 1 is the published protocol. \\[default: 0.01, under a minute per small model on a CPU; 1 with --full]", show_default=False)] = None,
    pairs: Annotated[Optional[str], typer.Option(help="Interpolate between test images of these labels, one row per pair, e.g. 2:7,1:8 (the first image of each label). \\[default: the first two test images]")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where datasets are stored. \\[default: $VAETOOL_DATA, else the user cache]")] = None,
    device: options.Device = "auto",
    threads: options.Threads = None,
    allow_nonfinite: options.AllowNonfinite = False,
    seed: options.Seed = 0,
) -> None:
    """Compare models on the same held-out data: a table, verdicts, and (with -o) pictures and plots.

    Likelihood numbers are nats per test image. The ELBO uses β = 1 whatever β a model was trained
    with, so models are comparable; "agg. KL" is how far the aggregate posterior is from the prior;
    FD is a Fréchet distance of classifier features between samples and test images (lower is
    better). The default protocol answers in about a minute per small model on a CPU; --full runs
    the published one. Reports (-o) list every column with its unit and meaning.

      vaetool compare runs/linear runs/mlp runs/conv
      vaetool compare runs/* -o report.html -o report.json
      vaetool compare runs/conv-mnist --json | jq '.models[0].elbo'
      vaetool compare runs/ae runs/vae -o report.md --pairs 2:7,1:8
    """
    from vaetool.cli import output as out

    _wait_passively()
    import_torch()
    reports = set()
    for path in output or []:
        from vaetool import io, report

        report.check_path(path)
        io.refuse_to_replace(path)
        if Path(path).resolve() in reports:
            raise VaetoolError(f"-o {path} names a report already given; give each -o once.")
        reports.add(Path(path).resolve())
    protocol = FULL if full else QUICK
    iw_samples = protocol["iw_samples"] if iw_samples is None else iw_samples
    iw_images = protocol["iw_images"] if iw_images is None else iw_images
    scale = protocol["disentanglement_scale"] if disentanglement_scale is None else disentanglement_scale
    for flag, value in (("--limit", limit), ("--iw-images", iw_images)):
        if value is not None and value < 1:
            raise VaetoolError(f"{flag} must be at least 1, not {value}.")
    if not scale > 0:
        raise VaetoolError(f"--disentanglement-scale must be positive, not {scale}.")
    if iw_samples < 0:
        raise VaetoolError(f"--iw-samples must be 0 or more, not {iw_samples}.")
    pair_labels = _pairs(pairs)

    if threads is not None:
        if threads < 1:
            raise VaetoolError(f"--threads must be at least 1, not {threads}.")
        import torch

        torch.set_num_threads(threads)
    with out.Stages() as stages:
        with stages.stage("Loading models and test data"):
            result = _evaluate_inputs(models, device, data_dir, limit, pair_labels, allow_nonfinite)
        entries, config, test_images, test_labels, train_images, ends = result
        count = len(test_images)
        classifier, accuracy = _classifier(entries, config, data_dir, sample_quality, stages)

        from vaetool import compare as comparison

        comparison.evaluate(entries, test_images, test_labels, iw_samples=iw_samples, iw_images=iw_images, seed=seed,
                            train_images=train_images, classifier=classifier, progress=stages,
                            disentanglement_scale=scale if disentanglement else None, data_dir=data_dir)
        verdicts = comparison.verdicts(entries)
        settings = _settings(config, count, iw_samples, iw_images, seed, accuracy, scale, entries)
        pictures = None
        for path in output or []:
            from vaetool import report

            if pictures is None and path.suffix.lower() != ".json":
                with stages.stage("Drawing reconstructions, samples and interpolations"):
                    pictures = comparison.pictures(entries, test_images, test_labels, seed, ends)
            with stages.stage(f"Writing {path}"):
                report.write(path, entries, verdicts, pictures, settings)

    if json_:
        from vaetool import report

        typer.echo(report.to_json(entries, verdicts, settings))
    else:
        _print_table(entries, verdicts, config, count, settings)
    for path in output or []:
        out.note(f"Wrote {path}")


def _wait_passively() -> None:
    """OpenMP threads that wait for work sleep instead of spinning, unless OMP_WAIT_POLICY says otherwise.

    On a machine busy with other jobs a spinning thread takes the core its partner needs: the
    importance-weighted estimate took twice as long on two threads as on one, and as long as on one
    once the waiting threads slept. Read when torch loads OpenMP, so it is set before torch is imported.
    """
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _evaluate_inputs(models, device, data_dir, limit, pair_labels, allow_nonfinite):
    from vaetool import compare as comparison
    from vaetool import devices, picking, registry
    from vaetool.datasets import data_root

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
    return entries, config, test_images, test_labels, train_images, ends


def _classifier(entries, config, data_dir, wanted: bool, stages):
    """The dataset's sample-quality classifier (trained once, then cached) and its test accuracy."""
    from vaetool import registry

    dataset, _ = registry.build("dataset", config["dataset"], config.get("dataset_options", {}))
    if not wanted or not dataset.num_classes:
        return None, None
    from vaetool import classifier as quality

    label = f"Training the {config['dataset']} classifier for sample quality (once; cached)"
    with stages.stage(f"Preparing the {config['dataset']} sample-quality classifier"):
        classifier, info = quality.load_or_train(config["dataset"], config.get("dataset_options", {}),
                                                 data_dir=data_dir, device=str(entries[0].model.device),
                                                 progress=lambda done, total: stages(label, done, total))
    return classifier, info.get("accuracy")


def _settings(config, count, iw_samples, iw_images, seed, accuracy, scale, entries) -> dict:
    """The report's header: how it was made and with which protocol."""
    import datetime

    from vaetool import __version__
    from vaetool.cli import output as out

    return {"vaetool_version": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": out.command_line(["vaetool", "compare", *(str(e.path) for e in entries)]),
            "dataset": config["dataset"], "test_images": count, "iw_samples": iw_samples,
            "iw_images": min(iw_images, count) if iw_samples and iw_images is not None else (count if iw_samples else None),
            "seed": seed, "classifier_accuracy": accuracy,
            "disentanglement_scale": scale if any("mig" in e.numbers for e in entries) else None}


def _print_table(entries, verdicts, config, count, settings) -> None:
    from vaetool import compare as comparison
    from vaetool.cli import output as out

    console = out.console()
    cols = comparison.columns(entries)
    headings = [heading for _, heading, _, _ in cols]
    rows, styles = [], {}
    for i, e in enumerate(entries):
        cells = []
        for j, (key, _, fmt, direction) in enumerate(cols):
            value = e.numbers.get(key)
            cells.append("—" if value is None else fmt.format(value))
            if e.name in comparison.best(entries, key, direction):
                styles[(i, j)] = "bold green"
        rows.append((e.name, cells))
    units = [comparison.glossary(key)[0] for key, _, _, _ in cols]
    title = f"{out.counted(len(entries), 'model')} on {count:,} {config['dataset']} test images"
    tables, transposed = out.fitted_tables(title, headings, rows, console.width, styles=styles, units=units,
                                           descriptions=[e.label for e in entries])
    for table in tables:
        console.print(table)
    if transposed:
        for e in entries:
            console.print(f"{e.name}: {e.label}", markup=False)
    if not transposed:
        console.print("Units: " + _units_line(cols), markup=False)
    shown = {key for key, _, _, _ in cols}
    if settings.get("iw_images") and settings["iw_images"] < count and "iw_ll" in shown:  # only under its column
        console.print(f"log p(x) IW: K = {settings['iw_samples']} on the first {settings['iw_images']:,} test images "
                      "(--iw-images, --full for all).", markup=False)
    for verdict in verdicts:
        console.print(f"• {verdict}", markup=False)
    if out.verbosity == out.VERBOSE:
        for key, heading, _, _ in cols:
            unit, meaning = comparison.glossary(key)
            console.print(f"{heading} ({unit}): {meaning}" if unit else f"{heading}: {meaning}", markup=False)


def _units_line(cols) -> str:
    """``nats/image: ELBO, KL; count: params; …``: each unit once, with its columns."""
    from vaetool import compare as comparison

    groups: dict[str, list[str]] = {}
    for key, heading, _, _ in cols:
        unit = comparison.glossary(key)[0] or "—"
        groups.setdefault(unit, []).append(heading)
    return "; ".join(f"{unit}: {', '.join(headings)}" for unit, headings in groups.items())


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
