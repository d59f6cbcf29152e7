"""Likelihoods against closed forms and torch.distributions, and the contract every one must keep."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from vaetool import registry
from vaetool.errors import VaetoolError
from vaetool.likelihoods import bernoulli
from vaetool.likelihoods.continuous_bernoulli import log_normalizer

# Every registered likelihood with its defaults, plus the built-ins' other modes.
VARIANTS = [(name, {}) for name in registry.names("likelihood")] + [
    ("bernoulli", {"binarize": "dynamic"}),
    ("bernoulli", {"binarize": "static"}),
    ("bernoulli", {"binarize": "threshold"}),
    ("gaussian", {"sigma": 0.1}),
    ("gaussian", {"per_pixel": True}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in VARIANTS]


def build(name: str, **options):
    return registry.get("likelihood", name)(**registry.resolve_options("likelihood", name, options))


def params_for(likelihood, shape, seed=0, dtype=torch.float32):
    batch, channels, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    p = likelihood.params_per_channel
    return torch.randn(batch, p * channels, height, width, generator=generator, dtype=dtype)


def data_for(likelihood, shape, seed=1, dtype=torch.float32):
    """8-bit images in [0, 1], as this likelihood scores them (its ``target``)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=generator).to(dtype) / 255
    return likelihood.target(x, torch.Generator().manual_seed(seed + 1))


def sum_pixels(t):
    return t.flatten(1).sum(1)


# -- the contract, for every registered likelihood ---------------------------------------------

