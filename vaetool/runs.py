"""Run directories: where ``train`` writes, and how other commands find the latest model."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from vaetool.errors import VaetoolError, no_file
from vaetool.io import MODEL_FILE, model_path

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"


def runs_root(explicit: str | Path | None = None) -> Path:
    """``--runs-dir``, else ``$VAETOOL_RUNS``, else ``runs`` in the working directory."""
    return Path(explicit or os.environ.get("VAETOOL_RUNS") or "runs")


def named(root: Path, name: str) -> Path:
    """``root/name`` for ``--name``, which must stay inside ``root``: no absolute path, no ``..``."""
    parts = Path(name).parts
    if not name.strip() or Path(name).is_absolute() or Path(name).anchor or ".." in parts or parts in ((), (".",)):
        raise VaetoolError(f"--name {name!r} must be a folder name inside {root}/ (not an absolute path, no '..'); "
                           "--runs-dir chooses where runs go.")
    return root / name


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run already: a checkpoint or a model written there."""
    return (run_dir / CHECKPOINT_FILE).exists() or (run_dir / MODEL_FILE).exists()


def fresh_run_dir(root: Path, name: str, taken: set[Path] = frozenset()) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``, … so that no earlier run is overwritten (nor one in ``taken``)."""
    candidate, n = named(root, name), 1
    while candidate.exists() or candidate in taken:
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


@contextlib.contextmanager
def claim_fresh(root: Path, name: str) -> Iterator[Path]:
    """Hold a fresh run directory (:func:`fresh_run_dir`) for the block, and yield it.

    Two runs started together with the same automatic name both find ``root/name`` free; the one
    that takes its lock second (or finds a run written there meanwhile) moves on to ``name-2``,
    ``-3``, … rather than being refused. For one process: under torchrun every process must agree
    on the name, so there the command takes the name as planned.
    """
    from vaetool import locks

    taken: set[Path] = set()
    while True:
        candidate = fresh_run_dir(root, name, taken)
        held = contextlib.ExitStack()
        try:
            held.enter_context(locks.claim(candidate))
        except locks.RunInUse:  # another run holds it, though it has written nothing yet
            taken.add(candidate)
            continue
        if holds_run(candidate):
            held.close()  # a run was written there between the look and the lock
            taken.add(candidate)
            continue
        with held:
            yield candidate
        return


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
    return existing_model(model)


def existing_model(given: str | Path) -> Path:
    """The model file that ``given`` (a file, a run directory, ``RUN:best``) names, or the one sentence
    saying what is missing: the file, the run, or a run's model in a folder."""
    path = model_path(given)
    if path.is_file():
        return path
    if path.name == MODEL_FILE and path.parent == Path(given) and path.parent.is_dir():
        raise VaetoolError(f"{given} is a folder without a {MODEL_FILE}: not a run directory (pass a run, "
                           f"such as runs/NAME, or a .safetensors file).")
    if not path.exists() and path == Path(given) and not path.suffix:
        raise VaetoolError(f"There is no model file or run directory at {given}.")
    raise no_file(path, "model file")
