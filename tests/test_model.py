"""The VAE: every architecture with every likelihood, the ELBO's parts, and conditioning."""
from __future__ import annotations

import pytest
import torch
from torch import distributions as D

import vaetool
from conftest import state_dicts_equal, tiny_options
from vaetool import registry
from vaetool.distributions import DiagonalGaussian
from vaetool.errors import VaetoolError
from vaetool.model import ELBOTerms
from vaetool.objectives.elbo import ELBO


def objective(terms, beta=1.0, free_bits=0.0):
    """The default objective's loss, as training computes it."""
    return ELBO(beta=beta, free_bits=free_bits).loss(terms, 0.0)


# vaetool's own plugins; third-party ones are checked by the conformance kit (tests/test_conformance.py),
# which asks for the contract, not for how fast a model learns.
ARCHITECTURES = [n for n in registry.names("architecture") if registry.package_of("architecture", n) == "vaetool"]
LIKELIHOODS = [(n, {}) for n in registry.names("likelihood") if registry.package_of("likelihood", n) == "vaetool"] + [
    ("bernoulli", {"binarize": "dynamic"}),
    ("gaussian", {"sigma": 0.1}),
    ("gaussian", {"per_pixel": True}),
]
LIKELIHOOD_IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in LIKELIHOODS]
NUM_CLASSES = 3


def make(architecture, likelihood="bernoulli", likelihood_options=None, input_shape=(1, 16, 16), **kwargs):
    kwargs.setdefault("latent_dim", 4)
    return vaetool.create(architecture, likelihood, input_shape=input_shape, num_classes=NUM_CLASSES,
                          architecture_options=tiny_options(architecture),
                          likelihood_options=likelihood_options or {}, **kwargs)


def learnable_batch(shape=(16, 1, 16, 16), seed=0):
    """A fixed pattern (mostly dark, far from the untrained decoder's grey) with a little noise, on 8-bit
    levels; and labels."""
    generator = torch.Generator().manual_seed(seed)
    pattern = (torch.rand(shape[1:], generator=generator) > 0.7).float()
    noise = 0.1 * torch.rand(shape, generator=generator)
    x = (torch.round(255 * (0.85 * pattern + noise)) / 255).clamp(0, 1)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=generator)
    return x, y


def fixed_elbo(model, x, y, seed=0):
    return model.elbo(x, y, generator=torch.Generator().manual_seed(seed))


# -- every architecture × every likelihood ------------------------------------------------------

@pytest.mark.parametrize(("likelihood", "options"), LIKELIHOODS, ids=LIKELIHOOD_IDS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_trains_and_round_trips(architecture, likelihood, options, tmp_path):
    torch.manual_seed(0)
    model = make(architecture, likelihood, options)
    x, y = learnable_batch()
    before_params = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        loss_before = objective(fixed_elbo(model, x, y)).item()

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        loss = objective(model.elbo(x, y))
        optimizer.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        optimizer.step()

    with torch.no_grad():
        loss_after = objective(fixed_elbo(model, x, y)).item()
    assert loss_after < loss_before
    after_params = model.state_dict()
    for name, p in model.named_parameters():
        assert not torch.equal(before_params[name], after_params[name]), f"{name} did not change"

    # save → load gives the same model: same config, weights and outputs.
    path = tmp_path / "model.safetensors"
    vaetool.save(model, path)
    loaded = vaetool.load(path)
    model.eval()
    assert not loaded.training
    assert {k: loaded.config[k] for k in model.config} == model.config
    assert set(loaded.config) - set(model.config) <= {"packages"}  # provenance only
    assert state_dicts_equal(loaded.state_dict(), model.state_dict())
    z = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded.encode(x, y).mean, model.encode(x, y).mean)
        assert torch.equal(loaded.encode(x, y).std, model.encode(x, y).std)
        assert torch.equal(loaded.decode_params(z, y[:5]), model.decode_params(z, y[:5]))
        assert torch.equal(loaded.decode(z, y[:5]), model.decode(z, y[:5]))
        assert torch.equal(fixed_elbo(loaded, x, y).elbo, fixed_elbo(model, x, y).elbo)


@pytest.mark.parametrize("params_per_channel_likelihood", ["bernoulli", "logistic"])
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)], ids=str)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architectures_take_common_image_shapes(architecture, input_shape, params_per_channel_likelihood):
    model = make(architecture, params_per_channel_likelihood, input_shape=input_shape)
    p = model.likelihood.params_per_channel
    channels, height, width = input_shape
    x = torch.rand(2, *input_shape)
    y = torch.tensor([0, 2])
    posterior = model.encode(x, y)
    assert posterior.mean.shape == posterior.std.shape == (2, 4)
    z = torch.randn(2, 4)
    assert model.decode_params(z, y).shape == (2, p * channels, height, width)
    assert model.decode(z, y).shape == (2, *input_shape)
    assert model.reconstruct(x, y).shape == (2, *input_shape)
    assert model.sample(3, y=1).shape == (3, *input_shape)
    assert model.elbo(x, y).reconstruction.shape == (2,)


