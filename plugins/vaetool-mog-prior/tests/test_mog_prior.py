"""The mog prior: vaetool's conformance check, its density against torch.distributions, its sampling
statistics, save → load, and a training run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D
from typer.testing import CliRunner

import vaetool
from vaetool import registry
from vaetool.cli import app
from vaetool.contracts import PLUGIN_API_VERSION, Prior
from vaetool.errors import VaetoolError
from vaetool.objectives.elbo import ELBO
from vaetool.testing import check_prior
from vaetool_mog_prior import MIN_STD, MixtureOfGaussians


def set_mixture(prior, weights, means, stds):
    with torch.no_grad():
        prior.logits.copy_(torch.tensor(weights, dtype=prior.logits.dtype).log())
        prior.means.copy_(torch.tensor(means, dtype=prior.means.dtype))
        target = torch.tensor(stds, dtype=prior.means.dtype)
        prior.raw_log_stds.copy_((target - MIN_STD).log())  # σ = exp(raw) + MIN_STD


def reference(prior):
    log_weights, means, stds = prior.mixture()
    return D.MixtureSameFamily(D.Categorical(logits=log_weights), D.Independent(D.Normal(means, stds), 1))


@pytest.mark.parametrize("components", [1, 3])
def test_keeps_the_prior_contract(components):
    check_prior("mog", options={"components": components})


def test_is_registered_and_samples_from_its_generator_only():
    cls = registry.get("prior", "mog")  # through the installed entry point
    assert cls is MixtureOfGaussians and issubclass(cls, Prior)
    assert cls.api_version == PLUGIN_API_VERSION
    assert cls.analytic_kl is False
    assert registry.options_of(cls) == {"components": 10}
    torch.manual_seed(0)
    prior = cls(5, **registry.resolve_options("prior", "mog", {"components": 4}))
    assert prior.latent_dim == 5
    for shape in [(7, 5), (3, 7, 5)]:
        log_p = prior.log_prob(torch.randn(shape))
        assert log_p.shape == shape[:-1] and torch.isfinite(log_p).all()
    draw = lambda seed: prior.sample(6, torch.Generator().manual_seed(seed))  # noqa: E731
    first = draw(1)
    torch.manual_seed(123)  # the global random state must not matter
    assert first.shape == (6, 5) and torch.equal(first, draw(1)) and not torch.equal(first, draw(2))
    assert prior.sample(0).shape == (0, 5)
    prior.double()
    assert prior.sample(3, torch.Generator().manual_seed(0)).dtype == torch.float64


def test_log_prob_is_the_mixture_density():
    prior = MixtureOfGaussians(3, components=4).double()
    set_mixture(prior, [0.1, 0.2, 0.3, 0.4], torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).tolist(),
                [[0.5, 1.0, 2.0], [1.0, 1.0, 1.0], [0.2, 0.3, 0.4], [3.0, 0.1, 1.0]])
    z = 2 * torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(prior.log_prob(z), reference(prior).log_prob(z), rtol=1e-12, atol=1e-12)
    # And written out by hand: log Σ_k π_k Π_d N(z_d; μ_kd, σ_kd²).
    _, means, stds = prior.mixture()
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    density = (weights * torch.exp(-0.5 * ((z[:, None] - means) / stds) ** 2).div(stds * math.sqrt(2 * math.pi))
               .prod(-1)).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), density.log(), rtol=1e-10, atol=1e-12)


def test_one_component_at_the_origin_is_the_standard_normal():
    prior = MixtureOfGaussians(4, components=1)
    set_mixture(prior, [1.0], [[0.0] * 4], [[1.0] * 4])
    z = torch.randn(10, 4)
    torch.testing.assert_close(prior.log_prob(z), D.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_samples_follow_the_mixture():
    prior = MixtureOfGaussians(2, components=3)
    means, stds = [[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]], [[0.5, 1.0], [1.0, 2.0], [2.0, 0.5]]
    weights = [0.2, 0.3, 0.5]
    set_mixture(prior, weights, means, stds)
    with torch.no_grad():
        z = prior.sample(40000, torch.Generator().manual_seed(0))
    nearest = torch.cdist(z, torch.tensor(means)).argmin(1)  # the components are far apart
    for k in range(3):
        chosen = z[nearest == k]
        assert len(chosen) / len(z) == pytest.approx(weights[k], abs=0.01)
        torch.testing.assert_close(chosen.mean(0), torch.tensor(means[k]), atol=0.06, rtol=0)
        torch.testing.assert_close(chosen.std(0), torch.tensor(stds[k]), atol=0, rtol=0.04)


def test_the_elbo_uses_the_monte_carlo_kl_and_trains_the_prior():
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=3, prior="mog",
                           architecture_options={"hidden": [16]}, prior_options={"components": 3})
    x = torch.rand(5, 1, 8, 8)
    terms = model.elbo(x, generator=torch.Generator().manual_seed(0))
    assert terms.kl.shape == (5, 1) and torch.isfinite(terms.kl).all()  # one column: not per dimension
    ELBO().loss(terms, 0.0).backward()
    for name, p in model.prior.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_save_and_load_give_the_same_prior(tmp_path):
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=3, prior="mog",
                           architecture_options={"hidden": [16]}, prior_options={"components": 3})
    with torch.no_grad():
        for p in model.prior.parameters():
            p.add_(0.1 * torch.randn_like(p))  # trained weights, not the initial ones
    vaetool.save(model, tmp_path / "m.safetensors")
    loaded = vaetool.load(tmp_path / "m.safetensors")
    assert loaded.config["prior"] == "mog" and loaded.config["prior_options"] == {"components": 3}
    assert loaded.config["packages"]["prior"] == "vaetool-mog-prior"
    z = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.equal(loaded.prior.log_prob(z), model.prior.log_prob(z))
        assert torch.equal(loaded.sample(4, generator=torch.Generator().manual_seed(3)),
                           model.eval().sample(4, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("components", [0, -2, 2.5, True, "many"])
def test_impossible_component_counts_are_clear_errors(components):
    with pytest.raises(VaetoolError, match="components"):
        MixtureOfGaussians(2, components=components)


def test_trains_one_epoch_with_vaetool_train(tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--arch", "conv", "--channels", "8,16", "--prior", "mog", "--prior-opt", "components=3",
        "--latent-dim", "4", "--data", "shapes", "--data-opt", "n_train=128", "--data-opt", "n_test=32",
        "--data-opt", "size=32", "--epochs", "1", "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "run"])
    assert result.exit_code == 0, result.output
    model = vaetool.load(tmp_path / "run")
    assert model.config["prior"] == "mog" and model.prior.components == 3
    assert model.config["packages"]["prior"] == "vaetool-mog-prior"
    sampled = CliRunner().invoke(app, ["sample", "-m", str(tmp_path / "run"), "-n", "4", "-o", str(tmp_path / "s.png")])
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "s.png").is_file()
