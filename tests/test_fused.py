"""The hand-written training step of the textbook MLP VAE (vaetool.fused) against autograd: the same
gradient on a batch, the same model after training, and autograd wherever the case does not apply."""
from __future__ import annotations

import pytest
import torch

import vaetool
from conftest import TINY_DATASET, assert_clean_error, invoke
from test_training import config, metrics_of, tiny_squares, weights  # noqa: F401
from vaetool import fused, registry, training
from vaetool.errors import VaetoolError
from vaetool.model import with_latent_loss
from vaetool.training import RunOptions

CPU = torch.device("cpu")


def build(hidden=(32,), activation="relu", binarize="none", objective_options=None, latent_dim=4):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=latent_dim,
                           architecture_options={"hidden": list(hidden), "activation": activation},
                           likelihood_options={"binarize": binarize})
    objective, _ = registry.build("objective", "elbo", objective_options or {})
    return model.train(), objective


def autograd_gradients(model, objective, x, at, seed):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    terms = model(x)
    loss = with_latent_loss(objective.loss(terms, at), terms)
    loss.backward()
    rec, kl = terms.sums()
    return loss.detach(), rec.detach(), kl.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def fused_gradients(model, objective, x, at, seed):
    step = fused.FusedStep(model, objective)
    torch.manual_seed(seed)
    terms = step(x, at)
    rec, kl = terms.sums()
    return objective.loss(terms, at), rec, kl, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("case", [
    dict(),
    dict(hidden=(24, 16), activation="tanh"),
    dict(binarize="dynamic", objective_options={"beta": 4.0, "warmup": 2.0}),
    dict(binarize="static", hidden=(16, 16, 16)),
    dict(binarize="threshold", objective_options={"beta": 0.0}),
])
def test_the_hand_written_gradient_is_autograds(case):
    model, objective = build(**case)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = autograd_gradients(model, objective, x, 0.5, seed=7)
    got = fused_gradients(model, objective, x, 0.5, seed=7)  # the same draws: binarization, then ε
    for a, b in zip(got[:3], expected[:3]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    assert got[3].keys() == expected[3].keys()
    for name, grad in expected[3].items():
        assert torch.allclose(got[3][name], grad, rtol=1e-4, atol=1e-6), name


def test_the_clamped_log_variance_passes_no_gradient_outside_its_range():
    model, objective = build()
    with torch.no_grad():  # half the log-variance outputs far above the clamp at 20, so exp(log σ²) is clamped there
        model.architecture.net.encoder[-1].bias[4:6] = 40.0
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = autograd_gradients(model, objective, x, 1.0, seed=3)
    got = fused_gradients(model, objective, x, 1.0, seed=3)
    bias = "architecture.net.encoder.2.bias"
    assert (expected[3][bias][4:6] == 0).all() and (got[3][bias][4:6] == 0).all()
    for name, grad in expected[3].items():
        assert torch.allclose(got[3][name], grad, rtol=1e-4, atol=1e-6), name


def test_training_with_and_without_the_fused_step_trains_the_same_model(tmp_path, monkeypatch):
    calls = []
    original = fused.FusedStep.__call__
    monkeypatch.setattr(fused.FusedStep, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    settings = config(likelihood_options={"binarize": "dynamic"}, beta=2.0, warmup=1.0)
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    training.train(settings, plain, device="cpu", options=RunOptions(fused_step=False))
    assert calls == []
    done = training.train(settings, fast, device="cpu")  # the default: the fused step where it applies
    assert len(calls) == 8  # 2 epochs of 4 steps
    a, b = weights(plain / "model.safetensors"), weights(fast / "model.safetensors")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert len(metrics_of(plain)) == len(done.metrics) == 2
    for line, other in zip(metrics_of(plain), done.metrics):
        assert line["train_loss"] == pytest.approx(other["train_loss"], rel=1e-6)
        assert line["train_kl"] == pytest.approx(other["train_kl"], rel=1e-5)
        assert line["test_elbo"] == pytest.approx(other["test_elbo"], rel=1e-6)


def test_adams_step_taken_layer_by_layer_in_the_backward_pass_is_optimizer_step_bit_for_bit():
    import copy

    model, objective = build(hidden=(24, 16), binarize="dynamic", objective_options={"beta": 2.0})
    optimizer = training.adam(model, 1e-3)
    by_layer = fused.FusedStep(model, objective, optimizer)
    assert by_layer.update is not None
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    by_layer(x, 0.5)  # the first step: Adam's moments do not exist yet, so the trainer's optimizer.step() makes them
    assert not by_layer.stepped
    optimizer.step()
    # As a resume does: the optimizer's state loaded after the step was made, which replaces its groups.
    optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    twin = copy.deepcopy(model)
    twin_optimizer = training.adam(twin, 1e-3)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # loading would share the tensors
    after = fused.FusedStep(twin, objective)  # no optimizer: the gradient only, then optimizer.step()
    for seed in (1, 2, 3):
        for param_group in (*optimizer.param_groups, *twin_optimizer.param_groups):
            param_group["lr"] = 1e-3 / seed  # the schedule's rate is read at every step
        torch.manual_seed(seed)
        by_layer(x, 0.5)
        assert by_layer.stepped
        torch.manual_seed(seed)
        after(x, 0.5)
        assert not after.stepped
        twin_optimizer.step()
        for (name, p), q in zip(model.named_parameters(), twin.parameters()):
            assert torch.equal(p, q), name
    for p, q in zip(model.parameters(), twin.parameters()):
        ours, theirs = optimizer.state[p], twin_optimizer.state[q]
        assert all(torch.equal(ours[k], theirs[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert float(optimizer.state[next(model.parameters())]["step"]) == 4


def test_optimizers_other_than_the_fused_adam_are_stepped_by_the_trainer():
    model, objective = build()
    for optimizer in (torch.optim.Adam(model.parameters(), lr=1e-3), torch.optim.SGD(model.parameters(), lr=0.1),
                      torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, amsgrad=True)):
        assert fused.FusedStep(model, objective, optimizer).update is None
    assert fused.FusedStep(model, objective, training.adam(model, 1e-3)).update is not None


@pytest.mark.parametrize("change, reason", [
    (dict(architecture="conv", architecture_options={"channels": [8]}), "architecture"),
    (dict(architecture_options={"hidden": [16], "activation": "silu"}), "activation"),
    (dict(encoder_scale="softplus"), "latent"),
    (dict(autoencoder=True), "latent"),
    (dict(likelihood="gaussian"), "likelihood"),
    (dict(likelihood_options={"reduction": "mean"}), "likelihood"),
    (dict(prior="vamp"), "prior"),
    (dict(objective="iwae", objective_options={"k": 2}), "objective"),
    (dict(free_bits=0.5), "objective"),
])
def test_models_outside_the_case_keep_autograd(change, reason):
    settings = config(**change)
    model = vaetool.create(settings.architecture, settings.likelihood, input_shape=(1, 8, 8), latent_dim=4,
                           architecture_options=settings.architecture_options,
                           likelihood_options=settings.likelihood_options, prior=settings.prior,
                           encoder_scale=settings.encoder_scale, autoencoder=settings.autoencoder)
    objective, _ = settings.build_objective()
    assert reason in fused.why_not(model, objective, CPU, "fp32", False, False)
    assert fused.for_run(model, objective, CPU, "fp32", False, False, None) is None


def test_the_run_settings_that_keep_autograd():
    model, objective = build()
    assert fused.why_not(model, objective, CPU, "fp32", False, False) is None
    assert "CPU" in fused.why_not(model, objective, torch.device("cuda"), "fp32", False, False)
    for precision, distributed, compiled in (("bf16", False, False), ("fp32", True, False), ("fp32", False, True)):
        assert "fp32" in fused.why_not(model, objective, CPU, precision, distributed, compiled)
    assert fused.for_run(model, objective, CPU, "fp32", False, False, False) is None  # --no-fused-step


def test_asking_for_the_fused_step_where_it_does_not_apply_is_one_sentence(tmp_path):
    settings = config(architecture="conv", architecture_options={"channels": [8]})
    with pytest.raises(VaetoolError, match="--fused-step does not apply to this run: the architecture"):
        training.train(settings, tmp_path / "run", device="cpu", options=RunOptions(fused_step=True))
    result = invoke("train", "--data", TINY_DATASET, "--arch", "conv", "--channels", "8", "--fused-step",
                    "--epochs", "1", "--device", "cpu", "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "--fused-step does not apply", "not the plain mlp")
    assert not any((tmp_path / "runs").glob("*/model.safetensors"))  # nothing trained, nothing saved


def test_the_cli_says_which_step_trains_and_records_the_choice(tmp_path):
    def train(name, *flags):
        result = invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "16", *flags,
                        "--epochs", "1", "--device", "cpu", "--runs-dir", tmp_path / "runs", "--name", name)
        assert result.exit_code == 0, result.output
        return result.output + result.stderr

    assert "fused step" in train("fast")
    assert "fused step" not in train("plain", "--no-fused-step")
    assert "fused_step = false" in (tmp_path / "runs" / "plain" / "config.toml").read_text()
