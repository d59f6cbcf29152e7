"""Experiment trackers: training's progress as scalars, images and text for TensorBoard, MLflow, …

The trainer reports through :class:`vaetool.training.Progress` — ``begin``, ``epoch_start``,
``update`` (a few times a second, with the epoch's running means) and ``epoch_end`` (the epoch's
metrics line). :class:`Logger` turns those calls into four methods a tracker implements:

- ``scalars(values, step)``: ``{"step/loss": …}`` at each refresh (``step`` counts training steps
  from the start of the run) and ``{"epoch/test_elbo": …}`` after each epoch (``step`` is the
  epoch number);
- ``images(images, step)``: the run's ``samples.png`` and ``reconstructions.png`` after each
  epoch, as ``(H, W, C)`` uint8 arrays;
- ``text(name, text)``: the run's ``config.toml`` once, at the start;
- ``params(values)``: the same settings once, flattened to ``{"train.lr": 0.001, …}``, for trackers
  that keep parameters apart from metrics;
- ``close()``: flush and release (called however training ends).

A tracker is a subclass of :class:`Logger` registered under the entry-point group
``vaetool.loggers``; ``vaetool train --logger NAME`` builds it with the run directory. The
built-in ``tensorboard`` and ``mlflow`` are registered that way in vaetool's own
``pyproject.toml``; docs/training.md shows a Weights & Biases logger in a dozen lines.

Every run also gets :class:`StepsFile`, which writes the step-level values with timestamps to
``steps.jsonl`` beside the per-epoch ``metrics.jsonl``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaetool.errors import VaetoolError
from vaetool.training import Progress

GROUP = "vaetool.loggers"
STEPS_FILE = "steps.jsonl"
PICTURES = ("samples", "reconstructions")
CONFIG_ARTIFACT = "config.toml"
# Which extra each built-in logger needs, for the message when it is missing.
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class Logger(Progress):
    """A :class:`Progress` that records a run for a tracker; subclasses implement any of the methods
    ``scalars``, ``images``, ``text``, ``params`` and ``close`` (each does nothing here)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._epoch, self._steps = 0, 1

    # -- what a tracker implements ------------------------------------------------------------------

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Record named numbers at a step."""

    def images(self, images: dict[str, Any], step: int) -> None:
        """Record named ``(H, W, C)`` uint8 pictures at an epoch."""

    def text(self, name: str, text: str) -> None:
        """Record a named text, once."""

    def params(self, values: dict[str, Any]) -> None:
        """Record the run's settings, once: ``{"section.key": value}`` (numbers, strings, booleans, lists)."""

    def close(self) -> None:
        """Flush and release whatever the tracker holds."""

    # -- the trainer's calls, translated ------------------------------------------------------------

    def begin(self, info: dict[str, Any]) -> None:
        from vaetool.config_file import CONFIG_FILE

        config = self.run_dir / CONFIG_FILE
        if config.is_file():
            text = config.read_text()
            self.text("config", text)
            self.params(_flattened(_toml(text)))

    def epoch_start(self, epoch: int, epochs: int, steps: int, first_step: int) -> None:
        self._epoch, self._steps = epoch, steps

    def update(self, step: int, stats: dict[str, float]) -> None:
        self.scalars({f"step/{k}": float(v) for k, v in stats.items()}, self.global_step(step))

    def epoch_end(self, metrics: dict[str, Any]) -> None:
        numbers = {f"epoch/{k}": float(v) for k, v in metrics.items()
                   if k not in ("epoch", "unix_seconds") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.scalars(numbers, int(metrics["epoch"]))
        self.images(_pictures(self.run_dir), int(metrics["epoch"]))

    def global_step(self, step: int) -> int:
        """Training steps since the run began, for the ``step`` within the current epoch."""
        return self._epoch * self._steps + step


def _toml(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _flattened(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.001}}`` → ``{"train.lr": 0.001}``."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flattened(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _pictures(run_dir: Path) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    out = {}
    for name in PICTURES:
        path = run_dir / f"{name}.png"
        if path.is_file():
            with Image.open(path) as image:
                out[name] = np.asarray(image.convert("RGB"))
    return out


class StepsFile(Logger):
    """``steps.jsonl``: one line per progress refresh — the training step since the run began, the
    epoch, the epoch's running means (``loss``, ``rec``, ``kl``), β and the Unix time (``unix_seconds``). Rewritten
    atomically after each epoch and at the end; on resume, the lines up to the resumed step are kept."""

    def __init__(self, run_dir: str | Path):
        super().__init__(run_dir)
        self.lines: list[str] = []

    def begin(self, info: dict[str, Any]) -> None:
        path = self.run_dir / STEPS_FILE
        if path.is_file():
            start = info["start_epoch"] * info["config"]["training"].get("steps_per_epoch", 0) + info["start_step"]
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= start:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    break  # a damaged tail: keep what came before it
            self.lines = kept

    def update(self, step: int, stats: dict[str, float]) -> None:
        self.lines.append(json.dumps({"step": self.global_step(step), "epoch": self._epoch + 1,
                                      **{k: float(v) for k, v in stats.items()}, "unix_seconds": round(time.time(), 3)}))

    def epoch_end(self, metrics: dict[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        from vaetool.io import atomic_write_text

        if self.lines:
            atomic_write_text(self.run_dir / STEPS_FILE, "".join(line + "\n" for line in self.lines))



class Fanout(Progress):
    """Several :class:`Progress` receivers as one: the terminal display and each logger."""

    def __init__(self, receivers: Sequence[Progress]):
        self.receivers = list(receivers)

    def begin(self, info):
        for r in self.receivers:
            r.begin(info)

    def epoch_start(self, epoch, epochs, steps, first_step):
        for r in self.receivers:
            r.epoch_start(epoch, epochs, steps, first_step)

    def update(self, step, stats):
        for r in self.receivers:
            r.update(step, stats)

    def epoch_end(self, metrics):
        for r in self.receivers:
            r.epoch_end(metrics)

    def close(self) -> None:
        for r in self.receivers:
            if isinstance(r, Logger):
                r.close()


def names() -> list[str]:
    """The installed loggers' names."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=GROUP)})


def build(name: str, run_dir: str | Path) -> Logger:
    """The logger registered as ``name``, for ``run_dir``; a missing extra or an unknown name is
    one sentence saying what to install or what there is."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise VaetoolError(f"No logger named {name!r} is installed; loggers: {', '.join(names()) or 'none'}.")
    try:
        cls = found[0].load()
        return cls(run_dir)
    except ImportError as exc:
        extra = EXTRAS.get(name)
        hint = f'pip install "vaetool[{extra}]"' if extra else f"install what it needs ({exc})"
        raise VaetoolError(f"The {name} logger needs a package that is not installed ({exc.name or exc}); "
                           f"{hint}.") from None


# -- the built-in trackers ------------------------------------------------------------------------

class TensorBoard(Logger):
    """TensorBoard event files in the run directory (``tensorboard --logdir runs`` shows every run):
    ``step/*`` and ``epoch/*`` scalars, the epoch's samples and reconstructions as images, and
    the run's config as text. Needs the ``tensorboard`` extra."""

    def __init__(self, run_dir: str | Path):
        super().__init__(run_dir)
        import tensorboard  # noqa: F401  (missing: said now, not after the first epoch)

        self.writer = None

    def begin(self, info):
        from torch.utils.tensorboard import SummaryWriter

        # Opened when training starts, so a run refused before then gets no event file.
        self.writer = SummaryWriter(log_dir=str(self.run_dir))
        super().begin(info)

    def scalars(self, values, step):
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def images(self, images, step):
        for key, array in images.items():
            self.writer.add_image(f"images/{key}", array, step, dataformats="HWC")
        self.writer.flush()

    def text(self, name, text):
        # TensorBoard renders text as Markdown: indented, the TOML shows as written.
        self.writer.add_text(name, "\n".join("    " + line for line in text.splitlines()), 0)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class MLflow(Logger):
    """An MLflow run per training run: the settings as parameters and ``config.toml``, ``step/*`` and
    ``epoch/*`` metrics, each epoch's pictures, and at the end the run's ``metrics.jsonl`` and model
    file as artifacts. Needs the ``mlflow`` extra.

    Where it records: ``$MLFLOW_TRACKING_URI`` when set (a server, a database); otherwise, with no
    server, the SQLite database ``mlflow.db`` beside the run directories, with artifacts in
    ``mlflow-artifacts/`` there (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`` shows
    them). The experiment is ``$MLFLOW_EXPERIMENT_NAME``, else ``vaetool``; the MLflow run is named
    after the run directory.
    """

    ARTIFACTS = ("metrics.jsonl", "model.safetensors")

    def __init__(self, run_dir: str | Path):
        super().__init__(run_dir)
        from mlflow.tracking import MlflowClient  # missing: said now, not after the first epoch

        self._client_class = MlflowClient
        self.client, self.run_id = None, None

    def begin(self, info):
        import os

        # Opened when training starts, so a run refused before then leaves no database.
        runs = self.run_dir.resolve().parent
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs / 'mlflow.db'}"
        self.client = self._client_class(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "vaetool"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None if os.environ.get("MLFLOW_TRACKING_URI") else (runs / "mlflow-artifacts").as_uri()
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name,
                                     tags={"vaetool.run_dir": str(self.run_dir.resolve())})
        self.run_id = run.info.run_id
        super().begin(info)

    def params(self, values):
        from mlflow.entities import Param

        items = [Param(key, str(value)) for key, value in values.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def scalars(self, values, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in values.items()])

    def images(self, images, step):
        for key, array in images.items():
            self.client.log_image(self.run_id, array, artifact_file=f"images/epoch-{step:03d}/{key}.png")

    def text(self, name, text):
        self.client.log_text(self.run_id, text, CONFIG_ARTIFACT if name == "config" else f"{name}.txt")

    def close(self):
        if self.run_id is None:
            return
        for name in self.ARTIFACTS:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id)
        self.run_id = None
