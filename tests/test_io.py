"""Model files: one self-describing safetensors file, no pickle, clear errors, atomic writes."""
from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import vaetool
from conftest import state_dicts_equal
from vaetool import io
from vaetool.errors import VaetoolError


@pytest.fixture
def model():
    torch.manual_seed(0)
    return vaetool.create("mlp", "gaussian", input_shape=(1, 8, 8), latent_dim=3, num_classes=0,
                          architecture_options={"hidden": [16]}, likelihood_options={"per_pixel": True},
                          dataset="shapes", training={"epochs": 3})


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.safetensors"
    vaetool.save(model, path)
    return path


def header_of(path):
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["vaetool"])


def rewrite_header(source, target, edit):
    """Copy a model file with its vaetool header replaced by ``edit(header)``."""
    with safe_open(str(source), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = edit(header_of(source))
    safetensors.torch.save_file(tensors, str(target), metadata={"vaetool": json.dumps(header)})
    return target


def test_header_records_what_rebuilds_the_model(saved, model):
    header = header_of(saved)
    assert header["schema"] == io.SCHEMA_VERSION == 1
    assert header["vaetool_version"] == vaetool.__version__
    config = header["config"]
    assert config["architecture"] == "mlp" and config["architecture_options"] == {"hidden": [16], "scale_init": None, "activation": "relu",
        "init": "default", "output_bias": "default"}
    assert config["likelihood"] == "gaussian"
    assert config["likelihood_options"] == {"sigma": None, "per_pixel": True, "link": "sigmoid", "reduction": "sum"}
    assert config["input_shape"] == [1, 8, 8] and config["latent_dim"] == 3 and config["num_classes"] == 0
    assert config["dataset"] == "shapes" and config["training"] == {"epochs": 3}
    assert config["packages"] == {"architecture": "vaetool", "likelihood": "vaetool", "prior": "vaetool",
                                  "latent": "vaetool"}


def test_the_file_is_plain_safetensors(saved, model):
    # 8-byte little-endian header length, a JSON header, then raw tensor bytes: nothing else.
    data = saved.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    assert set(entries) == set(model.state_dict())
    assert len(data) == 8 + length + max(v["data_offsets"][1] for v in entries.values())
    assert set(header["__metadata__"]) == {"vaetool"}


def test_loading_never_unpickles(saved, model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert state_dicts_equal(vaetool.load(saved).state_dict(), model.state_dict())


def test_a_run_directory_loads_its_model_file(saved, model):
    loaded = vaetool.load(saved.parent)
    assert state_dicts_equal(loaded.state_dict(), model.state_dict())


def test_save_creates_missing_folders(model, tmp_path):
    path = tmp_path / "a" / "b" / "m.safetensors"
    vaetool.save(model, path)
    assert vaetool.load(path).config["latent_dim"] == 3


def test_load_puts_the_model_on_the_device_in_eval_mode(saved):
    loaded = vaetool.load(saved, device="cpu")
    assert loaded.device == torch.device("cpu") and not loaded.training


# -- files that are not vaetool models ------------------------------------------------------------

def test_a_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(VaetoolError, match="no file"):
        vaetool.load(tmp_path / "nothing.safetensors")
    with pytest.raises(VaetoolError, match="no file"):
        vaetool.load(tmp_path)  # a directory without a model file


def test_a_truncated_file_is_a_clear_error(saved):
    saved.write_bytes(saved.read_bytes()[:len(saved.read_bytes()) // 2])
    with pytest.raises(VaetoolError, match="not a vaetool model file"):
        vaetool.load(saved)


def test_a_truncated_header_is_a_clear_error(saved):
    saved.write_bytes(saved.read_bytes()[:40])
    with pytest.raises(VaetoolError, match="not a vaetool model file"):
        vaetool.load(saved)


@pytest.mark.parametrize("size", [0, 5, 4096])
def test_random_bytes_are_a_clear_error(tmp_path, size):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(size))
    with pytest.raises(VaetoolError, match="not a vaetool model file"):
        vaetool.load(path)


def test_a_safetensors_file_from_elsewhere_is_a_clear_error(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"weight": torch.ones(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(VaetoolError, match="not a vaetool model file"):
        vaetool.load(path)


def test_a_header_that_is_not_json_is_a_clear_error(saved, tmp_path):
    target = tmp_path / "bad.safetensors"
    with safe_open(str(saved), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    safetensors.torch.save_file(tensors, str(target), metadata={"vaetool": "{not json"})
    with pytest.raises(VaetoolError, match="not a vaetool model file"):
        vaetool.load(target)


def test_a_newer_schema_is_a_clear_error(saved, tmp_path):
    target = rewrite_header(saved, tmp_path / "future.safetensors", lambda h: {**h, "schema": 2})
    with pytest.raises(VaetoolError, match="schema 2"):
        vaetool.load(target)


# A damaged or hand-edited header is a corrupt file like any other: one clear VaetoolError, never a
# traceback from deep inside (AttributeError, KeyError, a state-dict RuntimeError).
CORRUPT_HEADERS = {
    "header-is-a-list": lambda h: [1, 2],
    "config-missing-likelihood": lambda h: {**h, "config": {k: v for k, v in h["config"].items() if k != "likelihood"}},
    "weights-of-another-size": lambda h: {**h, "config": {**h["config"], "architecture_options": {"hidden": [24]}}},
}


@pytest.mark.parametrize("edit", list(CORRUPT_HEADERS.values()), ids=list(CORRUPT_HEADERS))
def test_a_damaged_header_is_a_clear_error(saved, tmp_path, edit):
    target = rewrite_header(saved, tmp_path / "damaged.safetensors", edit)
    with pytest.raises(VaetoolError) as error:
        vaetool.load(target)
    assert "damaged.safetensors" in str(error.value)


def test_missing_weights_are_a_clear_error(saved, tmp_path):
    target = tmp_path / "fewer.safetensors"
    with safe_open(str(saved), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in list(f.keys())[1:]}
    safetensors.torch.save_file(tensors, str(target), metadata=metadata)
    with pytest.raises(VaetoolError, match="do not fit"):
        vaetool.load(target)


def test_an_architecture_that_is_not_installed_is_named(saved, tmp_path):
    def edit(header):
        header["config"]["architecture"] = "transformer-xl"
        header["config"]["packages"] = {"architecture": "vaetool-transformers", "likelihood": "vaetool"}
        return header

    target = rewrite_header(saved, tmp_path / "plugin.safetensors", edit)
    with pytest.raises(VaetoolError) as error:
        vaetool.load(target)
    message = str(error.value)
    assert "'transformer-xl'" in message
    assert "vaetool-transformers" in message  # what to install


def test_a_likelihood_that_is_not_installed_is_named(saved, tmp_path):
    target = rewrite_header(saved, tmp_path / "plugin.safetensors",
                            lambda h: {**h, "config": {**h["config"], "likelihood": "poisson"}})
    with pytest.raises(VaetoolError, match="'poisson'"):
        vaetool.load(target)


# -- atomic writes ----------------------------------------------------------------------------------

def test_a_failed_save_leaves_the_existing_file_unchanged(saved, model, monkeypatch):
    before = saved.read_bytes()

    def crash_half_way(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_half_way)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        vaetool.save(model, saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.safetensors"]  # no temporary file left


def test_an_interrupted_save_leaves_no_file(model, tmp_path, monkeypatch):
    def interrupted(tensors, filename, metadata=None):
        open(filename, "wb").write(b"\x00" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vaetool.save(model, tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_saving_over_a_file_replaces_it(saved, model):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    vaetool.save(model, saved)
    assert state_dicts_equal(vaetool.load(saved).state_dict(), model.state_dict())
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.safetensors"]
