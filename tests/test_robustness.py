"""Bad input, as an attacker or a careless user gives it: one sentence, the right exit code, nothing lost.

Model files and latent files are untrusted input (``vaetool.validate``); the command line never
shows a traceback for anything a user can cause (``cli/common.handle_errors``).
"""
from __future__ import annotations

import json
import time
import urllib.error
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import vaetool
from conftest import assert_clean_error, invoke, ok
from vaetool import latentfile, registry
from vaetool.contracts import Architecture, Objective
from vaetool.errors import VaetoolError

from test_cli import TINY_MODEL, TINY_SHAPES, in_tmp, make_images  # noqa: F401  (in_tmp: autouse fixture)


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("VAETOOL_DEBUG", raising=False)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=3,
                           architecture_options={"hidden": [16]})
    path = tmp_path / "model.safetensors"
    vaetool.save(model, path)
    return path


def tensors_and_header(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["vaetool"])


def rewrite(source, target, edit_config=None, edit_tensors=None, raw_header=None):
    tensors, header = tensors_and_header(source)
    if edit_config:
        edit_config(header["config"])
    if edit_tensors:
        edit_tensors(tensors)
    text = raw_header if raw_header is not None else json.dumps(header)
    safetensors.torch.save_file(tensors, str(target), metadata={"vaetool": text})
    return target


# -- model files: checked before anything is allocated ------------------------------------------------

def _set(key, value):
    def edit(config):
        config[key] = value
    return edit


HOSTILE_CONFIGS = {
    "huge-latent": (_set("latent_dim", 10**9), "latent_dim"),
    "huge-input": (_set("input_shape", [10000, 28, 28]), "input_shape"),
    "huge-hidden": (_set("architecture_options", {"hidden": [10**6, 10**6]}), "do not fit"),
    "negative-latent": (_set("latent_dim", -3), "latent_dim"),
    "zero-side": (_set("input_shape", [1, 0, 8]), "input_shape"),
    "empty-shape": (_set("input_shape", []), "input_shape"),
    "empty-hidden": (_set("architecture_options", {"hidden": []}), "mlp"),
    "infinite-latent": (_set("latent_dim", float("inf")), "latent_dim"),
    "float-latent": (_set("latent_dim", 3.0), "whole number"),
    "string-classes": (_set("num_classes", "ten"), "num_classes"),
    "bool-autoencoder": (_set("autoencoder", "yes"), "autoencoder"),
    "options-not-a-mapping": (_set("likelihood_options", [1]), "likelihood_options"),
    "bad-encoder-scale": (_set("encoder_scale", "log"), "encoder_scale"),
    "hidden-of-strings": (_set("architecture_options", {"hidden": ["a"]}), "mlp"),
    "missing-latent": (lambda c: c.pop("latent_dim"), "'latent_dim'"),
    "missing-options": (lambda c: c.pop("architecture_options"), "'architecture_options'"),
    "purple-background": (_set("background", "purple"), "dark or light"),
    "too-few-class-names": (lambda c: c.update(num_classes=3, class_names=["a"]), "1 class_names for num_classes 3"),
    "kl-per-dim-too-short": (_set("test_kl_per_dim", [1.0, 2.0]), "2 test_kl_per_dim values for a latent of"),
    "objective-of-a-number": (_set("objective", 5), "objective 5"),
    "objective-options-list": (_set("objective_options", [1]), "objective_options"),
    "beta-of-a-string": (_set("objective_options", {"beta": "x"}), "objective option beta"),
}


@pytest.mark.parametrize("edit,fragment", list(HOSTILE_CONFIGS.values()), ids=list(HOSTILE_CONFIGS))
def test_a_hostile_config_is_one_sentence_without_allocating(saved, tmp_path, edit, fragment):
    target = rewrite(saved, tmp_path / "hostile.safetensors", edit)
    started = time.perf_counter()
    with pytest.raises(VaetoolError) as error:
        vaetool.load(target)
    assert time.perf_counter() - started < 5
    message = str(error.value)
    assert fragment in message and "hostile.safetensors" in message
    assert "\n" not in message


def test_a_config_is_compared_with_the_stored_tensors_on_the_meta_device(saved, tmp_path, monkeypatch):
    # hidden [10^6, 10^6] would be 4 TB of weights: the model must never be built for real.
    from vaetool.architectures import mlp

    built = []
    real_init = mlp.MLP.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(mlp.MLP, "__init__", spy)
    target = rewrite(saved, tmp_path / "big.safetensors", _set("architecture_options", {"hidden": [10**6, 10**6]}))
    with pytest.raises(VaetoolError, match="do not fit"):
        vaetool.load(target)
    assert built == ["meta"]


def test_a_tensor_of_another_dtype_is_refused(saved, tmp_path):
    def to_double(tensors):
        key = next(iter(tensors))
        tensors[key] = tensors[key].double()

    target = rewrite(saved, tmp_path / "double.safetensors", edit_tensors=to_double)
    with pytest.raises(VaetoolError, match="float64|F64"):
        vaetool.load(target)


def test_an_extra_tensor_is_refused(saved, tmp_path):
    target = rewrite(saved, tmp_path / "extra.safetensors",
                     edit_tensors=lambda t: t.update({"stowaway": torch.zeros(2)}))
    with pytest.raises(VaetoolError, match="stowaway"):
        vaetool.load(target)


@pytest.mark.parametrize("depth", [65, 100_000])
def test_a_deeply_nested_header_is_refused_without_recursion(saved, tmp_path, depth):
    _, header = tensors_and_header(saved)
    deep = "[" * depth + "]" * depth
    raw = json.dumps(header)[:-1] + f', "deep": {deep}}}'
    target = rewrite(saved, tmp_path / "deep.safetensors", raw_header=raw)
    with pytest.raises(VaetoolError, match="levels deep"):
        vaetool.load(target)


