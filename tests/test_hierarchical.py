"""The hierarchical latent (Burda et al. 2016's two stochastic layers; Sønderby et al. 2016's ladder inference):
its bound against a linear-Gaussian model with a known density, training, the model file, and every command."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as D

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke, ok, refused_before_reading, state_dicts_equal
from vaetool import latentfile, metrics, training
from vaetool.errors import VaetoolError
from vaetool.testing import check_latent
from vaetool.training import TrainConfig

F64 = torch.float64
INFERENCES = ("bottom-up", "ladder")


# -- the bound, exactly: a two-layer linear-Gaussian model ------------------------------------------

# z₂ ~ N(0, I); z₁ | z₂ ~ N(α z₂ + a, δ²) per dimension; x | z₁ ~ N(W z₁ + b, σ² I), W with orthogonal
# columns, so that every posterior is diagonal and the networks below can be the exact ones.
ALPHA, A, DELTA2 = torch.tensor([1.5, 0.7], dtype=F64), torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([0.4, 0.9], dtype=F64)
SIGMA = 0.5
_q, _ = torch.linalg.qr(torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64))
W = _q * torch.tensor([2.0, 1.0], dtype=F64)
B = torch.linspace(0.2, 0.8, 16, dtype=F64)
S1 = ALPHA ** 2 + DELTA2  # the marginal variance of z₁


def exact_log_density(x):
    covariance = W @ torch.diag(S1) @ W.T + SIGMA ** 2 * torch.eye(16, dtype=F64)
    return D.MultivariateNormal(W @ A + B, covariance).log_prob(x.flatten(1))


def data(n=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    z2 = torch.randn(n, 2, generator=g, dtype=F64)
    z1 = ALPHA * z2 + A + DELTA2.sqrt() * torch.randn(n, 2, generator=g, dtype=F64)
    return (z1 @ W.T + B + SIGMA * torch.randn(n, 16, generator=g, dtype=F64)).view(n, 1, 4, 4)


def _set(linear, weight, bias):
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)


def exact_model(inference, log_var_shift=0.0):
    """The model above with, at shift 0, its true posterior as the encoder: every importance weight is p(x)."""
    model = vaetool.create("linear", "gaussian", input_shape=(1, 4, 4), latent_dim=2, latent="hierarchical",
                           latent_options={"dims": [2], "hidden": [], "inference": inference},
                           likelihood_options={"sigma": SIGMA, "link": "identity"}).double()
    zeros = torch.zeros(2, 2, dtype=F64)
    _set(model.architecture.net.decoder[0], W, B)
    # p(z₁ | z₂): mean α z₂ + a, log-variance log δ².
    _set(model.latent.down[0][0], torch.cat([torch.diag(ALPHA), zeros]), torch.cat([A, DELTA2.log()]))
    norms = W.pow(2).sum(0)
    if inference == "bottom-up":  # q(z₁|x) = p(z₁|x), q(z₂|z₁) = p(z₂|z₁)
        S = 1 / (1 / S1 + norms / SIGMA ** 2)
        encoder_mean = S[:, None] * W.T / SIGMA ** 2
        encoder_bias = S * (A / S1 - W.T @ B / SIGMA ** 2)
        _set(model.latent.up[0][0], torch.cat([torch.diag(ALPHA / S1), zeros]),
             torch.cat([-ALPHA * A / S1, (1 - ALPHA ** 2 / S1).log() + log_var_shift]))
    else:  # bottom-up: the likelihood's Gaussian in z₁, N((WᵀW)⁻¹Wᵀ(x − b), σ²(WᵀW)⁻¹); the top: p(z₂|x)
        S = SIGMA ** 2 / norms
        encoder_mean = W.T / norms[:, None]
        encoder_bias = -(W.T @ B) / norms
        spread = DELTA2 + S  # the bottom-up mean given z₂ has mean α z₂ + a and this variance
        top = 1 / (1 + ALPHA ** 2 / spread)
        _set(model.latent.up[0][0], torch.cat([torch.cat([torch.diag(top * ALPHA / spread), zeros], 1),
                                               torch.zeros(2, 4, dtype=F64)]),
             torch.cat([-top * ALPHA * A / spread, top.log() + log_var_shift]))
    _set(model.architecture.net.encoder[0], torch.cat([encoder_mean, torch.zeros(2, 16, dtype=F64)]),
         torch.cat([encoder_bias, S.log()]))
    return model


@pytest.mark.parametrize("inference", INFERENCES)
def test_with_the_true_posterior_every_iw_estimate_is_the_exact_log_density(inference):
    # The weights p(x|z₁) p(z₁|z₂) p(z₂) / q(z₁, z₂|x) all equal p(x) only if every layer's term is right.
    x = data()
    model = exact_model(inference)
    for k, seed in ((1, 0), (7, 1)):
        torch.testing.assert_close(metrics.iw_log_likelihood(model, x, k=k, seed=seed), exact_log_density(x),
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize("inference", INFERENCES)
def test_the_elbo_is_the_exact_log_density_in_expectation_for_the_true_posterior(inference):
    x = data().repeat(10, 1, 1, 1)
    model = exact_model(inference)
    per_image = model.elbo(x, generator=torch.Generator().manual_seed(0)).elbo.detach()
    standard_error = per_image.std().item() / math.sqrt(len(x))
    assert per_image.mean().item() == pytest.approx(exact_log_density(x).mean().item(), abs=5 * standard_error)


@pytest.mark.parametrize("inference", INFERENCES)
def test_with_a_wrong_top_layer_the_elbo_stays_below_and_iw_climbs_towards_log_p(inference):
    x = data()
    exact = exact_log_density(x).mean().item()
    model = exact_model(inference, log_var_shift=1.5)
    elbo = metrics.elbo_terms(model, x.repeat(10, 1, 1, 1))["elbo"]
    iw = [metrics.iw_log_likelihood(model, x, k=k, seed=0).mean().item() for k in (1, 10, 200)]
    assert elbo < exact - 0.2
    assert iw[0] < iw[1] < iw[2] < exact + 0.01
    assert exact - iw[2] < 0.1 * (exact - iw[0])


@pytest.mark.parametrize("inference", INFERENCES)
def test_on_a_random_two_layer_mlp_iw_is_above_the_elbo_and_tightens_with_k(inference):
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=4, architecture_options={"hidden": [16]},
                           latent="hierarchical", latent_options={"dims": [3], "hidden": [8], "inference": inference})
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    x = (torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    elbo = metrics.elbo_terms(model, x)["elbo"]
    iw = [np.mean([metrics.iw_log_likelihood(model, x, k=k, seed=s).mean().item() for s in range(3)]) for k in (1, 10, 100)]
    assert elbo < iw[1] and iw[0] < iw[1] < iw[2]


# -- the plugin ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"inference": "ladder", "dims": [2, 2], "hidden": [4]},
                                     {"dims": [3, 2], "hidden": [], "activation": "relu"}])
def test_three_layer_and_ladder_variants_pass_the_conformance_kit(options):
    check_latent("hierarchical", options=options)


@pytest.mark.parametrize(("options", "fragment"), [
    ({"dims": []}, "dims must be one or more whole numbers"),
    ({"dims": [50, 0]}, "dims must be"),
    ({"hidden": "wide"}, "hidden must be"),
    ({"inference": "top-down"}, "inference must be bottom-up or ladder"),
    ({"activation": "sigmoid"}, "activation must be one of"),
])
def test_bad_options_are_one_sentence(options, fragment):
    with pytest.raises(VaetoolError, match=fragment):
        vaetool.create("mlp", input_shape=(1, 8, 8), latent_dim=4, latent="hierarchical", latent_options=options)


def test_the_iwae_papers_two_layer_net_has_its_layers():
    model = vaetool.create("mlp", input_shape=(1, 28, 28), latent_dim=100, latent="hierarchical",
                           architecture_options={"hidden": [200, 200], "activation": "tanh"})
    # As the authors' code (yburda/iwae, experiments.py) builds it.
    widths = lambda net: [m.out_features for m in net if isinstance(m, torch.nn.Linear)]  # noqa: E731
    assert widths(model.architecture.net.encoder) == [200, 200, 200]  # x → 200-200 → (μ, log σ²) of z₁
    assert widths(model.latent.up[0]) == [100, 100, 100]  # z₁ → 100-100 → z₂ (50-D)
    assert widths(model.latent.down[0]) == [100, 100, 200]  # z₂ → 100-100 → z₁
    assert widths(model.architecture.net.decoder) == [200, 200, 784]
    assert all(isinstance(m, torch.nn.Tanh) for m in model.latent.up[0] if not isinstance(m, torch.nn.Linear))
    assert model.latent.layers == (100, 50) and model.prior.latent_dim == 50 and model.latent_dim == 50


def test_layers_pick_the_code_and_samples_at_layer_one_draw_every_layer():
    torch.manual_seed(0)
    model = vaetool.create("mlp", input_shape=(1, 8, 8), latent_dim=4, architecture_options={"hidden": [16]},
                           latent="hierarchical", latent_options={"dims": [3], "hidden": [8]}).eval()
    x = torch.rand(5, 1, 8, 8)
    top = model.encode(x)
    assert top.mean.shape == (5, 3)
    assert torch.equal(model.decode(top.mean), model.reconstruct(x))
    # A top-layer code decodes through the mean of p(z₁|z₂).
    z1 = model.latent._gaussian(model.latent.down[0], top.mean).mean
    assert torch.equal(model.select_layer(1).decode(z1), model.select_layer(2).decode(top.mean))
    model.select_layer(1)
    assert torch.equal(model.encode(x).mean, model.architecture.encode(x)[0])
    # At layer 1 a sample is z₂ ~ p(z₂), then z₁ ~ p(z₁|z₂): the same generator draws both, in that order.
    g = torch.Generator().manual_seed(3)
    z2 = model.prior.sample(4, g)
    expected = model.latent._gaussian(model.latent.down[0], z2).rsample(g)
    assert torch.equal(model.sample_latents(4, torch.Generator().manual_seed(3)), expected)
    with pytest.raises(VaetoolError, match="layers 1 .* to 2"):
        model.select_layer(3)
    with pytest.raises(VaetoolError, match="one stochastic layer"):
        vaetool.create("mlp", input_shape=(1, 8, 8), latent_dim=4).select_layer(2)


# -- training and the model file -----------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("tiny_squares_module")
TWO_LAYERS = dict(architecture="mlp", architecture_options={"hidden": [32], "activation": "tanh"}, dataset=TINY_DATASET,
                  dataset_options={"n_train": 256, "n_test": 64}, latent_dim=6, latent="hierarchical",
                  latent_options={"dims": [3], "hidden": [16]}, epochs=3, batch_size=32, lr=3e-3, seed=0)


def config(**overrides):
    return TrainConfig(**{**TWO_LAYERS, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_squares_module):
    run_dir = tmp_path_factory.mktemp("hier") / "run"
    return training.train(config(), run_dir, device="cpu"), run_dir


def test_training_raises_the_bound(trained):
    result, _ = trained
    assert result.metrics[-1]["test_elbo"] > result.metrics[0]["test_elbo"] + 5
    assert len(result.metrics[-1]["test_kl_per_dim"]) == 6 + 3  # every dimension of every layer


@pytest.mark.parametrize("inference", INFERENCES)
def test_the_iw_objective_trains_both_inferences(tmp_path, inference):
    result = training.train(config(epochs=2, objective="iwae", objective_options={"k": 4},
                                   latent_options={"dims": [3], "hidden": [16], "inference": inference}),
                            tmp_path / "r", device="cpu")
    first, last = result.metrics[0], result.metrics[-1]
    assert last["train_loss"] < first["train_loss"] and np.isfinite(last["test_elbo"])


def test_a_run_resumes_exactly(trained, tmp_path):
    _, run_dir = trained
    training.train(config(epochs=1), tmp_path / "run", device="cpu")
    training.resume(tmp_path / "run", epochs=3, device="cpu")
    assert state_dicts_equal(vaetool.load(run_dir).state_dict(), vaetool.load(tmp_path / "run").state_dict())


def test_save_and_load_give_identical_outputs_at_every_layer(trained, tmp_path):
    _, run_dir = trained
    model = vaetool.load(run_dir)
    vaetool.save(model, tmp_path / "copy.safetensors")
    loaded = vaetool.load(tmp_path / "copy.safetensors")
    assert loaded.config == model.config
    x = TinySquares(8, 8, seed=3).load("test").images.float() / 255
    for layer in (1, 2):
        for m in (model, loaded):
            m.select_layer(layer)
        g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
        assert torch.equal(model.encode(x).mean, loaded.encode(x).mean)
        assert torch.equal(model.sample(3, generator=g()), loaded.sample(3, generator=g()))
    assert torch.equal(model.elbo(x, generator=g()).elbo, loaded.elbo(x, generator=g()).elbo)
    assert torch.equal(metrics.iw_log_likelihood(model, x, k=5), metrics.iw_log_likelihood(loaded, x, k=5))


def test_a_file_whose_layers_do_not_match_its_weights_is_refused(trained, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    _, run_dir = trained
    tensors = load_file(run_dir / "model.safetensors")
    from safetensors import safe_open

    with safe_open(run_dir / "model.safetensors", "pt") as f:
        header = json.loads(f.metadata()["vaetool"])
    header["config"]["latent_options"]["dims"] = [5]
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"vaetool": json.dumps(header)})
    with pytest.raises(VaetoolError) as error:
        vaetool.load(tmp_path / "bad.safetensors")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--tc-weight", "6"], "The tcvae objective needs the Gaussian posterior q(z|x)"),
    (["--objective", "wae"], "The wae objective needs one continuous code"),
    (["--objective", "iwae", "--objective-opt", "variant=piwae"], "hierarchical latent has 2 stochastic layers"),
    (["--autoencoder"], "leave --autoencoder out"),
    (["--latent-opt", "inference=sideways"], "inference must be bottom-up or ladder"),
])
def test_what_cannot_apply_is_refused_before_any_data_is_read(tmp_path, flags, fragment, monkeypatch):
    assert fragment in refused_before_reading(tmp_path, monkeypatch, "--latent", "hierarchical", *flags)


# -- every command ---------------------------------------------------------------------------------

def test_every_command_works_on_a_hierarchical_model(trained, tmp_path):
    _, run_dir = trained
    m = ["--model", run_dir]
    for layer, width in ((None, 3), (1, 6), (2, 3)):
        pick = [] if layer is None else ["--layer", layer]
        out = tmp_path / f"z{layer}.npy"
        ok(invoke("encode", "--data", TINY_DATASET, "--limit", 10, "-o", out, *m, *pick))
        assert latentfile.read(out).rows.shape == (10, width)
        ok(invoke("decode", out, "-o", tmp_path / f"d{layer}.png", *m, *pick))
        ok(invoke("sample", "-n", 8, "-o", tmp_path / f"s{layer}.png", *m, *pick))
        ok(invoke("interpolate", "--data", TINY_DATASET, "--index", "0,1", "-o", tmp_path / f"i{layer}.gif", *m, *pick))
        ok(invoke("traverse", "--data", TINY_DATASET, "--index", "0", "-o", tmp_path / f"t{layer}.png", *m, *pick))
        ok(invoke("decode", "--z", ",".join(["0"] * width), "-o", tmp_path / f"zero{layer}.png", *m, *pick))
    # The default is the top layer: its files and pictures are layer 2's.
    assert np.array_equal(latentfile.read(tmp_path / "zNone.npy").rows, latentfile.read(tmp_path / "z2.npy").rows)
    assert (tmp_path / "sNone.png").read_bytes() == (tmp_path / "s2.png").read_bytes()
    assert (tmp_path / "s1.png").read_bytes() != (tmp_path / "s2.png").read_bytes()
    # Decoding the encoded means reconstructs, at either layer.
    model = vaetool.load(run_dir)
    x = TinySquares(256, 64).load("test").images[:10].float() / 255
    with torch.no_grad():
        model.select_layer(1)
        assert torch.equal(model.decode(torch.from_numpy(latentfile.read(tmp_path / "z1.npy").rows)), model.reconstruct(x))


def test_compare_scores_the_iw_bound_over_all_layers_and_counts_active_units_per_layer(trained):
    import json

    _, run_dir = trained
    result = json.loads(ok(invoke("compare", run_dir, "--iw-samples", 5, "--iw-images", 20, "--json")).stdout)
    numbers = result["models"][0]
    assert len(numbers["active_per_layer"]) == 2 and numbers["active_units"] == sum(numbers["active_per_layer"])
    model = vaetool.load(run_dir)
    images = TinySquares(256, 64).load("test").images[:20]
    expected = metrics.iw_log_likelihood(model, metrics.scored_data(model, images), k=5).mean().item()
    assert numbers["iw_ll"] == pytest.approx(expected)


@pytest.mark.parametrize(("command", "args"), [
    ("encode", ["--data", TINY_DATASET, "--limit", "2"]),
    ("sample", []),
    ("traverse", []),
])
def test_a_layer_that_is_not_there_is_one_sentence(trained, tmp_path, command, args):
    _, run_dir = trained
    out = tmp_path / ("o.npy" if command == "encode" else "o.png")
    assert_clean_error(invoke(command, *args, "--model", run_dir, "--layer", "3", "-o", out),
                       "--layer 3: this model has stochastic layers 1", "there is no layer 3")


def test_latents_of_the_wrong_layer_are_one_sentence(trained, tmp_path):
    _, run_dir = trained
    ok(invoke("encode", "--data", TINY_DATASET, "--limit", 3, "-o", tmp_path / "z1.npy", "--model", run_dir,
              "--layer", 1))
    assert_clean_error(invoke("decode", tmp_path / "z1.npy", "--model", run_dir, "-o", tmp_path / "d.png"),
                       "has 3 dimensions", "--layer")
