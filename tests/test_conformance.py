"""The conformance kit (vaetool.testing): every installed plugin passes it, and it catches broken ones.

The parametrizations read the registry when the tests are collected, so an installed third-party
plugin is checked here too, with its own defaults.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import tiny_options
from vaetool import registry, testing
from vaetool.contracts import PLUGIN_API_VERSION, Architecture, Dataset, Likelihood, Prior, Split
from vaetool.errors import VaetoolError
from vaetool.priors.standard_normal import StandardNormal
from vaetool.testing import (ArchitectureConformance, ContractViolation, DatasetConformance, LikelihoodConformance,
                             PriorConformance, check_all_installed, check_architecture, check_dataset,
                             check_likelihood, check_objective, check_plugin, check_prior)

# Every installed likelihood with its defaults, plus the built-ins' other modes; discrete ones with
# the levels their probabilities must sum to 1 over.
LIKELIHOODS = [(name, {}, 256 if name == "logistic" else None) for name in registry.names("likelihood")] + [
    ("bernoulli", {"binarize": "dynamic"}, 2),
    ("bernoulli", {"binarize": "static"}, 2),
    ("gaussian", {"sigma": 0.1}, None),
    ("gaussian", {"per_pixel": True}, None),
]
LIKELIHOOD_IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options, _ in LIKELIHOODS]

# The torchvision sets besides MNIST run when $VAETOOL_DATA holds their files.
TORCHVISION_FILES = {"fashion-mnist": "FashionMNIST/raw", "kmnist": "KMNIST/raw", "cifar10": "cifar-10-batches-py"}
DATASETS = [pytest.param(name, marks=pytest.mark.mnist) if name == "mnist" else name
            for name in registry.names("dataset")]


# -- every installed plugin passes ------------------------------------------------------------------

@pytest.mark.parametrize("name", registry.names("architecture"))
def test_installed_architecture_conforms(name):
    check_architecture(name, options=tiny_options(name))


@pytest.mark.parametrize(("name", "options", "levels"), LIKELIHOODS, ids=LIKELIHOOD_IDS)
def test_installed_likelihood_conforms(name, options, levels):
    check_likelihood(name, options=options, levels=levels)


@pytest.mark.parametrize("name", registry.names("prior"))
def test_installed_prior_conforms(name):
    check_prior(name)


@pytest.mark.parametrize("name", registry.names("objective"))
def test_installed_objective_conforms(name):
    check_objective(name)


def png_folder(root: Path) -> Path:
    """Two sub-folders (two classes) of small grey PNGs."""
    generator = torch.Generator().manual_seed(0)
    for label in ("circles", "crosses"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            pixels = torch.randint(0, 256, (12, 12), generator=generator, dtype=torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("name", DATASETS)
def test_installed_dataset_conforms(name, request, tmp_path):
    if name == "shapes":
        check_dataset(name, options={"n_train": 128, "n_test": 32})
    elif name == "folder":
        check_dataset(name, options={"path": str(png_folder(tmp_path / "images"))})
    elif name == "mnist":
        check_dataset(name, root=request.getfixturevalue("mnist_root"), max_items=512)
    elif name in TORCHVISION_FILES:
        root = Path(os.environ.get("VAETOOL_DATA") or "/nonexistent")
        if not (root / TORCHVISION_FILES[name]).is_dir():
            pytest.skip(f"{name} needs its files in $VAETOOL_DATA/{TORCHVISION_FILES[name]}")
        check_dataset(name, root=root, max_items=512)
    else:  # a third-party dataset, with its defaults; skipped when its files are not here
        try:
            check_dataset(name, max_items=512)
        except VaetoolError as exc:
            pytest.skip(f"{name} cannot be loaded here: {exc}")


def test_the_tiny_test_dataset_conforms(tiny_dataset):
    check_dataset(tiny_dataset)


def test_check_all_installed_names_every_failure_at_once():
    registry.register("likelihood", "averaging", Averaging)
    try:
        with pytest.raises(AssertionError) as error:
            check_all_installed(["likelihood"])
    finally:
        registry.unregister("likelihood", "averaging")
    message = str(error.value)
    assert f"1 of the {len(registry.names('likelihood')) + 1} plugins" in message
    assert "likelihood 'averaging'" in message and "averages instead of summing" in message
    assert check_all_installed(["likelihood"], skip={"likelihood": ["logistic"]}) == [
        ("likelihood", name) for name in registry.names("likelihood") if name != "logistic"]


def test_the_kit_imports_without_pytest():
    code = "import sys; sys.modules['pytest'] = None; import vaetool.testing"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_a_check_leaves_the_callers_random_state_alone():
    state = torch.get_rng_state()
    check_likelihood("bernoulli")
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check runs there")
def test_an_unavailable_device_falls_back_to_the_cpu_with_a_warning():
    with pytest.warns(UserWarning, match="run on the CPU instead"):
        check_likelihood("bernoulli", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("kind", "name", "options"), [
    ("architecture", "conv", {"channels": [8, 16]}), ("architecture", "cvae", {"channels": [8, 16]}),
    ("likelihood", "logistic", None), ("likelihood", "gaussian", None), ("prior", "standard-normal", None)])
def test_the_built_ins_conform_on_the_gpu(kind, name, options):
    check_plugin(kind, name, options=options, device="cuda")


def test_a_tensor_that_to_does_not_move_is_caught():
    # Only visible on another device; the meta device stands in for a GPU.
    class Cached(Flat):
        def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0):
            super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
            self.offsets = torch.zeros(latent_dim)  # a plain attribute, not a buffer

    module = Cached((1, 4, 4), 2).to("meta")
    with pytest.raises(ContractViolation, match="offsets is a plain tensor attribute left on cpu; register it"):
        testing._check_placement(testing._Subject("architecture", "Cached"), module, torch.device("meta"))


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="kind"):
        check_plugin("optimizer", "adam")


# -- a minimal third-party plugin of each kind, checked as a class, and broken copies of it ----------

class Flat(Architecture):
    """One linear layer each way: the smallest architecture that keeps the contract."""

    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0, bias: bool = True):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        channels, height, width = self.input_shape
        self.encoder = nn.Linear(channels * height * width, 2 * latent_dim, bias=bias)
        self.decoder = nn.Linear(latent_dim, self.output_channels * height * width, bias=bias)

    def encode(self, x, y=None):
        return tuple(self.encoder(x.flatten(1)).chunk(2, dim=-1))

    def decode(self, z, y=None):
        return self.decoder(z).view(-1, self.output_channels, *self.input_shape[1:])


class TestFlatWithTheMixin(ArchitectureConformance):
    plugin = Flat
    check_options = {"input_shapes": [(1, 12, 12)]}


def test_a_class_is_checked_under_a_temporary_name():
    before = registry.names("architecture")
    check_architecture(Flat, input_shapes=[(3, 8, 8)], params_per_channel=(1, 2, 3))
    assert registry.names("architecture") == before


class IgnoresParamsPerChannel(Flat):
    def decode(self, z, y=None):
        return super().decode(z)[:, :self.input_shape[0]]


class UnjsonableDefault(Flat):
    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0, activation=nn.ReLU):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)


class OptionWithoutDefault(Flat):
    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0, width: int = 8, *, depth: int):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)


class HiddenOptions(Flat):
    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0, **options):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)


class MixesTheBatch(Flat):
    def encode(self, x, y=None):
        mean, raw_scale = super().encode(x)
        return mean - mean.mean(0), raw_scale


class IgnoresTheLabel(Flat):
    conditional = True


class PeeksAtTheLabel(Flat):
    def decode(self, z, y=None):
        return super().decode(z) + (0 if y is None else y.view(-1, 1, 1, 1))


class GoesNonFinite(Flat):
    def decode(self, z, y=None):
        return super().decode(z) / 0


class DeadWeight(Flat):
    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        self.unused = nn.Linear(2, 2)


class FlatFromTheFuture(Flat):
    api_version = PLUGIN_API_VERSION + 1


class NotAnArchitecture(nn.Module):
    api_version = PLUGIN_API_VERSION


def test_a_wrong_api_version_is_caught_by_name_too():
    registry.register("architecture", "future", FlatFromTheFuture)
    try:
        with pytest.raises(ContractViolation, match="api_version") as error:
            check_architecture("future")
    finally:
        registry.unregister("architecture", "future")
    assert f"version {PLUGIN_API_VERSION + 1}" in str(error.value)


class Logits(Likelihood):
    """Bernoulli on logits, written as a third party might."""

    levels = 2  # a mass on {0, 1}

    def log_prob(self, x, params):
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        return torch.bernoulli(torch.sigmoid(params), generator=generator)


class TestLogitsWithTheMixin(LikelihoodConformance):
    plugin = Logits


class Averaging(Logits):
    def log_prob(self, x, params):
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).mean(1)


class IgnoresTheGenerator(Logits):
    def sample(self, params, generator=None):
        return torch.bernoulli(torch.sigmoid(params))


class MeanOutOfRange(Logits):
    def mean(self, params):
        return params


class Interleaved(Likelihood):
    """A Gaussian whose (mean, log σ) pairs are interleaved per channel instead of laid out in blocks."""

    params_per_channel = 2

    def log_prob(self, x, params):
        mean, log_sigma = torch.sigmoid(params[:, 0::2]), params[:, 1::2]
        return torch.distributions.Normal(mean, log_sigma.exp()).log_prob(x).flatten(1).sum(1)

    def mean(self, params):
        return torch.sigmoid(params[:, 0::2])

    def sample(self, params, generator=None):
        return self.mean(params)


class NotNormalised(Logits):
    discrete = True

    def log_prob(self, x, params):
        return 2 * super().log_prob(x, params)


class ForgetsItsLevels(Logits):
    levels = None  # so the kit takes it for a density on the real line, which it is not


class DensityWithoutItsScale(Likelihood):
    """A Gaussian of σ = 0.2 that leaves out −log σ − ½ log 2π: log_prob is a squared error, no density."""

    def log_prob(self, x, params):
        return (-0.5 * ((x - torch.sigmoid(params)) / 0.2) ** 2).flatten(1).sum(1)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        return torch.sigmoid(params)


class DensityOutsideItsSupport(DensityWithoutItsScale):
    """A normalised Gaussian that claims to live on [0, 1]: the mass outside is lost."""

    support = (0.0, 1.0)

    def log_prob(self, x, params):
        return torch.distributions.Normal(torch.sigmoid(params), 0.5).log_prob(x).flatten(1).sum(1)


class LogitsFromTheFuture(Logits):
    api_version = PLUGIN_API_VERSION + 1


class Spread(Prior):
    """N(0, s² I) with a learned s, written as a third party might."""

    analytic_kl = True

    def __init__(self, latent_dim: int, scale: float = 2.0):
        super().__init__(latent_dim)
        self.log_scale = nn.Parameter(torch.tensor(float(scale)).log())

    def log_prob(self, z):
        return torch.distributions.Normal(0.0, self.log_scale.exp()).log_prob(z).sum(-1)

    def sample(self, n, generator=None):
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self.log_scale.device)
        return eps * self.log_scale.exp()

    def kl(self, posterior):
        variance = self.log_scale.exp() ** 2
        return 0.5 * ((posterior.mean ** 2 + posterior.std ** 2) / variance - 1 + variance.log() - posterior.log_var)


class TestSpreadWithTheMixin(PriorConformance):
    plugin = Spread


class WrongKL(Spread):
    def kl(self, posterior):
        return posterior.kl()  # the KL from N(0, I), not from this prior


class Unnormalised(StandardNormal):
    def log_prob(self, z):
        return -0.5 * z.pow(2).sum(-1)  # the constant −½ log 2π per dimension is missing


class SamplesTheWrongScale(StandardNormal):
    def sample(self, n, generator=None):
        return 2 * super().sample(n, generator)


class PriorIgnoresTheGenerator(StandardNormal):
    def sample(self, n, generator=None):
        return torch.randn(n, self.latent_dim)


class NoLatentDim(StandardNormal):
    def __init__(self, size: int = 4):
        super().__init__(size)


class PriorFromTheFuture(StandardNormal):
    api_version = PLUGIN_API_VERSION + 1


class Tiles(Dataset):
    """8×8 grey noise in two classes, from a seed."""

    image_shape = (1, 8, 8)
    num_classes = 2
    class_names = ("even", "odd")

    def __init__(self, n: int = 96, seed: int = 0):
        self.n, self.seed = n, seed

    def images(self, split):
        generator = torch.Generator().manual_seed(self.seed + (split == "test"))
        return torch.randint(0, 256, (self.n, *self.image_shape), generator=generator, dtype=torch.uint8)

    def load(self, split, root=None):
        if split not in ("train", "test"):
            raise VaetoolError(f"Unknown split {split!r}.")
        images = self.images(split)
        return Split(images, torch.arange(len(images)) % 2)


class TestTilesWithTheMixin(DatasetConformance):
    plugin = Tiles
    options = {"n": 64}


class FloatImages(Tiles):
    def load(self, split, root=None):
        data = super().load(split, root)
        return Split(data.images.float() / 255, data.labels)


class Unseeded(Tiles):
    def load(self, split, root=None):
        data = super().load(split, root)
        return Split(torch.randint_like(data.images, 256), data.labels)


class LabelsOutOfRange(Tiles):
    def load(self, split, root=None):
        data = super().load(split, root)
        return Split(data.images, data.labels + 1)


class AnySplitWillDo(Tiles):
    def load(self, split, root=None):
        return super().load("test")


class FactorsWithoutNames(Tiles):
    def load(self, split, root=None):
        data = super().load(split, root)
        return Split(data.images, data.labels, torch.zeros(len(data.images), 2))


class FileOfOtherImages(Tiles):
    """Names a cache file to stream from that holds other images than the split."""

    def load(self, split, root=None):
        data = super().load(split, root)
        path = Path(os.environ["VAETOOL_CACHE"]) / f"{split}.npy"  # a folder of this test's own
        np.save(path, np.zeros(tuple(data.images.shape), np.uint8))
        return Split(data.images, data.labels, file=path)


class TooFewClassNames(Tiles):
    class_names = ("even",)


class TiledFromTheFuture(Tiles):
    api_version = PLUGIN_API_VERSION + 1


# -- each broken copy breaks one rule, and the message names the plugin and that rule ---------------

SMALL, NO_TRAINING = {"input_shapes": [(1, 8, 8)]}, {"train": False}
BROKEN = [  # (kind, plugin, what the message must say, more arguments for the check)
    ("architecture", IgnoresParamsPerChannel, r"decode\(z, y\) returns \(B, params_per_channel·C, H, W\)",
     SMALL),
    ("architecture", UnjsonableDefault, "option 'activation' = .* cannot be written as JSON", SMALL),
    ("architecture", OptionWithoutDefault, "option 'depth' has no default", SMALL),
    ("architecture", HiddenOptions, r"\*args/\*\*kwargs", SMALL),
    ("architecture", MixesTheBatch, "each example is encoded and decoded on its own", SMALL),
    ("architecture", IgnoresTheLabel, "a conditional architecture uses the label", SMALL),
    ("architecture", PeeksAtTheLabel, "not conditional ignores y", SMALL),
    ("architecture", GoesNonFinite, "it is not finite for B=1", SMALL),
    ("architecture", DeadWeight, "unused.weight gets no gradient", SMALL),
    ("architecture", FlatFromTheFuture, "api_version", SMALL),
    ("architecture", NotAnArchitecture, "subclasses vaetool.contracts.Architecture", SMALL),
    ("likelihood", Averaging, "(?s)sums over every pixel and channel, never averages.*averages instead of summing", {}),
    ("likelihood", IgnoresTheGenerator, "draws from the generator only", {}),
    ("likelihood", MeanOutOfRange, r"mean\(params\) is \(B, C, H, W\) in \[0, 1\]", {}),
    ("likelihood", Interleaved, "consecutive blocks of C channels", {}),
    ("likelihood", NotNormalised, "probabilities of the 2 levels k/1 sum to 1", {"levels": 2}),
    ("likelihood", LogitsFromTheFuture, "api_version", {}),
    ("likelihood", DensityWithoutItsScale, r"exp\(log_prob\) integrates to 1 over its support \[-inf, inf\]", {}),
    ("likelihood", DensityOutsideItsSupport, r"integrates to 1 over its support \[0, 1\]", {}),
    ("likelihood", ForgetsItsLevels, r"integrates to 1 over its support", {}),
    ("prior", WrongKL, r"kl\(posterior\) is \(B, latent_dim\) and sums to", {}),
    ("prior", Unnormalised, "the same normalised distribution", {}),
    ("prior", SamplesTheWrongScale, "the same normalised distribution", {}),
    ("prior", PriorIgnoresTheGenerator, "draws from the generator only", {}),
    ("prior", NoLatentDim, r"must begin \(latent_dim\), not \(size\)", {}),
    ("prior", PriorFromTheFuture, "api_version", {}),
    ("dataset", FloatImages, "images are torch.float32, not uint8", NO_TRAINING),
    ("dataset", Unseeded, "identical data", NO_TRAINING),
    ("dataset", LabelsOutOfRange, r"labels lie in \[1, 2\]", NO_TRAINING),
    ("dataset", AnySplitWillDo, "an unknown split is a VaetoolError", NO_TRAINING),
    ("dataset", FactorsWithoutNames, "has factors but factor_names is empty", NO_TRAINING),
    ("dataset", TooFewClassNames, "as many class_names", NO_TRAINING),
    ("dataset", FileOfOtherImages, "does not hold the 'train' images", NO_TRAINING),
    ("dataset", TiledFromTheFuture, "api_version", NO_TRAINING),
]


@pytest.mark.parametrize(("kind", "cls", "rule", "arguments"), BROKEN,
                         ids=[f"{kind}-{cls.__name__}" for kind, cls, *_ in BROKEN])
def test_a_broken_plugin_is_caught(kind, cls, rule, arguments):
    with pytest.raises(ContractViolation, match=rule) as error:
        check_plugin(kind, cls, **arguments)
    assert repr(cls.__qualname__) in str(error.value)
