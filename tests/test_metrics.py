"""Evaluation metrics against closed forms: a linear-Gaussian model whose log p(x) is known exactly,
probabilistic PCA, hand-counted layers, and planted dead or collapsed latent dimensions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as D
from torch import nn

import vaetool
from vaetool import metrics, registry
from vaetool.contracts import Architecture, Split
from vaetool.errors import VaetoolError
from vaetool.training import evaluate

F64 = torch.float64


# -- a linear-Gaussian model with a known density --------------------------------------------------

def orthogonal_columns(d: int, norms: list[float], seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, len(norms), generator=torch.Generator().manual_seed(seed), dtype=F64))
    return q * torch.tensor(norms, dtype=F64)


def linear_gaussian(W: torch.Tensor, b: torch.Tensor, sigma: float, mean_scale: float = 1.0,
                    log_var_shift: float = 0.0):
    """A float64 linear VAE with p(x|z) = N(Wz + b, σ² I) and, at scale 1 and shift 0, the exact posterior.

    For orthogonal columns of W the posterior is diagonal: S = (I + WᵀW/σ²)⁻¹, mean S Wᵀ(x − b)/σ²;
    the ``exp`` encoder scale outputs its log-variance.
    """
    d, latent_dim = W.shape
    side = math.isqrt(d)
    model = vaetool.create("linear", "gaussian", input_shape=(1, side, side), latent_dim=latent_dim,
                           likelihood_options={"sigma": sigma, "link": "identity"}).double()
    S = 1 / (1 + W.pow(2).sum(0) / sigma ** 2)
    A = S[:, None] * W.T / sigma ** 2
    encoder, decoder = model.architecture.net.encoder[0], model.architecture.net.decoder[0]
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
        encoder.weight.zero_()
        encoder.weight[:latent_dim] = mean_scale * A
        encoder.bias[:latent_dim] = -mean_scale * (A @ b)
        encoder.bias[latent_dim:] = torch.log(S) + log_var_shift
    return model


def exact_log_density(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    covariance = W @ W.T + sigma ** 2 * torch.eye(len(b), dtype=F64)
    return D.MultivariateNormal(b, covariance).log_prob(x.flatten(1))


def ppca_data(n: int, W: torch.Tensor, b: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=generator, dtype=F64)
    x = z @ W.T + b + sigma * torch.randn(n, len(b), generator=generator, dtype=F64)
    side = math.isqrt(len(b))
    return x.view(n, 1, side, side)


W2 = orthogonal_columns(16, [2.0, 1.0])
B = torch.linspace(0.2, 0.8, 16, dtype=F64)
SIGMA = 0.5


@pytest.fixture(scope="module")
def linear_data():
    x = ppca_data(400, W2, B, SIGMA, seed=1)
    return x, exact_log_density(x, W2, B, SIGMA)


def test_iw_estimate_is_exact_for_any_k_when_the_encoder_is_the_true_posterior(linear_data):
    # With q(z|x) = p(z|x) every importance weight equals p(x): the estimate has no variance.
    x, exact = linear_data
    model = linear_gaussian(W2, B, SIGMA)
    for k, seed in ((1, 0), (3, 1), (50, 2)):
        torch.testing.assert_close(metrics.iw_log_likelihood(model, x, k=k, seed=seed), exact, rtol=0, atol=1e-9)


def test_elbo_equals_log_likelihood_in_expectation_for_the_true_posterior(linear_data):
    x, exact = linear_data
    model = linear_gaussian(W2, B, SIGMA)
    x = x.repeat(10, 1, 1, 1)  # 4000 single-sample estimates
    per_image = model.elbo(x, generator=torch.Generator().manual_seed(0)).elbo.detach()
    standard_error = per_image.std().item() / math.sqrt(len(x))
    assert metrics.elbo_terms(model, x)["elbo"] == pytest.approx(exact.mean().item(), abs=5 * standard_error)


def test_with_an_imperfect_encoder_the_elbo_stays_below_while_iw_converges(linear_data):
    x, exact = linear_data
    scale, shift = 0.6, 1.0
    model = linear_gaussian(W2, B, SIGMA, mean_scale=scale, log_var_shift=shift)
    # The ELBO's gap is KL(q(z|x) ‖ p(z|x)), here between two diagonal Gaussians.
    S = 1 / (1 + W2.pow(2).sum(0) / SIGMA ** 2)
    true_mean = (x.flatten(1) - B) @ (S[:, None] * W2.T / SIGMA ** 2).T
    gap = 0.5 * (math.exp(shift) + (1 - scale) ** 2 * true_mean ** 2 / S - 1 - shift).sum(-1)
    assert gap.mean() > 1  # the encoder really is off
    elbo = metrics.elbo_terms(model, x.repeat(10, 1, 1, 1))["elbo"]
    assert elbo == pytest.approx((exact - gap).mean().item(), abs=0.2)
    assert elbo < exact.mean().item() - 1
    # K = 1 is the ELBO in expectation (averaged over seeds to beat the noise).
    iw_1 = torch.stack([metrics.iw_log_likelihood(model, x, k=1, seed=s) for s in range(20)])
    standard_error = (iw_1 - exact).std().item() / math.sqrt(iw_1.numel())
    assert iw_1.mean().item() == pytest.approx((exact - gap).mean().item(), abs=5 * standard_error)
    # As K grows the estimate closes in on the exact log p(x).
    errors = [abs(metrics.iw_log_likelihood(model, x, k=k, seed=0).mean().item() - exact.mean().item())
              for k in (10, 100, 3000)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_iw_estimate_is_above_the_elbo_and_tightens_with_k():
    # A random model whose posteriors are narrow and wrong, so the gaps are tens of nats.
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=4,
                           architecture_options={"hidden": [32]})
    with torch.no_grad():
        for p in model.architecture.parameters():
            p.mul_(3)
    x = torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    elbo = metrics.elbo_terms(model, x)["elbo"]
    for seed in range(3):
        iw = [metrics.iw_log_likelihood(model, x, k=k, seed=seed).mean().item() for k in (1, 10, 100)]
        assert iw[0] < iw[1] < iw[2]
        assert elbo < iw[2]


# -- batching ---------------------------------------------------------------------------------------

def conditional_model():
    model = vaetool.create("cvae", "bernoulli", input_shape=(1, 4, 4), latent_dim=3, num_classes=3,
                           architecture_options={"backbone": "mlp", "hidden": [8]},
                           likelihood_options={"binarize": "dynamic"}).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    return model


def reference_iw(model, x, y, k, seed, batch_size, k_batch):
    """The documented draws replayed by hand, all K weights of a batch in one logsumexp."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        target = model.likelihood.target(xb, generator)
        posterior = model.encode(target, yb)  # the encoder sees the binarization it is scored on
        q = D.Normal(posterior.mean, posterior.std)
        eps = torch.cat([torch.randn(min(k_batch, k - s), len(xb), model.latent_dim, generator=generator, dtype=F64)
                         for s in range(0, k, k_batch)])
        z = posterior.mean + posterior.std * eps
        log_px = torch.stack([model.likelihood.log_prob(target, model.decode_params(z_k, yb)) for z_k in z])
        log_w = log_px + D.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        out.append(torch.logsumexp(log_w, 0) - math.log(k))
    return torch.cat(out)


