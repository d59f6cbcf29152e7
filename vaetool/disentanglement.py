"""Disentanglement metrics: how well each latent dimension captures one ground-truth factor.

The five scores of Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning
of Disentangled Representations" (ICML 2019), computed as disentanglement_lib computes them and
with its published sample counts as defaults: β-VAE, FactorVAE, MIG, DCI and SAP.

Every metric takes the same three things:

- a :class:`GroundTruth`: factor sizes, a sampler of factor *indices* and a renderer of images
  for them (:class:`ShapesGroundTruth` draws the built-in dSprites recipe on the fly,
  :class:`GridGroundTruth` indexes a stored full factor grid such as the dSprites ``.npz``);
- ``represent``: a function from a batch of images to a numpy ``(n, L)`` code. For a VAE it is
  :func:`representation`, the posterior *means* — disentanglement_lib's
  ``representation_function`` also returns the mean, so no sampling noise enters any score;
- ``rng``: a :class:`numpy.random.Generator`; the same seed gives the same scores.

and returns a dict of floats. :func:`all_metrics` runs all five, with a ``scale`` on every
sample count for a quick look.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaetool.errors import VaetoolError

Represent = Callable[[Any], np.ndarray]

# Images rendered and encoded per call of `represent` in the batch-based metrics: bounds memory
# (4096 images of 64x64 floats are 64 MB) while keeping the renderer and the encoder busy.
_IMAGES_PER_CALL = 4096


# -- ground truth ---------------------------------------------------------------------------------

# dSprites' factors after its constant colour: shape, scale, orientation, position x and y.
DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)
DSPRITES_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")


class GroundTruth:
    """A dataset generated from independent discrete factors, which metrics sample from.

    - ``factor_names``: one name per factor.
    - ``factor_sizes``: how many values each factor takes.
    - ``sample_factors(n, rng)``: int64 ``(n, F)`` factor *indices*, each uniform over its range.
    - ``images(indices)``: the images for factor indices ``(n, F)``, float ``(n, C, H, W)`` in
      [0, 1].
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.factor_sizes, size=(n, self.num_factors), dtype=np.int64)

    def images(self, indices: np.ndarray) -> Tensor:
        raise NotImplementedError


class ShapesGroundTruth(GroundTruth):
    """The built-in dSprites recipe (:mod:`vaetool.datasets.shapes`), rendered on demand at
    ``size`` pixels: every one of the 737,280 factor combinations, with nothing stored."""

    def __init__(self, size: int = 64):
        from vaetool.datasets import shapes

        self._shapes = shapes
        self.size = size
        values = shapes.factor_values()
        self.factor_names = tuple(values)
        self.factor_sizes = tuple(len(v) for v in values.values())

    def images(self, indices: np.ndarray) -> Tensor:
        values = self._shapes.indices_to_values(torch.as_tensor(np.asarray(indices), dtype=torch.long))
        return self._shapes.render(values, self.size).float().div_(255)


class GridGroundTruth(GroundTruth):
    """A full factor grid held in memory: image ``i`` has the factor indices that
    ``np.unravel_index(i, factor_sizes)`` gives (row-major, the last factor fastest), as in
    the dSprites ``.npz``.

    ``images`` is ``(N, C, H, W)`` or ``(N, H, W)``; its values are divided by ``max_value``
    (255 unless given) to lie in [0, 1].
    """

    def __init__(self, images: np.ndarray | Tensor, factor_sizes: Sequence[int],
                 names: Sequence[str] | None = None, max_value: float = 255.0):
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.factor_names = tuple(names) if names is not None else tuple(f"factor_{i}" for i in range(len(self.factor_sizes)))
        if len(self.factor_names) != len(self.factor_sizes):
            raise VaetoolError(f"There are {len(self.factor_sizes)} factor sizes but {len(self.factor_names)} names.")
        if len(images) != math.prod(self.factor_sizes):
            raise VaetoolError(f"A grid of factor sizes {self.factor_sizes} has {math.prod(self.factor_sizes)} "
                               f"images, not {len(images)}.")
        self._images = torch.as_tensor(images)
        self._max_value = max_value

    @classmethod
    def from_dsprites(cls, path: str | Path) -> GridGroundTruth:
        """The original dSprites file (``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``).

        Its constant colour factor (one value) is dropped, which leaves the image order
        unchanged; its pixels are 0 or 1. The factor grid is dSprites' published one, so the file's
        pickled ``metadata`` entry is never read (loading a pickle could run code).
        """
        with np.load(path, allow_pickle=False) as data:
            images = data["imgs"]
        return cls(images, list(DSPRITES_FACTOR_SIZES), list(DSPRITES_FACTOR_NAMES), max_value=1.0)

    def images(self, indices: np.ndarray) -> Tensor:
        flat = np.ravel_multi_index(tuple(np.asarray(indices).T), self.factor_sizes)
        images = self._images[torch.as_tensor(flat)].float().div_(self._max_value)
        return images.unsqueeze(1) if images.dim() == 3 else images


