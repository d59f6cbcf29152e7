"""The course experiments' options: averaging on purpose (reduction=mean), subsets (--train-limit,
--test-limit), σ starting at 1 (scale_init), snapshots and the best epoch, labelled class rows.

Each test checks what the option changed — the loss, the data trained on, the weights kept, the
pixels written — not only that it ran.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke, ok, state_dicts_equal
from test_training import config, metrics_of, weights
from vaetool import images, io, picking, registry, snapshots, training
from vaetool.errors import VaetoolError
from vaetool.training import Progress

LIKELIHOODS = ["bernoulli", "continuous-bernoulli", "gaussian", "logistic"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAETOOL_RUNS", raising=False)


@pytest.fixture(scope="module", autouse=True)
def tiny_squares():
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield
    registry.unregister("dataset", TINY_DATASET)


# -- reduction=mean --------------------------------------------------------------------------------

@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_averaging_scales_only_the_training_loss(likelihood):
    x = torch.rand(5, 1, 16, 16)
    made = {}
    for reduction in ("sum", "mean"):
        torch.manual_seed(0)
        made[reduction] = vaetool.create("mlp", likelihood, input_shape=(1, 16, 16), latent_dim=3,
                                         architecture_options={"hidden": [8]},
                                         likelihood_options={"reduction": reduction})
    terms = {r: m.elbo(x, generator=torch.Generator().manual_seed(1)) for r, m in made.items()}
    # What is reported stays the sum over all 256 pixels: the same numbers either way.
    torch.testing.assert_close(terms["mean"].reconstruction, terms["sum"].reconstruction)
    weights_ = {r: m.likelihood.training_weight(x) for r, m in made.items()}
    assert weights_ == {"sum": 1.0, "mean": 1 / 256}
    elbo, _ = registry.build("objective", "elbo", {})
    kl = terms["sum"].kl.sum(-1).mean()
    loss = {r: elbo.loss(terms[r].weighted(weights_[r]), 1.0) for r in made}
    torch.testing.assert_close(loss["sum"], -terms["sum"].reconstruction.mean() + kl)
    torch.testing.assert_close(loss["mean"], -terms["sum"].reconstruction.mean() / 256 + kl)
    assert made["mean"].config["likelihood_options"]["reduction"] == "mean"


def test_an_unknown_reduction_is_one_sentence():
    with pytest.raises(VaetoolError, match="reduction must be sum .* or mean"):
        vaetool.create("mlp", "bernoulli", likelihood_options={"reduction": "average"})


def test_averaging_warns_at_start_and_compare_marks_it(tmp_path):
    result = ok(invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "16", "--epochs", "1",
                       "--likelihood-opt", "reduction=mean", "--name", "mean", "--runs-dir", tmp_path / "runs",
                       "--device", "cpu"))
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1
    assert "averaged over the 256 pixel values" in warning[0] and "--beta 256" in warning[0]
    assert "reported ELBO stays summed" in warning[0]
    ok(invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "16", "--epochs", "1", "--name", "sum",
              "--runs-dir", tmp_path / "runs", "--device", "cpu"))
    line = metrics_of(tmp_path / "runs" / "mean")[0]
    assert line["train_loss"] < -line["train_elbo"] / 10  # the loss is the averaged one; the ELBO is not
    shown = ok(invoke("compare", tmp_path / "runs/mean", tmp_path / "runs/sum", "--iw-samples", "0", "--limit", "16",
                      "--no-sample-quality", "--device", "cpu")).stdout
    rows = {row.split()[1]: row for row in shown.splitlines() if row.split()[1:2] in (["mean"], ["sum"])}
    assert "trained on the averaged log p(x|z)" in rows["mean"] and "averaged" not in rows["sum"]


# -- --train-limit, --test-limit -----------------------------------------------------------------

class _Begin(Progress):
    def begin(self, info):
        self.info = info


def test_limits_train_and_evaluate_on_a_seeded_subset(tmp_path):
    seen = _Begin()
    training.train(config(train_limit=50, test_limit=20, epochs=1), tmp_path / "run", device="cpu", progress=seen)
    assert (seen.info["train_size"], seen.info["test_size"]) == (50, 20)
    recorded = vaetool.load(tmp_path / "run").config["training"]
    assert (recorded["train_limit"], recorded["test_limit"]) == (50, 20)
    split = TinySquares().load("train")
    a, b = picking.subset(split, 50, seed=0), picking.subset(split, 50, seed=0)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, split.images[:50])
    rows = torch.randperm(256, generator=torch.Generator().manual_seed(0))[:50].sort().values
    assert torch.equal(a.images, split.images[rows]) and torch.equal(a.labels, split.labels[rows])
    # The test ELBO is that of the 20 chosen test images.
    test = picking.subset(TinySquares().load("test"), 20, seed=0)
    expected = training.evaluate(vaetool.load(tmp_path / "run"), test, seed=0)["elbo"]
    assert metrics_of(tmp_path / "run")[0]["test_elbo"] == pytest.approx(expected, rel=1e-5)


def test_train_limit_on_the_command_line(tmp_path):
    result = ok(invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "8", "--epochs", "1",
                       "--train-limit", "100", "--name", "r", "--runs-dir", tmp_path, "--device", "cpu"))
    assert "100 train / 64 test" in result.stdout
    assert vaetool.load(tmp_path / "r").config["training"]["train_limit"] == 100
    assert_clean_error(invoke("train", "--data", TINY_DATASET, "--train-limit", "0", "--runs-dir", tmp_path),
                       "train-limit must be at least 1")


def test_a_limit_above_the_split_says_the_run_uses_all_of_it(tmp_path):
    result = ok(invoke("train", "--data", TINY_DATASET, "--arch", "mlp", "--hidden", "8", "--epochs", "1",
                       "--train-limit", "5000", "--name", "r", "--runs-dir", tmp_path, "--device", "cpu"))
    assert "--train-limit 5,000 is more than the 256 training images" in result.stderr
    assert "--test-limit" not in result.stderr and "256 train / 64 test" in result.stdout


# -- scale_init ------------------------------------------------------------------------------------

@pytest.mark.parametrize("architecture,options", [("linear", {}), ("mlp", {"hidden": [16]}),
                                                  ("conv", {"channels": [4, 8]}), ("cvae", {"channels": [4, 8]})])
def test_scale_init_starts_sigma_at_one_under_exp(architecture, options):
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 2
    torch.manual_seed(0)
    model = vaetool.create(architecture, input_shape=(1, 16, 16), num_classes=2, latent_dim=3,
                           architecture_options={**options, "scale_init": 0})
    label = y if model.conditional else None
    torch.testing.assert_close(model.encode(x, label).std, torch.ones(6, 3))
    torch.manual_seed(0)
    default = vaetool.create(architecture, input_shape=(1, 16, 16), num_classes=2, latent_dim=3,
                             architecture_options=options)
    assert not torch.allclose(default.encode(x, label).std, torch.ones(6, 3))
    # The means are untouched, and the weights still learn: the scale's gradient reaches them.
    torch.testing.assert_close(model.encode(x, label).mean, default.encode(x, label).mean)
    model.elbo(x, label).elbo.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.architecture.parameters())


def test_scale_init_under_softplus_sets_the_raw_scale():
    model = vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=3, encoder_scale="softplus",
                           architecture_options={"hidden": [8], "scale_init": 0.5413})
    torch.testing.assert_close(model.encode(torch.rand(2, 1, 16, 16)).std, torch.ones(2, 3), atol=1e-4, rtol=0)


# -- snapshots and the best epoch -----------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory, tiny_squares):
    run_dir = tmp_path_factory.mktemp("snapshots") / "run"
    training.train(config(epochs=3, snapshot_every=1, keep_best=True, lr=1e-2), run_dir, device="cpu")
    return run_dir


def test_snapshots_keep_each_epochs_model_and_pictures(snapshot_run):
    assert snapshots.epochs(snapshot_run) == [1, 2, 3]
    for epoch in (1, 2, 3):
        folder = snapshot_run / "snapshots" / f"epoch-{epoch:03d}"
        assert {p.name for p in folder.iterdir()} == {"model.safetensors", "samples.png", "reconstructions.png"}
    # The last snapshot is the final model; the first is not.
    final = weights(snapshot_run / "model.safetensors")
    assert state_dicts_equal(weights(snapshot_run / "snapshots/epoch-003/model.safetensors"), final)
    assert not state_dicts_equal(weights(snapshot_run / "snapshots/epoch-001/model.safetensors"), final)
    assert (snapshot_run / "snapshots/epoch-003/samples.png").read_bytes() == (snapshot_run / "samples.png").read_bytes()


def test_the_strip_decodes_the_same_z_with_each_snapshot(snapshot_run):
    torch.manual_seed(0)
    z = vaetool.load(snapshot_run).prior.sample(snapshots.STRIP_SAMPLES, torch.Generator().manual_seed(0))
    rows = []
    for epoch in (1, 2, 3):
        with torch.no_grad():
            rows.append(vaetool.load(snapshot_run / f"snapshots/epoch-{epoch:03d}/model.safetensors").decode(z))
    expected = images.with_row_labels(images.grid(torch.cat(rows), nrow=snapshots.STRIP_SAMPLES),
                                      ["epoch 1", "epoch 2", "epoch 3"], rows=3)
    np.testing.assert_array_equal(np.asarray(Image.open(snapshot_run / "snapshots/samples-by-epoch.png")), expected)


def test_best_is_the_epoch_with_the_highest_test_elbo(snapshot_run):
    elbos = [m["test_elbo"] for m in metrics_of(snapshot_run)]
    best = int(np.argmax(elbos)) + 1
    assert state_dicts_equal(weights(snapshot_run / "best.safetensors"),
                             weights(snapshot_run / f"snapshots/epoch-{best:03d}/model.safetensors"))
    assert vaetool.load(snapshot_run / "best.safetensors").config["best"] == {
        "epoch": best, "by": "test_elbo", "value": max(elbos)}


def test_the_best_follows_the_bound_when_an_epoch_gets_worse(tmp_path, monkeypatch):
    model = vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=2, architecture_options={"hidden": [4]})
    history = []
    for epoch, elbo in ((1, -50.0), (2, -40.0), (3, -45.0)):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # a different model each epoch
        history.append({"epoch": epoch, "test_elbo": elbo})
        snapshots.after_epoch(tmp_path, model, history, every=None, keep_best=True)
        if epoch == 2:
            kept = {k: v.clone() for k, v in model.state_dict().items()}
    assert state_dicts_equal(weights(tmp_path / "best.safetensors"), kept)
    history.append({"epoch": 4, "test_elbo": -60.0, "test_bound": -30.0})  # an objective's own bound wins
    snapshots.after_epoch(tmp_path, model, history, every=None, keep_best=True)
    assert io.read_tensors(tmp_path / "best.safetensors")[1]["config"]["best"]["by"] == "test_bound"


def test_model_selectors_pick_the_best_and_a_snapshot(snapshot_run):
    ok(invoke("sample", "-n", "4", "-o", "best.png", "-m", f"{snapshot_run}:best", "--device", "cpu"))
    ok(invoke("sample", "-n", "4", "-o", "two.png", "-m", f"{snapshot_run}:epoch-2", "--device", "cpu"))
    ok(invoke("sample", "-n", "4", "-o", "two-again.png", "-m", snapshot_run / "snapshots/epoch-002", "--device", "cpu"))
    assert Image.open("two.png").tobytes() == Image.open("two-again.png").tobytes()
    assert io.model_path(f"{snapshot_run}:best") == snapshot_run / "best.safetensors"
    assert io.model_path(f"{snapshot_run}:epoch-003") == snapshot_run / "snapshots/epoch-003/model.safetensors"
    error = assert_clean_error(invoke("sample", "-m", f"{snapshot_run}:epoch-7", "--device", "cpu"), "epoch 7")
    assert f"{snapshot_run}:epoch-1, {snapshot_run}:epoch-2, {snapshot_run}:epoch-3, {snapshot_run}:best" in error


def test_a_run_without_snapshots_says_how_to_make_them(tmp_path):
    (tmp_path / "plain").mkdir()
    assert_clean_error(invoke("sample", "-m", f"{tmp_path / 'plain'}:best"), "--keep-best", "--snapshot-every")


def test_resume_keeps_taking_snapshots(tmp_path):
    training.train(config(epochs=2, snapshot_every=2, keep_best=True), tmp_path / "run", device="cpu")
    assert snapshots.epochs(tmp_path / "run") == [2]
    training.resume(tmp_path / "run", epochs=4, device="cpu")
    assert snapshots.epochs(tmp_path / "run") == [2, 4]
    recorded = vaetool.load(tmp_path / "run").config["training"]
    assert recorded["snapshot_every"] == 2 and recorded["keep_best"] is True
    assert_clean_error(invoke("train", "--resume", "--name", "run", "--runs-dir", tmp_path, "--snapshot-every", "1"),
                       "--snapshot-every cannot change")


# -- labelled class rows ---------------------------------------------------------------------------

def test_a_conditional_runs_samples_are_labelled_by_class(tmp_path):
    training.train(config(architecture="cvae", architecture_options={"backbone": "mlp", "hidden": [16]}, epochs=1),
                   tmp_path / "run", device="cpu")
    model = vaetool.load(tmp_path / "run")
    with torch.no_grad():
        samples = model.sample(16, torch.arange(2).repeat_interleave(8), generator=torch.Generator().manual_seed(0))
    expected = images.with_row_labels(images.grid(samples, nrow=8), ["top", "bottom"], rows=2)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "run/samples.png")), expected)


def test_vaetool_sample_labels_each_class_row(tmp_path):
    training.train(config(architecture="cvae", architecture_options={"backbone": "mlp", "hidden": [16]}, epochs=1),
                   tmp_path / "run", device="cpu")
    ok(invoke("sample", "-n", "6", "-o", "rows.png", "-m", tmp_path / "run", "--device", "cpu"))
    model = vaetool.load(tmp_path / "run")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = model.prior.sample(3, generator).repeat(2, 1)
        pictures = model.decode(z, torch.arange(2).repeat_interleave(3))
    expected = images.with_row_labels(images.grid(pictures, nrow=3), ["top", "bottom"], rows=2)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rows.png")), expected)
    assert images.class_labels({"class_names": ["0", "1"]}, [0, 1]) == ["class 0", "class 1"]