@pytest.mark.parametrize(("batch_size", "k_batch", "decode_batch"),
                         [(23, 37, None), (5, 7, None), (1, 1, None), (8, 100, None), (5, 7, 3), (23, 37, 1000)])
def test_iw_chunking_matches_the_unchunked_computation(batch_size, k_batch, decode_batch):
    # Ragged last batches and chunks, labels and a random binarization: any misalignment of z,
    # y or the target across chunks (or across decoder calls within a chunk), or a wrong running
    # logsumexp, would show here.
    model = conditional_model()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(23, 1, 4, 4, generator=generator, dtype=F64)
    y = torch.randint(0, 3, (23,), generator=generator)
    got = metrics.iw_log_likelihood(model, x, y, k=37, seed=4, batch_size=batch_size, k_batch=k_batch,
                                    decode_batch=decode_batch)
    with torch.no_grad():
        expected = reference_iw(model, x, y, 37, 4, batch_size, k_batch)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-10)


def test_iw_memory_is_bounded_by_the_batch_sizes_whatever_k(monkeypatch):
    model = conditional_model()
    sizes = []
    decode = model.decode_params
    monkeypatch.setattr(model, "decode_params", lambda z, y=None: (sizes.append(len(z)), decode(z, y))[1])
    x = torch.rand(30, 1, 4, 4, dtype=F64)
    calls = []
    metrics.iw_log_likelihood(model, x, torch.zeros(30, dtype=torch.long), k=1000, batch_size=8, k_batch=16,
                              progress=lambda done, total: calls.append((done, total)))
    assert max(sizes) == 8 * 16
    sizes.clear()
    metrics.iw_log_likelihood(model, x, torch.zeros(30, dtype=torch.long), k=100, batch_size=8, k_batch=16,
                              decode_batch=50)
    assert max(sizes) == 50  # each chunk's 128 decoded images in calls of at most 50
    assert calls[-1] == (30 * 1000, 30 * 1000)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))