def ground_truth_for(config: dict[str, Any], root=None) -> GroundTruth | None:
    """The ground truth of the dataset a model was trained on (its config), or ``None`` when that
    dataset has no factors this module can draw. ``root`` is the data root (for dSprites' file)."""
    if config.get("dataset") == "shapes":
        return ShapesGroundTruth(size=int((config.get("dataset_options") or {}).get("size", 32)))
    if config.get("dataset") == "dsprites":
        from vaetool.datasets import data_root
        from vaetool.datasets.dsprites import DSprites

        return GridGroundTruth.from_dsprites(DSprites.find(data_root(root)))
    return None


def representation(model, batch_size: int = 256) -> Represent:
    """The code of a VAE for the metrics: images ``(n, C, H, W)`` → posterior means, float64
    numpy ``(n, L)``, computed in eval mode, without gradients, ``batch_size`` at a time."""
    from vaetool.metrics import posterior_moments

    if model.conditional:
        raise VaetoolError("Disentanglement metrics need an unconditional model; this one takes a class label.")

    def represent(images: Tensor) -> np.ndarray:
        with torch.no_grad():
            means, _ = posterior_moments(model, torch.as_tensor(images), None, batch_size)
        return means.numpy()

    return represent


# -- shared helpers -------------------------------------------------------------------------------

def _codes(ground_truth: GroundTruth, represent: Represent, indices: np.ndarray) -> np.ndarray:
    out = [np.asarray(represent(ground_truth.images(indices[s:s + _IMAGES_PER_CALL])), dtype=np.float64)
           for s in range(0, len(indices), _IMAGES_PER_CALL)]
    return np.concatenate(out).reshape(len(indices), -1)


