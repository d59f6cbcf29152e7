"""The binarized-MNIST protocol: what the encoder sees, fixed binarizations, one binarization for
every bound in compare, the .amat files, and the tanh MLP of the IWAE paper."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vaetool
from vaetool import compare, metrics, registry
from vaetool.errors import VaetoolError
from vaetool.likelihoods.bernoulli import Bernoulli, fixed_uniforms
from vaetool.model import VAE

from conftest import assert_clean_error, invoke, ok


def grey_images(n=64, size=8, seed=7):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def recording(model):
    """Wraps the model's encoder and likelihood so each call's input is kept."""
    seen = {"encoded": [], "scored": []}
    encode, log_prob = model.architecture.encode, model.likelihood.log_prob

    def spy_encode(x, y=None):
        seen["encoded"].append(x.detach().clone())
        return encode(x, y)

    def spy_log_prob(x, params):
        seen["scored"].append(x.detach().clone())
        return log_prob(x, params)

    model.architecture.encode, model.likelihood.log_prob = spy_encode, spy_log_prob
    return seen


# -- the encoder sees what the likelihood scores ------------------------------------------------------

@pytest.mark.parametrize("binarize", ["dynamic", "static", "threshold"])
def test_the_encoder_receives_the_binary_sample_the_likelihood_scores(binarize):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2, architecture_options={"hidden": [8]},
                           likelihood_options={"binarize": binarize})
    seen = recording(model)
    x = grey_images()
    model.elbo(x, generator=torch.Generator().manual_seed(0))
    (encoded,), (scored,) = seen["encoded"], seen["scored"]
    assert set(encoded.unique().tolist()) == {0.0, 1.0}  # not the grey image
    assert torch.equal(encoded, scored)


def test_the_iw_estimate_encodes_the_binarization_it_scores():
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2, architecture_options={"hidden": [8]},
                           likelihood_options={"binarize": "dynamic"})
    seen = recording(model)
    metrics.iw_log_likelihood(model, grey_images(10), k=4, k_batch=4)
    (encoded,) = seen["encoded"]
    assert set(encoded.unique().tolist()) == {0.0, 1.0}
    assert all(torch.equal(s, encoded.repeat(4, 1, 1, 1)) for s in seen["scored"])


def test_grey_level_models_still_encode_the_grey_image():
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2, architecture_options={"hidden": [8]})
    seen = recording(model)
    x = grey_images()
    model.elbo(x)
    assert torch.equal(seen["encoded"][0], x)


# -- static: one stochastic binarization, fixed once ----------------------------------------------------

def test_static_binarization_is_the_same_in_every_batch_and_call():
    likelihood = Bernoulli("static")
    x = grey_images(32)
    whole = likelihood.target(x, torch.Generator().manual_seed(1))
    parts = torch.cat([likelihood.target(x[i:i + 5], torch.Generator().manual_seed(i)) for i in range(0, 32, 5)])
    assert torch.equal(whole, parts)  # no dependence on batching or on the generator
    assert torch.equal(likelihood.target(x.flip(0)), whole.flip(0))  # nor on the order of the images


def test_static_binarization_is_stochastic_with_the_grey_level_as_probability():
    likelihood = Bernoulli("static")
    # 4,000 different images, all of grey 0.3 but for two pixels that tell them apart.
    x = torch.full((4000, 1, 8, 8), 77 / 255)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = torch.arange(4000) % 256 / 255, torch.arange(4000) // 256 / 255
    binary = likelihood.target(x)[:, 0, 1:]
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert binary.mean().item() == pytest.approx(77 / 255, abs=0.01)  # thresholding would give 0
    # Independent across images and across pixels: neighbours agree as often as chance says.
    p = 77 / 255
    agree = (binary[:-1] == binary[1:]).float().mean().item()
    assert agree == pytest.approx(p * p + (1 - p) * (1 - p), abs=0.01)


def test_the_static_seed_chooses_another_binarization_and_binary_images_stay_as_they_are():
    x = grey_images(16)
    first, other = Bernoulli("static", binarize_seed=0).target(x), Bernoulli("static", binarize_seed=1).target(x)
    assert not torch.equal(first, other)
    assert torch.equal(Bernoulli("static").target(first), first)
    u = fixed_uniforms(x, 0)
    assert 0 <= u.min() and u.max() < 1


def test_a_model_file_from_before_the_seed_existed_keeps_its_thresholding(tmp_path):
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=2,
                           likelihood_options={"binarize": "static"})
    config = dict(model.config, likelihood_options={"binarize": "static"})  # as files of earlier versions
    rebuilt = VAE.from_config(config)
    assert rebuilt.likelihood.binarize == "threshold"
    assert model.likelihood.binarize == "static"  # a new model keeps the stochastic one


def test_a_bad_binarize_seed_is_a_clear_error():
    for seed in (-1, 2 ** 31, 1.5, "x"):
        with pytest.raises(VaetoolError, match="binarize_seed"):
            Bernoulli("static", binarize_seed=seed)


# -- compare: one binarization for every bound --------------------------------------------------------

def test_compare_scores_the_elbo_and_the_iw_estimate_on_the_same_binarized_images(monkeypatch):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2, architecture_options={"hidden": [8]},
                           likelihood_options={"binarize": "dynamic"}, dataset="tiny")
    given = {}
    real_elbo, real_iw = metrics.elbo_terms, metrics.iw_log_likelihood

    def elbo_terms(model, images, *args, **kwargs):
        given["elbo"] = images.clone()
        return real_elbo(model, images, *args, **kwargs)

    def iw_log_likelihood(model, images, *args, **kwargs):
        given["iw"] = images.clone()
        return real_iw(model, images, *args, **kwargs)

    monkeypatch.setattr(metrics, "elbo_terms", elbo_terms)
    monkeypatch.setattr(metrics, "iw_log_likelihood", iw_log_likelihood)
    images = (grey_images(20) * 255).to(torch.uint8)
    entry = compare.Entry("m", None, model)
    compare.evaluate([entry], images, None, iw_samples=3)
    assert torch.equal(given["elbo"], given["iw"])
    assert set(given["elbo"].unique().tolist()) == {0.0, 1.0}
    # The draw is seeded: the same seed, the same binarization; another seed, another one.
    first = metrics.scored_data(model, images, seed=0)
    assert torch.equal(first, metrics.scored_data(model, images, seed=0))
    assert not torch.equal(first, metrics.scored_data(model, images, seed=1))


def test_compare_says_which_protocol_its_numbers_follow():
    grey = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=2, dataset="mnist")
    binary = vaetool.create("linear", "bernoulli", input_shape=(1, 4, 4), latent_dim=2, dataset="mnist",
                            likelihood_options={"binarize": "dynamic"})
    entries = [compare.Entry("grey", None, grey), compare.Entry("binary", None, binary)]
    compare.evaluate(entries, (grey_images(8, 4) * 255).to(torch.uint8), None, iw_samples=2)
    said = " ".join(compare.verdicts(entries))
    assert "(grey): Bernoulli cross-entropy on grey levels of mnist: not a density of the data, not comparable" in said
    assert "(binary): Bernoulli on binarized mnist" in said and "comparable with published tables" in said


@pytest.fixture
def registered():
    names = []
    yield lambda kind, name, cls: (registry.register(kind, name, cls), names.append((kind, name)))
    for kind, name in names:
        registry.unregister(kind, name)


def test_each_likelihood_states_its_own_protocol_and_an_unchecked_one_is_said_so(registered):
    from vaetool.likelihoods.gaussian import Gaussian

    class Declared(Gaussian):
        def protocol(self, dataset):
            return f"a declared protocol on {dataset}", True

    class Silent(Gaussian):
        def protocol(self, dataset):
            return super(Gaussian, self).protocol(dataset)  # the contract's default: not checked

    registered("likelihood", "declared-gaussian", Declared)
    registered("likelihood", "silent-gaussian", Silent)
    declared = vaetool.create("linear", "declared-gaussian", input_shape=(1, 4, 4), latent_dim=2, dataset="mnist")
    silent = vaetool.create("linear", "silent-gaussian", input_shape=(1, 4, 4), latent_dim=2, dataset="mnist")
    assert metrics.protocol(declared) == ("a declared protocol on mnist", True)
    assert metrics.protocol(silent) == ("silent-gaussian likelihood on mnist, not checked against a published protocol",
                                        False)


# -- the .amat files of binarized MNIST ---------------------------------------------------------------

def write_amat(path, images):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(str(v) for v in row) + " \n" for row in images.reshape(len(images), -1)))


@pytest.fixture
def amat_root(tmp_path):
    rng = np.random.default_rng(0)
    data = {part: (rng.random((n, 784)) < 0.2).astype(np.uint8) for part, n in (("train", 7), ("valid", 3), ("test", 5))}
    for part, images in data.items():
        write_amat(tmp_path / "BinarizedMNIST" / f"binarized_mnist_{part}.amat", images)
    return tmp_path, data


def test_binarized_mnist_reads_the_amat_files(amat_root):
    root, data = amat_root
    dataset = registry.get("dataset", "binarized-mnist")()
    train, test = dataset.load("train", root), dataset.load("test", root)
    assert train.images.shape == (7, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(train.images.flatten(1), torch.from_numpy(data["train"]) * 255)
    assert torch.equal(test.images.flatten(1), torch.from_numpy(data["test"]) * 255)
    both = registry.get("dataset", "binarized-mnist")(train_split="train+valid").load("train", root)
    assert torch.equal(both.images.flatten(1), torch.from_numpy(np.concatenate([data["train"], data["valid"]])) * 255)


def test_binarized_mnist_conforms(amat_root):
    from vaetool.testing import check_dataset

    check_dataset("binarized-mnist", root=amat_root[0])


def test_binarized_mnist_trains_from_the_command_line(amat_root, tmp_path):
    ok(invoke("train", "--data", "binarized-mnist", "--data-dir", amat_root[0], "--arch", "mlp", "--hidden", "8",
              "--epochs", 1, "--runs-dir", tmp_path / "runs", "--name", "b", "--device", "cpu"))
    assert vaetool.load(tmp_path / "runs" / "b").config["dataset"] == "binarized-mnist"


def test_a_damaged_or_missing_amat_file_is_one_clear_sentence(amat_root, tmp_path):
    root, _ = amat_root
    dataset = registry.get("dataset", "binarized-mnist")()
    (root / "BinarizedMNIST" / "binarized_mnist_test.amat").write_text("0 1 2\n")
    with pytest.raises(VaetoolError, match="other than 0, 1"):
        dataset.load("test", root)
    (root / "BinarizedMNIST" / "binarized_mnist_test.amat").write_text("0 1 1\n")
    with pytest.raises(VaetoolError, match="784 values"):
        dataset.load("test", root)
    assert_clean_error(invoke("train", "--data", "binarized-mnist", "--data-dir", tmp_path / "nothing",
                              "--runs-dir", tmp_path / "runs"), "binarized_mnist_train.amat")


# -- the IWAE paper's tanh MLP ------------------------------------------------------------------------

def test_the_mlp_takes_its_activation_by_name():
    tanh = vaetool.create("mlp", "bernoulli", input_shape=(1, 4, 4), latent_dim=2,
                          architecture_options={"hidden": [8, 8], "activation": "tanh"})
    layers = [type(m).__name__ for m in tanh.architecture.modules()]
    assert layers.count("Tanh") == 2 * 2 and "ReLU" not in layers  # two hidden layers each side
    relu = vaetool.create("mlp", "bernoulli", input_shape=(1, 4, 4), latent_dim=2, architecture_options={"hidden": [8]})
    assert relu.config["architecture_options"]["activation"] == "relu"
    with pytest.raises(VaetoolError, match="activation must be one of relu, tanh"):
        vaetool.create("mlp", "bernoulli", input_shape=(1, 4, 4), latent_dim=2,
                       architecture_options={"hidden": [8], "activation": "sigmoidish"})


def test_a_model_file_from_before_activations_loads_as_relu(tmp_path):
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 4, 4), latent_dim=2, architecture_options={"hidden": [8]})
    config = dict(model.config, architecture_options={"hidden": [8]})
    rebuilt = VAE.from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    x = grey_images(4, 4)
    torch.testing.assert_close(rebuilt.reconstruct(x), model.reconstruct(x))