def test_nesting_inside_strings_does_not_count(saved, tmp_path):
    target = rewrite(saved, tmp_path / "brackets.safetensors", _set("dataset", "[" * 500 + "{" * 500))
    assert vaetool.load(target).config["dataset"].startswith("[[[")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_unless_allowed(saved, tmp_path, value):
    def poison(tensors):
        for t in tensors.values():
            t.fill_(value)

    target = rewrite(saved, tmp_path / "poison.safetensors", edit_tensors=poison)
    with pytest.raises(VaetoolError, match="NaN or infinite.*--allow-nonfinite"):
        vaetool.load(target)
    loaded = vaetool.load(target, allow_nonfinite=True)
    assert not next(loaded.parameters()).isfinite().any()
    result = invoke("sample", "--model", target, "-o", tmp_path / "s.png", "--device", "cpu")
    assert_clean_error(result, "--allow-nonfinite")
    assert result.exit_code == 2
    ok(invoke("sample", "--model", target, "-o", tmp_path / "s.png", "--device", "cpu", "--allow-nonfinite"))


# -- latent files ------------------------------------------------------------------------------------

def _write_bad_latent(path):
    name = path.name
    if name == "fractional-label.json":
        path.write_text(json.dumps({"latent_dim": 3, "items": [{"name": "a", "label": 2.5, "mean": [0, 0, 0],
                                                                 "log_var": [0, 0, 0]}]}))
    elif name == "no-log-var.json":
        path.write_text(json.dumps({"latent_dim": 3, "items": [{"name": "a", "mean": [0, 0, 0]}]}))
    elif name == "items-a-dict.json":
        path.write_text(json.dumps({"latent_dim": 3, "items": {"a": 1}}))
    elif name == "complex.npy":
        np.save(path, np.zeros((2, 3), dtype=np.complex64))
    else:  # text under a .npy name: numpy takes it for a pickle
        path.write_text("hello")


@pytest.mark.parametrize("name,fragment", [
    ("fractional-label.json", "whole numbers"), ("no-log-var.json", "lacks 'log_var'"),
    ("items-a-dict.json", "list of objects"), ("complex.npy", "real numbers"), ("text.npy", "never loads"),
])
def test_a_latent_file_that_is_wrong_inside_says_what_is_wrong(saved, tmp_path, name, fragment):
    path = tmp_path / name
    _write_bad_latent(path)
    with pytest.raises(VaetoolError, match=fragment) as caught:
        latentfile.read(path)
    assert "allow_pickle" not in str(caught.value)
    result = invoke("decode", path, "--model", saved, "-o", tmp_path / "d.png", "--device", "cpu")
    assert_clean_error(result, fragment)
    assert not (tmp_path / "d.png").exists()


def test_a_deeply_nested_latent_file_is_refused(tmp_path):
    from vaetool import latentfile

    path = tmp_path / "deep.json"
    path.write_text('{"items": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(VaetoolError, match="levels deep"):
        latentfile.read(path)


def test_decoding_a_3d_array_names_its_shape(saved, tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((2, 3, 16), np.float32))
    result = invoke("decode", tmp_path / "z.npy", "--model", saved, "-o", tmp_path / "d.png", "--device", "cpu")
    error = assert_clean_error(result, "(2, 3, 16)")
    assert "16 dimensions; these latents have 16" not in error


# -- the command line: no traceback, the right exit code -----------------------------------------------

class _Exploding(Architecture):
    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0, depth: int = 2):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        self.layers = 1 / (depth - 2)  # a plugin bug: ZeroDivisionError with its own default


@pytest.fixture
def exploding():
    registry.register("architecture", "exploding", _Exploding)
    yield "exploding"
    registry.unregister("architecture", "exploding")


def test_a_plugin_whose_constructor_breaks_is_one_sentence(tmp_path, exploding):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL[4:], "--arch", exploding, "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "'exploding'", "ZeroDivisionError")
    assert not (tmp_path / "runs").exists()


def test_an_unexpected_error_is_one_sentence_pointing_at_debug(tmp_path, monkeypatch):
    from vaetool import training

    def bug(*args, **kwargs):
        raise KeyError("a bug deep inside")

    monkeypatch.setattr(training, "evaluate", bug)
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs")
    error = assert_clean_error(result, "KeyError", "a bug deep inside", "--debug", "VAETOOL_DEBUG=1")
    assert error.startswith("Error: `vaetool train` failed")
    assert result.exit_code == 1
    debug = invoke("--debug", "train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs2")
    assert isinstance(debug.exception, KeyError)  # the traceback is shown, not a sentence
    monkeypatch.setenv("VAETOOL_DEBUG", "1")
    from typer.testing import CliRunner

    from vaetool.cli import app

    env_debug = CliRunner().invoke(app, ["train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", str(tmp_path / "runs3")])
    assert isinstance(env_debug.exception, KeyError)


@pytest.fixture
def offline(monkeypatch):
    import torchvision.datasets

    def fail(self):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)


