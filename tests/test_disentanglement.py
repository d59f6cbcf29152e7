"""The disentanglement metrics on codes whose answer is known.

The ground truth here is a fake whose "images" are the factor indices themselves, so an "encoder"
is a numpy function of the factors: the factors (or an invertible rescaling of them) must score
near the maximum, independent noise near chance, a rotation that mixes two factors lower, and no
score may depend on the order of the latent dimensions.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaetool import create, disentanglement as dis
from vaetool.datasets import shapes
from vaetool.errors import VaetoolError

from conftest import tiny_options

SIZES = (3, 4, 5, 6)
# Small sample counts: each metric runs in well under a second on these codes.
COUNTS = {
    "beta_vae": {"num_train": 300, "num_eval": 200},
    "factor_vae": {"num_train": 300, "num_eval": 200, "num_variance_estimate": 1000},
    "mig": {"num_train": 2000},
    "dci": {"num_train": 400, "num_test": 300},
    "sap": {"num_train": 1000, "num_test": 500},
}


class FactorsAsImages(dis.GroundTruth):
    factor_names = ("a", "b", "c", "d")
    factor_sizes = SIZES

    def images(self, indices):
        return np.asarray(indices, dtype=np.float64)


def run(code, seed: int = 0, metrics=tuple(dis.METRICS)) -> dict[str, dict[str, float]]:
    return {name: dis.METRICS[name](FactorsAsImages(), code, np.random.default_rng(seed), **COUNTS[name])
            for name in metrics}


def standardised(f):
    sizes = np.array(SIZES)
    return (f - (sizes - 1) / 2) / np.sqrt((sizes ** 2 - 1) / 12)


def rotated(f):
    # 45° between the first two factors: each of those two dimensions carries both.
    c = np.sqrt(0.5)
    z = standardised(f)
    z[:, :2] = z[:, :2] @ np.array([[c, c], [-c, c]])
    return z


def scrambled(f):
    # A fixed pseudo-random function of the factors: a deterministic stand-in for encoder noise.
    return np.sin(f @ np.array([[12.9898, 78.233, 37.719, 4.31]]).T * np.arange(1, 5) * 43.7)


def random_code(f):
    return np.random.default_rng(int(f.sum()) + len(f)).normal(size=(len(f), 4))


def noisy_mixed(f):
    return rotated(f) + 0.3 * scrambled(f)


PERFECT = {
    "identity": lambda f: f,
    "affine": lambda f: f * np.array([0.5, 3.0, -2.0, 1.0]) + np.array([1.0, -4.0, 0.0, 7.0]),
    "cube": lambda f: standardised(f) ** 3,
}


@pytest.fixture(scope="module")
def perfect_scores():
    return {name: run(code) for name, code in PERFECT.items()}


@pytest.fixture(scope="module")
def random_scores():
    return run(random_code)


@pytest.fixture(scope="module")
def mixed_scores():
    return run(rotated)


@pytest.mark.parametrize("name", list(PERFECT))
def test_factors_and_invertible_rescalings_score_near_the_maximum(perfect_scores, name):
    s = perfect_scores[name]
    assert s["beta_vae"]["eval_accuracy"] > 0.98
    assert s["factor_vae"]["eval_accuracy"] > 0.98
    assert s["factor_vae"]["num_active_dims"] == 4
    assert s["mig"]["mig"] > 0.95
    assert s["dci"]["disentanglement"] > 0.95
    assert s["dci"]["completeness"] > 0.95
    assert s["dci"]["informativeness_test"] > 0.98
    # A linear SVM on one raw dimension separates only some of a factor's values, so even a
    # perfect code stays well below 1; it must still clearly beat the other dimensions.
    assert s["sap"]["sap"] > 0.3


def test_independent_noise_scores_near_chance(random_scores):
    s, chance = random_scores, 1 / len(SIZES)
    assert abs(s["beta_vae"]["eval_accuracy"] - chance) < 0.1
    assert abs(s["factor_vae"]["eval_accuracy"] - chance) < 0.1
    assert s["mig"]["mig"] < 0.02
    assert s["dci"]["disentanglement"] < 0.1
    assert s["dci"]["completeness"] < 0.1
    # Chance accuracy of the factor with the most values, held out.
    assert s["dci"]["informativeness_test"] < 0.35
    assert s["sap"]["sap"] < 0.05


def test_mixing_two_factors_scores_lower(mixed_scores):
    perfect = run(standardised, metrics=("mig", "dci", "sap", "factor_vae"))
    assert mixed_scores["mig"]["mig"] < perfect["mig"]["mig"] - 0.3
    assert mixed_scores["dci"]["disentanglement"] < perfect["dci"]["disentanglement"] - 0.15
    assert mixed_scores["sap"]["sap"] < perfect["sap"]["sap"] - 0.15
    assert mixed_scores["factor_vae"]["eval_accuracy"] < perfect["factor_vae"]["eval_accuracy"] - 0.15
    # A rotation loses no information: every factor is still predictable from the whole code.
    assert mixed_scores["dci"]["informativeness_test"] > 0.98


def test_latent_order_does_not_matter():
    order = [2, 0, 3, 1]
    plain, permuted = run(noisy_mixed, seed=3), run(lambda f: noisy_mixed(f)[:, order], seed=3)
    # Same seed, same sampled factors, same codes up to the column order: the binning, the votes
    # and the per-pair SVMs see exactly the same numbers.
    for name in ("factor_vae", "mig", "sap"):
        assert permuted[name] == plain[name], name
    # The logistic regression sums over features in a different order (rounding only), and the
    # boosted trees break exact ties between features by a seeded random feature order, which
    # a reordering changes; neither should move a score by more than a hair.
    for name in ("beta_vae", "dci"):
        assert permuted[name] == pytest.approx(plain[name], abs=0.01), name


def test_collapsed_dimensions_are_pruned_and_do_not_reduce_mig():
    def with_constants(f):
        z = noisy_mixed(f)
        return np.concatenate([z[:, :2], np.full((len(f), 1), 0.7), z[:, 2:], np.zeros((len(f), 2))], axis=1)

    plain = run(noisy_mixed, seed=1, metrics=("factor_vae", "mig"))
    padded = run(with_constants, seed=1, metrics=("factor_vae", "mig"))
    assert padded["factor_vae"]["num_active_dims"] == 4
    assert padded["factor_vae"] == plain["factor_vae"]
    assert padded["mig"]["mig"] == pytest.approx(plain["mig"]["mig"], abs=1e-12)


def test_every_dimension_collapsed_scores_zero():
    scores = dis.factor_vae_score(FactorsAsImages(), lambda f: np.zeros((len(f), 3)), np.random.default_rng(0),
                                  **COUNTS["factor_vae"])
    assert scores == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}


def test_metrics_are_seeded():
    told = []
    a = dis.all_metrics(FactorsAsImages(), noisy_mixed, seed=5, scale=0.03)
    b = dis.all_metrics(FactorsAsImages(), noisy_mixed, seed=5, scale=0.03, progress=lambda *p: told.append(p))
    assert a == b  # being told the progress changes nothing
    assert told == [("beta_vae", 0, 5), ("factor_vae", 1, 5), ("mig", 2, 5), ("dci", 3, 5), ("sap", 4, 5),
                    ("sap", 5, 5)]
    assert set(a) == {"beta_vae", "factor_vae", "mig", "dci", "sap"}


def test_factor_of_each_dimension_finds_the_captured_factor():
    factors = FactorsAsImages().sample_factors(3000, np.random.default_rng(0))
    codes = standardised(factors.astype(float))[:, [3, 1, 0, 2]]
    codes = np.concatenate([codes, np.zeros((len(codes), 1))], axis=1)
    which, score = dis.factor_of_each_dimension(codes, factors)
    assert which[:4].tolist() == [3, 1, 0, 2]
    assert (score[:4] > 0.95).all() and score[4] == 0
    information = dis.mutual_information_matrix(codes, factors)
    assert information.shape == (5, 4) and (information >= 0).all()


# -- ground truths --------------------------------------------------------------------------------

def test_shapes_ground_truth_renders_the_sampled_factors():
    truth = dis.ShapesGroundTruth(size=32)
    assert truth.factor_sizes == (3, 6, 40, 32, 32)
    assert truth.factor_names == shapes.Shapes.factor_names
    indices = truth.sample_factors(500, np.random.default_rng(7))
    assert indices.shape == (500, 5) and indices.dtype == np.int64
    assert (indices >= 0).all() and (indices < np.array(truth.factor_sizes)).all()
    # Every value of a factor turns up: the sampler covers its whole range.
    assert len(np.unique(indices[:, 0])) == 3 and len(np.unique(indices[:, 1])) == 6
    assert np.array_equal(indices, truth.sample_factors(500, np.random.default_rng(7)))
    assert not np.array_equal(indices, truth.sample_factors(500, np.random.default_rng(8)))
    images = truth.images(indices[:20])
    expected = shapes.render(shapes.indices_to_values(torch.as_tensor(indices[:20])), 32).float() / 255
    assert images.dtype == torch.float32 and images.shape == (20, 1, 32, 32)
    assert torch.equal(images, expected)


def test_grid_ground_truth_indexes_a_row_major_grid():
    sizes = (2, 3, 4)
    images = np.arange(24, dtype=np.uint8).reshape(24, 1, 1, 1)
    truth = dis.GridGroundTruth(images, sizes, ("x", "y", "z"))
    indices = np.array([[0, 0, 0], [1, 2, 3], [0, 1, 2]])
    assert truth.images(indices).flatten().mul(255).round().tolist() == [0, 23, 6]
    with pytest.raises(Exception, match="24 images"):
        dis.GridGroundTruth(images[:10], sizes)


def test_ground_truth_for_a_model_config():
    truth = dis.ground_truth_for({"dataset": "shapes", "dataset_options": {"size": 48}})
    assert isinstance(truth, dis.ShapesGroundTruth) and truth.size == 48
    assert dis.ground_truth_for({"dataset": "mnist", "dataset_options": {}}) is None


def test_representation_is_the_posterior_mean():
    torch.manual_seed(0)
    model = create("conv", input_shape=(1, 32, 32), latent_dim=3, architecture_options=tiny_options("conv"))
    model.train()
    images = dis.ShapesGroundTruth(32).images(np.zeros((5, 5), dtype=np.int64) + [0, 1, 2, 3, 4])
    codes = dis.representation(model, batch_size=2)(images)
    assert model.training  # put back as it was
    model.eval()
    with torch.no_grad():
        expected = model.encode(images).mean.double().numpy()
    assert codes.shape == (5, 3)
    np.testing.assert_allclose(codes, expected, rtol=1e-6, atol=1e-6)


def test_dsprites_ground_truth_reads_the_grid_without_unpickling(tmp_path):
    # The real file's layout at 2×2 pixels: 737,280 images in the published factor order, and a
    # pickled metadata entry that must never be loaded (np.load(allow_pickle=False) would refuse it).
    n = 737280
    imgs = np.zeros((n, 2, 2), dtype=np.uint8)
    imgs[:, 0, 0] = np.arange(n) % 2
    imgs[:, 1, 1] = (np.arange(n) // 32) % 2  # flips with pos_x, the second-fastest factor
    metadata = np.array({"latents_sizes": np.array([1, 3, 6, 40, 32, 32])}, dtype=object)
    np.savez(tmp_path / "dsprites.npz", imgs=imgs, metadata=metadata)
    truth = dis.GridGroundTruth.from_dsprites(tmp_path / "dsprites.npz")
    assert tuple(truth.factor_sizes) == (3, 6, 40, 32, 32)
    indices = truth.sample_factors(50, np.random.default_rng(0))
    flat = np.ravel_multi_index(indices.T, (3, 6, 40, 32, 32))
    assert np.array_equal(truth.images(indices)[:, 0].numpy(), imgs[flat].astype(np.float32))


def test_dci_refuses_codes_that_are_not_finite():
    # The trees run without sklearn's own finiteness checks, so the codes are checked once instead.
    def broken(f):
        code = standardised(f)
        code[0, 1] = np.nan
        return code

    with pytest.raises(VaetoolError, match="finite"):
        dis.dci(FactorsAsImages(), broken, np.random.default_rng(0), **COUNTS["dci"])
