"""The vector-quantised latent (VQ-VAE, van den Oord et al. 2017): the quantiser, its training, its
prior over codes, and every command that touches latents."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vaetool
from conftest import TINY_DATASET, TinySquares, assert_clean_error, invoke, ok, refused_before_reading, state_dicts_equal
from vaetool import latentfile, latents, training
from vaetool.errors import VaetoolError
from vaetool.latent_types.vq import VectorQuantised
from vaetool.training import TrainConfig

FORMATS = [".npy", ".csv", ".json", ".safetensors"]


def tiny(codebook=8, dim=2, latent_dim=4, **options):
    torch.manual_seed(0)
    return vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=latent_dim, architecture_options={"hidden": [16]},
                          latent="vq", latent_options={"codebook": codebook, "dim": dim, **options})


def images(n=8, seed=5):
    return TinySquares(n, n, seed=seed).load("test").images.float() / 255


# -- the quantiser ---------------------------------------------------------------------------------

def test_each_position_takes_the_nearest_codebook_vector():
    latent = VectorQuantised(3, codebook=5, dim=2).eval()
    h = torch.randn(4, 6)
    code = latent.posterior(h, torch.zeros_like(h))
    distances = ((h.view(4, 3, 1, 2) - latent.codebook.view(1, 1, 5, 2)) ** 2).sum(-1)
    assert torch.equal(code.codes, distances.argmin(-1))
    assert torch.equal(code.mean, latent.codebook[code.codes].flatten(1))
    assert torch.equal(latent.embed(code.codes), code.mean)


def test_the_gradient_passes_straight_through_and_the_losses_are_the_papers():
    latent = VectorQuantised(3, codebook=5, dim=2, commitment_cost=0.25).eval()
    h = torch.randn(4, 6, requires_grad=True)
    code = latent.posterior(h, torch.zeros_like(h))
    drawn = latent.terms(code, None)
    z, kl, loss = drawn.z, drawn.kl, drawn.loss
    assert torch.allclose(z, code.mean, atol=1e-6)  # the decoder sees the codebook vectors (to rounding)
    (grad,) = torch.autograd.grad(z.sum(), h, retain_graph=True)
    assert torch.equal(grad, torch.ones_like(h))  # and the encoder gets the decoder's gradient unchanged
    gap = ((h.view(4, 3, 2) - code.quantised) ** 2).sum((1, 2))
    assert torch.allclose(loss, 1.25 * gap)  # codebook loss + 0.25 × commitment loss
    (to_codebook,) = torch.autograd.grad(loss.sum(), latent.codebook)
    assert to_codebook.abs().sum() > 0
    assert torch.allclose(kl, torch.full((4, 3), np.log(5.0)))  # a fresh prior is uniform: KL = log K per position


def test_the_first_training_batch_initialises_the_codebook_from_encoder_outputs():
    latent = VectorQuantised(2, codebook=4, dim=3, restart_after=0)
    h = torch.randn(5, 6)
    latent.posterior(h, h)
    rows = {tuple(r) for r in h.view(-1, 3).tolist()}
    assert all(tuple(r) in rows for r in latent.codebook.tolist()) and bool(latent.initialised)


def test_ema_moves_the_codebook_to_the_laplace_smoothed_mean_of_its_assignments():
    latent = VectorQuantised(1, codebook=3, dim=1, ema=True, decay=0.5, epsilon=1e-5, restart_after=0)
    latent.initialised.fill_(True)
    latent.codebook.copy_(torch.tensor([[0.0], [10.0], [20.0]]))
    latent.cluster_sum.copy_(latent.codebook)
    latent.cluster_size.fill_(1.0)
    h = torch.tensor([[1.0], [3.0], [19.0]])  # two outputs near code 0, one near code 2, none near code 1
    latent.terms(latent.posterior(h, h), None)
    size = 0.5 * torch.ones(3) + 0.5 * torch.tensor([2.0, 0.0, 1.0])
    total = size.sum()
    smoothed = (size + 1e-5) / (total + 3e-5) * total
    expected = (0.5 * torch.tensor([0.0, 10.0, 20.0]) + 0.5 * torch.tensor([4.0, 0.0, 19.0])) / smoothed
    assert torch.allclose(latent.codebook.squeeze(1), expected)
    assert not latent.codebook.requires_grad and "codebook" not in dict(latent.named_parameters())


def test_a_code_unused_for_restart_after_steps_restarts_at_an_encoder_output():
    torch.manual_seed(0)
    latent = VectorQuantised(1, codebook=3, dim=1, restart_after=2)
    latent.initialised.fill_(True)
    latent.codebook.data.copy_(torch.tensor([[0.0], [100.0], [200.0]]))
    h = torch.tensor([[0.5], [1.0], [199.0]])  # code 1 is never chosen
    latent.terms(latent.posterior(h, h), None)
    assert latent.codebook[1].item() == 100.0 and latent.steps_unused.tolist() == [0, 1, 0]
    latent.terms(latent.posterior(h, h), None)
    assert latent.codebook[1].item() in (0.5, 1.0, 199.0)  # restarted at one of this batch's outputs
    assert latent.codebook[0].item() == 0.0 and latent.steps_unused.tolist() == [0, 0, 0]


def test_the_prior_over_codes_learns_the_codes_training_chose_and_sample_draws_from_it():
    latent = VectorQuantised(2, codebook=4, dim=1, restart_after=0, prior_decay=0.5)
    latent.initialised.fill_(True)
    latent.codebook.data.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    h = torch.tensor([[3.0, 1.0]]).repeat(50, 1)  # position 0 always takes code 3, position 1 code 1
    for _ in range(10):
        latent.terms(latent.posterior(h, h), None)
    p = latent.log_prior().exp()
    assert torch.allclose(p.sum(-1), torch.ones(2))
    assert p[0, 3] > 0.95 and p[1, 1] > 0.95
    code = latent.eval().posterior(h[:1], h[:1])
    kl = latent.terms(code, None).kl
    assert torch.allclose(kl, -torch.stack([p[0, 3], p[1, 1]]).log()[None])  # KL = −log p(code)
    drawn = latent.sample_codes(1000, torch.Generator().manual_seed(0))
    assert drawn.shape == (1000, 2) and (drawn[:, 0] == 3).float().mean() > 0.9 and (drawn[:, 1] == 1).float().mean() > 0.9
    assert torch.equal(drawn, latent.sample_codes(1000, torch.Generator().manual_seed(0)))
    colder = latent.sample_codes(1000, torch.Generator().manual_seed(0), temperature=0.1)
    assert (colder[:, 0] == 3).all()


@pytest.mark.parametrize(("options", "fragment"), [
    ({"codebook": 1}, "codebook must be a whole number of 2 or more"),
    ({"dim": 0}, "dim must be"),
    ({"commitment_cost": -1}, "commitment_cost"),
    ({"decay": 1.5}, "decay must be"),
    ({"ema": "yes"}, "ema must be true or false"),
    ({"size": 3}, "has no option 'size'"),
])
def test_bad_options_are_clear_errors(options, fragment):
    with pytest.raises(VaetoolError, match=fragment):
        tiny(**options)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"autoencoder": True}, "deterministic already"),
    ({"prior": "vamp"}, "brings its own prior over codes"),
])
def test_what_a_vq_latent_cannot_combine_with_is_refused(kwargs, fragment):
    with pytest.raises(VaetoolError, match=fragment):
        vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=2, latent="vq", **kwargs)


# -- training ----------------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("tiny_squares_module")


def config(**overrides):
    settings = dict(architecture="mlp", architecture_options={"hidden": [32]}, dataset=TINY_DATASET,
                    dataset_options={"n_train": 256, "n_test": 64}, latent_dim=4, latent="vq",
                    latent_options={"codebook": 16, "dim": 2}, epochs=2, batch_size=64, lr=3e-3, seed=0)
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vq") / "run"
    return training.train(config(), run_dir, device="cpu"), run_dir


def test_a_vq_model_trains_and_records_its_latent(straight):
    result, run_dir = straight
    model = vaetool.load(run_dir)
    assert model.config["latent"] == "vq"
    assert model.config["latent_options"]["codebook"] == 16 and model.config["latent_options"]["ema"] is False
    assert model.architecture.latent_dim == 4 * 2  # the architecture's latent: positions × dim
    assert all(np.isfinite(m["test_elbo"]) for m in result.metrics)
    assert model.latent.code_counts.sum() > 0 and bool(model.latent.initialised)


def test_a_vq_run_resumes_exactly(straight, tmp_path):
    _, run_dir = straight
    training.train(config(epochs=1), tmp_path / "run", device="cpu")
    training.resume(tmp_path / "run", epochs=2, device="cpu")
    assert state_dicts_equal(vaetool.load(run_dir).state_dict(), vaetool.load(tmp_path / "run").state_dict())


def test_the_ema_variant_trains_with_its_codebook_saved(tmp_path):
    training.train(config(epochs=1, latent_options={"codebook": 16, "dim": 2, "ema": True}), tmp_path / "r", device="cpu")
    model = vaetool.load(tmp_path / "r")
    assert {"latent.codebook", "latent.cluster_size", "latent.cluster_sum"} <= set(model.state_dict())


def test_vq_learns_to_reconstruct_better_than_its_first_steps(tmp_path):
    result = training.train(config(epochs=4, latent_options={"codebook": 32, "dim": 4}), tmp_path / "r", device="cpu")
    assert result.metrics[-1]["test_rec"] > result.metrics[0]["test_rec"] + 5


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--tc-weight", "6"], "The tcvae objective needs the Gaussian posterior"),
    (["--capacity", "25"], "The capacity objective needs a stochastic encoder and its KL term"),
    (["--free-bits", "1"], "The elbo objective needs a stochastic encoder and its KL term"),
    (["--objective", "iwae"], "The iwae objective needs several samples of z"),
    (["--prior", "vamp"], "brings its own prior over codes"),
    (["--autoencoder"], "deterministic already"),
    (["--latent-opt", "codebook=1"], "codebook must be"),
])
def test_what_the_vq_latent_lacks_is_refused_before_any_data_is_read(tmp_path, flags, fragment, monkeypatch):
    assert fragment in refused_before_reading(tmp_path, monkeypatch, "--latent", "vq", *flags)


def test_an_unknown_latent_names_the_installed_ones(tmp_path):
    error = assert_clean_error(invoke("train", "--latent", "spherical", "--data", TINY_DATASET, "--runs-dir", tmp_path))
    assert "gaussian" in error and "vq" in error


def test_the_issue_command_trains_a_conv_vq_vae(tmp_path):
    ok(invoke("train", "--latent", "vq", "--latent-opt", "codebook=512", "--arch", "conv", "--data", TINY_DATASET,
              "--channels", "8,16", "--data-opt", "n_train=128", "--data-opt", "n_test=32", "--epochs", "1",
              "--runs-dir", tmp_path, "--name", "vq"))
    model = vaetool.load(tmp_path / "vq")
    assert model.config["architecture"] == "conv" and model.latent.codebook_size == 512
    assert (tmp_path / "vq" / "samples.png").is_file()


# -- the commands ------------------------------------------------------------------------------------

@pytest.fixture
def vq_file(tmp_path):
    model = tiny(codebook=8, dim=2, latent_dim=4)
    with torch.no_grad():  # spread the codebook so that codes give visibly different pictures
        model.latent.codebook.mul_(3)
        for p in model.architecture.parameters():
            p.mul_(3)
    vaetool.save(model, tmp_path / "vq.safetensors")
    return tmp_path / "vq.safetensors"


def square_pngs(folder, n=3):
    from PIL import Image

    folder.mkdir()
    for i, x in enumerate(images(n)):
        Image.fromarray((x[0].numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("suffix", FORMATS)
def test_encode_writes_codes_and_decode_turns_them_back_into_the_reconstructions(tmp_path, vq_file, suffix):
    folder = square_pngs(tmp_path / "in")
    out = tmp_path / f"codes{suffix}"
    ok(invoke("encode", folder, "-o", out, "--model", vq_file))
    read = latentfile.read(out)
    model = vaetool.load(vq_file)
    from vaetool.images import load_images

    x, _ = load_images([folder], model.input_shape, None, model.config.get("background"))
    with torch.no_grad():
        expected = model.latent.codes(model.encode(x))
        assert read.discrete and np.array_equal(read.codes, expected.numpy())
        ok(invoke("decode", out, "-o", tmp_path / "back.png", "--model", vq_file))
        assert (tmp_path / "back.png").is_file()
        assert torch.equal(model.decode(model.latent.embed(torch.from_numpy(read.codes))), model.reconstruct(x))


def test_encode_prints_codes_and_plots_the_chosen_vectors(tmp_path, vq_file):
    images = square_pngs(tmp_path / "in")
    assert "codes (4 positions)" in ok(invoke("encode", images, "--model", vq_file)).output
    ok(invoke("encode", images, "--model", vq_file, "--plot", tmp_path / "p.png"))
    assert (tmp_path / "p.png").is_file()


def test_decode_takes_codes_inline_and_refuses_what_is_not_a_code(tmp_path, vq_file):
    ok(invoke("decode", "--z", "0,1,2,7", "--z", "3,3,3,3", "-o", tmp_path / "z.png", "--model", vq_file))
    assert "whole numbers" in assert_clean_error(invoke("decode", "--z", "0.5,1,2,3", "--model", vq_file))
    assert "0 to 7" in assert_clean_error(invoke("decode", "--z", "0,1,2,8", "--model", vq_file))
    assert "4 positions" in assert_clean_error(invoke("decode", "--z", "0,1", "--model", vq_file))
    means = tmp_path / "means.json"
    latentfile.write(means, latentfile.Latents(np.zeros((2, 4), dtype=np.float32)))
    assert "holds continuous latents" in assert_clean_error(invoke("decode", means, "--model", vq_file))


def test_rows_of_numbers_written_by_hand_decode_as_codes_or_means_whichever_the_model_takes(tmp_path, vq_file):
    (tmp_path / "codes.csv").write_text("0,1,2,7\n3,3,3,3\n")
    (tmp_path / "codes.json").write_text("[[0, 1, 2, 7], [3, 3, 3, 3]]")
    inline = tmp_path / "inline.png"
    ok(invoke("decode", "--z", "0,1,2,7", "--z", "3,3,3,3", "-o", inline, "--model", vq_file))
    for name in ("codes.csv", "codes.json"):
        out = tmp_path / f"{name}.png"
        ok(invoke("decode", tmp_path / name, "-o", out, "--model", vq_file))
        assert out.read_bytes() == inline.read_bytes()
    (tmp_path / "halves.csv").write_text("0.5,1,2,3\n")
    assert "not whole" in assert_clean_error(invoke("decode", tmp_path / "halves.csv", "--model", vq_file))
    # A Gaussian model takes the same whole numbers as a point in its latent space.
    model = vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=4, architecture_options={"hidden": [16]})
    vaetool.save(model, tmp_path / "g.safetensors")
    ok(invoke("decode", "--z", "0,1,2,7", "--z", "3,3,3,3", "-o", inline, "--model", tmp_path / "g.safetensors"))
    ok(invoke("decode", tmp_path / "codes.csv", "-o", tmp_path / "g.png", "--model", tmp_path / "g.safetensors"))
    assert (tmp_path / "g.png").read_bytes() == inline.read_bytes()


def test_a_gaussian_model_refuses_a_file_of_codes(tmp_path):
    model = vaetool.create("mlp", input_shape=(1, 16, 16), latent_dim=4, architecture_options={"hidden": [16]})
    vaetool.save(model, tmp_path / "g.safetensors")
    codes = tmp_path / "codes.json"
    latentfile.write(codes, latentfile.Latents.of_codes(np.zeros((2, 4), dtype=np.int64)))
    assert "holds codes" in assert_clean_error(invoke("decode", codes, "--model", tmp_path / "g.safetensors"))


def test_sample_draws_codes_from_the_code_prior(tmp_path, vq_file):
    from PIL import Image, ImageSequence

    ok(invoke("sample", "-n", "3", "-o", tmp_path / "s.gif", "--model", vq_file))  # one sample a frame
    assert len(list(ImageSequence.Iterator(Image.open(tmp_path / "s.gif")))) == 3
    model = vaetool.load(vq_file)
    with torch.no_grad():
        model.latent.code_counts[:, 5] = 1e6  # a prior that all but certainly picks code 5
    vaetool.save(model, vq_file)
    ok(invoke("sample", "-n", "4", "-o", tmp_path / "s.png", "--model", vq_file, "--seed", "3"))
    z = model.sample_latents(4, torch.Generator().manual_seed(3))
    assert torch.equal(z, model.latent.embed(torch.full((4, 4), 5)))
    x = vaetool.load(vq_file).decode(z)
    from vaetool import images as pictures

    drawn = np.asarray(Image.open(tmp_path / "s.png"))
    assert np.array_equal(drawn, pictures.grid(x.detach(), nrow=8))  # the picture is those samples, decoded


def test_interpolate_swaps_codes_position_by_position(tmp_path, vq_file):
    codes = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    path = latents.code_path(codes, 5)
    assert path.tolist() == [[0, 1, 2, 3], [4, 1, 2, 3], [4, 5, 2, 3], [4, 5, 6, 3], [4, 5, 6, 7]]
    ok(invoke("interpolate", "--z", "0,1,2,3", "--z", "4,5,6,7", "--steps", "5", "-o", tmp_path / "i.png",
              "--model", vq_file))
    folder = square_pngs(tmp_path / "in", 2)
    ok(invoke("interpolate", folder / "0.png", folder / "1.png", "-o", tmp_path / "j.gif", "--model", vq_file))
    assert "whole numbers" in assert_clean_error(invoke("interpolate", "--z", "0.5,1,2,3", "--z", "4,5,6,7",
                                                        "--model", vq_file))


def test_traverse_and_the_manifold_say_why_they_do_not_apply(vq_file):
    assert "discrete codes" in assert_clean_error(invoke("traverse", "--model", vq_file, "-o", "t.png"))
    assert "discrete codes" in assert_clean_error(invoke("sample", "--manifold", "--model", vq_file))


def test_compare_reports_codebook_usage_and_perplexity_and_no_iw_bound(straight, tmp_path):
    _, run_dir = straight
    ok(invoke("compare", run_dir, "-o", tmp_path / "zoo.json", "--iw-samples", "5", "--no-sample-quality"))
    report = json.loads((tmp_path / "zoo.json").read_text())
    numbers = report["models"][0]
    assert "iw_ll" not in numbers and "active_units" not in numbers and "aggregate_kl" not in numbers
    model = vaetool.load(run_dir)
    from vaetool import metrics

    test = TinySquares(256, 64).load("test").images
    expected = metrics.codebook_usage(model, test)
    assert numbers["codes_used"] == expected["codes_used"] and numbers["perplexity"] == pytest.approx(expected["perplexity"])
    assert 1 <= numbers["perplexity"] <= numbers["codes_used"] <= 16
    assert any("codes on the test images" in v for v in report["verdicts"])
    # On the terminal, with fewer IW images than test images: no footnote for a column that is not there.
    shown = ok(invoke("compare", run_dir, "--iw-images", "8", "--no-sample-quality")).stdout
    assert "codes on the test images" in shown and "log p(x) IW: K" not in shown


def test_a_damaged_code_file_is_one_clear_sentence(tmp_path, vq_file):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"latent_dim": 4, "items": [{"name": "a", "label": -1, "code": [0.5, 1, 2, 3]}]}))
    assert "not whole numbers" in assert_clean_error(invoke("decode", bad, "--model", vq_file))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("name,label,code_0,code_1\na,-1,1,x\n")
    assert_clean_error(invoke("decode", ragged, "--model", vq_file))
