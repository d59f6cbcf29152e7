"""Picking dataset images by label and index: ``show``, and the commands that take dataset images
(``interpolate``, ``traverse``, ``encode``, ``compare --pairs``), on real MNIST and on tiny data.

Each test checks the pixels or latents a command wrote against the dataset's own images and the
model's own outputs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

import vaetool
from conftest import TinySquares, assert_clean_error, invoke, ok
from vaetool import compare, images, latentfile, latents, picking
from vaetool.errors import VaetoolError


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAETOOL_RUNS", raising=False)


@pytest.fixture(scope="module")
def mnist_test(mnist_root):
    from vaetool.datasets.torchvision_sets import MNIST

    return MNIST().load("test", mnist_root)


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def mnist_model(runs, name="r", seed=0):
    """A tiny untrained MLP for 28×28 MNIST saved as run ``name`` in ``runs``."""
    torch.manual_seed(seed)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 28, 28), latent_dim=2, architecture_options={"hidden": [32]},
                           dataset="mnist", dataset_options={}, num_classes=10, class_names=[str(k) for k in range(10)])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # untrained outputs are near 0.5 everywhere; this makes latents tell apart
    (runs / name).mkdir(parents=True)
    vaetool.save(model, runs / name / "model.safetensors")
    return vaetool.load(runs / name / "model.safetensors")


def first_of(split, label: int, count: int = 1) -> list[int]:
    return (split.labels == label).nonzero().flatten()[:count].tolist()


# -- the library -----------------------------------------------------------------------------------

def test_pick_by_label_takes_the_first_of_each_class_in_the_order_given():
    dataset = TinySquares()
    split = dataset.load("test")
    picked = picking.pick(dataset, split, name="tiny", labels=["bottom", "0"], per_label=3)
    assert picked.labels.tolist() == [1, 1, 1, 0, 0, 0]
    assert picked.indices == first_of(split, 1, 3) + first_of(split, 0, 3)
    assert torch.equal(picked.images, split.images[picked.indices])
    everything = picking.pick(dataset, split, name="tiny", labels=["1"])  # per_label None: all, in split order
    assert everything.indices == (split.labels == 1).nonzero().flatten().tolist()


def test_pick_with_a_seed_draws_other_images_of_the_same_label():
    dataset = TinySquares()
    split = dataset.load("test")
    a = picking.pick(dataset, split, name="tiny", labels=["0"], per_label=4, seed=1)
    b = picking.pick(dataset, split, name="tiny", labels=["0"], per_label=4, seed=1)
    assert a.indices == b.indices and a.labels.tolist() == [0] * 4
    assert a.indices != first_of(split, 0, 4)


def test_pick_refuses_a_missing_label_or_index_listing_what_exists():
    dataset = TinySquares()
    split = dataset.load("test")
    with pytest.raises(VaetoolError, match=r"no label '5'; its labels are 0 \(top\), 1 \(bottom\)"):
        picking.pick(dataset, split, name="tiny", labels=["5"], per_label=1)
    with pytest.raises(VaetoolError, match="has 64 images, indices 0 to 63; 64 is not one of them"):
        picking.pick(dataset, split, name="tiny", indices=[0, 64])


def test_captions_name_index_label_and_factors():
    from vaetool.datasets.shapes import Shapes

    dataset = Shapes(n_train=8, n_test=8)
    split = dataset.load("test", None)
    picked = picking.pick(dataset, split, name="shapes", indices=[2])
    caption = picked.captions(factors=True)[0].split("\n")
    assert caption[0] == f"#2: {dataset.class_names[int(split.labels[2])]}"
    assert caption[1:] == [f"{n} {v:.3g}" for n, v in zip(dataset.factor_names, split.factors[2].tolist())]


# -- vaetool show ----------------------------------------------------------------------------------

def test_show_by_label_draws_a_grid_of_that_digit(tmp_path, mnist_root, mnist_test):
    ok(invoke("show", "--data", "mnist", "--label", "3", "-n", "16", "-o", "threes.png", "--data-dir", mnist_root))
    threes = first_of(mnist_test, 3, 16)
    expected = images.grid(mnist_test.images[threes].float() / 255, nrow=8)
    np.testing.assert_array_equal(png(tmp_path / "threes.png"), expected)


def test_show_by_index_writes_each_image_as_a_png_file(tmp_path, mnist_root, mnist_test):
    result = ok(invoke("show", "--data", "mnist", "--index", "0,1,2", "-o", "picked/", "--data-dir", mnist_root))
    assert "Wrote 3 PNG files" in result.stdout
    files = sorted((tmp_path / "picked").iterdir())
    assert [f.name for f in files] == ["mnist-test-0.png", "mnist-test-1.png", "mnist-test-2.png"]
    for i, f in enumerate(files):
        np.testing.assert_array_equal(png(f), mnist_test.images[i, 0].numpy())  # the image itself, 28×28


def test_show_without_label_or_index_draws_a_seeded_random_sample(tmp_path, tiny_dataset):
    ok(invoke("show", "--data", tiny_dataset, "-n", "6", "--seed", "4", "-o", "a.png"))
    assert "Wrote one.png: 1 image (" in ok(invoke("show", "--data", tiny_dataset, "-n", "1", "-o", "one.png")).stdout
    split = TinySquares().load("test")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(4))[:6]
    np.testing.assert_array_equal(png(tmp_path / "a.png"), images.grid(split.images[order].float() / 255, nrow=8))


def test_show_captions_write_labels_under_the_images(tmp_path, tiny_dataset):
    ok(invoke("show", "--data", tiny_dataset, "--index", "0,1", "-o", "plain.png"))
    ok(invoke("show", "--data", tiny_dataset, "--index", "0,1", "--captions", "-o", "captioned.png"))
    plain, captioned = png(tmp_path / "plain.png"), png(tmp_path / "captioned.png")
    assert captioned.shape[0] > plain.shape[0]  # room for the text
    below = captioned[plain.shape[0]:, :, 0]  # under the images: dark text on white
    assert (below < 100).sum() > 20 and (below == 255).mean() > 0.5


def test_show_factors_need_a_dataset_with_factors(tmp_path, tiny_dataset):
    assert_clean_error(invoke("show", "--data", tiny_dataset, "--index", "0", "--factors"), "no ground-truth factors")


def test_show_refuses_a_missing_label_and_an_index_out_of_range(tmp_path, mnist_root):
    assert_clean_error(invoke("show", "--data", "mnist", "--label", "12", "--data-dir", mnist_root),
                       "no label '12'", "0, 1, 2, 3, 4, 5, 6, 7, 8, 9")
    assert_clean_error(invoke("show", "--data", "mnist", "--index", "10000", "--data-dir", mnist_root),
                       "10,000 images", "0 to 9999")
    assert_clean_error(invoke("show", "--data", "mnist", "--index", "a,b", "--data-dir", mnist_root), "--index")
    assert not list(tmp_path.iterdir())


# -- interpolate, traverse, encode on dataset images -------------------------------------------

def test_interpolate_between_labels_from_the_latest_run(tmp_path, mnist_root, mnist_test):
    model = mnist_model(tmp_path / "runs")
    result = ok(invoke("interpolate", "--data", "mnist", "--label", "2,7", "-o", "two-to-seven.gif", "--steps", "5",
                       "--no-bounce", "--runs-dir", tmp_path / "runs", "--data-dir", mnist_root, "--device", "cpu"))
    assert "Using the latest run" in result.stderr and "runs/r" in result.stderr
    ends = [first_of(mnist_test, 2)[0], first_of(mnist_test, 7)[0]]
    assert f"mnist/test/{ends[0]}, mnist/test/{ends[1]}" in result.stdout
    with torch.no_grad():
        z = model.encode(mnist_test.images[ends].float() / 255).mean
        expected = model.decode(latents.path(z, 5, "slerp"))
    frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(Image.open(tmp_path / "two-to-seven.gif"))]
    assert len(frames) == 5
    for frame, picture in zip(frames, expected):
        want = images.grid(picture[None], nrow=1, pad=0)
        assert np.abs(frame.astype(int) - want.astype(int)).max() <= 2  # GIF quantisation


def test_interpolate_refuses_a_dataset_of_another_shape(tmp_path):
    mnist_model(tmp_path / "runs")
    result = invoke("interpolate", "--data", "shapes", "--label", "0,1", "--runs-dir", tmp_path / "runs", "--device", "cpu")
    assert_clean_error(result, "(1, 32, 32)", "(1, 28, 28)", "mnist")


def test_label_without_data_is_a_condition_not_a_pick(tmp_path):
    mnist_model(tmp_path / "runs")
    assert_clean_error(invoke("interpolate", "--label", "2,7", "--runs-dir", tmp_path / "runs"), "add --data")
    assert_clean_error(invoke("traverse", "--index", "3", "--runs-dir", tmp_path / "runs"), "give --data")


def test_traverse_starts_from_the_picked_image(tmp_path, mnist_root, mnist_test):
    model = mnist_model(tmp_path / "runs")
    result = ok(invoke("traverse", "--data", "mnist", "--label", "3", "--steps", "3", "--dims", "0", "-o", "t.png",
                       "--runs-dir", tmp_path / "runs", "--data-dir", mnist_root, "--device", "cpu", "--zoom", "1"))
    three = first_of(mnist_test, 3)[0]
    assert f"from mnist/test/{three}" in result.stdout
    with torch.no_grad():
        start = model.encode(mnist_test.images[[three]].float() / 255).mean[0]
        middle = model.decode(start[None])  # the middle of three steps is the start itself
    picture = png(tmp_path / "t.png")
    cell = picture[2:30, -2 - 28 - 30:-2 - 30]  # the middle cell, right of the row label
    grey = cell[..., 0] if cell.ndim == 3 else cell
    np.testing.assert_allclose(grey, images.grid(middle, nrow=1, pad=0, zoom=1), atol=1)
    assert_clean_error(invoke("traverse", "--data", "mnist", "--label", "3,4", "--runs-dir", tmp_path / "runs",
                              "--data-dir", mnist_root), "one image", "2 were picked")


def test_encode_picks_labels_and_limits_them(tmp_path, tiny_dataset):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=2, architecture_options={"hidden": [8]})
    vaetool.save(model, tmp_path / "m.safetensors")
    ok(invoke("encode", "--data", tiny_dataset, "--label", "bottom", "--limit", "5", "-o", "z.json",
              "-m", tmp_path / "m.safetensors", "--device", "cpu"))
    split = TinySquares().load("test")
    stored = latentfile.read(tmp_path / "z.json")
    bottoms = first_of(split, 1, 5)
    assert stored.labels.tolist() == [1] * 5
    assert stored.names == [f"{tiny_dataset}/test/{i}" for i in bottoms]
    with torch.no_grad():
        np.testing.assert_allclose(stored.mean, model.encode(split.images[bottoms].float() / 255).mean.numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_encode_plots_several_models_side_by_side(tmp_path, tiny_dataset):
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=2,
                               architecture_options={"hidden": [8]}, dataset=tiny_dataset, dataset_options={})
        (tmp_path / "runs" / name).mkdir(parents=True)
        vaetool.save(model, tmp_path / "runs" / name / "model.safetensors")
    ok(invoke("encode", "--data", tiny_dataset, "--limit", "30", "--plot", "one.png", "-m", tmp_path / "runs/a"))
    result = ok(invoke("encode", "--data", tiny_dataset, "--split", "test", "--limit", "30", "--plot", "z.png",
                       "-m", tmp_path / "runs/a", "-m", tmp_path / "runs/b"))
    assert "2 models" in result.stdout
    one, two = png(tmp_path / "one.png"), png(tmp_path / "z.png")
    assert two.shape[1] > 1.3 * one.shape[1]  # two panels side by side
    assert_clean_error(invoke("encode", "--data", tiny_dataset, "-o", "z.npy", "-m", tmp_path / "runs/a",
                              "-m", tmp_path / "runs/b"), "one --model")


def test_encode_plot_annotates_file_names(tmp_path):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=2, architecture_options={"hidden": [8]})
    vaetool.save(model, tmp_path / "m.safetensors")
    for k in range(3):
        array = np.zeros((16, 16), dtype=np.uint8)
        array[k * 4:k * 4 + 5, 2:7] = 255
        Image.fromarray(array).save(tmp_path / f"digit{k}.png")
    files = [tmp_path / f"digit{k}.png" for k in range(3)]
    ok(invoke("encode", *files, "--plot", "named.png", "-m", tmp_path / "m.safetensors"))
    ok(invoke("encode", *files, "--plot", "plain.png", "--no-annotate", "-m", tmp_path / "m.safetensors"))
    named, plain = png(tmp_path / "named.png"), png(tmp_path / "plain.png")
    assert named.shape == plain.shape
    assert (named != plain).any(axis=-1).sum() > 200  # the three names, written beside their points


# -- compare --pairs -------------------------------------------------------------------------------

def test_compare_pictures_interpolate_the_given_pairs():
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=2, architecture_options={"hidden": [8]})
    split = TinySquares().load("test")
    x = split.images.float() / 255
    pairs = [(x[[3, 5]], None, "0 to 1"), (x[[7, 9]], None, "1 to 0")]
    out = compare.pictures([compare.Entry("m", None, model)], x, None, pairs=pairs)
    with torch.no_grad():
        rows = [model.decode(latents.path(model.encode(ends).mean, compare.PICTURE_COUNT, "slerp")) for ends, _, _ in pairs]
    expected = images.with_row_labels(images.grid(torch.cat(rows), nrow=compare.PICTURE_COUNT), ["m 0 to 1", "m 1 to 0"], rows=2)
    np.testing.assert_array_equal(out["interpolations"], expected)


def test_compare_pairs_by_label_names_the_endpoints(tmp_path, tiny_dataset, monkeypatch):
    from vaetool import report

    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=2, architecture_options={"hidden": [8]},
                           dataset=tiny_dataset, dataset_options={})
    vaetool.save(model, tmp_path / "m.safetensors")
    captured = {}
    original = report.write

    def keep(path, entries, verdicts, pictures, settings):
        captured.update(pictures)
        return original(path, entries, verdicts, pictures, settings)

    monkeypatch.setattr(report, "write", keep)
    ok(invoke("compare", tmp_path / "m.safetensors", "--pairs", "top:bottom,1:0", "--limit", "8", "--iw-samples", "0",
              "--no-sample-quality", "-o", tmp_path / "r.md", "--device", "cpu"))
    split = TinySquares().load("test")
    top, bottom = first_of(split, 0)[0], first_of(split, 1)[0]
    x = split.images.float() / 255
    pairs = [(x[[top, bottom]], None, f"top to bottom (#{top}, #{bottom})"), (x[[bottom, top]], None, f"1 to 0 (#{bottom}, #{top})")]
    expected = compare.pictures([compare.Entry("m", None, vaetool.load(tmp_path / "m.safetensors"))], x, None, pairs=pairs)
    np.testing.assert_array_equal(captured["interpolations"], expected["interpolations"])
    assert (tmp_path / "r_files" / "interpolations.png").exists()
    assert_clean_error(invoke("compare", tmp_path / "m.safetensors", "--pairs", "top:left", "--device", "cpu"),
                       "no label 'left'", "0 (top), 1 (bottom)")
