"""Bad input, as an attacker or a careless user gives it: one sentence, the right exit code, nothing lost.

Model files and latent files are untrusted input (``vaetool.validate``); the command line never
shows a traceback for anything a user can cause (``cli/common.handle_errors``).
"""
from __future__ import annotations

import json
import time
import urllib.error

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import vaetool
from conftest import assert_clean_error, invoke, ok
from vaetool import registry
from vaetool.contracts import Architecture
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