def test_usage_errors_exit_2_and_runtime_failures_exit_1(tmp_path, offline):
    assert invoke("train", *TINY_SHAPES, *TINY_MODEL, "--hidden", "abc", "--runs-dir", tmp_path).exit_code == 2
    result = invoke("train", "--data", "mnist", "--data-dir", tmp_path / "nodata", *TINY_MODEL,
                    "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "could not be downloaded")
    assert result.exit_code == 1


def test_a_missing_dataset_leaves_no_folder_behind(tmp_path, offline):
    root = tmp_path / "data"
    root.mkdir()
    (root / "other.txt").write_text("mine")
    result = invoke("train", "--data", "mnist", "--data-dir", root / "new" / "deeper", *TINY_MODEL,
                    "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "MNIST")
    assert sorted(p.name for p in root.iterdir()) == ["other.txt"]


@pytest.mark.parametrize("args,fragment", [
    (["--hidden", "abc"], "--hidden"),
    (["--hidden", "16,0"], "--hidden"),
    (["--channels", "8,x"], "--channels"),
    (["--beta", "1,,2"], "empty item"),
    (["--beta", "1,"], "empty item"),
    (["--beta", "Infinity"], "finite"),
    (["--lr", "inf"], "learning rate"),
    (["--threads", "100000"], "--threads must be at most"),
    (["--epochs", "100000000000000000000"], "epochs must be at most 1,000,000"),
    (["--latent-dim", "70000"], "latent-dim must be at most 65,536"),
    (["--batch-size", "2000000"], "batch-size must be at most"),
])
def test_bad_option_values_are_refused_before_training(tmp_path, args, fragment):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL[:2], *TINY_MODEL[4:], *args, "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, fragment)
    assert result.exit_code == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("size", ["-4", "0", "1e9"])
def test_a_bad_folder_size_is_refused_at_once(tmp_path, size):
    make_images(tmp_path / "pics", 4)
    started = time.perf_counter()
    result = invoke("train", "--data", tmp_path / "pics", "--data-opt", f"size={size}", *TINY_MODEL,
                    "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "size", size if size != "1e9" else "1000000000")
    assert time.perf_counter() - started < 10


def test_a_text_file_named_png_is_not_counted_as_an_image(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "a.png").write_text("not a picture")
    result = invoke("train", "--data", folder, *TINY_MODEL, "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "0 image(s)", "a.png")


@pytest.mark.parametrize("zoom,fragment", [("100000", "smaller --zoom"), ("0", "zoom")])
def test_sample_refuses_a_zoom_it_cannot_draw(saved, tmp_path, zoom, fragment):
    started = time.perf_counter()
    result = invoke("sample", "--model", saved, "--zoom", zoom, "-o", tmp_path / "s.png", "--device", "cpu")
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "s.png").exists()


def test_too_many_images_for_one_picture_asks_for_fewer_not_a_smaller_zoom(saved, tmp_path):
    result = invoke("sample", "--model", saved, "-n", "2000000", "--zoom", "1", "-o", tmp_path / "s.png",
                    "--device", "cpu")
    assert_clean_error(result, "draw fewer images")
    assert "smaller --zoom" not in result.output and not (tmp_path / "s.png").exists()


# -- runs that cannot be lost ---------------------------------------------------------------------------

HOLD = """
import sys, time
from vaetool import locks
with locks.claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_held_by_another_process_is_refused_and_left_alone(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "same"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "same")
        assert_clean_error(result, "in use by another vaetool run", f"process {holder.pid}")
        assert result.exit_code == 1
        assert not run_dir.exists()  # nothing of the refused run was written
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: its lock went with it, and the next run takes the directory over.
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "same"))
    assert (run_dir / "model.safetensors").is_file()
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["same"]  # the lock went with the run


def test_a_stale_lock_file_is_reclaimed(tmp_path):
    run_dir = tmp_path / "runs" / "stale"
    run_dir.mkdir(parents=True)
    (tmp_path / "runs" / ".stale.lock").write_text(json.dumps({"pid": 2**22 + 1, "host": "elsewhere", "started": "2026-01-01"}))
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "stale"))
    assert (run_dir / "model.safetensors").is_file()


def test_two_runs_of_the_same_name_started_together_train_once(tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "vaetool", "train", *TINY_SHAPES, *TINY_MODEL, "--epochs", "2",
               "--threads", "1", "--runs-dir", str(tmp_path / "runs"), "--name", "same"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((run.wait(timeout=120), run.stderr.read(), run.stdout.read()) for run in runs)
    (first, _, trained), (second, refused, _) = outcomes
    assert first == 0 and "Trained 2 epochs" in trained
    assert second == 1, refused
    assert ("in use by another vaetool run" in refused or "already holds a run" in refused), refused
    assert "Traceback" not in refused
    assert len(metrics := (tmp_path / "runs" / "same" / "metrics.jsonl").read_text().splitlines()) == 2, metrics


def test_an_automatic_name_another_process_holds_moves_on_to_the_next_name(tmp_path):
    import subprocess
    import sys

    # The folder is free on disk but another run holds its lock (it has written nothing yet): a run
    # named automatically takes the next name instead of being refused.
    held = tmp_path / "runs" / "mlp-shapes-z4"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs"))
        assert "mlp-shapes-z4-2" in result.output
        assert (tmp_path / "runs" / "mlp-shapes-z4-2" / "model.safetensors").is_file()
        assert not held.exists()
    finally:
        holder.kill()
        holder.wait()


def test_two_automatically_named_runs_started_together_both_train(tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "vaetool", "train", *TINY_SHAPES, *TINY_MODEL, "--epochs", "2",
               "--threads", "1", "--runs-dir", str(tmp_path / "runs")]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["mlp-shapes-z4", "mlp-shapes-z4-2"], folders
    for folder in folders:
        assert len((tmp_path / "runs" / folder / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("name", ["../../x", "../x", "/tmp/vaetool-escaped-run", "a/../../x", ".", "", "  "])
def test_a_run_name_cannot_leave_the_runs_dir(tmp_path, name):
    runs = tmp_path / "deep" / "runs"
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", runs, "--name", name)
    assert_clean_error(result, "--name")
    assert result.exit_code == 2
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x").exists()
    result = invoke("train", "--resume", "--runs-dir", runs, "--name", name, "--device", "cpu")
    assert_clean_error(result, "--name")


@pytest.mark.parametrize("where", ["runs-dir", "name", "broken-link"])
def test_a_file_where_the_run_folder_must_go_is_one_sentence(tmp_path, where):
    runs = tmp_path / "runs"
    if where == "runs-dir":
        runs.write_text("mine")
    else:
        runs.mkdir()
        if where == "name":
            (runs / "r").write_text("mine")
        else:
            (runs / "r").symlink_to(tmp_path / "nowhere")
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", runs, "--name", "r")
    assert_clean_error(result, "is not a folder")
    assert result.exit_code == 2
    assert (runs.read_text() if where == "runs-dir" else
            (runs / "r").read_text() if where == "name" else (runs / "r").is_symlink()) in ("mine", True)
    assert not (tmp_path / "nowhere").exists()


def test_a_name_may_be_a_folder_inside_the_runs_dir(tmp_path):
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "study/first"))
    assert (tmp_path / "runs" / "study" / "first" / "model.safetensors").is_file()


def test_no_output_replaces_a_model_or_checkpoint(tmp_path):
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "r"))
    run_dir = tmp_path / "runs" / "r"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    images_dir = tmp_path / "pics"
    make_images(images_dir, 2)
    for target in ("model.safetensors", "checkpoint.safetensors"):
        for force in ([], ["--force"]):
            result = invoke("encode", images_dir, "--model", run_dir, "-o", run_dir / target, "--device", "cpu", *force)
            assert_clean_error(result, "model or checkpoint")
    renamed = tmp_path / "model-copy.png"
    renamed.write_bytes(before["model.safetensors"])  # a model under a picture's name is still a model
    assert_clean_error(invoke("sample", "--model", run_dir, "-o", renamed, "--device", "cpu"), "model or checkpoint")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_latents_replace_an_existing_file_only_with_force(tmp_path):
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "r"))
    make_images(tmp_path / "pics", 2)
    target = tmp_path / "notes.json"
    target.write_text("my notes")
    args = ["encode", tmp_path / "pics", "--model", tmp_path / "runs" / "r", "-o", target, "--device", "cpu"]
    assert_clean_error(invoke(*args), "exists", "--force")
    assert target.read_text() == "my notes"
    ok(invoke(*args, "--force"))
    assert json.loads(target.read_text())["latent_dim"] == 4
    # Pictures are re-made every time: they replace what is there without --force.
    picture = tmp_path / "samples.png"
    picture.write_bytes(b"old")
    ok(invoke("sample", "--model", tmp_path / "runs" / "r", "-o", picture, "--device", "cpu"))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- divergence -----------------------------------------------------------------------------------------

def test_an_absurd_learning_rate_is_not_called_trained(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--lr", "1000", "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "diverged", "--lr", "1000")
    assert result.exit_code == 1
    assert "Trained" not in result.stdout
    assert "no epoch had finished" in result.stderr
    assert not list((tmp_path / "runs").glob("*/*.safetensors"))  # no model was called trained


def test_a_loss_that_explodes_in_fp32_stops_and_keeps_the_last_good_epoch(tmp_path, monkeypatch, tiny_dataset):
    from vaetool import training

    real_schedule = training.TrainConfig.build_lr_schedule

    def schedule_that_jumps(self):  # the rate set for every step from the first of epoch 2 (4 steps an epoch) on
        schedule, options = real_schedule(self)
        factor = schedule.factor
        schedule.factor = lambda done, epochs: factor(done, epochs) * (1000.0 / 3e-3 if done >= 1 else 1.0)
        return schedule, options

    monkeypatch.setattr(training.TrainConfig, "build_lr_schedule", schedule_that_jumps)
    config = training.TrainConfig(architecture="mlp", architecture_options={"hidden": [32]}, dataset=tiny_dataset,
                                  dataset_options={"n_train": 256, "n_test": 64}, latent_dim=4, epochs=3,
                                  batch_size=64, lr=3e-3)
    run_dir = tmp_path / "run"
    kept = {}

    class Keep(training.Progress):
        def epoch_end(self, metrics):
            kept[metrics["epoch"]] = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    with pytest.raises(training.Diverged) as error:
        training.train(config, run_dir, device="cpu", progress=Keep())
    assert "epoch 2" in str(error.value) and "--lr" in str(error.value)
    assert list(kept) == [1]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == kept[1]


def _watch(beta=1.0, pixels=256, metrics=()):
    from vaetool.divergence import Watch

    return Watch(pixels, beta, 1e-3, "run", list(metrics))


def test_the_divergence_rule_lets_healthy_losses_through():
    from vaetool.divergence import Diverged

    watch = _watch(beta=4.0)
    watch.begin(180.0)
    # Warm-up, then a β of 4 on a growing KL: the loss rises well above where it started.
    sums, count = 0.0, 0
    for step, window in enumerate([150, 120, 200, 400, 900, 600, 300]):
        sums, count = sums + window * 64, count + 64
        watch.refresh(1, step, sums, count)
    # A Gaussian with a learned σ: the loss goes far below zero, and its ELBO far above the first epoch's.
    gaussian = _watch(pixels=784)
    gaussian.begin(9000.0)
    gaussian.refresh(0, 0, -2500.0 * 64, 64)
    for epoch, elbo in enumerate([-900.0, 1500.0, 2600.0], start=1):
        gaussian.epoch_end(epoch, elbo, beta=1.0)
    # β = 0: the KL is not trained, so an ELBO that falls is no divergence.
    free = _watch(beta=0.0)
    for epoch, elbo in enumerate([-150.0, -4000.0, -90000.0], start=1):
        free.epoch_end(epoch, elbo, beta=0.0)
    with pytest.raises(Diverged):
        _watch(beta=0.0).refresh(0, 0, float("nan"), 64)


def test_the_divergence_rule_stops_what_is_far_off():
    from vaetool.divergence import Diverged

    watch = _watch()
    watch.begin(180.0)
    watch.refresh(0, 0, 170.0 * 64, 64)
    with pytest.raises(Diverged, match="loss rose to 3e\\+06"):
        watch.refresh(0, 1, 170.0 * 64 + 3e6 * 64, 128)  # this stretch alone, not the epoch's mean
    elbo = _watch(metrics=[{"train_elbo": -150.0}])
    with pytest.raises(Diverged, match="ELBO fell"):
        elbo.epoch_end(2, -6e9, beta=1.0)
    big_beta = _watch(beta=1000.0)
    big_beta.begin(900.0)
    big_beta.refresh(0, 0, 25_000.0 * 64, 64)  # β = 1000 behind a capacity target: healthy
    with pytest.raises(Diverged):
        big_beta.refresh(0, 1, 25_000.0 * 64 + 1e9 * 64, 128)


@pytest.mark.parametrize("settings", [
    {"beta": 0.0}, {"beta": 4.0, "warmup": 1.0}, {"beta": 1000.0}, {"likelihood": "gaussian"},
    {"likelihood": "continuous-bernoulli"},
], ids=["beta0", "warmup", "beta1000", "gaussian-learned-sigma", "cb"])
def test_healthy_runs_are_never_stopped(tmp_path, tiny_dataset, settings):
    from vaetool import training

    config = training.TrainConfig(**{"architecture": "mlp", "architecture_options": {"hidden": [32]},
                                     "dataset": tiny_dataset, "dataset_options": {"n_train": 256, "n_test": 64},
                                     "latent_dim": 4, "epochs": 2, "batch_size": 32, "lr": 3e-3, **settings})
    result = training.train(config, tmp_path / "run", device="cpu")
    assert result.status == "finished" and result.epoch == 2


# -- plugins --check ------------------------------------------------------------------------------------

class _WrongShape(Architecture):
    """Builds fine, but decodes to the wrong number of pixels."""

    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        self.net = torch.nn.Linear(1, 1)

    def encode(self, x, y=None):
        h = x.flatten(1)[:, :1]
        return self.net(h).expand(-1, self.latent_dim), torch.zeros(len(x), self.latent_dim)

    def decode(self, z, y=None):
        return self.net(z[:, :1]).view(-1, 1, 1, 1)


class _NaNObjective(Objective):
    def loss(self, terms, epochs_done):
        return terms.reconstruction.mean() * float("nan")


def test_plugins_check_lists_a_plugin_that_cannot_run_as_unusable(exploding):
    registry.register("architecture", "wrong-shape", _WrongShape)
    registry.register("objective", "nan-loss", _NaNObjective)
    try:
        result = invoke("plugins", "--check")
        stdout = result.stdout
        assert result.exit_code == 1, result.output  # a CI job's check fails
        rows = {line.split("│")[2].strip(): line for line in stdout.splitlines() if line.count("│") >= 6}
    finally:
        registry.unregister("architecture", "wrong-shape")
        registry.unregister("objective", "nan-loss")
    assert "unusable" in rows["exploding"] and "ZeroDivisionError" in rows["exploding"]
    listed = [line for line in stdout.splitlines() if line.count("│") >= 6]  # a row a plugin; names may repeat
    unusable = sum("unusable" in line for line in listed)
    assert f"Checked {len(listed)} plugins: each imported and tried on a tiny model; {unusable} unusable" in stdout
    assert "unusable" in rows["wrong-shape"] and "forward and backward" in rows["wrong-shape"]
    assert "unusable" in rows["nan-loss"] and "not one finite number" in rows["nan-loss"]
    for usable in ("mlp", "conv", "cvae", "linear", "bernoulli", "gaussian", "logistic", "standard-normal",
                   "elbo", "iwae", "factorvae"):
        assert "unusable" not in rows[usable], rows[usable]


# -- what a model-using command is given ---------------------------------------------------------------

def test_weights_that_overflow_float32_are_refused_unless_allowed(saved, tmp_path):
    def scale_up(tensors):  # every weight finite, their products past float32's largest number
        for t in tensors.values():
            t.mul_(1e30)

    target = rewrite(saved, tmp_path / "huge.safetensors", edit_tensors=scale_up)
    with pytest.raises(VaetoolError, match="overflow float32.*--allow-nonfinite"):
        vaetool.load(target)
    vaetool.load(target, allow_nonfinite=True)
    images_dir = tmp_path / "pics"
    make_images(images_dir, 2, size=8)
    for command in (["encode", images_dir, "-o", tmp_path / "z.json"], ["sample", "-o", tmp_path / "s.png"],
                    ["interpolate", images_dir / "0.png", images_dir / "1.png", "-o", tmp_path / "i.gif"]):
        assert_clean_error(invoke(*command, "--model", target, "--device", "cpu"), "overflow float32")
    assert not list(tmp_path.glob("[zsi].*"))
    # Let through, encode still writes no NaN into a latent file (JSON has no NaN).
    result = invoke("encode", images_dir, "-o", tmp_path / "z.json", "--model", target, "--device", "cpu",
                    "--allow-nonfinite")
    assert_clean_error(result, "not finite numbers")
    assert not (tmp_path / "z.json").exists()


@pytest.mark.parametrize("command", ["sample", "traverse", "interpolate", "decode"])
@pytest.mark.parametrize("fps", ["-1", "nan", "0", "1e-9", "1000"])
def test_a_gif_frame_rate_out_of_range_is_one_sentence(saved, tmp_path, command, fps):
    images_dir = tmp_path / "pics"
    make_images(images_dir, 2, size=8)
    given = {"sample": [], "traverse": [], "interpolate": [images_dir / "0.png", images_dir / "1.png"],
             "decode": ["--z", "0,0,0"]}[command]
    result = invoke(command, *given, "--fps", fps, "-o", tmp_path / "out.gif", "--model", saved, "--device", "cpu")
    assert_clean_error(result, "--fps", "0.01 to 50")
    assert result.exit_code == 2
    assert not (tmp_path / "out.gif").exists()
    ok(invoke(command, *given, "--fps", "0.5", "-o", tmp_path / "out.gif", "--model", saved, "--device", "cpu"))


@pytest.mark.parametrize("args,fragment", [
    (["sample", "--temperature", "inf"], "--temperature"),
    (["traverse", "--range", "inf"], "--range"),
    (["traverse", "--range", "1e300"], "--range"),
    (["sample", "--seed", "99999999999999999999999"], "--seed"),
    (["sample", "--seed", "-1"], "--seed"),
])
def test_numbers_past_what_the_command_can_use_are_refused(saved, tmp_path, args, fragment):
    result = invoke(*args, "-o", tmp_path / "out.png", "--model", saved, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.png").exists()


def test_train_refuses_a_seed_torch_cannot_take(tmp_path):
    result = invoke("train", *TINY_SHAPES, *TINY_MODEL, "--seed", str(2 ** 64), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "--seed" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_an_output_that_is_one_of_the_inputs_is_refused_even_with_force(saved, tmp_path):
    images_dir = tmp_path / "pics"
    make_images(images_dir, 2, size=8)
    first, second = images_dir / "0.png", images_dir / "1.png"
    before = first.read_bytes()
    assert_clean_error(invoke("interpolate", first, second, "-o", first, "--model", saved, "--device", "cpu"),
                       "also an input")
    assert_clean_error(invoke("traverse", first, "-o", first, "--model", saved, "--device", "cpu"), "also an input")
    assert_clean_error(invoke("encode", first, second, "--plot", second, "--model", saved, "--device", "cpu"),
                       "also an input")
    ok(invoke("encode", first, "-o", tmp_path / "z.npy", "--model", saved, "--device", "cpu"))
    z = (tmp_path / "z.npy").read_bytes()
    assert_clean_error(invoke("decode", tmp_path / "z.npy", "-o", tmp_path / "z.npy", "--model", saved,
                              "--device", "cpu"), "must end in")  # a latent file is no picture anyway
    assert first.read_bytes() == before and (tmp_path / "z.npy").read_bytes() == z


@pytest.mark.parametrize("command", [["sample"], ["decode", "--z", "0,0,0,0"], ["traverse"], ["interpolate", "A", "B"]])
@pytest.mark.parametrize("folder", ["out", "out.png"])
def test_an_output_that_is_a_folder_is_named_as_one(saved, tmp_path, command, folder):
    images_dir = tmp_path / "pics"
    make_images(images_dir, 2, size=8)
    (tmp_path / folder).mkdir()
    command = [{"A": images_dir / "0.png", "B": images_dir / "1.png"}.get(part, part) for part in command]
    message = assert_clean_error(invoke(*command, "-o", tmp_path / folder, "--model", saved, "--device", "cpu"),
                                 "is a folder")
    assert "out" + (".gif" if command[0] in ("interpolate",) else ".png") in message
    assert list((tmp_path / folder).iterdir()) == []


@pytest.mark.parametrize("count,method,fragment", [(1, "auto", "at least 2"), (2, "tsne", "at least 3")])
def test_encode_plot_needs_enough_images_for_its_projection(saved, tmp_path, count, method, fragment):
    images_dir = tmp_path / "pics"
    make_images(images_dir, count, size=8)
    result = invoke("encode", images_dir, "--plot", tmp_path / "p.png", "--method", method, "-o", tmp_path / "z.json",
                    "--model", saved, "--device", "cpu")
    assert_clean_error(result, fragment)
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "z.json").exists()


@pytest.mark.parametrize("flag", [["--method", "tsne"], ["--method", "pca"], ["--annotate"], ["--no-annotate"]])
def test_encode_refuses_a_plot_option_without_a_plot(saved, tmp_path, flag):
    images_dir = tmp_path / "pics"
    make_images(images_dir, 3, size=8)
    result = invoke("encode", images_dir, *flag, "-o", tmp_path / "z.json", "--model", saved, "--device", "cpu")
    assert_clean_error(result, flag[0], "--plot")
    assert result.exit_code == 2 and not (tmp_path / "z.json").exists()


def _edit_checkpoint_header(path, edit):
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    key = next(k for k in metadata if k != "format")
    header = json.loads(metadata[key])
    edit(header)
    safetensors.torch.save_file(tensors, str(path), metadata={**metadata, key: json.dumps(header)})


@pytest.mark.parametrize("edit,fragment", [
    (lambda h: h["progress"].update(epoch=-1), "progress"),
    (lambda h: h["progress"].update(epoch="x"), "progress"),
    (lambda h: h.pop("progress"), "progress"),
    (lambda h: h.pop("optimizer"), "optimiser"),
    (lambda h: h["progress"].update(sums="zz"), "progress"),
    (lambda h: h["progress"].update(step=1_000_000), "steps into an epoch"),
    (lambda h: h["optimizer"]["param_groups"][0].update(params=[0, 1, 2]), "does not fit"),
    (lambda h: h.update(metrics={"epoch": 1}), "metrics"),
    (lambda h: h["metrics"].append({"epoch": 2}), "metrics"),
])
def test_a_hand_edited_checkpoint_is_refused_and_the_run_left_as_it_was(tmp_path, edit, fragment):
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "r"))
    run_dir = tmp_path / "runs" / "r"
    _edit_checkpoint_header(run_dir / "checkpoint.safetensors", edit)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = invoke("train", "--resume", "--epochs", "2", "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_clean_error(result, fragment)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_an_older_checkpoint_with_a_damaged_metrics_line_is_refused_naming_it(tmp_path):
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "r"))
    run_dir = tmp_path / "runs" / "r"
    _edit_checkpoint_header(run_dir / "checkpoint.safetensors", lambda h: h.pop("metrics"))  # as before they kept it
    (run_dir / "metrics.jsonl").write_text((run_dir / "metrics.jsonl").read_text() + '{"epoch": 2, "train_lo')
    result = invoke("train", "--resume", "--epochs", "2", "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_clean_error(result, "metrics.jsonl", "damaged line")


@pytest.fixture
def two_epoch_run(tmp_path):
    """A run of two epochs and its metrics.jsonl's lines."""
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--epochs", "2", "--runs-dir", tmp_path / "runs", "--name", "r"))
    run_dir = tmp_path / "runs" / "r"
    return run_dir, (run_dir / "metrics.jsonl").read_text().splitlines()


@pytest.mark.parametrize("spoil,said", [
    (lambda path, lines: path.unlink(), "was missing"),
    (lambda path, lines: path.write_text(lines[0] + "\n"), "lacked the last epoch"),  # stopped between the two files
    (lambda path, lines: path.write_text(lines[0] + "\n" + lines[1][:40]), "damaged line"),
])
def test_a_lost_or_damaged_metrics_file_is_restored_from_the_checkpoint(two_epoch_run, spoil, said):
    run_dir, lines = two_epoch_run
    spoil(run_dir / "metrics.jsonl", lines)
    result = invoke("train", "--resume", "--epochs", "3", "--runs-dir", run_dir.parent, "--name", "r")
    ok(result)
    assert said in result.stderr and "restored from its checkpoint" in result.stderr
    after = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert after[:2] == lines and json.loads(after[2])["epoch"] == 3


def test_a_history_too_long_for_the_checkpoint_is_read_from_metrics_jsonl(tmp_path, monkeypatch):
    from vaetool import training

    monkeypatch.setattr(training, "METRICS_IN_CHECKPOINT", 100)  # less than one epoch's line
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "r"))
    run_dir = tmp_path / "runs" / "r"
    with safe_open(str(run_dir / "checkpoint.safetensors"), framework="pt") as f:
        assert "metrics" not in json.loads(f.metadata()["vaetool"])
    first = (run_dir / "metrics.jsonl").read_text().splitlines()
    ok(invoke("train", "--resume", "--epochs", "2", "--runs-dir", tmp_path / "runs", "--name", "r"))
    assert (run_dir / "metrics.jsonl").read_text().splitlines()[:1] == first


def test_a_checkpoint_of_another_run_copied_in_is_refused_and_nothing_written(two_epoch_run, tmp_path):
    run_dir, _ = two_epoch_run
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--epochs", "2", "--seed", "1", "--runs-dir", tmp_path / "runs",
              "--name", "other"))
    (run_dir / "checkpoint.safetensors").write_bytes((tmp_path / "runs" / "other" / "checkpoint.safetensors").read_bytes())
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = invoke("train", "--resume", "--epochs", "3", "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_clean_error(result, "metrics.jsonl", "another run")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_a_plugin_too_large_to_allocate_says_so_without_torchs_internals():
    from vaetool.validate import plugin_errors

    torch_says = ("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory: "
                  "you tried to allocate 409599999995904 bytes.")
    with pytest.raises(VaetoolError, match="needs more memory than there is") as caught:
        with plugin_errors("architecture", "mlp", {"hidden": [10 ** 8]}):
            raise RuntimeError(torch_says)
    assert "alloc_cpu" not in str(caught.value) and "GiB" in str(caught.value)


# -- pipes and devices: refused without being opened ---------------------------------------------------

@pytest.fixture
def fifo(tmp_path):
    """A named pipe, and a thread that unblocks any reader after a few seconds with junk, so that code which
    opens it fails the test rather than hanging it."""
    import os
    import threading

    def make(name):
        path = tmp_path / name
        os.mkfifo(path)

        def feed():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until someone reads
                except OSError:
                    time.sleep(0.2)
                    continue
                os.write(fd, b"junk")
                os.close(fd)
                return

        threading.Thread(target=feed, daemon=True).start()
        return path
    return make


@pytest.mark.parametrize("command,name,what", [
    (["train", "--config", "{}"], "settings.toml", "config file"),
    (["sample", "--model", "{}", "-o", "s.png"], "piped.safetensors", "model file"),
    (["encode", "{}", "--model", "MODEL", "-o", "z.json"], "digit.png", "image file"),
    (["decode", "{}", "--model", "MODEL", "-o", "d.png"], "z.npy", "latent file"),
])
def test_a_pipe_given_as_a_file_is_refused_without_reading_it(saved, fifo, command, name, what):
    path = fifo(name)
    started = time.perf_counter()
    args = [str(path) if a == "{}" else str(saved) if a == "MODEL" else a for a in command]
    result = invoke(*args)
    assert_clean_error(result, f"{path} is not a regular file", f"cannot be an {what}" if what[0] == "i"
                       else f"cannot be a {what}")
    assert result.exit_code == 2
    assert time.perf_counter() - started < 3  # the feeding thread would have unblocked a reader only later


def test_a_device_or_a_huge_file_is_not_read_as_a_config(tmp_path):
    assert_clean_error(invoke("train", "--config", "/dev/zero"), "/dev/zero is not a regular file")
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * (2 << 20) + "\n")
    assert_clean_error(invoke("train", "--config", huge), "larger than 1 MiB")
    latin = tmp_path / "latin.toml"
    latin.write_bytes("[train]\narch = \"caf\xe9\"\n".encode("latin-1"))
    assert_clean_error(invoke("train", "--config", latin), "not UTF-8")


