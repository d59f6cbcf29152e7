"""The model families beyond the ELBO: IWAE and its variants, InfoVAE, WAE, FactorVAE and DIP-VAE."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke, ok
from vaetool import compare, metrics, registry
from vaetool.contracts import TrainingContext
from vaetool.distributions import DiagonalGaussian
from vaetool.errors import VaetoolError
from vaetool.io import read_tensors
from vaetool.model import ELBOTerms
from vaetool.objectives.dipvae import DIPVAE
from vaetool.objectives.factorvae import FactorVAE, permute_dims
from vaetool.objectives.iwae import IWAE
from vaetool.objectives.mmd import mmd
from vaetool.objectives.wae import WAE
from vaetool.training import TrainConfig, train

CPU = torch.device("cpu")


def tiny_model(seed=0, **options):
    torch.manual_seed(seed)
    return vaetool.create("mlp", input_shape=(1, 8, 8), latent_dim=3, architecture_options={"hidden": [16]}, **options)


def context(n=64):
    return TrainingContext(dataset_size=n, epochs=2, steps_per_epoch=2, lr=1e-3, device=CPU)


def log_weight_terms(log_w: torch.Tensor) -> ELBOTerms:
    """Terms whose importance weights are exactly ``log_w`` (S, B): all in the reconstruction."""
    zeros = torch.zeros_like(log_w)
    return ELBOTerms(log_w, torch.zeros(log_w.shape[-1], 1), None, None, zeros, zeros)


# -- several samples of z -----------------------------------------------------------------------------

def test_several_samples_are_each_an_elbo_term_of_their_own():
    model = tiny_model()
    x = torch.rand(4, 1, 8, 8)
    noise = torch.randn(4, 3, 3)  # (B, S, L), as draw_noise lays it out
    terms = model.elbo(x, noise=noise, samples=3)
    assert terms.reconstruction.shape == (3, 4) and terms.z.shape == (3, 4, 3) and terms.log_weights.shape == (3, 4)
    for s in range(3):  # sample s is the one-sample ELBO with that ε
        one = model.elbo(x, noise=noise[:, s])
        torch.testing.assert_close(terms.reconstruction[s], one.reconstruction)
        torch.testing.assert_close(terms.log_weights[s], one.log_weights[0])
    torch.testing.assert_close(terms.kl, model.elbo(x, noise=noise[:, 0]).kl)  # per image, closed form


def test_zero_samples_use_the_posterior_mean():
    model = tiny_model()
    x = torch.rand(4, 1, 8, 8)
    terms = model.elbo(x, samples=0)
    assert torch.equal(terms.z, model.encode(x).mean)
    assert model.draw_noise(4, 0) is None


# -- IWAE and the variants of Rainforth et al. ----------------------------------------------------------

LOG_W = torch.tensor([[-3.0, -10.0], [-1.0, -12.0], [-2.0, -11.5], [-5.0, -9.0]])  # (S = 4, B = 2)


def test_the_iwae_loss_is_minus_the_log_mean_weight():
    expected = -(torch.logsumexp(LOG_W, 0) - math.log(4)).mean()
    torch.testing.assert_close(IWAE(k=4).loss(log_weight_terms(LOG_W), 0.0), expected)
    # Jensen: the IWAE bound is above the mean of the log weights, the ELBO on the same samples.
    assert IWAE(k=4).loss(log_weight_terms(LOG_W), 0.0) < -LOG_W.mean(0).mean()


def test_miwae_averages_groups_and_ciwae_mixes_elbo_and_iwae():
    groups = LOG_W.reshape(2, 2, 2)
    miwae = -(torch.logsumexp(groups, 1) - math.log(2)).mean()
    torch.testing.assert_close(IWAE(k=2, m=2, variant="miwae").loss(log_weight_terms(LOG_W), 0.0), miwae)
    terms = log_weight_terms(LOG_W)
    torch.testing.assert_close(IWAE(k=4, variant="ciwae", beta=1.0).loss(terms, 0.0), -LOG_W.mean())
    torch.testing.assert_close(IWAE(k=4, variant="ciwae", beta=0.0).loss(terms, 0.0), IWAE(k=4).loss(terms, 0.0))
    half = 0.5 * -LOG_W.mean() + 0.5 * IWAE(k=4).loss(terms, 0.0)
    torch.testing.assert_close(IWAE(k=4, variant="ciwae", beta=0.5).loss(terms, 0.0), half)


def gradients(model, x, noise, objective):
    model.zero_grad(set_to_none=True)
    objective.loss(model.elbo(x, noise=noise, samples=objective.samples), 0.0).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_piwae_trains_the_decoder_on_iwae_and_the_encoder_on_miwae():
    model = tiny_model()
    x, noise = torch.rand(6, 1, 8, 8), torch.randn(6, 6, 3)
    iwae = gradients(model, x, noise, IWAE(k=6))
    miwae = gradients(model, x, noise, IWAE(k=3, m=2, variant="miwae"))
    piwae = gradients(model, x, noise, IWAE(k=3, m=2, variant="piwae"))
    for name, grad in piwae.items():
        expected = iwae[name] if ".decoder." in name else miwae[name]
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(iwae[name], miwae[name])  # so the test tells the two apart


@pytest.mark.parametrize("options, fragment", [
    ({"k": 0}, "k must be a whole number"),
    ({"variant": "tiwae"}, "variant must be one of iwae, miwae, ciwae, piwae"),
    ({"m": 3}, "m (groups of samples) applies to miwae and piwae"),
    ({"variant": "ciwae", "beta": 2.0}, "must lie in [0, 1], not 2.0."),
    ({"beta": 4.0}, "the iwae variant does not use it"),  # --objective iwae --beta 4
])
def test_bad_iwae_options_are_one_sentence(options, fragment):
    with pytest.raises(VaetoolError) as error:
        IWAE(**options)
    assert fragment in str(error.value)


# -- MMD: InfoVAE and WAE -------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_tells_a_shifted_sample_from_the_prior(kernel):
    generator = torch.Generator().manual_seed(0)
    prior = torch.randn(300, 2, generator=generator)
    same = torch.randn(300, 2, generator=generator)
    shifted = torch.randn(300, 2, generator=generator) + 1.5
    near, far = mmd(same, prior, kernel).item(), mmd(shifted, prior, kernel).item()
    assert abs(near) < 0.02 and far > 0.2


def test_the_wae_trains_with_a_deterministic_encoder_and_no_kl():
    model = tiny_model()
    objective = WAE(mmd_weight=10.0)
    objective.begin(model, context())
    assert objective.samples == 0
    x = torch.rand(16, 1, 8, 8)
    terms = model(x, None, None, objective.samples)
    torch.manual_seed(1)
    loss = objective.loss(terms, 0.0)
    torch.manual_seed(1)
    prior = model.prior.sample(16)
    torch.testing.assert_close(loss, -terms.reconstruction.mean() + 10.0 * mmd(terms.z, prior))
    loss.backward()
    # No KL, no sampling: the encoder's variance head gets no gradient at all.
    last = model.architecture.net.encoder[-1]
    assert last.weight.grad[3:].abs().sum() == 0 and last.weight.grad[:3].abs().sum() > 0


# -- FactorVAE ----------------------------------------------------------------------------------------

def test_permuting_dimensions_keeps_each_marginal_and_breaks_their_dependence():
    torch.manual_seed(0)
    z = torch.randn(500, 1).repeat(1, 2)  # two identical dimensions: as dependent as it gets
    permuted = permute_dims(z)
    for j in range(2):
        assert torch.equal(permuted[:, j].sort().values, z[:, j].sort().values)
    assert abs(torch.corrcoef(permuted.T)[0, 1]) < 0.15


def test_the_discriminator_trains_after_each_step_and_the_tc_reaches_the_encoder():
    model = tiny_model()
    objective = FactorVAE(gamma=6.0, hidden=16, layers=2)
    objective.begin(model, context())
    before = {k: v.clone() for k, v in objective.module.state_dict().items()}
    terms = model(torch.rand(16, 1, 8, 8), None, None, 1)
    loss = objective.loss(terms, 0.0)
    elbo_loss = -(terms.reconstruction.mean() - terms.kl.mean(0).sum())
    torch.testing.assert_close(loss - elbo_loss, 6.0 * objective.total_correlation(terms.z).mean())
    loss.backward()
    assert model.architecture.net.encoder[0].weight.grad.abs().sum() > 0
    objective.after_step(terms)
    assert any(not torch.equal(before[k], v) for k, v in objective.module.state_dict().items())


def test_factorvae_refuses_several_processes():
    # Each process would train a discriminator of its own, and only one would be saved.
    with pytest.raises(VaetoolError, match="leave out --nproc"):
        FactorVAE().begin(tiny_model(), TrainingContext(64, 2, 2, 1e-3, CPU, processes=2))


def test_a_factorvae_checkpoint_holds_the_discriminator_and_its_optimiser(tmp_path):
    tiny = ["--data", "shapes", "--data-opt", "size=16", "--data-opt", "n_train=128", "--data-opt", "n_test=32",
            "--arch", "mlp", "--hidden", "32", "--latent-dim", "4", "--epochs", "1", "--batch-size", "64",
            "--device", "cpu"]
    ok(invoke("train", *tiny, "--objective", "factorvae", "--objective-opt", "gamma=6", "--objective-opt", "hidden=8",
              "--runs-dir", tmp_path, "--name", "f"))
    tensors, header = read_tensors(tmp_path / "f" / "checkpoint.safetensors")
    assert any(k.startswith("objective.") for k in tensors) and any(k.startswith("objective_optimizer.") for k in tensors)
    assert header["objective_optimizer"]["param_groups"][0]["betas"] == [0.5, 0.9]
    assert not any(k.startswith("objective") for k in read_tensors(tmp_path / "f" / "model.safetensors")[0])


# -- DIP-VAE --------------------------------------------------------------------------------------------

def test_dip_covariances_are_those_of_the_means_and_of_z():
    generator = torch.Generator().manual_seed(0)
    q = DiagonalGaussian(torch.randn(50, 3, generator=generator), torch.randn(50, 3, generator=generator))
    cov_means = torch.cov(q.mean.T, correction=0)
    torch.testing.assert_close(DIPVAE(kind="i").covariance(q), cov_means)
    torch.testing.assert_close(DIPVAE(kind="ii").covariance(q), cov_means + q.log_var.exp().mean(0).diag())


def test_the_dip_penalty_vanishes_at_the_identity_and_weighs_off_diagonals_by_lambda_od():
    identity = DiagonalGaussian(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.full((2, 2), -float("inf")))
    # Means ±(1, 1): each variance is 1 (no diagonal penalty) and the covariance 1, twice off the diagonal.
    terms = ELBOTerms(torch.zeros(2), torch.zeros(2, 2), identity.mean, identity)
    assert DIPVAE(kind="i", lambda_od=3.0).loss(terms, 0.0).item() == pytest.approx(3.0 * 2)
    decorrelated = DiagonalGaussian(torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]),
                                    torch.full((4, 2), -float("inf")))
    terms = ELBOTerms(torch.zeros(4), torch.zeros(4, 2), decorrelated.mean, decorrelated)
    assert DIPVAE(kind="i").loss(terms, 0.0).item() == pytest.approx(0.0)
    assert DIPVAE(kind="ii").lambda_d == 10.0 and DIPVAE(kind="i").lambda_d == 100.0
    # The value used is recorded (and shown), not the unset None.
    assert DIPVAE(kind="ii", lambda_od=2.0).begin(None, None) == {"lambda_d": 2.0}


# -- the command line, as the docs spell it -------------------------------------------------------------

TINY = ["--arch", "mlp", "--hidden", "32", "--latent-dim", "4", "--epochs", "1", "--batch-size", "64",
        "--device", "cpu"]
SHAPES = ["--data", "shapes", "--data-opt", "size=16", "--data-opt", "n_train=128", "--data-opt", "n_test=32"]


@pytest.mark.parametrize("flags, objective, recorded", [
    (["--objective", "iwae", "--objective-opt", "k=5"], "iwae", {"k": 5}),
    (["--objective", "infovae", "--objective-opt", "mmd_weight=1000"], "infovae", {"mmd_weight": 1000}),
    (["--objective", "wae", "--objective-opt", "mmd_weight=10"], "wae", {"mmd_weight": 10, "encoder": "deterministic"}),
    (["--objective", "factorvae", "--objective-opt", "gamma=6", "--objective-opt", "hidden=16"], "factorvae",
     {"gamma": 6}),
    (["--objective", "dipvae", "--objective-opt", "kind=ii"], "dipvae", {"kind": "ii"}),
], ids=["iwae", "infovae", "wae", "factorvae", "dipvae"])
def test_each_family_trains_from_the_command_line_and_records_itself(tmp_path, flags, objective, recorded):
    ok(invoke("train", *SHAPES, *TINY, *flags, "--runs-dir", tmp_path, "--name", "run"))
    model = vaetool.load(tmp_path / "run")
    assert model.config["objective"] == objective
    assert recorded.items() <= model.config["objective_options"].items()
    ok(invoke("train", "--resume", "--name", "run", "--epochs", "2", "--runs-dir", tmp_path, "--device", "cpu"))
    assert vaetool.load(tmp_path / "run").config["objective_options"] == model.config["objective_options"]


def test_a_wae_run_reports_its_reconstruction_and_keeps_the_best_by_it_not_by_an_elbo(tmp_path):
    # The WAE family trains on no likelihood bound: its epochs and summary report the test log p(x|z),
    # and --keep-best ranks epochs by it; an ELBO objective's run still reports and ranks by its ELBO.
    result = ok(invoke("train", *SHAPES, *TINY, "--epochs", "2", "--objective", "wae", "--keep-best",
                       "--runs-dir", tmp_path, "--name", "wae"))
    assert "ELBO" not in result.output and "test log p(x|z)" in result.output
    best = vaetool.load(tmp_path / "wae" / "best.safetensors").config["best"]
    recs = [json.loads(line)["test_rec"] for line in (tmp_path / "wae" / "metrics.jsonl").read_text().splitlines()]
    assert best["by"] == "test_rec" and best["value"] == max(recs)
    result = ok(invoke("train", *SHAPES, *TINY, "--keep-best", "--runs-dir", tmp_path, "--name", "elbo"))
    assert "test ELBO" in result.output
    assert vaetool.load(tmp_path / "elbo" / "best.safetensors").config["best"]["by"] == "test_elbo"


@pytest.mark.parametrize("flags, fragment", [
    (["--objective", "iwae", "--autoencoder"], "The iwae objective needs several samples of z for each image, "
                                               "but an autoencoder"),
    (["--objective", "dipvae", "--objective-opt", "kind=iii"], "kind must be one of i, ii"),
    (["--objective", "wae", "--free-bits", "1"], "free-bits does not apply to the wae objective"),
    (["--objective", "iwae", "--objective-opt", "k=0"], "k must be a whole number"),
])
def test_a_family_the_model_cannot_serve_is_refused_before_reading_data(tmp_path, flags, fragment):
    # MNIST files that are not there: the refusal must come before any data is read.
    assert_clean_error(invoke("train", *TINY, *flags, "--data", "mnist", "--data-dir", tmp_path / "none",
                              "--runs-dir", tmp_path), fragment)
    assert not (tmp_path / "none").exists()


def test_plugins_lists_every_family_with_its_options():
    result = ok(invoke("plugins"))
    for name in ("elbo", "tcvae", "capacity", "iwae", "infovae", "wae", "factorvae", "dipvae"):
        assert name in registry.names("objective")
        assert f"{name}" in result.stdout
    assert "mmd_weight=10.0" in result.stdout and "variant='iwae'" in result.stdout


# -- compare knows what each family's bound means ------------------------------------------------------

def test_compare_ranks_bounds_only_where_a_model_has_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry.register("dataset", TINY_DATASET, TinySquares)
    try:
        base = dict(architecture="mlp", architecture_options={"hidden": [32]}, dataset=TINY_DATASET, latent_dim=4,
                    epochs=1, batch_size=64)
        plans = {"vae": {}, "iwae": {"objective": "iwae", "objective_options": {"k": 3}},
                 "wae": {"objective": "wae", "objective_options": {"mmd_weight": 10.0}}}
        paths = [train(TrainConfig(**base, **plan), tmp_path / name, device="cpu").run_dir for name, plan in plans.items()]
        entries = compare.load_entries(paths, "cpu")
        test = TinySquares().load("test")
        compare.evaluate(entries, test.images[:32].float() / 255, test.labels[:32], iw_samples=5)
        by_name = {e.name: e for e in entries}
        assert by_name["iwae"].label == "mlp/bernoulli, 4-D, iwae k=3 variant=iwae m=1 beta=0.5"
        assert by_name["wae"].label.startswith("mlp/bernoulli, 4-D, wae mmd_weight=10 encoder=deterministic")
        assert {"iw_ll", "elbo", "mmd"} <= by_name["iwae"].numbers.keys()
        assert "mmd" in by_name["wae"].numbers and not {"elbo", "iw_ll", "kl"} & by_name["wae"].numbers.keys()
        # Trained with z at the posterior mean, the WAE is scored there: its reconstruction, not a noisy one.
        images = test.images[:32].float() / 255
        at_mean = metrics.elbo_terms(by_name["wae"].model, images, test.labels[:32], samples=0)["rec"]
        assert by_name["wae"].numbers["rec"] == pytest.approx(at_mean)
        assert at_mean > metrics.elbo_terms(by_name["wae"].model, images, test.labels[:32])["rec"]
        assert json.loads((tmp_path / "wae" / "metrics.jsonl").read_text())["test_rec"] == pytest.approx(
            metrics.elbo_terms(by_name["wae"].model, test.images.float() / 255, test.labels, samples=0)["rec"], rel=1e-5)
        assert compare.best(entries, "elbo", "max") <= {"vae", "iwae"}
        said = compare.verdicts(entries)
        about_wae = [s for s in said if s.startswith("wae ")]
        assert len(about_wae) == 1 and "not by an ELBO" in about_wae[0]
        # No other verdict ranks the WAE's ELBO or log p(x).
        assert not any(re.search(r"\bwae\b", s) for s in said if s not in about_wae and ("ELBO" in s or "log p(x)" in s))
        ok(invoke("compare", *paths, "--limit", "32", "--iw-samples", "5", "--no-sample-quality", "-o",
                  tmp_path / "zoo.html"))
        page = (tmp_path / "zoo.html").read_text()
        assert "iwae k=3" in page and "wae mmd_weight=10" in page and "MMD² to prior" in page
    finally:
        registry.unregister("dataset", TINY_DATASET)