@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_log_prob_is_per_example(name, options):
    likelihood = build(name, **options)
    for shape in [(3, 1, 5, 4), (1, 3, 2, 2)]:
        x, params = data_for(likelihood, shape), params_for(likelihood, shape)
        log_p = likelihood.log_prob(x, params)
        assert log_p.shape == (shape[0],)
        assert torch.isfinite(log_p).all()


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_log_prob_sums_over_pixels_so_averaging_cannot_creep_in(name, options):
    # Tiling an image (and its parameters) doubles the pixels; a sum doubles, a mean would not.
    likelihood = build(name, **options).double()
    shape = (4, 2, 3, 5)
    x, params = data_for(likelihood, shape, dtype=torch.float64), params_for(likelihood, shape, dtype=torch.float64)
    once = likelihood.log_prob(x, params)
    for dim in (2, 3):
        twice = likelihood.log_prob(torch.cat([x, x], dim), torch.cat([params, params], dim))
        torch.testing.assert_close(twice, 2 * once, rtol=1e-12, atol=0)
    # And each example is scored on its own: the first example alone gives the same number.
    torch.testing.assert_close(likelihood.log_prob(x[:1], params[:1]), once[:1], rtol=1e-12, atol=0)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_log_prob_sums_over_channels_laid_out_as_parameter_blocks(name, options):
    # Parameters are params_per_channel blocks of C channels: channel c's are params[:, c::C].
    likelihood = build(name, **options).double()
    shape = (3, 3, 4, 4)
    x, params = data_for(likelihood, shape, dtype=torch.float64), params_for(likelihood, shape, dtype=torch.float64)
    per_channel = [likelihood.log_prob(x[:, c:c + 1], params[:, c::3]) for c in range(3)]
    torch.testing.assert_close(likelihood.log_prob(x, params), sum(per_channel), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_mean_and_sample_are_images_in_the_unit_interval(name, options):
    likelihood = build(name, **options)
    shape = (4, 3, 6, 5)
    params = 3 * params_for(likelihood, shape)
    mean = likelihood.mean(params)
    sample = likelihood.sample(params, torch.Generator().manual_seed(0))
    for images in (mean, sample):
        assert images.shape == shape
        assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_sample_is_reproducible_with_a_seeded_generator(name, options):
    likelihood = build(name, **options)
    params = params_for(likelihood, (4, 1, 8, 8))
    first = likelihood.sample(params, torch.Generator().manual_seed(5))
    again = likelihood.sample(params, torch.Generator().manual_seed(5))
    other = likelihood.sample(params, torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_log_prob_has_gradients(name, options):
    likelihood = build(name, **options)
    shape = (2, 1, 4, 4)
    params = params_for(likelihood, shape).requires_grad_()
    likelihood.log_prob(data_for(likelihood, shape), params).sum().backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


# -- Bernoulli ------------------------------------------------------------------------------------

def test_bernoulli_log_prob_matches_torch():
    likelihood = build("bernoulli")
    params = 4 * params_for(likelihood, (5, 2, 4, 3))
    x = torch.bernoulli(torch.full(params.shape, 0.4), generator=torch.Generator().manual_seed(0))
    expected = sum_pixels(D.Bernoulli(logits=params).log_prob(x))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_bernoulli_log_prob_and_its_gradient_match_the_cross_entropy_on_grey_levels_and_extreme_logits(scale):
    # The log-probability is written out (x·l − softplus(l)) with its own backward pass: the same
    # values and gradients as torch's cross-entropy, for grey levels too and logits far into the tails.
    likelihood = build("bernoulli")
    generator = torch.Generator().manual_seed(1)
    logits = (scale * torch.randn(6, 1, 7, 5, generator=generator)).requires_grad_()
    x = torch.rand(logits.shape, generator=generator)
    x[0] = 0.0
    x[1] = 1.0
    ours = likelihood.log_prob(x, logits)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-4)
    weights = torch.arange(1.0, 7.0)
    (ours_grad,) = torch.autograd.grad((weights * ours).sum(), logits)
    (expected_grad,) = torch.autograd.grad((weights * expected).sum(), logits)
    torch.testing.assert_close(ours_grad, expected_grad)


@pytest.mark.parametrize("pixels", [112, 784, 2 * 112 + 5, 12_288])
def test_bernoulli_log_prob_over_many_pixels_is_the_cross_entropy_from_its_products_of_factors(pixels):
    # log max(σ, 1 − σ) is summed as the logarithm of products of 112 factors, with a shorter last
    # product where the pixels do not divide; all factors at ½ (zero logits) is the smallest product.
    generator = torch.Generator().manual_seed(2)
    for logits in (8 * torch.randn(4, pixels, generator=generator), torch.zeros(4, pixels)):
        x = torch.rand(logits.shape, generator=generator)
        ours, mean = bernoulli.log_prob_and_mean(x, logits)
        expected = -F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none").sum(1)
        torch.testing.assert_close(ours.double(), expected, rtol=2e-6, atol=1e-4)
        assert torch.equal(mean, torch.sigmoid(logits))


def test_bernoulli_log_prob_has_first_and_second_derivatives_in_both_arguments():
    logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    x = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    log_prob = build("bernoulli").log_prob
    assert torch.autograd.gradcheck(lambda logits, x: log_prob(x, logits), (logits, x))
    assert torch.autograd.gradgradcheck(lambda logits, x: log_prob(x, logits), (logits, x))


def test_bernoulli_log_prob_refuses_logits_of_another_shape_rather_than_broadcasting():
    with pytest.raises(ValueError, match="must be the same"):
        build("bernoulli").log_prob(torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 1, 1))


def test_bernoulli_log_prob_scores_low_precision_logits_in_float32():
    logits = torch.randn(4, 1, 6, 6).mul(8)
    x = (torch.rand(logits.shape) < 0.5).float()
    low = build("bernoulli").log_prob(x, logits.bfloat16())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, build("bernoulli").log_prob(x, logits.bfloat16().float()))


def test_bernoulli_binarize_none_is_the_identity():
    likelihood = build("bernoulli", binarize="none")
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(likelihood.target(x, torch.Generator().manual_seed(0)), x)
    assert likelihood.discrete is False  # grey levels: not a probability mass, so no bits/dim


