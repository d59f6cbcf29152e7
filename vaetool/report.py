"""Writing a comparison as HTML (self-contained), Markdown (images beside it) or JSON (numbers only)."""
from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from pathlib import Path

from vaetool.compare import Entry, best, columns, likelihood_group, same_but_beta
from vaetool.errors import VaetoolError
from vaetool.io import atomic_write_text

FORMATS = (".html", ".md", ".json")
FIGURES = [("reconstructions", "Reconstructions of the same test images (top row: the data)"),
           ("samples", "Samples from the prior, same seed for every model"),
           ("interpolations", "Interpolations between two test images, the first two or those --pairs picks, named "
                              "at the left (slerp of posterior means)"),
           ("rate_distortion", "Rate–distortion: one point per model"),
           ("curves", "Test ELBO during training")]


def check_format(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise VaetoolError(f"A report is written as {', '.join(FORMATS)}; {path.name} is none of these.")


def _cell(entry: Entry, key: str, fmt: str) -> str:
    value = entry.numbers.get(key)
    return "—" if value is None else fmt.format(value)


def _figures(entries: list[Entry], pictures: dict, folder: Path) -> dict[str, Path]:
    """Write the pictures and plots as PNG files in ``folder``; returns name → file."""
    from vaetool import images, plots

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, array in pictures.items():
        files[name] = folder / f"{name}.png"
        images.save_png(array, files[name])
    # Rate and distortion are comparable only within one likelihood, and an autoencoder has no rate:
    # plot the VAEs of the most common likelihood, a β sweep joined into its trade-off curve.
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        if not e.config["autoencoder"] and "kl" in e.numbers:  # the WAE family has no rate to plot
            groups.setdefault(likelihood_group(e), []).append(e)
    if groups:
        shown = max(groups.values(), key=len)
        curves: dict[str, list[Entry]] = {}
        for e in shown:
            curves.setdefault(same_but_beta(e.config), []).append(e)
        files["rate_distortion"] = folder / "rate_distortion.png"
        plots.rate_distortion([(e.name, e.numbers["kl"], -e.numbers["rec"]) for e in shown], files["rate_distortion"],
                              curves=[[e.name for e in sorted(c, key=lambda e: e.numbers["beta"])]
                                      for c in curves.values() if len(c) > 1])
    histories = {e.name: e.history for e in entries if e.history}
    if histories:
        files["curves"] = folder / "curves.png"
        plots.curves_overlay(histories, files["curves"])
    return files


def _finite(value):
    """JSON has no Infinity or NaN: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json(entries: list[Entry], verdicts: list[str], settings: dict) -> str:
    return json.dumps(_finite({"settings": settings, "verdicts": verdicts,
                       "models": [{"name": e.name, "path": str(e.path), "description": e.label,
                                   "config": e.config, **e.numbers} for e in entries]}), indent=1, allow_nan=False)


def write(path: Path, entries: list[Entry], verdicts: list[str], pictures: dict, settings: dict) -> None:
    """The report in the format ``path``'s extension names."""
    check_format(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        atomic_write_text(path, _json(entries, verdicts, settings))
        return
    cols = columns(entries)
    winners = {key: best(entries, key, direction) for key, _, _, direction in cols}
    if suffix == ".md":
        folder = path.with_name(path.stem + "_files")
        files = _figures(entries, pictures, folder)
        lines = [f"# vaetool comparison: {len(entries)} models", "", _settings_line(settings), "",
                 "| model | description | " + " | ".join(h.replace("|", "\\|") for _, h, _, _ in cols) + " |",
                 "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
        for e in entries:
            cells = [(f"**{_cell(e, k, f)}**" if e.name in winners[k] else _cell(e, k, f)) for k, _, f, _ in cols]
            lines.append(f"| {e.name} | {e.label.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
        lines += ["", "All values in nats per image on the same test images; bold: best in its column.", ""]
        lines += [f"- {v}" for v in verdicts] + [""]
        for key, caption in FIGURES:
            if key in files:
                lines += [f"## {caption}", "", f"![{key}]({folder.name}/{files[key].name})", ""]
        atomic_write_text(path, "\n".join(lines))
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = _figures(entries, pictures, Path(tmp))
        embedded = {k: base64.b64encode(f.read_bytes()).decode() for k, f in files.items()}
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _, _ in cols)
    body = ""
    for e in entries:
        cells = "".join(f"<td class='{'best' if e.name in winners[k] else ''}'>{_cell(e, k, f)}</td>" for k, _, f, _ in cols)
        body += f"<tr><th>{html.escape(e.name)}</th><td>{html.escape(e.label)}</td>{cells}</tr>"
    figures = "".join(f"<h2>{html.escape(caption)}</h2><img src='data:image/png;base64,{embedded[key]}' alt='{key}'>"
                      for key, caption in FIGURES if key in embedded)
    verdict_items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vaetool comparison</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:nth-child(2){{text-align:left}}
td.best{{background:#d9f2d9;font-weight:bold}}img{{max-width:100%;image-rendering:pixelated}}</style></head><body>
<h1>vaetool comparison: {len(entries)} models</h1><p>{html.escape(_settings_line(settings))}</p>
<table><tr><th>model</th><th>description</th>{head}</tr>{body}</table>
<p>All values in nats per image on the same test images; highlighted: best in its column.</p>
<ul>{verdict_items}</ul>{figures}</body></html>"""
    atomic_write_text(path, page)


def _settings_line(settings: dict) -> str:
    text = f"Dataset {settings['dataset']}, {settings['test_images']:,} test images"
    if settings.get("iw_samples"):
        text += f", importance-weighted log p(x) with K = {settings['iw_samples']}"
    if settings.get("classifier_accuracy") is not None:
        text += f", FD and confidence from a classifier with {settings['classifier_accuracy']:.1%} test accuracy"
    if settings.get("disentanglement_scale"):
        text += (f", disentanglement metrics on disentanglement_lib's sample counts × {settings['disentanglement_scale']:g}"
                 " (posterior means)")
    return text + "."