# -- writes that fail ----------------------------------------------------------------------------------

def test_a_failed_write_names_the_file_and_leaves_the_old_one(tmp_path):
    import errno

    from vaetool import io
    from vaetool.errors import RuntimeFailure

    target = tmp_path / "report.md"
    target.write_text("the old report")

    def full_disk(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RuntimeFailure, match=f"Cannot write {target}: no space left on device"):
        io.atomic_write(target, full_disk)
    assert target.read_text() == "the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temporary file left


def test_an_output_below_a_file_is_one_sentence_naming_it(saved, tmp_path):
    (tmp_path / "notes").write_text("mine")
    result = invoke("sample", "--model", saved, "-o", tmp_path / "notes" / "s.png", "--device", "cpu")
    assert_clean_error(result, f"Cannot write {tmp_path / 'notes' / 's.png'}: {tmp_path / 'notes'} is a file")
    assert result.exit_code == 1
    assert (tmp_path / "notes").read_text() == "mine"


def test_a_model_is_not_saved_inside_a_folder_named_like_a_model_file(saved, tmp_path):
    from vaetool.errors import RuntimeFailure

    folder = tmp_path / "copy.safetensors"
    folder.mkdir()
    with pytest.raises(RuntimeFailure, match="it is a folder"):
        vaetool.save(vaetool.load(saved), folder)
    assert list(folder.iterdir()) == []
    vaetool.save(vaetool.load(saved), tmp_path)  # a folder by another name holds the model file, as documented
    assert (tmp_path / "model.safetensors").is_file()


