"""How the fully connected nets start: ``init=glorot`` and ``output_bias=data-mean`` (the IWAE paper's code)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke, state_dicts_equal
from test_training import config, weights
from vaetool import registry, training
from vaetool.errors import VaetoolError


@pytest.fixture(scope="module", autouse=True)
def tiny_squares():
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield
    registry.unregister("dataset", TINY_DATASET)


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def assert_glorot(layers: list[nn.Linear]) -> None:
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        # Uniform in ±bound has variance bound²/3; PyTorch's default (±1/√fan_in) is far below it here.
        assert layer.weight.var().item() == pytest.approx(bound ** 2 / 3, rel=0.15)
        assert torch.count_nonzero(layer.bias) == 0


def test_glorot_starts_every_linear_layer_of_the_mlp():
    torch.manual_seed(0)
    model = vaetool.create("mlp", input_shape=(1, 28, 28), latent_dim=20,
                           architecture_options={"hidden": [200, 200], "activation": "tanh", "init": "glorot"})
    assert len(linears(model.architecture)) == 6
    assert_glorot(linears(model.architecture))
    default = vaetool.create("mlp", input_shape=(1, 28, 28), latent_dim=20, architecture_options={"hidden": [200, 200]})
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in linears(default.architecture))


def test_glorot_starts_the_hierarchical_latents_nets():
    torch.manual_seed(0)
    model = vaetool.create("mlp", input_shape=(1, 28, 28), latent_dim=100, latent="hierarchical",
                           architecture_options={"hidden": [200]},
                           latent_options={"dims": [50], "hidden": [100, 100], "init": "glorot"})
    nets = linears(model.latent)
    assert len(nets) == 6  # up and down, three layers each
    assert_glorot(nets)


def test_the_output_bias_starts_at_the_logit_of_the_mean_training_image(tmp_path):
    # A learning rate of 1e-12 leaves the weights where they started, to float precision.
    run = tmp_path / "run"
    training.train(config(architecture_options={"hidden": [32], "output_bias": "data-mean"}, epochs=1, lr=1e-12),
                   run, device="cpu")
    images = TinySquares(n_train=256, n_test=64).load("train", tmp_path).images.double() / 255
    expected = torch.logit(images.mean(0).clamp(1e-3, 1 - 1e-3)).flatten().float()
    bias = vaetool.load(run).architecture.net.decoder[-1].bias.detach()
    torch.testing.assert_close(bias, expected, atol=1e-5, rtol=0)
    plain = tmp_path / "plain"
    training.train(config(epochs=1, lr=1e-12), plain, device="cpu")
    assert not torch.allclose(vaetool.load(plain).architecture.net.decoder[-1].bias, bias, atol=0.1)


def test_a_resumed_run_keeps_its_trained_output_bias(tmp_path):
    options = {"architecture_options": {"hidden": [32], "output_bias": "data-mean", "init": "glorot"}}
    straight = tmp_path / "straight"
    training.train(config(**options), straight, device="cpu")
    run = tmp_path / "run"
    training.train(config(**options, epochs=1), run, device="cpu")
    training.resume(run, epochs=2, device="cpu")
    assert state_dicts_equal(weights(run / "model.safetensors"), weights(straight / "model.safetensors"))


def test_bernoulli_params_at_inverts_its_mean():
    likelihood, _ = registry.build("likelihood", "bernoulli", {})
    mean = torch.tensor([[[0.0, 0.0005, 0.25, 0.5, 0.9, 1.0]]])
    torch.testing.assert_close(likelihood.mean(likelihood.params_at(mean)), mean.clamp(1e-3, 1 - 1e-3))


def test_output_bias_needs_a_likelihood_that_has_a_mean_image(tmp_path):
    error = assert_clean_error(invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "8",
                                      "--arch-opt", "output_bias=data-mean", "--likelihood", "gaussian",
                                      "--runs-dir", tmp_path, "--name", "r"), "output_bias=data-mean")
    assert "gaussian" in error
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, fragment", [
    (("--arch-opt", "init=xavier"), "init must be default or glorot"),
    (("--arch-opt", "output_bias=zero"), "output_bias must be default or data-mean"),
    (("--latent", "hierarchical", "--latent-opt", "init=he"), "init must be default or glorot"),
])
def test_unknown_choices_are_one_sentence(tmp_path, flags, fragment):
    assert_clean_error(invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "8", *flags,
                              "--runs-dir", tmp_path, "--name", "r"), fragment)


def test_the_options_are_checked_when_a_model_is_made():
    with pytest.raises(VaetoolError, match="output_bias"):
        vaetool.create("mlp", likelihood="gaussian", architecture_options={"hidden": [8], "output_bias": "data-mean"})
