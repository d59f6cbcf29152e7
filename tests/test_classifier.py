"""The sample-quality classifier: Fréchet distance, the scores on samples, and the classifier cache."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from conftest import TinySquares, state_dicts_equal
from vaetool import classifier as clf
from vaetool import registry
from vaetool.contracts import Dataset, Split
from vaetool.errors import VaetoolError
from vaetool.io import read_tensors, save_tensors

# -- the Fréchet distance ---------------------------------------------------------------------------


def with_moments(mean, cov, n=200, seed=0):
    """``n`` points whose sample mean and (ddof=1) covariance are exactly ``mean`` and ``cov``."""
    d = len(mean)
    x = np.random.default_rng(seed).standard_normal((n, d))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # sample covariance = identity
    return x @ np.linalg.cholesky(cov).T + mean


def random_orthogonal(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = torch.randn(500, 32, generator=torch.Generator().manual_seed(0)) * 3 + 1
    assert clf.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    assert clf.frechet_distance(features.numpy(), features.clone()) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mean_a, mean_b = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    a = with_moments(mean_a, np.diag(var_a), seed=1)
    b = with_moments(mean_b, np.diag(var_b), seed=2)
    assert clf.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # The same two Gaussians in a rotated basis: full covariances, same distance.
    q = random_orthogonal(4, seed=3)
    rotated = clf.frechet_distance(with_moments(q @ mean_a, q @ np.diag(var_a) @ q.T, seed=4),
                                   with_moments(q @ mean_b, q @ np.diag(var_b) @ q.T, seed=5))
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_the_textbook_formula_and_is_symmetric():
    generator = np.random.default_rng(0)
    a = generator.standard_normal((300, 8)) @ generator.standard_normal((8, 8))
    b = generator.standard_normal((300, 8)) @ generator.standard_normal((8, 8)) + 0.3
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    textbook = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
    assert clf.frechet_distance(a, b) == pytest.approx(textbook, rel=1e-6)
    assert clf.frechet_distance(b, a) == pytest.approx(clf.frechet_distance(a, b), rel=1e-9)


def test_frechet_distance_grows_as_the_square_of_a_mean_shift():
    a = np.random.default_rng(0).standard_normal((400, 6))
    direction = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 1.0])
    distances = [clf.frechet_distance(a, a + t * direction) for t in (0.5, 1.0, 2.0)]
    assert distances == pytest.approx([t * t * np.sum(direction ** 2) for t in (0.5, 1.0, 2.0)], rel=1e-6)


def test_frechet_distance_handles_singular_covariances():
    generator = np.random.default_rng(0)
    a, b = generator.standard_normal((10, 64)), generator.standard_normal((10, 64)) + 1  # rank 9 of 64
    assert clf.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    distance = clf.frechet_distance(a, b)
    assert np.isfinite(distance) and distance > 64 * 0.5


# -- the classifier and the scores ------------------------------------------------------------------

class Quadrants(Dataset):
    """16×16 grey images on faint noise with a bright 4×4 square in one of the four quadrants (the label)."""

    num_classes = 4
    class_names = ("top-left", "top-right", "bottom-left", "bottom-right")

    def __init__(self, n_train: int = 512, n_test: int = 400, seed: int = 0):
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.image_shape = (1, 16, 16)

    def load(self, split: str, root: Path | None = None) -> Split:
        generator = torch.Generator().manual_seed(self.seed + (0 if split == "train" else 1))
        n = self.n_train if split == "train" else self.n_test
        labels = torch.arange(n) % 4
        images = torch.randint(0, 40, (n, 1, 16, 16), generator=generator, dtype=torch.uint8)
        rows = (labels // 2) * 8 + torch.randint(0, 5, (n,), generator=generator)
        cols = (labels % 2) * 8 + torch.randint(0, 5, (n,), generator=generator)
        for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
            images[i, 0, r:r + 4, c:c + 4] = 255
        return Split(images, labels)


@pytest.fixture(scope="module")
def quadrants():
    dataset = Quadrants()
    return dataset.load("train"), dataset.load("test")


@pytest.fixture(scope="module")
def trained(quadrants):
    train, _ = quadrants
    return clf.train_classifier(train, 4, (1, 16, 16), epochs=4, seed=0)


def test_classifier_shapes_for_any_image_size():
    for shape in [(1, 16, 16), (3, 32, 32), (1, 28, 28), (3, 20, 64)]:
        model = clf.Classifier(shape, num_classes=5)
        x = torch.rand(3, *shape)
        assert model.features(x).shape == (3, 128) and model(x).shape == (3, 5)
    with pytest.raises(VaetoolError, match="at least 16×16"):
        clf.Classifier((1, 8, 8), num_classes=2)


def test_classifier_learns_the_tiny_data(trained, quadrants):
    _, test = quadrants
    assert not trained.training
    assert clf.accuracy(trained, test.images, test.labels) >= 0.95


def test_real_images_against_themselves_score_perfectly(trained, quadrants):
    _, test = quadrants
    scores = clf.sample_quality(trained, test.images, test.images.float() / 255, requested_labels=test.labels)
    assert scores["fid"] == pytest.approx(0, abs=1e-6)
    assert scores["confidence"] > 0.9
    assert scores["label_accuracy"] == 1.0
    assert scores["class_histogram"] == pytest.approx([0.25] * 4, abs=0.05)
    assert sum(scores["class_histogram"]) == pytest.approx(1)
    assert scores["num_real"] == scores["num_samples"] == len(test)


def test_noise_scores_worse_than_real_images(trained, quadrants):
    _, test = quadrants
    real = clf.sample_quality(trained, test.images, test.images)
    noise = clf.sample_quality(trained, test.images, torch.rand(len(test), 1, 16, 16,
                                                                generator=torch.Generator().manual_seed(0)))
    assert noise["fid"] > 10 * max(real["fid"], 1e-3) and noise["fid"] > 1
    assert noise["confidence"] < real["confidence"] - 0.1
    assert noise["entropy"] > real["entropy"] + 0.1


def test_label_accuracy_is_chance_for_shuffled_labels(trained, quadrants):
    _, test = quadrants
    shuffled = test.labels[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))]
    scores = clf.sample_quality(trained, test.images, test.images, requested_labels=shuffled)
    assert scores["label_accuracy"] == pytest.approx(0.25, abs=0.1)


def test_images_of_the_wrong_shape_are_refused(trained, quadrants):
    _, test = quadrants
    with pytest.raises(VaetoolError, match="1×16×16"):
        clf.sample_quality(trained, test.images, torch.rand(10, 1, 28, 28))


# -- the cache ---------------------------------------------------------------------------------------

def forbid_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained although a cached classifier should have been used")

    monkeypatch.setattr(clf, "train_classifier", refuse)


def test_second_call_loads_the_cached_classifier(tiny_dataset, tmp_path, monkeypatch):
    first, info = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    assert not info["cached"] and 0 <= info["accuracy"] <= 1
    assert info["path"].parent == tmp_path and info["path"].name.startswith(f"{tiny_dataset}-")
    forbid_training(monkeypatch)
    second, again = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    assert again["cached"] and again["accuracy"] == info["accuracy"] and again["path"] == info["path"]
    assert state_dicts_equal(first.state_dict(), second.state_dict())
    assert not second.training


def test_other_dataset_options_get_another_cache_file(tiny_dataset, tmp_path):
    _, small = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    _, large = clf.load_or_train(tiny_dataset, {"n_train": 320}, cache_dir=tmp_path)
    assert small["path"] != large["path"] and not large["cached"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([small["path"].name, large["path"].name])


def test_a_corrupt_cache_file_is_retrained(tiny_dataset, tmp_path):
    model, info = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    info["path"].write_bytes(b"half a file")
    retrained, again = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    assert not again["cached"]
    assert state_dicts_equal(model.state_dict(), retrained.state_dict())  # training is seeded
    assert read_tensors(info["path"])[1]["accuracy"] == info["accuracy"]


def test_a_cache_file_for_another_classifier_is_retrained(tiny_dataset, tmp_path):
    _, info = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    tensors, header = read_tensors(info["path"])
    header["key"]["classifier_version"] = 0
    save_tensors(info["path"], tensors, header)
    _, again = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    assert not again["cached"]
    assert read_tensors(info["path"])[1]["key"]["classifier_version"] == clf.CLASSIFIER_VERSION


def test_cache_file_is_safetensors_with_config_and_accuracy(tiny_dataset, tmp_path):
    _, info = clf.load_or_train(tiny_dataset, {}, cache_dir=tmp_path)
    raw = info["path"].read_bytes()
    assert raw[:1] != b"\x80" and raw[:2] != b"PK"  # neither a pickle nor torch.save's zip
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(json.loads(raw[8:8 + length])["__metadata__"]["vaetool"])
    assert header["config"] == {"image_shape": [1, 16, 16], "num_classes": 2, "channels": [16, 32],
                                "feature_dim": 128}
    assert header["accuracy"] == info["accuracy"]
    assert header["key"]["dataset"] == tiny_dataset and header["key"]["dataset_options"]["n_train"] == 256
    assert [p.name for p in tmp_path.iterdir()] == [info["path"].name]  # no temporary file left behind


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VAETOOL_CACHE", str(tmp_path / "cache"))
    assert clf.default_cache_dir() == tmp_path / "cache" / "classifiers"
    monkeypatch.delenv("VAETOOL_CACHE")
    monkeypatch.delenv("VAETOOL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert clf.default_cache_dir() == tmp_path / "xdg" / "vaetool" / "classifiers"


def test_cache_goes_to_vaetool_cache_by_default(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("VAETOOL_CACHE", str(tmp_path))
    _, info = clf.load_or_train(tiny_dataset, {})
    assert info["path"].parent == tmp_path / "classifiers" and info["path"].is_file()


class Unlabelled(TinySquares):
    num_classes = 0
    class_names = ()

    def load(self, split, root=None):
        return Split(super().load(split, root).images)


def test_an_unlabelled_dataset_is_refused(tmp_path, monkeypatch):
    registry.register("dataset", "tiny-unlabelled", Unlabelled)
    forbid_training(monkeypatch)
    try:
        with pytest.raises(VaetoolError, match="need a labelled dataset"):
            clf.load_or_train("tiny-unlabelled", {}, cache_dir=tmp_path)
    finally:
        registry.unregister("dataset", "tiny-unlabelled")
    assert not any(tmp_path.iterdir())
