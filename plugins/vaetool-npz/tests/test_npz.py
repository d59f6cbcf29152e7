"""The npz dataset: vaetool's conformance check, image layouts, the split, clear errors, and a training run."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vaetool
from vaetool.cli import app
from vaetool.errors import VaetoolError
from vaetool.testing import check_dataset
from vaetool_npz import NpzImages


def sprites(n=60, size=16, seed=0):
    """Grey images of one bright 4×4 square each, all at different positions; labels say which half it is
    in; factors are its position."""
    rows, cols = np.divmod(np.random.default_rng(seed).choice((size - 4) ** 2, n, replace=False), size - 4)
    images = np.zeros((n, size, size), np.uint8)
    for i, (r, c) in enumerate(zip(rows, cols)):
        images[i, r:r + 4, c:c + 4] = 255
    labels = (rows >= (size - 4) // 2).astype(np.int64)
    factors = np.stack([cols, rows], 1).astype(np.float64) / (size - 4)
    return images, labels, factors


@pytest.fixture
def npz(tmp_path) -> Path:
    images, labels, factors = sprites()
    path = tmp_path / "sprites.npz"
    np.savez_compressed(path, images=images, labels=labels, class_names=np.array(["top", "bottom"]),
                        factors=factors, factor_names=np.array(["pos_x", "pos_y"]))
    return path


def write(tmp_path, name="data.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_keeps_the_dataset_contract(npz, tmp_path):
    check_dataset("npz", options={"path": str(npz)}, root=tmp_path)


def test_keeps_the_dataset_contract_for_colour_images_without_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    check_dataset("npz", options={"path": write(tmp_path, images=images), "test_fraction": 0.25}, root=tmp_path)


def test_describes_the_file(npz):
    dataset = NpzImages(str(npz))
    assert dataset.image_shape == (1, 16, 16)
    assert (dataset.num_classes, dataset.class_names) == (2, ("top", "bottom"))
    assert dataset.factor_names == ("pos_x", "pos_y")
    train, test = dataset.load("train", npz.parent), dataset.load("test", npz.parent)
    assert train.factors.dtype == torch.float32 and train.factors.shape == (len(train), 2)
    assert train.labels.dtype == torch.int64


@pytest.mark.parametrize("layout", ["NHW", "NHW1", "NHWC", "NCHW"])
def test_image_layouts_come_back_as_n_c_h_w(tmp_path, layout):
    grey = np.random.default_rng(0).integers(0, 256, (10, 5, 7), dtype=np.uint8)
    colour = np.random.default_rng(1).integers(0, 256, (10, 3, 5, 7), dtype=np.uint8)  # N, C, H, W
    stored, expected = {"NHW": (grey, grey[:, None]), "NHW1": (grey[..., None], grey[:, None]),
                        "NHWC": (colour.transpose(0, 2, 3, 1), colour), "NCHW": (colour, colour)}[layout]
    dataset = NpzImages(write(tmp_path, images=stored), test_fraction=0.3)
    assert dataset.image_shape == expected.shape[1:]
    train, test = dataset.load("train", tmp_path), dataset.load("test", tmp_path)
    together = torch.cat([train.images, test.images])
    assert together.dtype == torch.uint8 and together.is_contiguous()
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, expected))  # every image, each exactly once


def test_bool_masks_become_black_and_white(tmp_path):
    masks = np.random.default_rng(0).random((6, 4, 4)) > 0.5
    dataset = NpzImages(write(tmp_path, images=masks), test_fraction=0.5)
    images = torch.cat([dataset.load(s, tmp_path).images for s in ("train", "test")])
    assert set(images.unique().tolist()) == {0, 255}


def test_factors_without_names_are_numbered(tmp_path):
    images, _, factors = sprites(10)
    dataset = NpzImages(write(tmp_path, images=images, factors=factors[:, 0]))
    assert dataset.factor_names == ("factor_0",)
    assert dataset.load("train", tmp_path).factors.shape[1] == 1


def test_the_split_is_seeded_disjoint_complete_and_in_file_order(npz):
    images, labels, factors = sprites()
    dataset = NpzImages(str(npz), test_fraction=0.2, seed=3)
    train, test = dataset.load("train", None), dataset.load("test", None)
    assert len(test) == math.ceil(0.2 * 60) and len(train) == 60 - len(test)

    def rows(split):  # where each image of a split sits in the file (the images are all different)
        index = {bytes(image): i for i, image in enumerate(images)}
        return [index[bytes(image)] for image in split.images[:, 0].numpy()]

    train_rows, test_rows = rows(train), rows(test)
    assert sorted(train_rows + test_rows) == list(range(60))
    assert train_rows == sorted(train_rows) and test_rows == sorted(test_rows)  # the file's order is kept
    assert torch.equal(train.labels, torch.from_numpy(labels[train_rows]))
    assert torch.equal(train.factors, torch.from_numpy(factors[train_rows]).float())
    again = NpzImages(str(npz), test_fraction=0.2, seed=3).load("test", None)
    assert torch.equal(again.images, test.images) and torch.equal(again.factors, test.factors)
    other = NpzImages(str(npz), test_fraction=0.2, seed=4).load("test", None)
    assert not torch.equal(other.factors, test.factors)


def test_a_relative_path_is_found_in_the_data_root(npz, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("VAETOOL_DATA", raising=False)
    with pytest.raises(VaetoolError, match="sprites.npz"):
        NpzImages("sprites.npz")
    monkeypatch.setenv("VAETOOL_DATA", str(npz.parent))
    dataset = NpzImages("sprites.npz")
    first = dataset.load("train", npz.parent)
    # Loaded with a root that lacks it, the file found when the dataset was built is read.
    assert torch.equal(NpzImages("sprites.npz").load("train", elsewhere).images, first.images)
    # As given, relative to the working directory, it wins over the data root.
    (elsewhere / "sprites.npz").write_bytes(npz.read_bytes())
    assert NpzImages("sprites.npz").file == Path("sprites.npz")


@pytest.mark.parametrize("arrays, fragment", [
    ({"pictures": np.zeros((4, 8, 8), np.uint8)}, "no 'images' key"),
    ({"images": np.zeros((4, 8, 8), np.float32)}, "float32"),
    ({"images": np.zeros((4, 8, 8), np.int64)}, "uint8"),
    ({"images": np.zeros((4, 8, 8, 4), np.uint8)}, "(N, H, W, C)"),
    ({"images": np.zeros((4, 64), np.uint8)}, "shaped (4, 64)"),
    ({"images": np.zeros((1, 8, 8), np.uint8)}, "at least two"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(3, np.int64)}, "labels"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.array([0, 1, -1, 0])}, "from 0"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(4, np.float32)}, "integer"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.array([0, 1, 2, 0]), "class_names": np.array(["a"])},
     "class_names"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "factors": np.zeros((4, 2)), "factor_names": np.array(["x"])},
     "factor_names"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "factors": np.zeros((5, 2))}, "factors"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "factor_names": np.array(["x"])}, "no factors"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "factors": np.zeros((4, 1)),
      "factor_names": np.array(["x"], dtype=object)}, "pickle"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_malformed_file_is_a_clear_error(tmp_path, arrays, fragment):
    with pytest.raises(VaetoolError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        NpzImages(write(tmp_path, **arrays))


def test_missing_or_unreadable_files_and_bad_options_are_clear_errors(tmp_path, npz):
    with pytest.raises(VaetoolError, match="no .npz file at"):
        NpzImages(str(tmp_path / "nothing.npz"))
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(VaetoolError, match="not a NumPy .npz file"):
        NpzImages(str(tmp_path / "text.npz"))
    np.save(tmp_path / "single.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(VaetoolError, match="single array"):
        NpzImages(str(tmp_path / "single.npy"))
    with pytest.raises(VaetoolError, match="path=FILE.npz"):
        NpzImages()
    for fraction in (0, 1, 1.5, -0.1):
        with pytest.raises(VaetoolError, match="test_fraction"):
            NpzImages(str(npz), test_fraction=fraction)
    with pytest.raises(VaetoolError, match="no split"):
        NpzImages(str(npz)).load("validation", tmp_path)


def test_trains_one_epoch_with_vaetool_train(npz, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, [
        "train", "--arch", "conv", "--channels", "8,16", "--latent-dim", "4", "--data", "npz",
        "--data-opt", f"path={npz}", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
        "--runs-dir", str(tmp_path / "runs"), "--name", "run"])
    assert result.exit_code == 0, result.output
    model = vaetool.load(tmp_path / "runs" / "run")
    assert model.config["dataset"] == "npz"
    assert model.config["dataset_options"] == {"path": str(npz), "test_fraction": 0.1, "seed": 0}
    assert model.config["class_names"] == ["top", "bottom"] and model.input_shape == (1, 16, 16)
    missing = runner.invoke(app, ["train", "--data", "npz", "--data-opt", f"path={tmp_path / 'gone.npz'}",
                                  "--runs-dir", str(tmp_path / "runs")])
    assert missing.exit_code != 0 and "no .npz file at" in missing.output and "Traceback" not in missing.output