def test_iw_is_reproducible_from_its_seed():
    model = conditional_model()
    x = torch.rand(10, 1, 4, 4, dtype=F64)
    y = torch.arange(10) % 3
    first = metrics.iw_log_likelihood(model, x, y, k=20, seed=3)
    assert torch.equal(first, metrics.iw_log_likelihood(model, x, y, k=20, seed=3))
    assert not torch.equal(first, metrics.iw_log_likelihood(model, x, y, k=20, seed=4))


def test_iw_refuses_an_autoencoder():
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=2, autoencoder=True)
    with pytest.raises(VaetoolError, match="autoencoder"):
        metrics.iw_log_likelihood(model, torch.rand(3, 1, 4, 4), k=5)


def test_images_of_the_wrong_shape_are_a_clear_error():
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=2)
    with pytest.raises(VaetoolError, match="shape"):
        metrics.elbo_terms(model, torch.rand(3, 1, 5, 5))


# -- the ELBO ---------------------------------------------------------------------------------------

def test_elbo_terms_match_the_training_evaluation():
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=3,
                           likelihood_options={"binarize": "dynamic"})
    images = torch.randint(0, 256, (37, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    expected = evaluate(model, Split(images), seed=2, batch_size=10)
    for given in (images, images.float() / 255):
        terms = metrics.elbo_terms(model, given, seed=2, batch_size=10)
        assert terms == expected
    assert terms["elbo"] == pytest.approx(terms["rec"] - sum(terms["kl_per_dim"]))
    assert terms["bits_per_dim"] == pytest.approx(-terms["elbo"] / (16 * math.log(2)))


# -- latent usage and the aggregate posterior --------------------------------------------------------

def linear_encoder_model(latent_dim=4, scale=1.0, seed=0):
    """Posterior means spread by ``scale``; log-variances near −1, varying a little with x."""
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 8, 8), latent_dim=latent_dim)
    generator = torch.Generator().manual_seed(seed)
    encoder = model.architecture.net.encoder[0]
    with torch.no_grad():
        encoder.weight[:latent_dim] = scale * torch.randn(latent_dim, 64, generator=generator)
        encoder.weight[latent_dim:] = 0.05 * torch.randn(latent_dim, 64, generator=generator)
        encoder.bias[:latent_dim] = 0.1 * torch.randn(latent_dim, generator=generator)
        encoder.bias[latent_dim:] = -1.0
    return model


def test_active_units_finds_a_planted_dead_dimension():
    model = linear_encoder_model()
    encoder = model.architecture.net.encoder[0]
    with torch.no_grad():
        encoder.weight[2].zero_()  # latent 2's mean no longer depends on x
        encoder.bias[2] = 0.7
    x = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    count, activity = metrics.active_units(model, x)
    expected = np.var(model.encode(x).mean.detach().double().numpy(), axis=0)
    np.testing.assert_allclose(activity.numpy(), expected, rtol=1e-6, atol=1e-12)
    assert activity[2] == 0
    assert (activity[[0, 1, 3]] > 0.01).all()
    assert count == 3
    assert metrics.active_units(model, x, threshold=1e6)[0] == 0


def numpy_aggregate_kl(mean: np.ndarray, variance: np.ndarray) -> float:
    sigma = np.cov(mean, rowvar=False, bias=True) + np.diag(variance.mean(0))
    centre = mean.mean(0)
    _, log_det = np.linalg.slogdet(sigma)
    return 0.5 * (np.trace(sigma) + centre @ centre - len(centre) - log_det)


def test_aggregate_posterior_kl_is_zero_when_every_posterior_is_the_prior():
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 8, 8), latent_dim=4)
    with torch.no_grad():
        for p in model.architecture.net.encoder.parameters():
            p.zero_()  # q(z|x) = N(0, I) for every x
    x = torch.rand(50, 1, 8, 8)
    assert metrics.aggregate_posterior_kl(model, x) == pytest.approx(0.0, abs=1e-12)