def test_bernoulli_binarize_threshold_is_a_fixed_threshold():
    likelihood = build("bernoulli", binarize="threshold")
    x = torch.tensor([0.0, 0.2, 0.5, 0.51, 0.9, 1.0]).view(1, 1, 1, 6)
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]).view(1, 1, 1, 6)
    for seed in (0, 1):
        assert torch.equal(likelihood.target(x, torch.Generator().manual_seed(seed)), expected)
    assert likelihood.discrete is True


def test_bernoulli_binarize_dynamic_draws_binary_images_with_the_grey_level_as_probability():
    likelihood = build("bernoulli", binarize="dynamic")
    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    first = likelihood.target(x, torch.Generator().manual_seed(1))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, likelihood.target(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, likelihood.target(x, torch.Generator().manual_seed(2)))
    # Unbiased: averaged over draws the binarization is the grey level (16384 draws per level bin).
    draws = torch.stack([likelihood.target(x, torch.Generator().manual_seed(s)) for s in range(50)]).mean(0)
    assert (draws - x).mean().abs() < 0.01
    assert likelihood.discrete is True


def test_bernoulli_dynamic_binarization_keeps_black_and_white_and_hits_each_grey_level():
    likelihood = build("bernoulli", binarize="dynamic")
    levels = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    x = levels.repeat(20000, 1)
    drawn = likelihood.target(x, torch.Generator().manual_seed(3))
    assert drawn[:, 0].sum() == 0 and drawn[:, -1].sum() == len(x)  # pure black stays black, white stays white
    # Each level's frequency within 4 standard errors of the level (20,000 draws each).
    tolerance = 4 * (levels * (1 - levels) / len(x)).sqrt() + 1e-9
    assert ((drawn.mean(0) - levels).abs() <= tolerance).all()


def test_bernoulli_unknown_binarize_is_a_clear_error():
    with pytest.raises(VaetoolError, match="binarize"):
        build("bernoulli", binarize="sometimes")


def test_bernoulli_sample_is_binary():
    likelihood = build("bernoulli")
    sample = likelihood.sample(params_for(likelihood, (2, 1, 8, 8)), torch.Generator().manual_seed(0))
    assert set(sample.unique().tolist()) == {0.0, 1.0}


# -- Gaussian -------------------------------------------------------------------------------------

def _soft_floor(log_sigma):
    # The σ-VAE "softclip" (Rybkin et al. 2021): log σ ≥ log 1e-3, smoothly; re-derived here, not imported.
    floor = math.log(1e-3)
    return floor + F.softplus(log_sigma - floor)


def test_gaussian_fixed_sigma_matches_torch():
    likelihood = build("gaussian", sigma=0.2)
    assert list(likelihood.parameters()) == []  # nothing to learn
    params = params_for(likelihood, (4, 3, 5, 5))
    x = torch.rand(4, 3, 5, 5)
    expected = sum_pixels(D.Normal(torch.sigmoid(params), 0.2).log_prob(x))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected)
    torch.testing.assert_close(likelihood.mean(params), torch.sigmoid(params))


def test_gaussian_learned_sigma_is_one_shared_trained_parameter():
    likelihood = build("gaussian")
    [log_sigma] = list(likelihood.parameters())
    assert log_sigma.shape == ()
    params = params_for(likelihood, (4, 3, 5, 5))
    x = torch.rand(4, 3, 5, 5)
    with torch.no_grad():
        log_sigma.fill_(math.log(0.3))
    sigma = torch.exp(_soft_floor(log_sigma.detach()))
    expected = sum_pixels(D.Normal(torch.sigmoid(params), sigma).log_prob(x))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected)
    likelihood.log_prob(x, params).sum().backward()
    assert log_sigma.grad is not None and log_sigma.grad != 0
    assert "log_sigma" in likelihood.state_dict()  # saved with the model