def test_a_run_whose_model_file_is_a_folder_is_refused_before_training(tmp_path):
    ok(invoke("train", *TINY_SHAPES, *TINY_MODEL, "--runs-dir", tmp_path / "runs", "--name", "r"))
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "model.safetensors").unlink()
    (run_dir / "model.safetensors").mkdir()
    checkpoint = (run_dir / "checkpoint.safetensors").read_bytes()
    result = invoke("train", "--resume", "--name", "r", "--epochs", "2", "--runs-dir", tmp_path / "runs")
    assert_clean_error(result, "model.safetensors is a folder")
    assert (run_dir / "checkpoint.safetensors").read_bytes() == checkpoint
    assert list((run_dir / "model.safetensors").iterdir()) == []


def test_a_broken_link_is_missing_not_a_pipe(tmp_path):
    (tmp_path / "gone.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    assert_clean_error(invoke("sample", "--model", tmp_path / "gone.safetensors", "-o", tmp_path / "s.png"),
                       "There is no model file at")


def test_objective_options_take_numpy_numbers_and_refuse_strings():
    from vaetool.objectives.elbo import ELBO

    assert ELBO(beta=np.float32(0.5)).beta == 0.5
    with pytest.raises(VaetoolError, match="beta must be a number, not 'x'"):
        ELBO(beta="x")


