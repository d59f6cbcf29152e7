"""β-TCVAE and the controlled capacity increase: the estimator, the losses, training, resume and the CLI."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import vaetool
from conftest import (RECORDED_ATOL, RECORDED_RTOL, TINY_DATASET, TinySquares, assert_clean_error,
                      assert_weights_match_recorded, invoke, metrics_match_recorded, ok, state_dicts_equal)
from vaetool import objectives, registry, training
from vaetool.distributions import DiagonalGaussian
from vaetool.errors import VaetoolError
from vaetool.contracts import TrainingContext
from vaetool.model import ELBOTerms
from vaetool.objectives.capacity import Capacity
from vaetool.objectives.tcvae import TCVAE, kl_decomposition
from vaetool.training import TrainConfig
from test_training import config, metrics_of, weights, without_time  # the same tiny run settings


@pytest.fixture(scope="module", autouse=True)
def tiny_squares():
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield
    registry.unregister("dataset", TINY_DATASET)


def posterior(mean, std):
    return DiagonalGaussian(mean, torch.full_like(mean, 2 * math.log(std)))


# -- the KL decomposition estimator ---------------------------------------------------------------

def test_total_correlation_is_near_zero_for_independent_codes():
    # Codes whose means are drawn independently per dimension: q(z) is a product, the true TC is 0.
    generator = torch.Generator().manual_seed(0)
    q = posterior(torch.randn(2000, 3, generator=generator), 0.5)
    z = q.rsample(generator)
    tc = kl_decomposition(z, q, dataset_size=2000).total_correlation.mean().item()
    assert abs(tc) < 0.05


def test_total_correlation_is_large_for_duplicated_codes():
    # Dimension 1 copies dimension 0 (means equal, σ small): z_0 and z_1 share about
    # −½ log(1 − ρ²) ≈ 2.6 nats, which is the TC; the estimate must see it.
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(2000, 3, generator=generator)
    mean[:, 1] = mean[:, 0]
    q = posterior(mean, 0.05)
    z = q.rsample(generator)
    tc = kl_decomposition(z, q, dataset_size=2000).total_correlation.mean().item()
    assert 2.0 < tc < 3.5


def test_the_three_parts_sum_to_the_monte_carlo_kl():
    generator = torch.Generator().manual_seed(1)
    q = DiagonalGaussian(torch.randn(64, 5, generator=generator), torch.randn(64, 5, generator=generator))
    z = q.rsample(generator)
    parts = kl_decomposition(z, q, dataset_size=1000)
    total = parts.mutual_information + parts.total_correlation + parts.dimension_kl
    monte_carlo_kl = q.log_prob(z) - (-0.5 * (z ** 2 + math.log(2 * math.pi)).sum(-1))
    torch.testing.assert_close(total, monte_carlo_kl, rtol=1e-5, atol=1e-4)


def test_a_batch_that_is_the_whole_dataset_gives_the_exact_aggregate_posterior():
    generator = torch.Generator().manual_seed(2)
    q = posterior(torch.randn(8, 2, generator=generator), 0.7)
    z = q.rsample(generator)
    parts = kl_decomposition(z, q, dataset_size=8)
    # q(z_i) = 1/N Σ_n q(z_i|n), computed directly.
    log_q_z = torch.stack([torch.logsumexp(DiagonalGaussian(q.mean, q.log_var).log_prob(zi.expand(8, 2)), 0)
                           for zi in z]) - math.log(8)
    torch.testing.assert_close(parts.mutual_information, q.log_prob(z) - log_q_z)


def test_a_batch_of_one_is_finite():
    q = posterior(torch.zeros(1, 3), 0.5)
    parts = kl_decomposition(q.mean + 0.1, q, dataset_size=100)
    assert all(torch.isfinite(t).all() for t in (parts.mutual_information, parts.total_correlation, parts.dimension_kl))


# -- the losses -----------------------------------------------------------------------------------

def random_terms(batch=32, latent=4, seed=3):
    generator = torch.Generator().manual_seed(seed)
    q = DiagonalGaussian(torch.randn(batch, latent, generator=generator), torch.randn(batch, latent, generator=generator))
    z = q.rsample(generator)
    return ELBOTerms(-100 + torch.randn(batch, generator=generator), q.kl(), z, q)


def tc_loss(terms, tc_weight, dataset_size):
    objective = TCVAE(tc_weight=tc_weight)
    objective.begin(None, TrainingContext(dataset_size, 1, 1, 1e-3, torch.device("cpu")))
    return objective.loss(terms, 0.0)


def test_tc_weight_one_is_the_elbo_with_the_estimated_kl():
    terms = random_terms()
    parts = kl_decomposition(terms.z, terms.posterior, 500)
    expected = -terms.reconstruction.mean() + (parts.mutual_information + parts.total_correlation
                                               + parts.dimension_kl).mean()
    torch.testing.assert_close(tc_loss(terms, 1.0, 500), expected)


def test_tc_weight_weighs_only_the_total_correlation():
    terms = random_terms()
    parts = kl_decomposition(terms.z, terms.posterior, 500)
    difference = tc_loss(terms, 6.0, 500) - tc_loss(terms, 1.0, 500)
    torch.testing.assert_close(difference, 5 * parts.total_correlation.mean())


def test_tc_needs_the_sampled_codes():
    terms = random_terms()
    with pytest.raises(ValueError):
        tc_loss(ELBOTerms(terms.reconstruction, terms.kl), 1.0, 500)


def test_vae_elbo_fills_z_and_the_posterior_and_leaves_the_rest_alone():
    model = vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=4, architecture_options={"hidden": [32]})
    x = torch.rand(5, 1, 16, 16)
    terms = model.elbo(x, generator=torch.Generator().manual_seed(0))
    assert terms.z.shape == (5, 4) and terms.posterior.mean.shape == (5, 4)
    assert terms.kl.shape == (5, 4) and terms.elbo.shape == (5,)
    torch.testing.assert_close(terms.kl, terms.posterior.kl())


@pytest.mark.parametrize("capacity", [0.0, 2.0, 30.0])
def test_capacity_loss_is_gamma_times_the_distance_to_the_capacity(capacity):
    terms = random_terms()
    kl = terms.kl.sum(-1).mean()
    expected = -terms.reconstruction.mean() + 1000.0 * (kl - capacity).abs()
    # capacity_epochs=0 would be refused; a schedule already complete at epoch 1 has C from the start.
    torch.testing.assert_close(Capacity(capacity, capacity_epochs=1.0, beta=1000.0).loss(terms, 1.0), expected)


def test_capacity_rises_linearly_then_stays():
    objective = Capacity(capacity=20.0, capacity_epochs=4.0)
    assert [objective.capacity_at(t) for t in (0, 2, 4, 6)] == pytest.approx([0.0, 10.0, 20.0, 20.0])


# -- training ---------------------------------------------------------------------------------------

def recording(monkeypatch, cls, read):
    """Record ``read(objective, epochs_done)`` at every training step of objective class ``cls``."""
    real, seen = cls.loss, []

    def loss(self, terms, epochs_done):
        seen.append(read(self, epochs_done))
        return real(self, terms, epochs_done)

    monkeypatch.setattr(cls, "loss", loss)
    return seen


def test_capacity_training_records_a_rising_capacity(tmp_path, monkeypatch):
    seen = recording(monkeypatch, Capacity, Capacity.capacity_at)
    result = training.train(config(capacity=8.0, capacity_epochs=2.0, beta=10.0, epochs=3), tmp_path / "run",
                            device="cpu")
    # 4 steps an epoch: C rises by 1 nat a step, to 8 after two epochs, and stays there.
    assert seen == pytest.approx([min(8.0, step) for step in range(12)])
    assert [m["capacity"] for m in result.metrics] == pytest.approx([4.0, 8.0, 8.0])
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["test_elbo"]) for m in result.metrics)
    config_ = vaetool.load(tmp_path / "run").config
    assert config_["objective"] == "capacity"
    assert config_["objective_options"] == {"capacity": 8.0, "capacity_epochs": 2.0, "beta": 10.0, "warmup": 0.0}


def test_capacity_epochs_default_to_all_epochs_and_survive_a_longer_resume(tmp_path):
    run_dir = tmp_path / "run"
    training.train(config(capacity=4.0, epochs=2), run_dir, device="cpu")
    assert vaetool.load(run_dir).config["objective_options"]["capacity_epochs"] == 2.0
    result = training.resume(run_dir, epochs=3, device="cpu")
    assert [m["capacity"] for m in result.metrics] == pytest.approx([2.0, 4.0, 4.0])


def test_tc_training_passes_the_dataset_size_and_reports_the_plain_elbo(tmp_path, monkeypatch):
    seen = recording(monkeypatch, TCVAE, lambda objective, _: (objective.tc_weight, objective.dataset_size))
    result = training.train(config(tc_weight=6.0, epochs=1), tmp_path / "run", device="cpu")
    assert seen == [(6.0, 256)] * 4
    line = result.metrics[0]
    assert math.isfinite(line["train_loss"]) and math.isfinite(line["test_elbo"])
    # The test ELBO is the plain β = 1 bound of the saved model, whatever the objective.
    split = TinySquares(n_train=256, n_test=64).load("test")
    assert training.evaluate(vaetool.load(tmp_path / "run"), split)["elbo"] == pytest.approx(line["test_elbo"], rel=1e-5)
    assert vaetool.load(tmp_path / "run").config["objective_options"] == {"tc_weight": 6.0, "warmup": 0.0}


def test_plain_runs_record_the_default_objective(tmp_path):
    result = training.train(config(epochs=1), tmp_path / "run", device="cpu")
    assert "capacity" not in result.metrics[0]
    saved = vaetool.load(tmp_path / "run").config
    assert (saved["objective"], saved["objective_options"]) == ("elbo", {"beta": 1.0, "warmup": 0.0, "free_bits": 0.0})


@pytest.mark.parametrize("options", [{"tc_weight": 6.0}, {"capacity": 5.0, "capacity_epochs": 1.5, "beta": 20.0}],
                         ids=["tc", "capacity"])
def test_resume_continues_exactly(tmp_path, options):
    reference = tmp_path / "straight"
    training.train(config(**options), reference, device="cpu")
    run_dir = tmp_path / "run"
    training.train(config(**options, epochs=1), run_dir, device="cpu")
    result = training.resume(run_dir, epochs=2, device="cpu")
    assert result.status == "finished" and result.epoch == 2
    assert state_dicts_equal(weights(run_dir / "model.safetensors"), weights(reference / "model.safetensors"))
    assert state_dicts_equal(weights(run_dir / "checkpoint.safetensors"), weights(reference / "checkpoint.safetensors"))
    assert [without_time(m) for m in metrics_of(run_dir)] == [without_time(m) for m in metrics_of(reference)]


@pytest.mark.parametrize("overrides, fragment", [
    ({"tc_weight": -1.0}, "tc_weight must be zero or more"),
    ({"tc_weight": float("nan")}, "tc_weight must be zero or more"),
    ({"capacity": -2.0}, "capacity must be zero or more"),
    ({"capacity": 5.0, "capacity_epochs": 0.0}, "capacity-epochs must be positive"),
    ({"capacity": 5.0, "free_bits": 0.5}, "free-bits does not apply to the capacity objective"),
    ({"tc_weight": 6.0, "beta": 4.0}, "beta does not apply to the tcvae objective"),
    ({"tc_weight": 6.0, "capacity": 5.0}, "choose one"),
    ({"tc_weight": 6.0, "free_bits": 0.5}, "free-bits"),
    ({"capacity": 5.0, "autoencoder": True}, "capacity objective needs a stochastic encoder.*autoencoder"),
    ({"tc_weight": 6.0, "prior": "mog"}, "needs the standard-normal prior.*prior is mog"),
    ({"objective": "no-such-objective"}, "installed objectives: capacity, .*elbo"),
    ({"objective": "elbo", "objective_options": {"beta": 2.0}, "beta": 3.0}, "disagree"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_bad_objective_settings_are_clear_errors(tmp_path, overrides, fragment):
    with pytest.raises(VaetoolError, match=fragment):
        training.train(config(**overrides), tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


# -- the command line -----------------------------------------------------------------------------

TINY = ["--data", TINY_DATASET, "--arch", "mlp", "--hidden", "32", "--latent-dim", "4", "--epochs", "1",
        "--batch-size", "64", "--device", "cpu"]


def test_cli_flags_reach_the_config(tmp_path):
    ok(invoke("train", *TINY, "--tc-weight", "6", "--runs-dir", tmp_path, "--name", "tc"))
    saved = vaetool.load(tmp_path / "tc").config
    assert (saved["objective"], saved["objective_options"]["tc_weight"]) == ("tcvae", 6.0)
    ok(invoke("train", *TINY, "--capacity", "25", "--capacity-epochs", "3", "--beta", "100",
              "--runs-dir", tmp_path, "--name", "cap"))
    saved = vaetool.load(tmp_path / "cap").config
    assert saved["objective"] == "capacity"
    assert saved["objective_options"] == {"capacity": 25.0, "capacity_epochs": 3.0, "beta": 100.0, "warmup": 0.0}


@pytest.mark.parametrize("shorthand, spelled_out", [
    (["--beta", "4"], ["--objective", "elbo", "--objective-opt", "beta=4"]),
    (["--tc-weight", "6"], ["--objective", "tcvae", "--objective-opt", "tc_weight=6"]),
    (["--capacity", "25", "--beta", "10"], ["--objective", "capacity", "--objective-opt", "capacity=25",
                                            "--objective-opt", "beta=10"]),
    (["--free-bits", "0.5", "--warmup", "1"], ["--objective-opt", "free_bits=0.5", "--objective-opt", "warmup=1"]),
], ids=["beta", "tc", "capacity", "free-bits-warmup"])
def test_the_old_flags_are_shorthands_for_objective_options(tmp_path, shorthand, spelled_out):
    ok(invoke("train", *TINY, *shorthand, "--runs-dir", tmp_path, "--name", "short"))
    ok(invoke("train", *TINY, *spelled_out, "--runs-dir", tmp_path, "--name", "long"))
    short, long = vaetool.load(tmp_path / "short"), vaetool.load(tmp_path / "long")
    assert (short.config["objective"], short.config["objective_options"]) == \
        (long.config["objective"], long.config["objective_options"])
    assert state_dicts_equal(short.state_dict(), long.state_dict())


@pytest.mark.parametrize("flags, fragment", [
    (["--tc-weight", "-1"], "tc_weight"),
    (["--capacity", "-5"], "capacity"),
    (["--tc-weight", "6", "--beta", "4"], "beta"),
    (["--tc-weight", "6", "--prior", "mog"], "standard-normal"),
    (["--objective", "nope"], "installed objectives: capacity, dipvae, elbo, factorvae"),
    (["--objective-opt", "nope=1"], "no option 'nope'"),
    (["--objective", "tcvae", "--autoencoder"], "tcvae objective needs the Gaussian posterior"),
], ids=["negative-tc", "negative-capacity", "tc-with-beta", "tc-with-prior", "unknown", "unknown-option",
        "tc-ae"])
def test_cli_bad_values_are_one_clear_error(tmp_path, flags, fragment):
    assert_clean_error(invoke("train", *TINY, *flags, "--runs-dir", tmp_path), fragment)


@pytest.mark.parametrize("flag", ["--tc-weight", "--capacity", "--capacity-epochs", "--objective", "--objective-opt"])
def test_resume_refuses_new_objective_settings(tmp_path, flag):
    assert_clean_error(invoke("train", "--resume", flag, "0", "--runs-dir", tmp_path), flag)


# -- the refactor into plugins changed nothing ------------------------------------------------------

DATA = Path(__file__).parent / "data"


def weights_digest(tensors: dict) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(tensors.items()):
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


BEFORE = json.loads((DATA / "objectives-before.json").read_text())
# The weights of those runs, whose digests are the recorded ones (checked below).
BEFORE_WEIGHTS = DATA / "objectives-before-weights.safetensors"


def recorded_weights(case: str) -> dict:
    return {k[len(case) + 1:]: v for k, v in weights(BEFORE_WEIGHTS).items() if k.startswith(case + ".")}


@pytest.mark.parametrize("case", sorted(BEFORE["runs"]))
def test_the_historical_flags_train_the_same_models_as_before(tmp_path, case):
    # Weights and metrics of tiny runs trained by the code before objectives were plugins (commit
    # ab57cf9, torch 2.x on CPU): the shorthands must reproduce them, to float rounding (another
    # torch release sums in another order; any change to training is far outside it).
    recorded = BEFORE["runs"][case]
    training.train(config(**recorded["options"]), tmp_path / "run", device="cpu")
    assert metrics_match_recorded([without_time(m) for m in metrics_of(tmp_path / "run")], recorded["metrics"])
    assert_weights_match_recorded(weights(tmp_path / "run" / "model.safetensors"), recorded_weights(case))


@pytest.mark.parametrize("case", sorted(BEFORE["runs"]))
def test_the_recorded_weights_are_those_of_the_recorded_digests(case):
    assert weights_digest(recorded_weights(case)) == BEFORE["runs"][case]["weights_sha256"]


def test_a_model_file_from_before_objectives_loads_samples_and_reads_its_objective(tmp_path):
    model = vaetool.load(DATA / "model-before-objectives.safetensors")
    assert "objective" not in model.config
    expected = weights(DATA / "model-before-objectives-outputs.safetensors")
    with torch.no_grad():
        samples = model.sample(4, generator=torch.Generator().manual_seed(0))
        x = TinySquares(n_train=256, n_test=64).load("test").images[:4].float() / 255
        reconstructions = model.reconstruct(x)
    # To float rounding, as the recorded training runs are compared: another torch release's conv kernels
    # sum in another order.
    torch.testing.assert_close(samples, expected["samples"], rtol=RECORDED_RTOL, atol=RECORDED_ATOL)
    torch.testing.assert_close(reconstructions, expected["reconstructions"], rtol=RECORDED_RTOL, atol=RECORDED_ATOL)
    # Its training flags read as the shorthands they now are, for compare and for resume.
    assert objectives.recorded(model.config) == ("elbo", {"beta": 2.0, "warmup": 0.0, "free_bits": 0.0})
    assert TrainConfig.from_model_config(model.config).build_objective()[1] == \
        {"beta": 2.0, "warmup": 0.0, "free_bits": 0.0}
    # and every command still runs on it.
    ok(invoke("sample", "--model", DATA / "model-before-objectives.safetensors", "-n", "4", "-o", tmp_path / "s.png"))
    assert (tmp_path / "s.png").is_file()


@pytest.mark.parametrize("settings, expected", [
    ({"beta": 4.0, "warmup": 0.0, "free_bits": 0.0}, ("elbo", {"beta": 4.0, "warmup": 0.0, "free_bits": 0.0})),
    ({"beta": 1.0, "warmup": 0.0, "free_bits": 0.0, "tc_weight": 6.0},
     ("tcvae", {"beta": 1.0, "warmup": 0.0, "free_bits": 0.0, "tc_weight": 6.0})),
    ({"beta": 100.0, "warmup": 0.0, "free_bits": 0.0, "capacity": 25.0, "capacity_epochs": 3.0},
     ("capacity", {"beta": 100.0, "warmup": 0.0, "free_bits": 0.0, "capacity": 25.0, "capacity_epochs": 3.0})),
], ids=["elbo", "tcvae", "capacity"])
def test_older_training_settings_name_their_objective(settings, expected):
    assert objectives.recorded({"training": settings}) == expected
