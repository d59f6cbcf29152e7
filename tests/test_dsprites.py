"""The dsprites dataset: reading the original file (a small fake with its keys and dtypes), the seeded
split, and the clear error when the file is missing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaetool import registry
from vaetool.datasets.dsprites import FILE, DSprites
from vaetool.errors import VaetoolError

N = 200


def write_fake(folder, n=N, seed=0):
    """A file with dSprites' keys and dtypes: 0/1 uint8 images, int64 classes with the colour column
    first, float64 values, and a pickled metadata entry that must never be read."""
    rng = np.random.default_rng(seed)
    classes = np.zeros((n, 6), dtype=np.int64)
    for column, count in enumerate((1, 3, 6, 40, 32, 32)):
        classes[:, column] = rng.integers(0, count, n)
    images = (rng.random((n, 64, 64)) < 0.1).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = np.array({"description": "fake"}, dtype=object)
    np.savez_compressed(folder / FILE, imgs=images, latents_classes=classes,
                        latents_values=classes.astype(np.float64), metadata=metadata)
    return images, classes


@pytest.mark.parametrize("where", ["dsprites", "."])
def test_reads_the_file_from_the_data_root(tmp_path, where):
    images, classes = write_fake(tmp_path / where)
    dataset = DSprites()
    train, test = dataset.load("train", tmp_path), dataset.load("test", tmp_path)
    assert len(train) + len(test) == N and len(test) == round(0.1 * N)
    for split in (train, test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 64, 64)
        assert set(split.images.unique().tolist()) <= {0, 255}
        assert split.factors.dtype == torch.float32 and split.factors.shape == (len(split), 5)
        assert split.labels.dtype == torch.int64
        torch.testing.assert_close(split.labels, split.factors[:, 0].long())
    assert dataset.image_shape == (1, 64, 64) and dataset.num_classes == 3
    assert dataset.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert [len(v) for v in dataset.factor_values.values()] == [3, 6, 40, 32, 32]
    # Every image lands in exactly one split, with its own factors, in the file's order.
    rows = {bytes(images[i]): tuple(classes[i, 1:]) for i in range(N)}
    seen = [bytes((image[0] // 255).numpy()) for split in (train, test) for image in split.images]
    assert sorted(seen) == sorted(rows)
    for split in (train, test):
        for image, factors in zip(split.images, split.factors):
            assert rows[bytes((image[0] // 255).numpy())] == tuple(int(f) for f in factors)


def test_the_split_is_seeded(tmp_path):
    write_fake(tmp_path)
    first = DSprites(seed=3).load("test", tmp_path)
    again = DSprites(seed=3).load("test", tmp_path)
    other = DSprites(seed=4).load("test", tmp_path)
    assert torch.equal(first.images, again.images) and torch.equal(first.factors, again.factors)
    assert not torch.equal(first.factors, other.factors)
    assert len(DSprites(test_fraction=0.25).load("test", tmp_path)) == N // 4


def test_a_missing_file_says_what_and_where(tmp_path):
    with pytest.raises(VaetoolError) as error:
        DSprites().load("train", tmp_path)
    message = str(error.value)
    assert FILE in message and str(tmp_path / "dsprites") in message and str(tmp_path) in message
    assert "deepmind/dsprites-dataset" in message and "\n" not in message


def test_a_file_that_is_not_dsprites_is_a_clear_error(tmp_path):
    np.savez(tmp_path / FILE, something=np.zeros(3))
    with pytest.raises(VaetoolError, match="dSprites"):
        DSprites().load("train", tmp_path)


@pytest.mark.parametrize("options", [{"test_fraction": 0.0}, {"test_fraction": 1.0}])
def test_bad_options_are_clear_errors(options):
    with pytest.raises(VaetoolError, match="test_fraction"):
        DSprites(**options)


def test_it_is_registered():
    assert registry.get("dataset", "dsprites") is DSprites
    assert registry.resolve_options("dataset", "dsprites", {}) == {"test_fraction": 0.1, "seed": 0}