def test_a_model_path_that_is_no_run_says_which_it_is(tmp_path):
    (tmp_path / "runs").mkdir()
    sample = ("sample", "-o", tmp_path / "s.png", "--device", "cpu")
    assert_clean_error(invoke(*sample, "--model", tmp_path / "runs"),
                       f"{tmp_path / 'runs'} is a folder without a model.safetensors: not a run directory")
    assert_clean_error(invoke(*sample, "--model", tmp_path / "runs" / "gone"),
                       f"There is no model file or run directory at {tmp_path / 'runs' / 'gone'}.")
    assert_clean_error(invoke("compare", tmp_path / "runs" / "gone", tmp_path / "runs" / "other"),
                       f"There is no model file or run directory at {tmp_path / 'runs' / 'gone'}.")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("flag, option, words", [
    ("--data-opt", "size=abc", "The dataset 'shapes' could not use size='abc': it takes a number, like its default 32."),
    ("--data-opt", "n_train=big", "could not use n_train='big': it takes a number"),
    ("--likelihood-opt", "sigma=abc", "sigma must be a positive number for the gaussian likelihood, not 'abc'."),
])
def test_an_option_of_the_wrong_kind_is_named(tmp_path, flag, option, words):
    extra = ["--likelihood", "gaussian"] if flag == "--likelihood-opt" else []
    result = invoke("train", "--data", "shapes", flag, option, *extra, "--epochs", "1", "--runs-dir", tmp_path)
    error = assert_clean_error(result, words)
    assert "Error" not in error[len("Error: "):] and "not supported between" not in error


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_a_latent_past_float32s_range_is_refused_in_a_sentence_without_a_warning(saved, tmp_path, suffix):
    path = tmp_path / f"big{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"items": [{"mean": [1e300, 0, 0], "log_var": [0, 0, 0], "label": -1,
                                                "name": "a"}]}))
    else:
        path.write_text("name,label,mean_0,mean_1,mean_2,log_var_0,log_var_1,log_var_2\na,-1,1e300,0,0,0,0,0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would reach the user's terminal
        result = invoke("decode", path, "--model", saved, "-o", tmp_path / "out.png", "--device", "cpu")
    assert_clean_error(result, "not finite numbers")
    assert not (tmp_path / "out.png").exists()