def _factor_code(ground_truth: GroundTruth, represent: Represent, n: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points: codes ``(n, L)`` and factor indices ``(n, F)``
    (disentanglement_lib's ``generate_batch_factor_code``)."""
    factors = ground_truth.sample_factors(n, rng)
    return _codes(ground_truth, represent, factors), factors


def _grouped_codes(ground_truth: GroundTruth, represent: Represent, factors: np.ndarray) -> np.ndarray:
    """Codes ``(P, B, L)`` for factor indices ``(P, B, F)``, a few thousand images per call."""
    points, batch, _ = factors.shape
    return _codes(ground_truth, represent, factors.reshape(points * batch, -1)).reshape(points, batch, -1)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 2:
            raise VaetoolError(f"{name} must be at least 2, not {value}.")


def _discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    # disentanglement_lib's _histogram_discretize: equal-width bins over each dimension's range.
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        out[:, i] = np.digitize(codes[:, i], np.histogram(codes[:, i], bins)[1][:-1])
    return out


def _as_labels(factors: np.ndarray) -> np.ndarray:
    # Factors given as values (shapes) or indices (dSprites) become integer labels per column.
    factors = np.asarray(factors)
    return np.stack([np.unique(factors[:, j], return_inverse=True)[1].reshape(-1)
                     for j in range(factors.shape[1])], 1)


def _entropy(factors: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score

    factors = _as_labels(factors)
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """Mutual information in nats between each code dimension, discretised into ``bins``
    equal-width bins, and each discrete factor: ``(L, F)`` from codes ``(n, L)`` and factors
    ``(n, F)``."""
    from sklearn.metrics import mutual_info_score

    codes, factors = np.asarray(codes), _as_labels(factors)
    discrete = _discretize(codes, bins)
    return np.array([[mutual_info_score(factors[:, j], discrete[:, i]) for j in range(factors.shape[1])]
                     for i in range(codes.shape[1])]).reshape(codes.shape[1], factors.shape[1])


def factor_of_each_dimension(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Which factor each latent dimension captures best: for codes ``(n, L)`` and factor indices
    ``(n, F)``, the index of the factor with the highest mutual information normalised by the
    factor's entropy, and that normalised score in [0, 1], both ``(L,)``."""
    factors = np.asarray(factors)
    normalised = mutual_information_matrix(codes, factors, bins) / np.maximum(_entropy(factors), 1e-12)
    return normalised.argmax(axis=1), normalised.max(axis=1)



def captured_factors(model, data_dir=None, limit: int = 5000, required: bool = False) -> list[str] | None:
    """For each latent dimension, ``"factor score"``: the ground-truth factor it shares most
    information with on the model's test data (the first ``limit`` images), the mutual information
    normalised by the factor's entropy (1: all of it). None when the model is conditional or its
    dataset has no factors or cannot be loaded here; with ``required``, a :class:`VaetoolError`
    saying which of those it is."""
    from vaetool.datasets import data_root
    from vaetool import registry

    def unavailable(reason: str) -> None:
        if required:
            raise VaetoolError(f"This model's dimensions cannot be labelled with factors: {reason}.")
        return None

    if model.conditional:
        return unavailable("it is conditional, so its latent need not carry the class")
    if "dataset" not in model.config:
        return unavailable("its file does not name the dataset it was trained on")
    name = model.config["dataset"]
    try:
        dataset, _ = registry.build("dataset", name, model.config.get("dataset_options", {}))
    except VaetoolError as error:  # a plugin's dataset not installed here, say
        return unavailable(f"its dataset, {name}, is not available here ({str(error).rstrip('.')})")
    if not dataset.factor_names:
        return unavailable(f"its dataset, {name}, has no ground-truth factors")
    try:
        split = dataset.load("test", data_root(data_dir))
    except VaetoolError as error:
        return unavailable(f"its dataset, {name}, cannot be loaded here ({str(error).rstrip('.')})")
    if split.factors is None:
        return unavailable(f"the test split of {name} found here has no factors")
    n = min(len(split), limit)
    codes = representation(model)(split.images[:n].float() / 255)
    best, score = factor_of_each_dimension(codes, split.factors[:n].numpy())
    return [f"{dataset.factor_names[b]} {s:.2f}" for b, s in zip(best, score)]

# -- the metrics ----------------------------------------------------------------------------------

def beta_vae_score(ground_truth: GroundTruth, represent: Represent, rng: np.random.Generator, *,
                   batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000) -> dict[str, float]:
    """The β-VAE metric (Higgins et al., "β-VAE: Learning Basic Visual Concepts with a Constrained
    Variational Framework", ICLR 2017), on posterior means.

    Each point picks a factor k, draws ``batch_size`` pairs of images that share factor k (the
    others random) and averages |z₁ − z₂| over the pairs; a logistic regression predicts k from
    that vector. ``eval_accuracy`` on held-out points is the score; chance is 1/F.
    Costs 2 · batch_size · (num_train + num_eval) images.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    _check_counts(num_train=num_train, num_eval=num_eval)
    seed = int(rng.integers(2**31 - 1))

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, ground_truth.num_factors, size=n)
        first = ground_truth.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        second = ground_truth.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        second[np.arange(n), :, labels] = first[np.arange(n), :, labels]
        features = np.abs(_grouped_codes(ground_truth, represent, first)
                          - _grouped_codes(ground_truth, represent, second)).mean(axis=1)
        return features, labels

    train_x, train_y = points(num_train)
    eval_x, eval_y = points(num_eval)
    with warnings.catch_warnings():
        # lbfgs on unscaled |z1 − z2| features may stop at its iteration cap; the predictions are
        # what is scored, as in disentanglement_lib, so the warning is noise to the user.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(random_state=seed).fit(train_x, train_y)
    return {"train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
            "eval_accuracy": float(np.mean(model.predict(eval_x) == eval_y))}


def factor_vae_score(ground_truth: GroundTruth, represent: Represent, rng: np.random.Generator, *,
                     batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000, prune_threshold: float = 0.05) -> dict[str, float]:
    """The FactorVAE metric (Kim & Mnih, "Disentangling by Factorising", ICML 2018), on posterior
    means.

    Each dimension's variance over ``num_variance_estimate`` random images normalises the codes;
    dimensions whose variance is below ``prune_threshold`` are collapsed and left out. Each point
    fixes one factor k across ``batch_size`` images and votes for the dimension of least
    normalised variance; each dimension is then assigned its majority factor, and the accuracy of
    that classifier on held-out points, ``eval_accuracy``, is the score (0 when every dimension
    is collapsed). Costs num_variance_estimate + batch_size · (num_train + num_eval) images.

    The 0.05 threshold follows the paper's pruning of collapsed dimensions; disentanglement_lib's
    ``_prune_dims`` defaults to 0 (prune only exactly constant dimensions).
    """
    _check_counts(num_train=num_train, num_eval=num_eval, num_variance_estimate=num_variance_estimate)
    codes, _ = _factor_code(ground_truth, represent, num_variance_estimate, rng)
    variances = np.var(codes, axis=0, ddof=1)
    active = variances >= prune_threshold
    num_active = int(active.sum())
    if num_active == 0:
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}

    def votes(n: int) -> np.ndarray:
        labels = rng.integers(0, ground_truth.num_factors, size=n)
        factors = ground_truth.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        factors[np.arange(n), :, labels] = factors[np.arange(n), :1, labels]
        local = np.var(_grouped_codes(ground_truth, represent, factors), axis=1, ddof=1)
        chosen = np.argmin(local[:, active] / variances[active], axis=1)
        counts = np.zeros((ground_truth.num_factors, num_active), dtype=np.int64)
        np.add.at(counts, (labels, chosen), 1)
        return counts

    train_votes = votes(num_train)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(num_active)
    eval_votes = votes(num_eval)
    return {"train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
            "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
            "num_active_dims": float(num_active)}


def mig(ground_truth: GroundTruth, represent: Represent, rng: np.random.Generator, *,
        num_train: int = 10000, bins: int = 20) -> dict[str, float]:
    """The Mutual Information Gap (Chen, Li, Grosse and Duvenaud, "Isolating Sources of
    Disentanglement in Variational Autoencoders", NeurIPS 2018), on posterior means.

    Each code dimension of ``num_train`` random images is discretised into ``bins`` equal-width
    bins; for each factor, the gap between the two largest mutual informations with it, over the
    factor's entropy, is averaged over factors. In [0, 1]; ``mig`` is the score.
    """
    _check_counts(num_train=num_train)
    codes, factors = _factor_code(ground_truth, represent, num_train, rng)
    if codes.shape[1] < 2:
        raise VaetoolError("MIG compares the two most informative latent dimensions; the code has only one.")
    information = np.sort(mutual_information_matrix(codes, factors, bins), axis=0)[::-1]
    return {"mig": float(np.mean((information[0] - information[1]) / _entropy(factors)))}


def _entropy_ratio(p: np.ndarray, axis: int) -> np.ndarray:
    # 1 − H(p) with the logarithm in base p.shape[axis], as disentanglement_lib (which adds 1e-11).
    p = p + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    return 1 + (p * np.log(p)).sum(axis=axis) / math.log(p.shape[axis])


def dci(ground_truth: GroundTruth, represent: Represent, rng: np.random.Generator, *,
        num_train: int = 10000, num_test: int = 5000) -> dict[str, float]:
    """Disentanglement, Completeness and Informativeness (Eastwood & Williams, "A Framework for
    the Quantitative Evaluation of Disentangled Representations", ICLR 2018), on posterior means.

    A gradient-boosted tree classifier (scikit-learn's defaults, as disentanglement_lib) predicts
    each factor from the code; its feature importances form R ``(L, F)``. Disentanglement is
    Σᵢ ρᵢ (1 − H_F(Pᵢ·)), ρᵢ code i's share of the total importance; completeness is
    Σⱼ ρⱼ (1 − H_L(P·ⱼ)); informativeness is the classifiers' mean accuracy.

    Slow on the CPU: each boosting round fits one tree per factor value (113 for dSprites), so the
    default 10,000 training points take minutes. Lower ``num_train``/``num_test`` for a quick look.
    """
    import sklearn
    from sklearn.ensemble import GradientBoostingClassifier

    _check_counts(num_train=num_train, num_test=num_test)
    train_codes, train_factors = _factor_code(ground_truth, represent, num_train, rng)
    test_codes, test_factors = _factor_code(ground_truth, represent, num_test, rng)
    # One seed for every classifier: the trees only use it to break ties between features.
    seed = int(rng.integers(2**31 - 1))
    importance = np.zeros((train_codes.shape[1], ground_truth.num_factors))
    train_accuracy, test_accuracy = [], []
    # Each classifier's 100 rounds fit one tree per factor value; checking every tree's parameters
    # and inputs again took a third of the time. The codes are checked once here instead, and the
    # trees are the same without the repeated checks.
    if not (np.isfinite(train_codes).all() and np.isfinite(test_codes).all()):
        raise VaetoolError("DCI needs finite codes; the model's posterior means include NaN or infinity.")
    for j in range(ground_truth.num_factors):
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            model = GradientBoostingClassifier(random_state=seed).fit(train_codes, train_factors[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_accuracy.append(np.mean(model.predict(train_codes) == train_factors[:, j]))
        test_accuracy.append(np.mean(model.predict(test_codes) == test_factors[:, j]))
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return {"disentanglement": float(np.sum(_entropy_ratio(importance, 1) * weights.sum(1) / weights.sum())),
            "completeness": float(np.sum(_entropy_ratio(importance, 0) * weights.sum(0) / weights.sum())),
            "informativeness_train": float(np.mean(train_accuracy)),
            "informativeness_test": float(np.mean(test_accuracy))}


def sap(ground_truth: GroundTruth, represent: Represent, rng: np.random.Generator, *,
        num_train: int = 10000, num_test: int = 5000, continuous_factors: bool = False) -> dict[str, float]:
    """The Separated Attribute Predictability score (Kumar, Sattigeri and Balakrishnan,
    "Variational Inference of Disentangled Latent Concepts from Unlabeled Observations",
    ICLR 2018), on posterior means.

    For each (code dimension, factor) pair, a linear SVM (C = 0.01, balanced classes) on that one
    dimension predicts the factor; its test accuracy is the pair's score (with
    ``continuous_factors``, the squared correlation instead). SAP is the mean over factors of the
    gap between the two best dimensions.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    _check_counts(num_train=num_train, num_test=num_test)
    train_codes, train_factors = _factor_code(ground_truth, represent, num_train, rng)
    test_codes, test_factors = _factor_code(ground_truth, represent, num_test, rng)
    if train_codes.shape[1] < 2:
        raise VaetoolError("SAP compares the two most predictive latent dimensions; the code has only one.")
    # One seed for every fit, so that reordering the dimensions reorders the scores and no more.
    seed = int(rng.integers(2**31 - 1))
    scores = np.zeros((train_codes.shape[1], ground_truth.num_factors))
    for i in range(train_codes.shape[1]):
        for j in range(ground_truth.num_factors):
            if continuous_factors:
                covariance = np.cov(train_codes[:, i], train_factors[:, j], ddof=1)
                if covariance[0, 0] > 1e-12:
                    scores[i, j] = covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])
                continue
            with warnings.catch_warnings():
                # C = 0.01 on a single raw feature often stops before liblinear's tolerance; the
                # prediction is what is scored, as in disentanglement_lib.
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                model.fit(train_codes[:, i:i + 1], train_factors[:, j])
            scores[i, j] = np.mean(model.predict(test_codes[:, i:i + 1]) == test_factors[:, j])
    top = np.sort(scores, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2]))}


METRICS = {"beta_vae": beta_vae_score, "factor_vae": factor_vae_score, "mig": mig, "dci": dci, "sap": sap}


def all_metrics(ground_truth: GroundTruth, represent: Represent, seed: int = 0, scale: float = 1.0,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """All five metrics at disentanglement_lib's sample counts times ``scale``, keyed by metric
    name (``beta_vae``, ``factor_vae``, ``mig``, ``dci``, ``sap``).

    ``scale`` multiplies every count (num_train, num_eval, num_test, num_variance_estimate, not
    the per-point batch size): 0.1 gives a rough look in a tenth of the time, with scores that
    are noisier and, for the classifier-based ones, biased by the smaller training sets. Each
    metric gets its own generator seeded from ``seed``, so one metric's draws do not depend on
    another having run. ``progress(metric, done, total)`` is called as each metric starts (``done``
    metrics finished of ``total``) and once all are done.
    """
    if scale <= 0:
        raise VaetoolError(f"The scale must be positive, not {scale}.")

    def n(count: int) -> int:
        return max(2, round(count * scale))

    counts = {
        "beta_vae": {"num_train": n(10000), "num_eval": n(5000)},
        "factor_vae": {"num_train": n(10000), "num_eval": n(5000), "num_variance_estimate": n(10000)},
        "mig": {"num_train": n(10000)},
        "dci": {"num_train": n(10000), "num_test": n(5000)},
        "sap": {"num_train": n(10000), "num_test": n(5000)},
    }
    seeds = np.random.SeedSequence(seed).spawn(len(METRICS))
    scores = {}
    for done, ((name, metric), s) in enumerate(zip(METRICS.items(), seeds)):
        if progress is not None:
            progress(name, done, len(METRICS))
        scores[name] = metric(ground_truth, represent, np.random.default_rng(s), **counts[name])
    if progress is not None:
        progress(name, len(METRICS), len(METRICS))
    return scores
