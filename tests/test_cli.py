"""The command line: train and plugins, clean one-line errors, and a light ``--help``."""
from __future__ import annotations

import re
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vaetool
from conftest import assert_clean_error, invoke, ok
from vaetool.cli import app

TINY_SHAPES = ["--data", "shapes", "--data-opt", "size=16", "--data-opt", "n_train=128", "--data-opt", "n_test=32"]
TINY_MODEL = ["--arch", "mlp", "--hidden", "32", "--latent-dim", "4", "--epochs", "1", "--batch-size", "64",
              "--device", "cpu"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    # Nothing may land in the repository, whatever a command defaults to.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAETOOL_RUNS", raising=False)








def make_images(folder, n, seed=0, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(folder / f"{i}.png")


def run_files(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


# -- training -------------------------------------------------------------------------------------

def test_train_on_shapes_writes_a_run(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "mlp-shapes-z4"
    for name in ("model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "samples.png"):
        assert (run_dir / name).is_file()
    config = vaetool.load(run_dir).config
    assert config["dataset"] == "shapes"
    assert {k: config["dataset_options"][k] for k in ("size", "n_train", "n_test")} == {"size": 16, "n_train": 128,
                                                                                           "n_test": 32}
    assert config["architecture_options"] == {"hidden": [32], "scale_init": None, "activation": "relu", "init": "default",
                                              "output_bias": "default"} and config["latent_dim"] == 4
    assert "test ELBO" in result.stdout


def test_a_second_run_with_the_same_settings_goes_to_a_new_directory(tmp_path):
    runs = tmp_path / "runs"
    assert invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", runs).exit_code == 0
    first = run_files(runs / "mlp-shapes-z4")
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert (runs / "mlp-shapes-z4-2" / "model.safetensors").is_file()
    assert run_files(runs / "mlp-shapes-z4") == first
    # Said, so that a user who looks for the run under its usual name knows where it went.
    assert f"{runs / 'mlp-shapes-z4'} holds another run; this one goes to {runs / 'mlp-shapes-z4-2'}" in result.stderr
    # Not before a setting is refused, when the run goes nowhere.
    refused = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--arch-opt", "activation=swish", "--runs-dir", runs)
    assert refused.exit_code == 2 and "holds another run" not in refused.stderr and "activation" in refused.stderr


def test_the_run_description_names_an_autoencoder_and_a_prior_other_than_the_normal(tmp_path):
    runs = tmp_path / "runs"
    ae = ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--autoencoder", "--runs-dir", runs))
    assert "mlp autoencoder, bernoulli likelihood, 4-D latent, deterministic (no noise, no KL)" in ae.stdout
    # Its score is its reconstruction, not called an ELBO: it bounds no likelihood.
    assert "ELBO" not in ae.stdout and "test log p(x|z) (nats; no likelihood bound)" in ae.stdout
    assert re.search(r"epoch +1 +train loss +[\d.]+ +test log p\(x\|z\) +-[\d.]+", ae.stdout), ae.stdout
    vamp = ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--prior", "vamp", "--prior-opt", "components=5",
                     "--runs-dir", runs))
    assert "mlp VAE, bernoulli likelihood, 4-D latent, vamp prior (components=5), elbo objective" in vamp.stdout
    # Named apart from a run with the standard prior, rather than as mlp-shapes-z4-2.
    assert sorted(p.name for p in runs.iterdir()) == ["mlp-shapes-vamp-z4", "mlp-shapes-z4-ae"]


def test_the_run_name_carries_a_latent_size_other_than_the_default(tmp_path):
    runs = tmp_path / "runs"
    tiny = [w for w in TINY_MODEL if w not in ("--latent-dim", "4")]
    ok(invoke("train", *TINY_SHAPES, *tiny, "--runs-dir", runs))  # the default, 16
    ok(invoke("train", *TINY_SHAPES, *tiny, "--latent-dim", "2", "--runs-dir", runs))
    assert sorted(p.name for p in runs.iterdir()) == ["mlp-shapes", "mlp-shapes-z2"]
    assert vaetool.load(runs / "mlp-shapes-z2").latent_dim == 2


def test_resume_continues_the_latest_run(tmp_path):
    runs = tmp_path / "runs"
    assert invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", runs).exit_code == 0
    result = invoke("train", "--resume", "--epochs", "2", "--device", "cpu", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    lines = (runs / "mlp-shapes-z4" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_options_given_as_key_values_reach_the_plugins(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path, "--name", "opts",
                    "--likelihood", "gaussian", "--likelihood-opt", "per_pixel=true", "--encoder-scale", "softplus")
    assert result.exit_code == 0, result.output
    config = vaetool.load(tmp_path / "opts").config
    assert config["likelihood_options"] == {"sigma": None, "per_pixel": True, "link": "sigmoid", "reduction": "sum"}
    assert config["encoder_scale"] == "softplus"


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch):
    import signal

    from vaetool.objectives.elbo import ELBO

    real_loss, calls = ELBO.loss, []

    def ctrl_c_on_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # stops at the next step boundary
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(ELBO, "loss", ctrl_c_on_second_step)
    runs = tmp_path / "runs"
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--batch-size", "32", "--runs-dir", runs)
    assert result.exit_code == 130, result.output
    assert "--resume --name mlp-shapes-z4" in result.stdout
    assert (runs / "mlp-shapes-z4" / "checkpoint.safetensors").is_file()
    monkeypatch.setattr(ELBO, "loss", real_loss)
    result = invoke("train", "--resume", "--name", "mlp-shapes-z4", "--device", "cpu", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert len((runs / "mlp-shapes-z4" / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_labelled_folder_trains_a_cvae(tmp_path):
    data = tmp_path / "pictures"
    make_images(data / "cats", 6, seed=0)
    make_images(data / "dogs", 6, seed=1)
    result = invoke("train", "--data", data, "--arch", "cvae", "--channels", "8,16", "--latent-dim", "4",
                    "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    model = vaetool.load(tmp_path / "runs" / "cvae-pictures-z4")
    assert model.conditional and model.num_classes == 2
    assert model.config["class_names"] == ["cats", "dogs"]
    assert model.config["dataset"] == "folder"


# -- plugins --------------------------------------------------------------------------------------

def test_plugins_lists_names_and_packages():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    for name in ("linear", "mlp", "conv", "cvae", "bernoulli", "continuous-bernoulli", "gaussian", "logistic",
                 "mnist", "fashion-mnist", "kmnist", "cifar10", "folder", "shapes"):
        assert name in result.stdout
    assert "vaetool" in result.stdout
    assert "hidden=" in result.stdout and "sigma=" in result.stdout  # each plugin's options


# -- errors: one sentence, no traceback -----------------------------------------------------------

def test_unknown_architecture_lists_the_installed_ones(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL[2:], "--arch", "transformer", "--runs-dir", tmp_path)
    assert_clean_error(result, "'transformer'", "linear", "mlp", "conv", "cvae")


def test_model_options_are_checked_before_any_data_is_loaded(tmp_path, monkeypatch):
    # A typo in --arch must not first cost a dataset download (or, offline, hide behind its failure).
    import torchvision.datasets

    def offline(self):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    empty = tmp_path / "data"
    empty.mkdir()
    result = invoke("train", "--data", "mnist", "--data-dir", empty, "--arch", "transformer", "--device", "cpu",
                    "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "'transformer'")


def test_cvae_on_an_unlabelled_folder_asks_for_labels(tmp_path):
    data = tmp_path / "flat"
    make_images(data, 6)
    result = invoke("train", "--data", data, "--arch", "cvae", "--channels", "8,16", "--epochs", "1",
                    "--device", "cpu", "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "labelled")


def test_a_nonexistent_data_path(tmp_path):
    result = invoke("train", "--data", tmp_path / "no" / "such" / "folder", *TINY_MODEL, "--runs-dir", tmp_path)
    assert_clean_error(result, "no/such/folder")


def test_an_unknown_dataset_name_lists_the_datasets(tmp_path):
    result = invoke("train", "--data", "imagenet", *TINY_MODEL, "--runs-dir", tmp_path)
    assert_clean_error(result, "'imagenet'", "mnist", "shapes")


def test_sigma_with_the_bernoulli_likelihood(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--likelihood", "bernoulli", "--sigma", "0.1",
                    "--runs-dir", tmp_path)
    assert_clean_error(result, "sigma", "bernoulli")


def test_resume_with_nothing_to_resume(tmp_path):
    result = invoke("train", "--resume", "--device", "cpu", "--runs-dir", tmp_path / "empty")
    assert_clean_error(result, "resume")


def test_resume_refuses_changed_settings(tmp_path):
    result = invoke("train", "--resume", "--arch", "conv", "--runs-dir", tmp_path)
    assert_clean_error(result, "--arch")


def test_beta_with_autoencoder(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--autoencoder", "--beta", "2", "--runs-dir", tmp_path)
    assert_clean_error(result, "--beta", "--autoencoder")


def test_an_unknown_device(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--device", "abacus", "--runs-dir", tmp_path)
    assert_clean_error(result, "abacus")


@pytest.mark.parametrize("flag", ["--arch-opt", "--data-opt", "--likelihood-opt"])
def test_a_malformed_key_value(tmp_path, flag):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, flag, "oops", "--runs-dir", tmp_path)
    assert_clean_error(result, flag, "KEY=VALUE")


def test_missing_data_offline_names_the_folder(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    empty = tmp_path / "data"
    empty.mkdir()
    result = invoke("train", "--data", "mnist", "--data-dir", empty, *TINY_MODEL, "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, str(empty / "MNIST"))


# -- a light command line ---------------------------------------------------------------------------

def test_help_imports_neither_torch_nor_any_plugin():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from vaetool.cli import app\n"
        "for args in (['--help'], ['train', '--help'], ['plugins', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'\n"
        "             or m.startswith(('vaetool.architectures', 'vaetool.likelihoods', 'vaetool.datasets.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_python_m_vaetool_help_works_without_torch():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "vaetool", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "plugins" in out.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "typer" in imported  # the import log was read
    assert not [m for m in imported if m.split(".")[0] == "torch"]


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and vaetool.__version__ in result.stdout


# -- the β sweep ----------------------------------------------------------------------------------

def test_a_beta_list_trains_one_run_per_value(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--beta", "0,4", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    for beta, name in ((0.0, "mlp-shapes-z4-beta0"), (4.0, "mlp-shapes-z4-beta4")):
        model = vaetool.load(tmp_path / "runs" / name)
        assert model.config["objective_options"]["beta"] == beta
    assert "vaetool compare" in result.output


def test_a_named_sweep_suffixes_each_run_with_its_beta(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--beta", "1,2", "--name", "sweep", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["sweep-beta1", "sweep-beta2"]


@pytest.mark.parametrize("value", ["1,x", "true", "1,1"])
def test_a_bad_beta_list_is_refused_before_training(tmp_path, value):
    assert_clean_error(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--beta", value, "--runs-dir", tmp_path / "runs"), "β" if value == "1,1" else "--beta")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command, shown", [
    ("train", ["[default: conv]", "[default: 10]", "[default: fp32]"]),
    ("sample", ["[default: the latest run in RUNS_DIR]", "[default: to about 96 px]"]),
    ("compare", ["[default: the whole test split]"]),
    ("traverse", ["[default: up to 10, most informative first]"]),
    ("encode", ["[default: print a table, unless --plot]"]),
])
def test_help_shows_the_defaults_written_in_it(command, shown):
    # Rich reads "[...]" as markup and drops what it cannot style; the help must escape it.
    output = ok(invoke(command, "--help")).output
    for text in shown:
        assert text in output, output


def test_verbose_training_says_an_epochs_two_stages(tmp_path):
    plain = ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path, "--name", "a")).stdout
    verbose = ok(invoke("-v", "train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path, "--name", "b")).stdout
    assert "(steps " not in plain
    line = next(line for line in verbose.splitlines() if line.startswith("epoch   1"))
    assert re.search(r"\d s \(steps \d+\.\d s, test evaluation \d+\.\d s\)$", line), line
