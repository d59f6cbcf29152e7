"""The VampPrior: a mixture of the encoder's posteriors at learned pseudo-inputs (Tomczak & Welling 2018)."""
from __future__ import annotations

import math

import pytest
import torch

import vaetool
from conftest import TINY_DATASET, assert_clean_error, invoke, ok
from vaetool.errors import VaetoolError


def model(components=7, **kwargs):
    torch.manual_seed(0)
    return vaetool.create("mlp", input_shape=(1, 6, 6), latent_dim=3, architecture_options={"hidden": [8]},
                          prior="vamp", prior_options={"components": components}, **kwargs)


def test_log_prob_is_the_mean_of_the_encoders_posteriors_at_the_pseudo_inputs():
    vae = model()
    z = torch.randn(2, 5, 3)
    components = vae.encode(torch.sigmoid(vae.prior.raw_pseudo_inputs))
    # brute force: every component's density at every z, averaged
    densities = torch.stack([torch.exp(-0.5 * (((z - m) / s) ** 2 + 2 * s.log() + math.log(2 * math.pi)).sum(-1))
                             for m, s in zip(components.mean, components.std)])
    assert torch.allclose(vae.prior.log_prob(z), densities.mean(0).log(), atol=1e-4)


def test_samples_come_from_the_components_and_follow_the_generator():
    vae = model(components=1).eval()  # one component: samples are q(z|u_1) itself
    with torch.no_grad():
        z = vae.prior.sample(20000, torch.Generator().manual_seed(1))
        component = vae.encode(vae.prior.pseudo_inputs())
    assert torch.allclose(z.mean(0), component.mean[0], atol=0.05)
    assert torch.allclose(z.std(0), component.std[0], rtol=0.05)
    with torch.no_grad():
        assert torch.equal(vae.prior.sample(3, torch.Generator().manual_seed(1)),
                           vae.prior.sample(3, torch.Generator().manual_seed(1)))


def test_the_pseudo_inputs_learn_and_are_saved(tmp_path):
    vae = model()
    before = vae.prior.raw_pseudo_inputs.detach().clone()
    optimizer = torch.optim.Adam(vae.parameters(), lr=0.1)
    x = torch.rand(4, 1, 6, 6)
    for _ in range(2):
        loss = -vae.elbo(x).elbo.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, vae.prior.raw_pseudo_inputs)
    vaetool.save(vae, tmp_path / "m.safetensors")
    loaded = vaetool.load(tmp_path / "m.safetensors")
    assert torch.equal(loaded.prior.raw_pseudo_inputs, vae.prior.raw_pseudo_inputs)
    z = torch.randn(4, 3)
    assert torch.equal(loaded.prior.log_prob(z), vae.eval().prior.log_prob(z))


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"components": 0}, "components must be a whole number"),
    ({"autoencoder": True}, "an autoencoder"),
])
def test_bad_settings_are_clear_errors(kwargs, fragment):
    with pytest.raises(VaetoolError, match=fragment):
        model(**kwargs)


def test_vamp_with_a_conditional_architecture_is_refused():
    with pytest.raises(VaetoolError, match="conditional"):
        vaetool.create("cvae", input_shape=(1, 8, 8), latent_dim=2, num_classes=2, prior="vamp",
                       architecture_options={"backbone": "mlp", "hidden": [8]})


def test_train_and_sample_with_the_vamp_prior_from_the_command_line(tmp_path, tiny_dataset):
    ok(invoke("train", "--prior", "vamp", "--prior-opt", "components=500", "--data", tiny_dataset, "--arch", "mlp",
              "--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--runs-dir", tmp_path, "--name", "vamp"))
    loaded = vaetool.load(tmp_path / "vamp")
    assert loaded.config["prior"] == "vamp" and loaded.config["prior_options"] == {"components": 500}
    assert loaded.prior.raw_pseudo_inputs.shape == (500, 1, 16, 16)
    ok(invoke("sample", "-n", "4", "--model", tmp_path / "vamp", "-o", tmp_path / "s.png"))
    assert (tmp_path / "s.png").is_file()
    error = assert_clean_error(invoke("train", "--prior", "vamp", "--prior-opt", "components=0", "--data",
                                      tiny_dataset, "--runs-dir", tmp_path, "--name", "bad"))
    assert "components" in error and not (tmp_path / "bad").exists()


def test_the_test_kl_of_a_monte_carlo_prior_is_counted_once(tmp_path):
    """The Monte Carlo KL is one column (B, 1); summing it into a per-dimension total once counted it latent_dim times."""
    from vaetool import metrics

    vae = model().eval()
    x = torch.rand(6, 1, 6, 6)
    terms = metrics.elbo_terms(vae, x, seed=2)
    direct = vae.elbo(x, generator=torch.Generator().manual_seed(2))
    assert terms["kl"] == pytest.approx(direct.kl.sum().item() / 6, rel=1e-5)
    assert len(terms["kl_per_dim"]) == 1
    assert terms["elbo"] == pytest.approx(direct.elbo.mean().item(), rel=1e-5)


def test_compare_measures_the_aggregate_posterior_against_n01_only_for_the_standard_prior(tmp_path, tiny_dataset):
    import json

    for name, prior in (("std", []), ("vamp", ["--prior", "vamp", "--prior-opt", "components=20"])):
        ok(invoke("train", *prior, "--data", tiny_dataset, "--arch", "mlp", "--hidden", "16", "--latent-dim", "2",
                  "--epochs", "1", "--runs-dir", tmp_path, "--name", name))
    ok(invoke("compare", tmp_path / "std", tmp_path / "vamp", "--iw-samples", "5", "--no-sample-quality",
              "-o", tmp_path / "c.json"))
    report = json.loads((tmp_path / "c.json").read_text())
    numbers = {m["name"]: m for m in report["models"]}
    assert "aggregate_kl" in numbers["std"] and "aggregate_kl" not in numbers["vamp"]
    assert "iw_ll" in numbers["vamp"] and numbers["vamp"]["iw_ll"] >= numbers["vamp"]["elbo"] - 5
