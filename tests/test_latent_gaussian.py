"""The gaussian latent kind is today's VAE exactly: old files load as it, and training is the same.

``tests/data/pre-latent-*.safetensors`` were trained (one epoch on tiny-squares) by the code before
latents became a plugin kind, with the outputs of each model on fixed images recorded beside them;
``pre-latent-runs.json`` holds each run's settings and metrics.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vaetool
from conftest import (RECORDED_ATOL, RECORDED_RTOL, TINY_DATASET, TinySquares, assert_weights_match_recorded,
                      metrics_match_recorded)
from vaetool import io, registry, training
from vaetool.training import TrainConfig

DATA = Path(__file__).parent / "data"
RUNS = json.loads((DATA / "pre-latent-runs.json").read_text())


@pytest.fixture(autouse=True)
def tiny_squares():
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield
    registry.unregister("dataset", TINY_DATASET)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_an_old_model_file_loads_as_the_gaussian_latent_with_the_same_outputs(name):
    header = io.read_tensors(DATA / f"pre-latent-{name}.safetensors")[1]
    assert "latent" not in header["config"]  # truly a file from before
    model = vaetool.load(DATA / f"pre-latent-{name}.safetensors")
    assert model.config["latent"] == "gaussian" and model.config["latent_options"] == {}
    expected, _ = io.read_tensors(DATA / f"pre-latent-{name}-outputs.safetensors")
    x = TinySquares(8, 8, seed=5).load("test").images.float() / 255
    with torch.no_grad():
        posterior = model.encode(x)
        terms = model.elbo(x, generator=torch.Generator().manual_seed(3))
        outputs = {"mean": posterior.mean, "log_var": posterior.log_var, "rec": terms.reconstruction, "kl": terms.kl,
                   "samples": model.sample(4, generator=torch.Generator().manual_seed(4)),
                   "reconstruction": model.reconstruct(x)}
    # To float rounding (RECORDED_RTOL): another torch release's convolutions sum in another order.
    for key, value in expected.items():
        torch.testing.assert_close(outputs[key], value, rtol=RECORDED_RTOL, atol=RECORDED_ATOL, msg=key)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_training_with_the_gaussian_latent_is_the_same_as_before(name, tmp_path):
    # To float rounding: the conv run trains in channels-last on the CPU today, whose convolutions
    # sum in another order than the layout the file was trained in.
    run = RUNS[name]
    result = training.train(TrainConfig(**run["config"]), tmp_path / "run", device="cpu")
    old = io.read_tensors(DATA / f"pre-latent-{name}.safetensors")[0]
    new = io.read_tensors(tmp_path / "run" / "model.safetensors")[0]
    assert_weights_match_recorded(new, old)
    strip = lambda line: {k: v for k, v in line.items() if not k.endswith("seconds")}  # noqa: E731
    assert metrics_match_recorded([strip(m) for m in result.metrics], [strip(m) for m in run["metrics"]])


def test_the_recorded_comparison_fails_when_training_changes(tmp_path):
    # The tolerance above is float rounding, not slack: a learning rate 1% higher is far outside it.
    run = RUNS["mlp-softplus"]
    result = training.train(TrainConfig(**{**run["config"], "lr": run["config"]["lr"] * 1.01}), tmp_path / "run",
                            device="cpu")
    old = io.read_tensors(DATA / "pre-latent-mlp-softplus.safetensors")[0]
    with pytest.raises(AssertionError):
        assert_weights_match_recorded(io.read_tensors(tmp_path / "run" / "model.safetensors")[0], old)
    strip = lambda line: {k: v for k, v in line.items() if not k.endswith("seconds")}  # noqa: E731
    assert not metrics_match_recorded([strip(m) for m in result.metrics], [strip(m) for m in run["metrics"]])


def test_a_new_model_file_records_the_latent_kind(tmp_path):
    model = vaetool.create("linear", input_shape=(1, 6, 6), latent_dim=2)
    vaetool.save(model, tmp_path / "m.safetensors")
    config = io.read_tensors(tmp_path / "m.safetensors")[1]["config"]
    assert config["latent"] == "gaussian" and config["latent_options"] == {}