def test_gaussian_learned_sigma_starts_near_one_tenth():
    # The documented starting point; the soft floor moves it by 1% at most.
    likelihood = build("gaussian")
    assert torch.exp(_soft_floor(likelihood.log_sigma.detach())).item() == pytest.approx(0.1, rel=0.01)


def test_gaussian_per_pixel_sigma_matches_torch():
    likelihood = build("gaussian", per_pixel=True)
    assert likelihood.params_per_channel == 2
    params = params_for(likelihood, (4, 3, 5, 5))
    x = torch.rand(4, 3, 5, 5)
    mean, log_sigma = params[:, :3], params[:, 3:]
    expected = sum_pixels(D.Normal(torch.sigmoid(mean), torch.exp(_soft_floor(log_sigma))).log_prob(x))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected)
    torch.testing.assert_close(likelihood.mean(params), torch.sigmoid(mean))


def test_gaussian_sigma_is_floored_at_one_thousandth():
    likelihood = build("gaussian", per_pixel=True)
    x = torch.full((1, 1, 1, 1), 0.5)
    params = torch.tensor([0.0, -50.0]).view(1, 2, 1, 1)  # mean exactly 0.5, log σ far below the floor
    # At x = mean, log p = −log σ − ½ log 2π, so σ can be read back.
    sigma = math.exp(-likelihood.log_prob(x, params).item() - 0.5 * math.log(2 * math.pi))
    assert sigma == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("options", [{"sigma": 0.1, "per_pixel": True}, {"sigma": 0.0}, {"sigma": -1.0}])
def test_gaussian_bad_options_are_clear_errors(options):
    with pytest.raises(VaetoolError, match="sigma"):
        build("gaussian", **options)


# -- continuous Bernoulli -------------------------------------------------------------------------

def test_continuous_bernoulli_matches_torch_away_from_zero():
    likelihood = build("continuous-bernoulli")
    generator = torch.Generator().manual_seed(0)
    magnitude = 0.5 + 9.5 * torch.rand(4, 2, 5, 5, generator=generator, dtype=torch.float64)
    params = magnitude * torch.where(torch.rand(magnitude.shape, generator=generator) < 0.5, -1, 1)
    x = torch.rand(params.shape, generator=generator, dtype=torch.float64)
    expected = sum_pixels(D.ContinuousBernoulli(logits=params).log_prob(x))
    torch.testing.assert_close(likelihood.log_prob(x, params), expected, rtol=1e-10, atol=1e-10)


LOGITS = [0.0, 1e-3, -1e-3, 0.05, -0.05, 0.0999, 0.1, 0.1001, 0.2, -0.2, 1.0, -1.0, 5.0, -5.0, 20.0, -20.0]


@pytest.mark.parametrize("logit", LOGITS)
def test_continuous_bernoulli_density_integrates_to_one(logit):
    # Trapezoid rule on 20001 points of [0, 1]: checks the normalising constant C(λ), Taylor branch included.
    likelihood = build("continuous-bernoulli")
    x = torch.linspace(0, 1, 20001, dtype=torch.float64).view(-1, 1, 1, 1)
    density = likelihood.log_prob(x, torch.full_like(x, logit)).exp()
    assert torch.trapezoid(density, x.flatten()).item() == pytest.approx(1.0, abs=1e-6)


def test_continuous_bernoulli_at_logit_zero_is_uniform():
    likelihood = build("continuous-bernoulli")
    x = torch.linspace(0, 1, 11).view(1, 1, 1, 11)
    assert likelihood.log_prob(x, torch.zeros_like(x)).abs().item() < 1e-6


