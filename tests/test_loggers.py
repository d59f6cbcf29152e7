"""Trackers: TensorBoard event files read back with TensorBoard's own reader, steps.jsonl and the
timestamps, the Logger interface a third-party tracker implements, and the clean refusals."""
from __future__ import annotations

import json
import sys
import time

import pytest

from conftest import assert_clean_error, invoke, ok, tiny_options
from vaetool import loggers, training

TINY = ["--data", "shapes", "--data-opt", "size=16", "--data-opt", "n_train=128", "--data-opt", "n_test=32",
        "--arch", "mlp", "--hidden", "16", "--latent-dim", "3", "--epochs", "2", "--batch-size", "32",
        "--device", "cpu"]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ok(invoke("train", *TINY, "--runs-dir", root, "--name", "tb", "--logger", "tensorboard"))
    return root / "tb"


def test_tensorboard_events_read_back_with_tensorboards_reader(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    epochs = lines(tensorboard_run / "metrics.jsonl")
    # Per epoch: every number of metrics.jsonl, at its epoch.
    for key in ("test_elbo", "train_elbo", "test_kl", "beta"):
        values = events.Scalars(f"epoch/{key}")
        assert [v.step for v in values] == [1, 2]
        assert [v.value for v in values] == pytest.approx([m[key] for m in epochs], rel=1e-6)
    # Per step: what steps.jsonl has, at the same global steps.
    steps = lines(tensorboard_run / "steps.jsonl")
    loss = events.Scalars("step/loss")
    assert [v.step for v in loss] == [s["step"] for s in steps]
    assert [v.value for v in loss] == pytest.approx([s["loss"] for s in steps], rel=1e-6)
    assert {"step/rec", "step/kl", "step/beta"} <= set(tags["scalars"])
    # Images per epoch, with the size of the run's PNGs.
    from PIL import Image

    for name in ("samples", "reconstructions"):
        images = events.Images(f"images/{name}")
        assert [i.step for i in images] == [1, 2]
        with Image.open(tensorboard_run / f"{name}.png") as png:
            assert (images[-1].width, images[-1].height) == png.size
    # The config as text.
    (text,) = events.Tensors("config/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert "[train]" in shown and 'architecture = "mlp"' in shown


def test_steps_and_epochs_have_timestamps(tensorboard_run):
    steps = lines(tensorboard_run / "steps.jsonl")
    assert len(steps) >= 2 and [s["step"] for s in steps] == sorted({s["step"] for s in steps})
    assert steps[-1]["step"] == 2 * 4 and steps[-1]["epoch"] == 2  # 128 images in batches of 32, 2 epochs
    times = [s["unix_seconds"] for s in steps]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 600
    for epoch in lines(tensorboard_run / "metrics.jsonl"):
        assert times[0] <= epoch["unix_seconds"] and abs(epoch["unix_seconds"] - times[-1]) < 600


class Recorder(loggers.Logger):
    """A third-party tracker as the docs show one: only the four methods."""

    def __init__(self, run_dir):
        super().__init__(run_dir)
        self.calls = []

    def scalars(self, values, step):
        self.calls.append(("scalars", step, sorted(values)))

    def images(self, images, step):
        self.calls.append(("images", step, {k: v.shape for k, v in images.items()}))

    def text(self, name, text):
        self.calls.append(("text", name, text))

    def close(self):
        self.calls.append(("close",))


def test_a_logger_needs_only_four_methods(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    recorder = Recorder(run_dir)
    progress = loggers.Fanout([recorder])
    config = training.TrainConfig(architecture="mlp", architecture_options=tiny_options("mlp"), dataset=tiny_dataset,
                                  latent_dim=2, epochs=2, batch_size=64)
    training.train(config, run_dir, device="cpu", progress=progress)
    progress.close()
    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "text" and recorder.calls[0][1] == "config"
    assert recorder.calls[0][2] == (run_dir / "config.toml").read_text()
    assert kinds[-1] == "close"
    epochs = [c for c in recorder.calls if c[0] == "scalars" and "epoch/test_elbo" in c[2]]
    assert [c[1] for c in epochs] == [1, 2]
    steps = [c for c in recorder.calls if c[0] == "scalars" and "step/loss" in c[2]]
    assert steps and steps[-1][1] == 2 * 4  # 256 images in batches of 64: 4 steps an epoch, counted across epochs
    pictures = [c for c in recorder.calls if c[0] == "images"]
    assert [c[1] for c in pictures] == [1, 2]
    assert set(pictures[0][2]) == {"samples", "reconstructions"} and pictures[0][2]["samples"][2] == 3


def test_an_unknown_logger_is_refused_before_training(tmp_path):
    assert_clean_error(invoke("train", *TINY, "--runs-dir", tmp_path, "--logger", "wandb"),
                       "No logger named 'wandb'", "tensorboard")
    assert not any(tmp_path.iterdir())


def test_a_missing_extra_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    assert_clean_error(invoke("train", *TINY, "--runs-dir", tmp_path, "--logger", "tensorboard"),
                       'pip install "vaetool[tensorboard]"')
    assert not any(tmp_path.iterdir())


def _mlflow_client():
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        pytest.skip('mlflow is not installed: pip install "vaetool[mlflow]" (or ".[test]") to run the MLflow test')
    return MlflowClient


def test_mlflow_records_params_metrics_and_artifacts_read_back_with_its_client(tmp_path, monkeypatch):
    client_class = _mlflow_client()
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    ok(invoke("train", *TINY, "--runs-dir", root, "--name", "ml", "--logger", "mlflow"))
    run_dir = root / "ml"
    # With no server set: a SQLite database beside the runs, artifacts there too, nothing elsewhere.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert {"ml", "mlflow.db", "mlflow-artifacts"} <= {p.name for p in root.iterdir()}

    client = client_class(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("vaetool")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "ml" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.architecture"] == "mlp" and params["train.lr"] == "0.001"
    assert params["train.architecture_options.hidden"] == "[16]" and params["train.epochs"] == "2"
    epochs = lines(run_dir / "metrics.jsonl")
    history = client.get_metric_history(run.info.run_id, "epoch/test_elbo")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([e["test_elbo"] for e in epochs], rel=1e-6)
    steps = lines(run_dir / "steps.jsonl")
    loss = sorted(client.get_metric_history(run.info.run_id, "step/loss"), key=lambda m: m.step)
    assert [m.step for m in loss] == [s["step"] for s in steps]
    assert [m.value for m in loss] == pytest.approx([s["loss"] for s in steps], rel=1e-6)

    def listed(path=None):
        out = []
        for item in client.list_artifacts(run.info.run_id, path):
            out += listed(item.path) if item.is_dir else [item.path]
        return out

    assert set(listed()) == {"config.toml", "metrics.jsonl", "model.safetensors",
                             *(f"images/epoch-00{e}/{n}.png" for e in (1, 2) for n in ("samples", "reconstructions"))}
    fetched = client.download_artifacts(run.info.run_id, "model.safetensors", str(tmp_path / "fetched"))
    assert open(fetched, "rb").read() == (run_dir / "model.safetensors").read_bytes()
    config = client.download_artifacts(run.info.run_id, "config.toml", str(tmp_path / "fetched"))
    assert open(config).read() == (run_dir / "config.toml").read_text()
