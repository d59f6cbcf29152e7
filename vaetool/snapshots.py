"""Snapshots and the best epoch: what ``train --snapshot-every N --keep-best`` keeps, and how
``--model runs/R:best`` or ``runs/R:epoch-3`` finds it again.

A run directory then also holds

- ``snapshots/epoch-NNN/`` every N epochs: ``model.safetensors``, ``samples.png`` and
  ``reconstructions.png`` as they were after that epoch;
- ``snapshots/samples-by-epoch.png``: one row per snapshot, the same prior samples (same z)
  decoded by each snapshot's model, so that you watch the samples improve;
- ``best.safetensors``: the model of the epoch with the highest test bound so far (the test
  ELBO, or the bound an objective reports as ``test_bound``); for an objective with no likelihood
  bound (the WAE family), the highest test reconstruction log p(x|z) instead.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from vaetool.errors import VaetoolError
from vaetool.io import MODEL_FILE, atomic_write

SNAPSHOTS = "snapshots"
BEST_FILE = "best.safetensors"
STRIP_FILE = "samples-by-epoch.png"
STRIP_SAMPLES = 8
_SELECTOR = re.compile(r"^(?P<run>.+):(?P<which>best|epoch-(?P<epoch>\d+))$")


def bound_of(line: dict[str, Any], bound: str = "elbo") -> tuple[str, float]:
    """``(key, value)`` of what an epoch's metrics rank by: the objective's own ``test_bound`` when it
    reports one, else the test ELBO — or, for an objective whose ``bound`` is ``"none"`` (trained on
    no likelihood bound, so its ELBO ranks nothing it was trained for), the test reconstruction."""
    key = "test_bound" if "test_bound" in line else "test_rec" if bound == "none" else "test_elbo"
    return key, float(line[key])


def snapshot_dir(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"epoch-{epoch:03d}"


def after_epoch(run_dir: Path, model, metrics: list[dict[str, Any]], every: int | None, keep_best: bool,
                seed: int = 0, bound: str = "elbo") -> None:
    """Keep what ``--snapshot-every`` and ``--keep-best`` ask for, once the epoch's model, metrics and
    pictures are in ``run_dir``; ``bound`` is the objective's (see :func:`bound_of`)."""
    from vaetool import io

    epoch = metrics[-1]["epoch"]
    if every and epoch % every == 0:
        folder = snapshot_dir(run_dir, epoch)
        folder.mkdir(parents=True, exist_ok=True)
        io.save(model, folder / MODEL_FILE)
        for picture in ("samples.png", "reconstructions.png"):
            if (run_dir / picture).exists():
                atomic_write(folder / picture, lambda tmp, source=run_dir / picture: shutil.copyfile(source, tmp))
        write_strip(run_dir, model, seed)
    if keep_best:
        key, value = bound_of(metrics[-1], bound)
        if all(bound_of(m, bound)[1] < value for m in metrics[:-1]):
            saved = dict(model.config)
            model.config["best"] = {"epoch": epoch, "by": key, "value": value}
            try:
                io.save(model, run_dir / BEST_FILE)
            finally:
                model.config.clear()
                model.config.update(saved)


def epochs(run_dir: Path) -> list[int]:
    """The epochs that have a snapshot in ``run_dir``, in order."""
    folder = Path(run_dir) / SNAPSHOTS
    found = [int(p.name.split("-")[1]) for p in folder.glob("epoch-*") if (p / MODEL_FILE).is_file()] \
        if folder.is_dir() else []
    return sorted(found)


def write_strip(run_dir: Path, model, seed: int = 0) -> None:
    """``snapshots/samples-by-epoch.png``: the same z decoded by every snapshot's model, a row each."""
    import torch

    from vaetool import images, io

    rows, names = [], []
    generator = torch.Generator(device=model.device).manual_seed(seed)
    z = model.prior.sample(STRIP_SAMPLES, generator)
    y = torch.arange(STRIP_SAMPLES, device=model.device) % model.num_classes if model.conditional else None
    for epoch in epochs(run_dir):
        snapshot = io.load(snapshot_dir(run_dir, epoch) / MODEL_FILE, model.device)
        with torch.no_grad():
            rows.append(snapshot.decode(z, y).cpu())
        names.append(f"epoch {epoch}")
    array = images.grid(torch.cat(rows), nrow=STRIP_SAMPLES)
    images.save_png(images.with_row_labels(array, names, rows=len(rows)), Path(run_dir) / SNAPSHOTS / STRIP_FILE)


def select(path: str | Path) -> Path | None:
    """The model file that ``RUN:best`` or ``RUN:epoch-N`` names, or None when ``path`` has no selector.

    A selector that names nothing there is one sentence that lists what the run has.
    """
    text = str(path)
    match = _SELECTOR.match(text)
    if match is None or Path(text).exists():
        return None
    run = Path(match["run"])
    if not run.is_dir():
        raise VaetoolError(f"There is no run directory {run}.")
    if match["which"] == "best":
        if (run / BEST_FILE).is_file():
            return run / BEST_FILE
        raise VaetoolError(f"{run} has no {BEST_FILE} (train with --keep-best){_has(run)}.")
    epoch = int(match["epoch"])
    if epoch in epochs(run):
        return snapshot_dir(run, epoch) / MODEL_FILE
    raise VaetoolError(f"{run} has no snapshot of epoch {epoch}{_has(run)}.")


def _has(run: Path) -> str:
    kept = [f"epoch-{e}" for e in epochs(run)] + (["best"] if (run / BEST_FILE).is_file() else [])
    return f"; it has {', '.join(f'{run}:{k}' for k in kept)}" if kept else \
        " and no snapshots (train with --snapshot-every N)"
