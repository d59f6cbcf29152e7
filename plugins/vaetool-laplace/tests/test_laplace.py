"""The laplace likelihood: vaetool's conformance check, its maths against torch.distributions, and a training run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D
from typer.testing import CliRunner

import vaetool
from vaetool.cli import app
from vaetool.testing import check_likelihood
from vaetool_laplace import MIN_SCALE, Laplace


def params_for(likelihood, shape, seed=0, scale=1.0):
    batch, channels, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, likelihood.params_per_channel * channels, height, width, generator=generator)


def images(shape, seed=1):
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


@pytest.mark.parametrize("per_pixel", [True, False])
def test_keeps_the_likelihood_contract(per_pixel):
    check_likelihood("laplace", options={"per_pixel": per_pixel})


def test_params_per_channel_follows_per_pixel():
    assert Laplace().params_per_channel == 2
    assert Laplace(per_pixel=False).params_per_channel == 1
    assert [name for name, _ in Laplace(per_pixel=False).named_parameters()] == ["log_scale"]
    assert list(Laplace().parameters()) == []


def test_per_pixel_log_prob_is_torch_laplace_summed_over_pixels_and_channels():
    likelihood = Laplace().double()
    shape = (4, 3, 5, 6)
    params, x = params_for(likelihood, shape).double(), images(shape).double()
    loc, raw_log_scale = params.chunk(2, dim=1)  # a block of C means, then a block of C log-scales
    loc, scale = torch.sigmoid(loc), likelihood.loc_and_scale(params)[1]
    expected = D.Laplace(loc, scale).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(scale, raw_log_scale.exp() + MIN_SCALE, rtol=1e-12, atol=1e-15)


def test_shared_log_prob_is_torch_laplace_with_one_learned_scale():
    likelihood = Laplace(per_pixel=False).double()
    with torch.no_grad():
        likelihood.log_scale.fill_(math.log(0.3 - MIN_SCALE))
    shape = (3, 2, 4, 4)
    params, x = params_for(likelihood, shape).double(), images(shape).double()
    expected = D.Laplace(torch.sigmoid(params), 0.3).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected, rtol=1e-6, atol=1e-6)


def test_scale_never_falls_below_its_minimum_and_keeps_its_gradient():
    likelihood = Laplace()
    params = torch.full((1, 2, 1, 1), -50.0, requires_grad=True)
    _, scale = likelihood.loc_and_scale(params)
    assert scale.item() == pytest.approx(MIN_SCALE, rel=1e-3)
    likelihood.log_prob(torch.zeros(1, 1, 1, 1), params).sum().backward()
    assert torch.isfinite(params.grad).all()


def test_mean_is_the_location():
    likelihood = Laplace()
    params = params_for(likelihood, (2, 1, 3, 3), scale=3)
    assert torch.equal(likelihood.mean(params), torch.sigmoid(params[:, :1]))


def test_samples_have_laplace_statistics_and_are_clamped():
    likelihood = Laplace(per_pixel=False)
    with torch.no_grad():
        likelihood.log_scale.fill_(math.log(0.05 - MIN_SCALE))
    params = torch.zeros(20000, 1, 1, 1)  # μ = 0.5, b = 0.05: clamping to [0, 1] is negligible
    sample = likelihood.sample(params, torch.Generator().manual_seed(0))
    assert sample.min() >= 0 and sample.max() <= 1
    deviation = (sample - 0.5).abs()
    assert deviation.mean().item() == pytest.approx(0.05, rel=0.03)  # E|x − μ| = b
    assert sample.mean().item() == pytest.approx(0.5, abs=0.002)
    wide = likelihood.sample(torch.full((1000, 2, 1, 1), 4.0), torch.Generator().manual_seed(0))
    assert wide.min() >= 0 and wide.max() <= 1 and (wide == 1).any()  # μ ≈ 0.98: many draws clamp at 1


def test_trains_one_epoch_with_vaetool_train(tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--arch", "conv", "--channels", "8,16", "--likelihood", "laplace", "--latent-dim", "4",
        "--data", "shapes", "--data-opt", "n_train=128", "--data-opt", "n_test=32", "--data-opt", "size=32",
        "--epochs", "1", "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "run"])
    assert result.exit_code == 0, result.output
    model = vaetool.load(tmp_path / "run")
    assert model.config["likelihood"] == "laplace"
    assert model.config["likelihood_options"] == {"per_pixel": True}
    assert model.config["packages"]["likelihood"] == "vaetool-laplace"
    assert not model.likelihood.discrete  # a density on [0, 1]: no bits/dim reported
