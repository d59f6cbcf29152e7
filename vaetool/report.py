"""Writing a comparison as HTML (self-contained), Markdown (images beside it) or JSON (numbers only)."""
from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
from pathlib import Path

from vaetool.compare import Entry, best, columns, glossary, likelihood_group, model_settings, same_but_beta
from vaetool.errors import VaetoolError
from vaetool.io import atomic_write_text

FORMATS = (".html", ".md", ".json")
FIGURES = [("reconstructions", "Reconstructions of the same test images (top row: the data)"),
           ("samples", "Samples from the prior, same seed for every model"),
           ("interpolations", "Interpolations between two test images, the first two or those --pairs picks, named "
                              "at the left (slerp of posterior means)"),
           ("rate_distortion", "Rate–distortion: one point per model"),
           ("curves", "Test ELBO during training")]


def check_path(path: Path) -> None:
    """A report's name, checked before anything is evaluated: its format, and the folder a ``.md`` report's
    pictures go in (``NAME_files`` beside it), which must not be a file."""
    if path.suffix.lower() not in FORMATS:
        raise VaetoolError(f"A report is written as {', '.join(FORMATS)}; {path.name} is none of these.")
    folder = pictures_folder(path)
    if folder is not None and os.path.lexists(folder) and not folder.is_dir():
        raise VaetoolError(f"{folder} is a file, where the pictures of {path.name} go; move it away or choose "
                           "another report name.")


def pictures_folder(path: Path) -> Path | None:
    """The folder beside a ``.md`` report that holds its pictures; None for the formats that embed them."""
    return path.with_name(path.stem + "_files") if path.suffix.lower() == ".md" else None


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


def column_glossary(entries: list[Entry]) -> list[dict[str, str]]:
    """Each column of this comparison: key, heading, unit, which way is better, and what it measures."""
    out = []
    for key, heading, _, direction in columns(entries):
        unit, meaning = glossary(key)
        better = {"max": "higher", "min": "lower"}.get(direction, "")
        out.append({"key": key, "heading": heading, "unit": unit, "better": better, "meaning": meaning})
    return out


def to_json(entries: list[Entry], verdicts: list[str], settings: dict) -> str:
    """The comparison as strict JSON: settings, column glossary, verdicts, and every model's numbers."""
    return json.dumps(_finite({"settings": settings, "columns": column_glossary(entries), "verdicts": verdicts,
                       "models": [{"name": e.name, "path": str(e.path), "description": e.label,
                                   "config": e.config, **e.numbers} for e in entries]}), indent=1, allow_nan=False)


def write(path: Path, entries: list[Entry], verdicts: list[str], pictures: dict, settings: dict) -> None:
    """The report in the format ``path``'s extension names."""
    check_path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        atomic_write_text(path, to_json(entries, verdicts, settings))
        return
    cols = columns(entries)
    winners = {key: best(entries, key, direction) for key, _, _, direction in cols}
    if suffix == ".md":
        folder = pictures_folder(path)
        files = _figures(entries, pictures, folder)
        lines = [f"# vaetool comparison: {len(entries)} models", "", _header_line(settings), "",
                 _settings_line(settings), "",
                 "| model | description | " + " | ".join(h.replace("|", "\\|") for _, h, _, _ in cols) + " |",
                 "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
        for e in entries:
            cells = [(f"**{_cell(e, k, f)}**" if e.name in winners[k] else _cell(e, k, f)) for k, _, f, _ in cols]
            lines.append(f"| {e.name} | {e.label.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
        lines += ["", "All models on the same test images; bold: best in its column (likelihood columns: among "
                  "models with the same likelihood).", ""]
        lines += [f"- {v}" for v in verdicts] + [""]
        lines += ["## Columns", "", "| column | unit | better | meaning |", "| --- | --- | --- | --- |"]
        lines += [f"| {g['heading'].replace('|', chr(92) + '|')} | {g['unit']} | {g['better']} | "
                  f"{g['meaning'].replace('|', chr(92) + '|')} |" for g in column_glossary(entries)]
        lines += ["", "## Models", "", "| model | " + " | ".join(_SETTING_NAMES) + " |",
                  "| --- | " + " | ".join("---" for _ in _SETTING_NAMES) + " |"]
        for e in entries:
            found = model_settings(e.config)
            lines.append(f"| {e.name} | " + " | ".join(found.get(k, "").replace("|", chr(92) + "|")
                                                        for k in _SETTING_NAMES) + " |")
        lines.append("")
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
    terms = "".join(f"<tr><th>{html.escape(g['heading'])}</th><td>{html.escape(g['unit'])}</td>"
                    f"<td>{g['better']}</td><td>{html.escape(g['meaning'])}</td></tr>" for g in column_glossary(entries))
    setting_rows = "".join(
        f"<tr><th>{html.escape(e.name)}</th>"
        + "".join(f"<td>{html.escape(model_settings(e.config).get(k, ''))}</td>" for k in _SETTING_NAMES) + "</tr>"
        for e in entries)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vaetool comparison</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:nth-child(2){{text-align:left}}
td.best{{background:#d9f2d9;font-weight:bold}}table.text td{{text-align:left}}img{{max-width:100%;image-rendering:pixelated}}</style></head><body>
<h1>vaetool comparison: {len(entries)} models</h1><p class='header'>{html.escape(_header_line(settings))}</p>
<p>{html.escape(_settings_line(settings))}</p>
<table><tr><th>model</th><th>description</th>{head}</tr>{body}</table>
<p>All models on the same test images; highlighted: best in its column (likelihood columns: among models with
the same likelihood).</p>
<ul>{verdict_items}</ul>
<h2>Columns</h2><table class='text'><tr><th>column</th><th>unit</th><th>better</th><th>meaning</th></tr>{terms}</table>
<h2>Models</h2><table class='text'><tr><th>model</th>{"".join(f"<th>{k}</th>" for k in _SETTING_NAMES)}</tr>{setting_rows}</table>
{figures}</body></html>"""
    atomic_write_text(path, page)


_SETTING_NAMES = ("architecture", "likelihood", "prior", "latent", "objective", "training")


def _header_line(settings: dict) -> str:
    """Who made the report, when, and how: vaetool's version, the date and the command line."""
    parts = [f"vaetool {settings.get('vaetool_version', '?')}"]
    if settings.get("date"):
        parts.append(settings["date"])
    if settings.get("command"):
        parts.append(settings["command"])
    return " · ".join(parts)


def _settings_line(settings: dict) -> str:
    text = f"Dataset {settings['dataset']}, {settings['test_images']:,} test images"
    if settings.get("iw_samples"):
        text += f", importance-weighted log p(x) with K = {settings['iw_samples']}"
        if settings.get("iw_images") and settings["iw_images"] < settings["test_images"]:
            text += f" on the first {settings['iw_images']:,} of them"
    if settings.get("classifier_accuracy") is not None:
        text += f", FD and confidence from a classifier with {settings['classifier_accuracy']:.1%} test accuracy"
    if settings.get("disentanglement_scale"):
        text += (f", disentanglement metrics on disentanglement_lib's sample counts × {settings['disentanglement_scale']:g}"
                 " (posterior means)")
    return text + "."