def test_config_records_the_plugin_defaults_actually_used():
    model = vaetool.create("mlp", "gaussian", input_shape=(1, 8, 8), latent_dim=3,
                           architecture_options={"hidden": [16]}, likelihood_options={"sigma": None},
                           dataset="somewhere")
    config = model.config
    assert config["architecture"] == "mlp" and config["architecture_options"] == {"hidden": [16], "scale_init": None, "activation": "relu",
        "init": "default", "output_bias": "default"}
    assert config["likelihood"] == "gaussian" and config["likelihood_options"] == {"sigma": None, "per_pixel": False, "link": "sigmoid",
                                                                                          "reduction": "sum"}
    assert config["input_shape"] == [1, 8, 8] and config["latent_dim"] == 3 and config["num_classes"] == 0
    assert config["dataset"] == "somewhere"  # extra keys are recorded as they are
    # The config alone rebuilds a model with identically shaped weights.
    rebuilt = type(model).from_config(config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


# -- the posterior --------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", ["exp", "softplus"])
def test_encoder_scales_give_a_positive_std(scale):
    model = make("mlp", encoder_scale=scale)
    x = torch.rand(8, 1, 16, 16)
    assert (model.encode(x).std > 0).all()
    # The extremes of the raw output too.
    raw = torch.tensor([[-1e4, -100.0, -5.0, 0.0, 5.0, 100.0]])
    std = DiagonalGaussian.from_encoder(torch.zeros_like(raw), raw, scale).std
    assert (std > 0).all() and torch.isfinite(std).all()


def test_exp_scale_reads_a_log_variance_and_softplus_a_std():
    raw = torch.linspace(-6, 6, 13).unsqueeze(0)
    mean = torch.zeros_like(raw)
    torch.testing.assert_close(DiagonalGaussian.from_encoder(mean, raw, "exp").std, torch.exp(raw / 2))
    torch.testing.assert_close(DiagonalGaussian.from_encoder(mean, raw, "softplus").std,
                               torch.nn.functional.softplus(raw), rtol=1e-4, atol=2e-5)


def test_unknown_encoder_scale_is_a_clear_error():
    with pytest.raises(VaetoolError, match="encoder scale"):
        make("mlp", encoder_scale="square")


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    model = make("mlp", encoder_scale="softplus")
    posterior = model.encode(torch.rand(8, 1, 16, 16))
    expected = D.kl_divergence(D.Normal(posterior.mean, posterior.std), D.Normal(0.0, 1.0))
    torch.testing.assert_close(posterior.kl(), expected)
    assert posterior.kl().shape == (8, 4)


def test_elbo_is_one_reparameterised_sample_of_log_p_minus_the_kl():
    torch.manual_seed(0)
    model = make("conv")  # bernoulli without binarization: the target draws no randomness
    x = torch.rand(6, 1, 16, 16)
    terms = fixed_elbo(model, x, None, seed=3)
    posterior = model.encode(x)
    # z = μ + σ·ε with ε from the same seeded generator (Kingma & Welling 2014, eq. 10).
    eps = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    z = posterior.mean + posterior.std * eps
    torch.testing.assert_close(terms.reconstruction, model.likelihood.log_prob(x, model.decode_params(z)))
    torch.testing.assert_close(terms.kl, posterior.kl())
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl.sum(-1))
    assert terms.elbo.shape == (6,)
    # A second draw differs: the reconstruction term is stochastic for a VAE.
    assert not torch.equal(fixed_elbo(model, x, None, seed=4).reconstruction, terms.reconstruction)


def test_autoencoder_has_no_kl_and_is_deterministic():
    torch.manual_seed(0)
    model = make("mlp", autoencoder=True)
    x = torch.rand(6, 1, 16, 16)
    first, second = fixed_elbo(model, x, None, seed=1), fixed_elbo(model, x, None, seed=2)
    assert torch.equal(first.kl, torch.zeros(6, 4))
    assert torch.equal(first.reconstruction, second.reconstruction)
    posterior = model.encode(x)
    assert torch.equal(posterior.std, torch.zeros(6, 4))
    expected = model.likelihood.log_prob(x, model.decode_params(posterior.mean))
    torch.testing.assert_close(first.reconstruction, expected)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


# -- the objective ----------------------------------------------------------------------------------


