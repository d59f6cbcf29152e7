"""The training loop: its outputs, exact resume, Ctrl-C, divergence, warm-up and provenance."""
from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from PIL import Image
from safetensors import safe_open

import vaetool
from conftest import TINY_DATASET, TinySquares, state_dicts_equal
from vaetool import registry, training
from vaetool.contracts import Split
from vaetool.errors import VaetoolError
from vaetool.objectives.elbo import ELBO
from vaetool.training import Progress, TrainConfig

METRIC_KEYS = {"epoch", "train_loss", "train_elbo", "train_rec", "train_kl", "beta",
               "test_elbo", "test_rec", "test_kl", "seconds"}


@pytest.fixture(scope="module", autouse=True)
def tiny_squares():
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield
    registry.unregister("dataset", TINY_DATASET)


def config(**overrides) -> TrainConfig:
    """Four steps an epoch of a tiny MLP on 256 tiny images."""
    settings = dict(architecture="mlp", architecture_options={"hidden": [32]}, likelihood="bernoulli",
                    dataset=TINY_DATASET, dataset_options={"n_train": 256, "n_test": 64}, latent_dim=4,
                    epochs=2, batch_size=64, lr=3e-3, seed=0)
    return TrainConfig(**{**settings, **overrides})


def weights(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def metrics_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(line):
    return {k: v for k, v in line.items() if not k.endswith("seconds")}  # wall-clock times differ


def snapshot(run_dir):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run_dir.iterdir())}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_squares):
    """The reference: two epochs without a stop."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    result = training.train(config(), run_dir, device="cpu")
    return run_dir, result


# -- what a run writes --------------------------------------------------------------------------

def test_a_run_writes_model_checkpoint_metrics_and_pictures(straight_run):
    run_dir, result = straight_run
    assert result.status == "finished" and result.epoch == 2 and result.step == 0
    for name in ("model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
                 "reconstructions.png", "samples.png", "curves.png", "config.toml"):
        assert (run_dir / name).is_file(), name
    for name in ("reconstructions.png", "samples.png", "curves.png"):
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and image.width > 64 and image.height > 64
            image.load()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_metrics_have_one_line_per_epoch(straight_run):
    run_dir, result = straight_run
    lines = metrics_of(run_dir)
    assert [m["epoch"] for m in lines] == [1, 2]
    assert lines == result.metrics
    for m in lines:
        assert METRIC_KEYS <= set(m)
        assert all(math.isfinite(m[k]) for k in METRIC_KEYS)
        assert m["train_elbo"] == pytest.approx(m["train_rec"] - m["train_kl"])
        assert m["test_elbo"] == pytest.approx(m["test_rec"] - m["test_kl"])
        assert m["test_kl"] > 0
        # Bernoulli on grey levels is not a probability mass: no bits/dim.
        assert "test_bits_per_dim" not in m


def test_the_model_file_is_the_last_epochs_model(straight_run):
    run_dir, result = straight_run
    model = vaetool.load(run_dir)
    # Re-evaluating the saved model on the test split reproduces the recorded test ELBO.
    split = TinySquares(n_train=256, n_test=64).load("test")
    assert training.evaluate(model, split)["elbo"] == pytest.approx(result.metrics[-1]["test_elbo"], rel=1e-5)


def test_dataset_and_training_settings_are_recorded_in_the_model(straight_run):
    run_dir, _ = straight_run
    cfg = vaetool.load(run_dir).config
    assert cfg["dataset"] == TINY_DATASET
    assert cfg["dataset_options"] == {"n_train": 256, "n_test": 64, "seed": 0}  # the plugin's defaults filled in
    assert cfg["class_names"] == ["top", "bottom"] and cfg["num_classes"] == 2
    assert cfg["input_shape"] == [1, 16, 16]
    expected = {"epochs": 2, "batch_size": 64, "lr": 3e-3, "seed": 0}
    assert {k: cfg["training"][k] for k in expected} == expected
    assert (cfg["objective"], cfg["objective_options"]) == ("elbo", {"beta": 1.0, "warmup": 0.0, "free_bits": 0.0})
    assert cfg["training"]["steps_per_epoch"] == 4
    # And the config alone gives back the training settings, with every plugin default spelled out.
    assert TrainConfig.from_model_config(cfg) == config(architecture_options={"hidden": [32], "scale_init": None,
                                                                              "activation": "relu", "init": "default",
                                                                              "output_bias": "default"},
                                                        likelihood_options={"binarize": "none", "binarize_seed": 0,
                                                                            "reduction": "sum"},
                                                        dataset_options={"n_train": 256, "n_test": 64, "seed": 0},
                                                        objective="elbo",
                                                        objective_options={"beta": 1.0, "warmup": 0.0, "free_bits": 0.0})


def test_the_test_elbo_improves_over_epochs(tmp_path):
    result = training.train(config(epochs=3, dataset_options={"n_train": 512, "n_test": 64}, batch_size=32),
                            tmp_path / "run", device="cpu")
    elbos = [m["test_elbo"] for m in result.metrics]
    # Untrained, each of the 256 pixels costs about log 2 nats (−177 in all); the squares are easy to
    # learn, so three short epochs gain far more than the 20 nats asked for here.
    assert elbos[0] < elbos[1] < elbos[2]
    assert elbos[2] > elbos[0] + 20


def test_training_is_reproducible(straight_run, tmp_path):
    run_dir, _ = straight_run
    training.train(config(), tmp_path / "again", device="cpu")
    assert state_dicts_equal(weights(tmp_path / "again" / "model.safetensors"), weights(run_dir / "model.safetensors"))


def test_a_conditional_model_trains_on_a_labelled_dataset(tmp_path):
    result = training.train(config(architecture="cvae", architecture_options={"channels": [8, 16]}, epochs=1),
                            tmp_path / "run", device="cpu")
    model = vaetool.load(tmp_path / "run")
    assert model.conditional and model.num_classes == 2
    assert math.isfinite(result.metrics[0]["test_elbo"])


# -- resume -----------------------------------------------------------------------------------------

def test_resume_continues_exactly(straight_run, tmp_path):
    reference, _ = straight_run
    run_dir = tmp_path / "run"
    first = training.train(config(epochs=1), run_dir, device="cpu")
    assert first.status == "finished" and first.epoch == 1
    with pytest.raises(VaetoolError, match="already trained 1 epoch;"):
        training.resume(run_dir, epochs=1, device="cpu")
    result = training.resume(run_dir, epochs=2, device="cpu")
    assert result.status == "finished" and result.epoch == 2
    assert state_dicts_equal(weights(run_dir / "model.safetensors"), weights(reference / "model.safetensors"))
    assert state_dicts_equal(weights(run_dir / "checkpoint.safetensors"), weights(reference / "checkpoint.safetensors"))
    assert [without_time(m) for m in metrics_of(run_dir)] == [without_time(m) for m in metrics_of(reference)]
    assert vaetool.load(run_dir).config == vaetool.load(reference).config


def test_resuming_a_finished_run_needs_more_epochs(straight_run):
    run_dir, _ = straight_run
    before = snapshot(run_dir)
    for epochs in (None, 2, 1):
        with pytest.raises(VaetoolError, match="already trained 2 epochs"):
            training.resume(run_dir, epochs=epochs, device="cpu")
    assert snapshot(run_dir) == before


def test_resuming_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(VaetoolError, match="no checkpoint"):
        training.resume(tmp_path, device="cpu")


def test_training_into_an_existing_run_is_refused_and_leaves_it_untouched(straight_run):
    run_dir, _ = straight_run
    before = snapshot(run_dir)
    with pytest.raises(VaetoolError, match="already holds a run"):
        training.train(config(epochs=1, seed=5), run_dir, device="cpu")
    assert snapshot(run_dir) == before


# -- Ctrl-C -----------------------------------------------------------------------------------------

class CtrlC(Progress):
    """Presses Ctrl-C (``times`` times) when step ``at`` of epoch ``epoch`` has been reported."""

    def __init__(self, epoch=0, at=2, times=1):
        self.epoch, self.at, self.times = None, at, times
        self.target_epoch = epoch

    def epoch_start(self, epoch, epochs, steps, first_step):
        self.epoch = epoch

    def update(self, step, stats):
        if self.epoch == self.target_epoch and step == self.at and self.times:
            for _ in range(self.times):
                self.times -= 1
                signal.raise_signal(signal.SIGINT)


@pytest.fixture
def report_every_step(monkeypatch):
    # Progress is normally reported at most four times a second; here after every step, so the
    # Ctrl-C lands mid-epoch.
    monkeypatch.setattr(training, "REFRESH_SECONDS", -1.0)


def test_ctrl_c_stops_at_a_step_boundary_and_saves(tmp_path, report_every_step):
    handler = signal.getsignal(signal.SIGINT)
    run_dir = tmp_path / "run"
    result = training.train(config(), run_dir, device="cpu", progress=CtrlC(epoch=1, at=2))
    assert result.status == "interrupted"
    assert (result.epoch, result.step) == (1, 2)
    assert signal.getsignal(signal.SIGINT) is handler  # the trainer's handler is gone again
    with safe_open(str(run_dir / "checkpoint.safetensors"), framework="pt") as f:
        progress = json.loads(f.metadata()["vaetool"])["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 2)
    assert (run_dir / "model.safetensors").is_file()
    assert [m["epoch"] for m in metrics_of(run_dir)] == [1]


def test_resume_after_ctrl_c_matches_an_uninterrupted_run(straight_run, tmp_path, report_every_step):
    reference, _ = straight_run
    run_dir = tmp_path / "run"
    assert training.train(config(), run_dir, device="cpu", progress=CtrlC(epoch=0, at=2)).status == "interrupted"
    result = training.resume(run_dir, device="cpu")  # the recorded total of 2 epochs
    assert result.status == "finished" and result.epoch == 2
    assert state_dicts_equal(weights(run_dir / "model.safetensors"), weights(reference / "model.safetensors"))
    # The first epoch's running sums survived the stop too.
    assert [without_time(m) for m in metrics_of(run_dir)] == [without_time(m) for m in metrics_of(reference)]


def test_a_second_ctrl_c_aborts(tmp_path, report_every_step):
    with pytest.raises(KeyboardInterrupt):
        training.train(config(), tmp_path / "run", device="cpu", progress=CtrlC(epoch=0, at=1, times=2))


# -- divergence -------------------------------------------------------------------------------------

def test_a_non_finite_loss_stops_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_loss = ELBO.loss
    calls = []

    def poisoned(self, terms, epochs_done):
        calls.append(epochs_done)
        loss = real_loss(self, terms, epochs_done)
        return loss * float("nan") if len(calls) > 4 else loss  # from the first step of epoch 2

    saved_after_epoch = {}

    class Snapshot(Progress):
        def epoch_end(self, metrics):
            saved_after_epoch[metrics["epoch"]] = snapshot(run_dir)

    monkeypatch.setattr(ELBO, "loss", poisoned)
    with pytest.raises(training.Diverged) as error:
        training.train(config(epochs=3), run_dir, device="cpu", progress=Snapshot())
    assert isinstance(error.value, VaetoolError)
    assert "epoch 2" in str(error.value)
    assert list(saved_after_epoch) == [1]
    assert snapshot(run_dir) == saved_after_epoch[1]  # model, checkpoint and metrics of epoch 1, byte for byte
    assert all(torch.isfinite(t).all() for t in weights(run_dir / "model.safetensors").values())


def test_an_absurd_learning_rate_diverges_cleanly(tmp_path):
    with pytest.raises(training.Diverged):
        training.train(config(likelihood="gaussian", likelihood_options={"sigma": 1e-3}, lr=1e12, epochs=3),
                       tmp_path / "run", device="cpu")


# -- the β schedule -----------------------------------------------------------------------------

def test_warmup_raises_beta_linearly(tmp_path, monkeypatch):
    real_loss = ELBO.loss
    betas = []

    def recording(self, terms, epochs_done):
        betas.append(self.beta_at(epochs_done))
        return real_loss(self, terms, epochs_done)

    monkeypatch.setattr(ELBO, "loss", recording)
    result = training.train(config(beta=2.0, warmup=2.0, epochs=3), tmp_path / "run", device="cpu")
    # β reaches its full value 2 after warm-up epochs, rising from 0 step by step (4 steps an epoch).
    assert [m["beta"] for m in result.metrics] == pytest.approx([1.0, 2.0, 2.0])
    expected = [2.0 * min(1.0, (step / 4) / 2.0) for step in range(12)]
    assert betas == pytest.approx(expected)
    assert betas[0] == 0.0


def test_free_bits_reach_the_objective(tmp_path, monkeypatch):
    real_loss = ELBO.loss
    seen = []

    def recording(self, terms, epochs_done):
        seen.append(self.free_bits)
        return real_loss(self, terms, epochs_done)

    monkeypatch.setattr(ELBO, "loss", recording)
    training.train(config(free_bits=0.5, epochs=1), tmp_path / "run", device="cpu")
    assert seen == [0.5] * 4


# -- bad settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{"epochs": 0}, {"latent_dim": 0}, {"batch_size": 0}, {"lr": 0.0},
                                       {"beta": -1.0}, {"warmup": -1.0}, {"free_bits": float("nan")}],
                         ids=lambda o: next(iter(o)))
def test_bad_settings_are_clear_errors(tmp_path, overrides):
    with pytest.raises(VaetoolError):
        training.train(config(**overrides), tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


class WrongLabels(TinySquares):
    def load(self, split, root=None):
        data = super().load(split, root)
        return Split(data.images, data.labels + 5)


def test_a_conditional_model_refuses_labels_out_of_range(tmp_path):
    registry.register("dataset", "wrong-labels", WrongLabels)
    try:
        with pytest.raises(VaetoolError, match="labels"):
            training.train(config(architecture="cvae", architecture_options={"channels": [8, 16]},
                                  dataset="wrong-labels"), tmp_path / "run", device="cpu")
    finally:
        registry.unregister("dataset", "wrong-labels")


@pytest.mark.parametrize("split", ["n_train", "n_test"])
def test_an_empty_split_is_a_clear_error(tmp_path, split):
    # A dataset option can leave a split empty (shapes allows n_test=0): the trainer must say so in one
    # sentence instead of dividing by zero.
    with pytest.raises(VaetoolError):
        training.train(config(dataset_options={"n_train": 64, "n_test": 16, split: 0}, epochs=1),
                       tmp_path / "run", device="cpu")
