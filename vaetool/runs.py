"""Run directories: where ``train`` writes, and how other commands find the latest model."""
from __future__ import annotations

import os
from pathlib import Path

from vaetool.errors import VaetoolError
from vaetool.io import MODEL_FILE, model_path

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"


def runs_root(explicit: str | Path | None = None) -> Path:
    """``--runs-dir``, else ``$VAETOOL_RUNS``, else ``runs`` in the working directory."""
    return Path(explicit or os.environ.get("VAETOOL_RUNS") or "runs")


def fresh_run_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``, … so that no earlier run is overwritten."""
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


def latest_run(root: Path) -> Path | None:
    """The run whose model or checkpoint was written last (derived from the files, not a pointer)."""
    if not root.is_dir():
        return None
    candidates = [f for pattern in (f"*/{MODEL_FILE}", f"*/{CHECKPOINT_FILE}") for f in root.glob(pattern)]
    return max(candidates, key=lambda f: f.stat().st_mtime).parent if candidates else None


def find_model(model: str | Path | None, root: Path) -> Path:
    """The model file named by ``--model`` (a file, a run directory, ``RUN:best`` or ``RUN:epoch-N``),
    else the latest run's."""
    if model is None:
        run = latest_run(root)
        if run is None or not (run / MODEL_FILE).exists():
            raise VaetoolError(f"No trained model in {root}/; train one with `vaetool train --data shapes` "
                               "or pass --model.")
        return run / MODEL_FILE
    path = model_path(model)
    if not path.is_file():
        raise VaetoolError(f"There is no model file at {path}.")
    return path