KL = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.5]])
REC = torch.tensor([-100.0, -50.0])


def test_objective_is_minus_rec_plus_beta_kl_averaged_over_the_batch():
    terms = ELBOTerms(REC, KL)
    assert objective(terms).item() == pytest.approx(75.0 + 3.45)
    assert objective(terms, beta=4.0).item() == pytest.approx(75.0 + 4 * 3.45)
    assert objective(terms, beta=1.0).item() == pytest.approx(-terms.elbo.mean().item())


def test_beta_zero_objective_is_minus_the_reconstruction_mean():
    terms = ELBOTerms(REC, KL)
    assert objective(terms, beta=0.0).item() == pytest.approx(-REC.mean().item())


def test_free_bits_clamp_each_dimensions_batch_average_kl():
    terms = ELBOTerms(REC, KL)
    # Batch-average KL per dimension is [0.2, 3.0, 0.25]; each is floored at 1 nat.
    assert objective(terms, 1.0, free_bits=1.0).item() == pytest.approx(75.0 + 1.0 + 3.0 + 1.0)
    # Above every dimension's KL: the KL part is free_bits · latent_dim.
    assert objective(terms, 1.0, free_bits=10.0).item() == pytest.approx(75.0 + 10.0 * 3)
    assert objective(terms, 2.0, free_bits=10.0).item() == pytest.approx(75.0 + 2 * 10.0 * 3)


def test_free_bits_stop_the_kl_gradient_below_the_floor():
    kl = KL.clone().requires_grad_()
    objective(ELBOTerms(REC, kl), 1.0, free_bits=1.0).backward()
    # Only dimension 1 (average 3.0 > 1) is penalised: ∂/∂kl = 1/B there, 0 elsewhere.
    assert torch.equal(kl.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))


def test_free_bits_on_a_model_with_more_than_every_dimensions_kl():
    torch.manual_seed(0)
    model = make("mlp")
    terms = model.elbo(torch.rand(8, 1, 16, 16))
    free_bits = terms.kl.mean(0).max().item() + 1.0
    expected = -terms.reconstruction.mean() + free_bits * model.latent_dim
    torch.testing.assert_close(objective(terms, 1.0, free_bits), expected)


# -- conditioning -----------------------------------------------------------------------------------

def test_conditional_model_uses_the_label():
    torch.manual_seed(0)
    model = make("cvae")
    assert model.conditional
    z = torch.randn(4, 4)
    assert not torch.allclose(model.decode(z, torch.zeros(4, dtype=torch.long)), model.decode(z, torch.ones(4, dtype=torch.long)))
    # One label for the whole batch is broadcast.
    torch.testing.assert_close(model.decode(z, 2), model.decode(z, torch.full((4,), 2)))


def test_conditional_model_refuses_a_missing_label():
    model = make("cvae").eval()
    with pytest.raises(VaetoolError, match="label"):
        model.encode(torch.rand(2, 1, 16, 16))
    with pytest.raises(VaetoolError, match="label"):
        model.sample(2)


@pytest.mark.parametrize("label", [NUM_CLASSES, -1])
def test_conditional_model_refuses_a_label_out_of_range(label):
    model = make("cvae").eval()
    with pytest.raises(VaetoolError, match=f"0 to {NUM_CLASSES - 1}"):
        model.decode(torch.randn(2, 4), torch.tensor([0, label]))


@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "cvae"])
def test_unconditional_models_ignore_labels(architecture):
    torch.manual_seed(0)
    model = make(architecture).eval()
    assert not model.conditional
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model.encode(x, torch.tensor([0, 1])).mean, model.encode(x).mean)


def test_cvae_without_classes_asks_for_a_labelled_dataset():
    with pytest.raises(VaetoolError, match="labelled dataset"):
        vaetool.create("cvae", "bernoulli", input_shape=(1, 16, 16), num_classes=0,
                       architecture_options={"channels": [8, 16]})


@pytest.mark.parametrize(("architecture", "options"), [("mlp", {"hidden": []}), ("conv", {"channels": [8] * 6}),
                                                      ("cvae", {"backbone": "transformer"})])
def test_impossible_architecture_options_are_clear_errors(architecture, options):
    with pytest.raises(VaetoolError):
        vaetool.create(architecture, "bernoulli", input_shape=(1, 28, 28), num_classes=2,
                       architecture_options=options)


def test_cvae_with_an_mlp_backbone():
    model = vaetool.create("cvae", "bernoulli", input_shape=(1, 16, 16), latent_dim=4, num_classes=2,
                           architecture_options={"backbone": "mlp", "hidden": [32]})
    assert model.decode(torch.randn(3, 4), torch.tensor([0, 1, 0])).shape == (3, 1, 16, 16)
