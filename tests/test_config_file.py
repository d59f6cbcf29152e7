"""Config files: every run writes config.toml; ``train --config`` replays it; flags override it;
``--print-config`` shows the config without training."""
from __future__ import annotations

import dataclasses
import math
import sys

import pytest
from safetensors.torch import load_file

from conftest import assert_clean_error, invoke, ok, state_dicts_equal
from vaetool import config_file
from vaetool.training import RunOptions, TrainConfig

TINY = ["--data", "shapes", "--data-opt", "size=16", "--data-opt", "n_train=128", "--data-opt", "n_test=32",
        "--arch", "mlp", "--hidden", "16", "--latent-dim", "3", "--epochs", "1", "--batch-size", "64",
        "--device", "cpu", "--beta", "2"]


def toml(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib.loads(text)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run trained from flags: its run directory."""
    root = tmp_path_factory.mktemp("runs")
    ok(invoke("train", *TINY, "--runs-dir", root, "--name", "original"))
    return root / "original"


def test_the_writer_round_trips_through_a_toml_reader():
    data = {"train": {"name": "a \"quoted\" name\twith\\escapes é", "lr": 1e-05, "beta": 4.0, "epochs": 10,
                      "flag": False, "skip": None, "widths": [512, 256], "mixed": [[1, 2], ["a"]],
                      "weird key": 1, "inf": math.inf,
                      "architecture_options": {"hidden": [32], "nested": {"deep": "yes"}}, "empty": {}},
            "run": {"compile": True}}
    back = toml(config_file.dumps(data))
    expected = {"train": {k: v for k, v in data["train"].items() if v is not None}, "run": data["run"]}
    assert back == expected
    assert type(back["train"]["beta"]) is float and type(back["train"]["epochs"]) is int


def test_a_run_directory_holds_every_setting_with_plugin_options_resolved(run):
    written = toml((run / "config.toml").read_text())
    assert set(written) == {"train", "run"}
    config = TrainConfig()
    set_fields = {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) is not None}
    assert set_fields <= set(written["train"])  # every field, generically: new ones appear by themselves
    train = written["train"]
    assert (train["architecture"], train["dataset"], train["beta"], train["latent_dim"]) == ("mlp", "shapes", 2.0, 3)
    assert train["architecture_options"]["hidden"] == [16]
    assert train["dataset_options"] == {"size": 16, "n_train": 128, "n_test": 32, "seed": 0, "grid": False}
    assert train["likelihood_options"] == {"binarize": "none", "binarize_seed": 0, "reduction": "sum"}  # the plugin's defaults, filled in
    assert {f.name for f in dataclasses.fields(RunOptions) if getattr(RunOptions(), f.name) is not None} \
        <= set(written["run"])
    assert written["run"]["device"] == "cpu"


def test_replaying_a_config_trains_the_same_model_bit_for_bit(run):
    root = run.parent
    ok(invoke("train", "--config", run / "config.toml", "--runs-dir", root, "--name", "replay"))
    original, replay = load_file(run / "model.safetensors"), load_file(root / "replay" / "model.safetensors")
    assert state_dicts_equal(original, replay)
    assert (root / "replay" / "config.toml").read_text() == (run / "config.toml").read_text()
    # A run directory names its config too.
    ok(invoke("train", "--config", run, "--runs-dir", root, "--name", "replay-dir"))
    assert state_dicts_equal(original, load_file(root / "replay-dir" / "model.safetensors"))


def test_flags_beside_a_config_override_it(run):
    printed = ok(invoke("train", "--config", run / "config.toml", "--lr", "0.01", "--hidden", "8",
                        "--data-opt", "n_train=64", "--print-config")).stdout
    replayed, original = toml(printed), toml((run / "config.toml").read_text())
    assert replayed["train"]["lr"] == 0.01
    assert replayed["train"]["architecture_options"]["hidden"] == [8]
    assert replayed["train"]["dataset_options"] == {**original["train"]["dataset_options"], "n_train": 64}
    for key in ("architecture", "beta", "latent_dim", "epochs", "likelihood_options"):
        assert replayed["train"][key] == original["train"][key], key


def test_another_plugin_drops_the_old_ones_options(run):
    printed = ok(invoke("train", "--config", run / "config.toml", "--arch", "linear", "--print-config")).stdout
    train = toml(printed)["train"]
    assert train["architecture"] == "linear" and "hidden" not in train.get("architecture_options", {})
    assert train["latent_dim"] == 3  # everything else is kept


def test_print_config_trains_nothing_and_shows_plugin_defaults(tmp_path):
    result = ok(invoke("train", "--data", "shapes", "--arch", "conv", "--print-config", "--runs-dir", tmp_path))
    printed = toml(result.stdout)
    assert printed["train"]["architecture_options"]["channels"] == [32, 64, 128]  # conv's default
    assert printed["run"]["device"] == "auto"
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_prints_one_config_per_run(tmp_path):
    result = ok(invoke("train", "--data", "shapes", "--beta", "1,4", "--print-config", "--runs-dir", tmp_path))
    parts = result.stdout.split("# run ")
    assert len(parts) == 3 and parts[1].startswith("1 of 2") and parts[2].startswith("2 of 2")
    assert [toml(p.split("\n", 1)[1])["train"]["beta"] for p in parts[1:]] == [1.0, 4.0]


@pytest.mark.parametrize("text, fragment", [
    ("[train]\nlearning_rate = 0.1\n", "no setting 'learning_rate'"),
    ("[trian]\nlr = 0.1\n", "[trian]"),
    ("[train\nlr = 0.1\n", "is not valid TOML"),
    ("[train]\nepochs = 0\n", "epochs"),
    # Values of the wrong type: a flag is typed by the command line, a file's value only by the check.
    ('[train]\nepochs = "ten"\n', "epochs must be a whole number"),
    ("[train]\nepochs = 1.5\n", "epochs must be a whole number"),
    ("[train]\nepochs = true\n", "epochs must be a whole number"),
    ('[train]\nlr = "0.001"\n', "lr must be a number"),
    ('[train]\nautoencoder = "false"\n', "autoencoder must be true or false"),
    ("[train]\narchitecture_options = 5\n", "architecture_options must be a table"),
    ("train = 5\n", "train must be a table"),
    # A setting above the table headers: where it belongs, not "a table".
    ("epochs = 3\n[train]\nlr = 0.1\n", "epochs = 3 is outside any table; put it under [train]"),
    ('device = "cpu"\n', "put it under [run]"),
    ("epoch = 3\n", "[train] and [run] have no such setting"),
    ("[run]\nworkers = -4\n", "workers must be at least 0"),
    # Inside an objective's own options, which its constructor checks.
    ('[train]\nobjective_options = {beta = "x"}\n', "beta must be a number, not 'x'"),
    ('[train]\nobjective = "tcvae"\nobjective_options = {tc_weight = true}\n', "tc_weight must be a number"),
])
def test_a_bad_config_is_one_clear_error(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_clean_error(invoke("train", "--config", path, "--runs-dir", tmp_path / "runs"), fragment)
    assert not (tmp_path / "runs").exists()


def test_config_and_resume_are_refused_together(run, tmp_path):
    assert_clean_error(invoke("train", "--config", run, "--resume", "--runs-dir", tmp_path), "--config", "--resume")
    assert_clean_error(invoke("train", "--config", tmp_path / "missing.toml"), "missing.toml")


def test_a_config_takes_whole_numbers_for_numbers_and_keeps_their_type(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 1\nbeta = 4\nlatent_dim = 8\n")
    config, _, _ = config_file.load(path)
    assert (config.lr, config.beta, config.latent_dim) == (1, 4, 8)