def test_continuous_bernoulli_normaliser_is_accurate_in_float32():
    # log C = log(η / tanh(η/2)), computed in double precision by Python as the reference.
    def reference(eta):
        return math.log(eta / math.tanh(eta / 2)) if eta else math.log(2)

    logits = LOGITS + [1e-6, 0.09, 0.11, 0.5, 50.0, -80.0]
    got = log_normalizer(torch.tensor(logits, dtype=torch.float32))
    expected = torch.tensor([reference(eta) for eta in logits], dtype=torch.float32)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_continuous_bernoulli_mean_matches_torch():
    likelihood = build("continuous-bernoulli")
    params = torch.tensor([-20.0, -1.0, 0.5, 3.0, 20.0]).view(1, 5, 1, 1)
    torch.testing.assert_close(likelihood.mean(params), D.ContinuousBernoulli(logits=params).mean)


# -- discretized logistic -------------------------------------------------------------------------

LEVELS = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("mu", "log_s"), [(0.0, 0.0), (0.3, -3.0), (-0.9, -7.0), (1.0, -5.0), (5.0, 2.0),
                                           (-1.0, -7.0), (0.5, -10.0), (-3.0, -1.0), (0.0039, -7.0), (0.0, 5.0)])
def test_logistic_masses_over_all_256_levels_sum_to_one(mu, log_s, dtype):
    likelihood = build("logistic")
    params = torch.tensor([mu, log_s], dtype=dtype).view(1, 2, 1, 1).expand(256, 2, 1, 1)
    masses = likelihood.log_prob(LEVELS.to(dtype).view(-1, 1, 1, 1), params).exp()
    # The bins whose mass underflows use the density at their centre: a few 1e-6 off at most.
    assert masses.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert (masses <= 1 + 1e-6).all()


def test_logistic_mass_of_a_bin_is_the_cdf_across_it():
    likelihood = build("logistic")
    mu, s = 0.1, 0.05
    level = 140  # x = 2·140/255 − 1 ∈ [−1, 1], away from both tails
    x = torch.tensor(level / 255, dtype=torch.float64).view(1, 1, 1, 1)
    params = torch.tensor([mu, math.log(s)], dtype=torch.float64).view(1, 2, 1, 1)
    centre = 2 * level / 255 - 1

    def cdf(v):
        return 1 / (1 + math.exp(-(v - mu) / s))

    expected = math.log(cdf(centre + 1 / 255) - cdf(centre - 1 / 255))
    assert likelihood.log_prob(x, params).item() == pytest.approx(expected, rel=1e-9)


def test_logistic_target_quantizes_to_8_bit_levels():
    likelihood = build("logistic")
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = likelihood.target(x)
    levels = target * 255
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    assert (target - x).abs().max() <= 0.5 / 255 + 1e-6
    # 8-bit data is left where it is.
    eight_bit = torch.randint(0, 256, (2, 1, 4, 4)).float() / 255
    torch.testing.assert_close(likelihood.target(eight_bit), eight_bit)


def test_logistic_sample_is_on_8_bit_levels():
    likelihood = build("logistic")
    sample = likelihood.sample(params_for(likelihood, (2, 3, 8, 8)), torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample * 255, (sample * 255).round(), rtol=0, atol=1e-4)


def test_logistic_is_discrete_and_reports_bits_per_dim():
    # bits/dim = −ELBO / (D · ln 2), reported only for discrete likelihoods (a probability mass);
    # a pixel the logistic is sure of costs nearly 0 bits.
    from vaetool import create
    from vaetool.contracts import Split
    from vaetool.training import evaluate

    likelihood = build("logistic")
    assert likelihood.discrete is True
    x = torch.full((1, 1, 1, 1), 128 / 255)
    sure = torch.tensor([2 * 128 / 255 - 1, -7.0]).view(1, 2, 1, 1)
    assert 0 < -likelihood.log_prob(x, sure).item() / math.log(2) < 0.1

    model = create("linear", "logistic", input_shape=(1, 4, 4), latent_dim=2)
    split = Split(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8))
    result = evaluate(model, split)
    assert result["bits_per_dim"] == pytest.approx(-result["elbo"] / (16 * math.log(2)))
    assert "bits_per_dim" not in evaluate(create("linear", "gaussian", input_shape=(1, 4, 4), latent_dim=2), split)