def test_aggregate_posterior_kl_grows_with_spread_means_and_matches_numpy():
    x = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    values = []
    for scale in (0.05, 2.0):
        model = linear_encoder_model(scale=scale)
        posterior = model.encode(x)
        expected = numpy_aggregate_kl(posterior.mean.detach().double().numpy(),
                                      torch.exp(posterior.log_var).detach().double().numpy())
        got = metrics.aggregate_posterior_kl(model, x)
        assert got == pytest.approx(expected, rel=1e-6)
        # ELBO surgery: the average KL is I(x; z) plus KL(q(z) ‖ p(z)), which the moment-matched
        # Gaussian bounds from below.
        assert got <= metrics.elbo_terms(model, x)["kl"]
        values.append(got)
    assert values[1] > 10 * max(values[0], 0.1)


# -- probabilistic PCA ------------------------------------------------------------------------------

W3 = orthogonal_columns(16, [1.5, 1.0, 0.6], seed=3) @ torch.linalg.qr(
    torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=F64))[0]  # columns not orthogonal


@pytest.fixture(scope="module")
def ppca_split():
    return ppca_data(2000, W3, B, 0.3, seed=5), ppca_data(500, W3, B, 0.3, seed=6)


def test_ppca_fit_is_the_tipping_bishop_solution(ppca_split):
    train, test = ppca_split
    mean, W, sigma2 = metrics.ppca_fit(train, 3)
    # C = U_L Λ_L U_Lᵀ + σ² (I − U_L U_Lᵀ), σ² the mean of the discarded eigenvalues, computed in numpy.
    X = train.flatten(1).numpy()
    eigenvalues, U = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    eigenvalues, U = eigenvalues[::-1], U[:, ::-1]
    noise = eigenvalues[3:].mean()
    covariance = U[:, :3] @ np.diag(eigenvalues[:3]) @ U[:, :3].T + noise * (np.eye(16) - U[:, :3] @ U[:, :3].T)
    assert sigma2 == pytest.approx(noise, rel=1e-10)
    np.testing.assert_allclose(mean.numpy(), X.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose((W @ W.T).numpy() + sigma2 * np.eye(16), covariance, rtol=0, atol=1e-10)
    # And the log-likelihood is that Gaussian's density, here evaluated without the Woodbury shortcuts.
    expected = D.MultivariateNormal(mean, torch.from_numpy(covariance.copy())).log_prob(test.flatten(1)).mean()
    assert metrics.ppca_log_likelihood(train, test, 3) == pytest.approx(expected.item(), rel=1e-10)
    general = W3 @ torch.randn(3, 3, dtype=F64)  # the density formula holds for any W, not just the fit's
    torch.testing.assert_close(metrics.ppca_log_density(test, B, general, 0.2),
                               exact_log_density(test, general, B, math.sqrt(0.2)), rtol=1e-10, atol=1e-10)


def test_ppca_fit_maximises_the_training_likelihood(ppca_split):
    train, test = ppca_split
    mean, W, sigma2 = metrics.ppca_fit(train, 3)
    best = metrics.ppca_log_density(train, mean, W, sigma2).mean()
    generator = torch.Generator().manual_seed(7)
    for other in [(mean, W, 1.1 * sigma2), (mean, W, 0.9 * sigma2), (mean + 0.01, W, sigma2),
                  (mean, W + 0.02 * torch.randn(W.shape, generator=generator, dtype=F64), sigma2)]:
        assert metrics.ppca_log_density(train, *other).mean() < best
    # On data from a 3-component model, the right number of components beats fewer on held-out data.
    scores = [metrics.ppca_log_likelihood(train, test, components) for components in (1, 2, 3)]
    assert scores[0] < scores[1] < scores[2]


def test_linear_vae_at_the_ppca_optimum_reaches_the_ppca_likelihood(ppca_split):
    train, test = ppca_split
    mean, W, sigma2 = metrics.ppca_fit(train, 3)
    model = linear_gaussian(W, mean, math.sqrt(sigma2))  # W's columns are orthogonal: exact posterior
    iw = metrics.iw_log_likelihood(model, test, k=5, seed=0)
    assert iw.mean().item() == pytest.approx(metrics.ppca_log_likelihood(train, test, 3), rel=1e-10)


def test_ppca_refuses_impossible_component_counts():
    x = torch.rand(20, 1, 2, 2)
    for components in (0, 4):
        with pytest.raises(VaetoolError, match="components"):
            metrics.ppca_log_likelihood(x, x, components)


# -- the gaussian likelihood's identity link ---------------------------------------------------------

def test_gaussian_identity_link_is_an_unbounded_mean():
    likelihood = registry.get("likelihood", "gaussian")(sigma=0.3, link="identity")
    params = 3 * torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(4, 2, 3, 3)
    expected = D.Normal(params, 0.3).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(likelihood.log_prob(x, params), expected)
    assert torch.equal(likelihood.mean(params), params)
    sample = likelihood.sample(params, torch.Generator().manual_seed(1))
    assert sample.min() >= 0 and sample.max() <= 1


def test_gaussian_link_is_recorded_and_checked(tmp_path):
    assert vaetool.create("linear", "gaussian", input_shape=(1, 4, 4), latent_dim=2).config[
        "likelihood_options"]["link"] == "sigmoid"
    model = vaetool.create("linear", "gaussian", input_shape=(1, 4, 4), latent_dim=2,
                           likelihood_options={"link": "identity"})
    vaetool.save(model, tmp_path / "m.safetensors")
    assert vaetool.load(tmp_path / "m.safetensors").likelihood.link == "identity"
    with pytest.raises(VaetoolError, match="link"):
        vaetool.create("linear", "gaussian", input_shape=(1, 4, 4), latent_dim=2, likelihood_options={"link": "exp"})


# -- parameter counts ---------------------------------------------------------------------------------

def test_parameter_counts_match_the_layers_by_hand():
    options = {"input_shape": (1, 16, 16), "latent_dim": 4, "architecture_options": {"hidden": [32]}}
    encoder = (256 * 32 + 32) + (32 * 8 + 8)  # 256 → 32 → 2·4
    decoder = (4 * 32 + 32) + (32 * 256 + 256)  # 4 → 32 → 256
    counts = metrics.parameter_counts(vaetool.create("mlp", "bernoulli", **options))
    assert counts == {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}
    learned_sigma = metrics.parameter_counts(vaetool.create("mlp", "gaussian", **options))
    assert learned_sigma == {"encoder": encoder, "decoder": decoder + 1, "total": encoder + decoder + 1}
    fixed_sigma = vaetool.create("mlp", "gaussian", likelihood_options={"sigma": 0.1}, **options)
    assert metrics.parameter_counts(fixed_sigma) == counts


class TiedWeights(Architecture):
    """The decoder reuses the encoder's weight, transposed; one parameter serves neither side."""

    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        pixels = math.prod(input_shape)
        self.encoder = nn.Linear(pixels, latent_dim)
        self.log_var = nn.Parameter(torch.zeros(latent_dim))
        self.decoder_bias = nn.Parameter(torch.zeros(pixels))
        self.unused = nn.Parameter(torch.zeros(5))

    def encode(self, x, y=None):
        mean = self.encoder(x.flatten(1))
        return mean, self.log_var.expand_as(mean)

    def decode(self, z, y=None):
        return (z @ self.encoder.weight + self.decoder_bias).view(-1, *self.input_shape)


def test_parameter_counts_find_shared_parameters_by_gradient():
    registry.register("architecture", "tied-test", TiedWeights)
    try:
        model = vaetool.create("tied-test", "bernoulli", input_shape=(1, 4, 4), latent_dim=3)
    finally:
        registry.unregister("architecture", "tied-test")
    model.architecture.decoder_bias.requires_grad_(False)  # frozen still counts, and stays frozen
    counts = metrics.parameter_counts(model)
    assert counts == {"encoder": 16 * 3 + 3 + 3, "decoder": 16 * 3 + 16, "total": 16 * 3 + 3 + 3 + 16 + 5}
    assert model.architecture.decoder_bias.requires_grad is False
    assert model.training  # left in the mode it was found in


def test_metrics_run_the_model_in_evaluation_mode_and_restore_it(monkeypatch):
    # Dropout or batch norm in a plugin must not make the numbers random or change the model.
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=2)
    modes = []
    encode = model.architecture.encode
    monkeypatch.setattr(model.architecture, "encode",
                        lambda x, y=None: (modes.append(model.training), encode(x, y))[1])
    x = torch.rand(6, 1, 4, 4)
    metrics.elbo_terms(model, x)
    metrics.iw_log_likelihood(model, x, k=3)
    metrics.active_units(model, x)
    metrics.aggregate_posterior_kl(model, x)
    metrics.parameter_counts(model)
    assert len(modes) == 5 and not any(modes)
    assert model.training
