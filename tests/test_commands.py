"""The commands that use a trained model: encode, decode, sample, interpolate, traverse.

Every model here is tiny and untrained (its weights scaled up so that different latents give visibly
different pictures); the tests check what each command writes against the model's own outputs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

import vaetool
from conftest import TinySquares, assert_clean_error, invoke, ok
from vaetool import images, latentfile, latents

FORMATS = [".npy", ".csv", ".json", ".safetensors"]
PAD = 2  # images.grid's default padding
SIDE = 96  # 16-px images at the default zoom (96 // 16 = 6)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    # Nothing may land in the repository, whatever a command defaults to.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAETOOL_RUNS", raising=False)











# -- models and images -----------------------------------------------------------------------------

def make_model(path, architecture="mlp", latent_dim=4, *, options=None, dead=None, seed=0, **extra):
    """A tiny untrained model saved at ``path``; returns it as loaded back from the file.

    ``extra`` goes into the config as training would record it (background, test_kl_per_dim).
    ``dead`` makes the encoder output the prior (mean 0, log-variance 0) for that dimension.
    """
    torch.manual_seed(seed)
    model = vaetool.create(architecture, "bernoulli", input_shape=(1, 16, 16), latent_dim=latent_dim,
                           architecture_options=options or {"hidden": [32]}, **extra)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # untrained outputs are near 0.5 everywhere; this makes latents tell apart
        if dead is not None:
            last = model.architecture.net.encoder[-1]
            for row in (dead, latent_dim + dead):
                last.weight[row] = 0
                last.bias[row] = 0
    vaetool.save(model, path)
    return vaetool.load(path)


@pytest.fixture
def vae(tmp_path):
    return make_model(tmp_path / "m.safetensors", background="dark")


def use(tmp_path, name="m.safetensors"):
    return ["--model", tmp_path / name, "--device", "cpu"]


def blob(path, top=3, left=4, size=5, shape=(16, 16), ink=255, paper=0, quality=None):
    """A square of ``ink`` on ``paper``, saved as PNG or JPEG (grey)."""
    array = np.full(shape, paper, dtype=np.uint8)
    array[top:top + size, left:left + size] = ink
    Image.fromarray(array, mode="L").save(path, **({"quality": quality} if quality else {}))
    return path


def load(model, *paths, invert=None):
    """Images as the commands load them for ``model``."""
    x, _ = images.load_images(paths, model.input_shape, invert, model.config.get("background"))
    return x


def png(path):
    image = Image.open(path)
    assert image.format == "PNG"
    return np.asarray(image)


def gif_frames(path):
    image = Image.open(path)
    assert image.format == "GIF"
    return [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(image)]


def render(pictures, **kwargs):
    with torch.no_grad():
        return images.grid(pictures, **kwargs)


def tile(array, i, nrow, side=SIDE, pad=PAD):
    r, k = divmod(i, nrow)
    return array[pad + r * (side + pad): pad + r * (side + pad) + side, pad + k * (side + pad): pad + k * (side + pad) + side]


def grid_size(rows, cols, side=SIDE, pad=PAD):
    return rows * (side + pad) + pad, cols * (side + pad) + pad


def assert_near(a, b, levels=1):
    """Two uint8 pictures equal up to rounding (float paths to the same latent may differ in the last bit)."""
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= levels


def encoded(model, x, y=None):
    with torch.no_grad():
        return model.encode(x, y).mean


# -- encode → decode -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", FORMATS)
def test_encode_then_decode_gives_the_reconstructions(tmp_path, vae, suffix):
    a = blob(tmp_path / "img1.png", top=2, left=3)
    b = blob(tmp_path / "img2.jpg", top=9, left=8, shape=(24, 20), quality=95)
    result = ok(invoke("encode", "img1.png", "img2.jpg", "-o", f"z{suffix}", *use(tmp_path)))
    assert f"Wrote 2 latents of dimension 4 to z{suffix}" in result.stdout
    x = load(vae, a, b)
    stored = latentfile.read(tmp_path / f"z{suffix}")
    assert stored.names == ["img1.png", "img2.jpg"]
    assert stored.labels.tolist() == [-1, -1]
    with torch.no_grad():
        posterior = vae.encode(x)
    np.testing.assert_allclose(stored.mean, posterior.mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stored.log_var, posterior.log_var.numpy(), rtol=1e-6, atol=1e-6)

    result = ok(invoke("decode", f"z{suffix}", "-o", "out.png", *use(tmp_path)))
    assert "Wrote 2 images to out.png" in result.stdout
    with torch.no_grad():
        expected = render(vae.reconstruct(x))
    assert np.array_equal(png(tmp_path / "out.png"), expected)
    assert not np.array_equal(tile(expected, 0, 2), tile(expected, 1, 2))  # two different pictures


def test_decode_writes_a_gif_with_one_frame_per_latent(tmp_path, vae):
    z = [[2, 0, 0, 0], [0, -2, 1, 0], [0, 0, 0, 2]]
    ok(invoke("decode", *[a for row in z for a in ("--z", ",".join(map(str, row)))], "-o", "d.gif", "--zoom", "2",
              *use(tmp_path)))
    frames = gif_frames(tmp_path / "d.gif")
    assert len(frames) == 3
    assert "Wrote 1 image to one.png" in ok(invoke("decode", "--z", "0,0,0,0", "-o", "one.png", *use(tmp_path))).stdout
    with torch.no_grad():
        pictures = vae.decode(torch.tensor(z, dtype=torch.float32))
    for frame, picture in zip(frames, pictures):
        assert np.array_equal(frame, render(picture[None], nrow=1, zoom=2, pad=0))


def test_an_autoencoder_round_trip_has_no_variance(tmp_path):
    ae = make_model(tmp_path / "ae.safetensors", autoencoder=True)
    a, b = blob(tmp_path / "a.png"), blob(tmp_path / "b.png", top=10, left=10)
    ok(invoke("encode", a, b, "-o", "z.csv", *use(tmp_path, "ae.safetensors")))
    stored = latentfile.read(tmp_path / "z.csv")
    assert np.isnan(stored.log_var).all()
    ok(invoke("decode", "z.csv", "-o", "out.png", *use(tmp_path, "ae.safetensors")))
    with torch.no_grad():
        assert np.array_equal(png(tmp_path / "out.png"), render(ae.reconstruct(load(ae, a, b))))


def test_a_conditional_round_trip_keeps_the_label(tmp_path):
    cvae = make_model(tmp_path / "c.safetensors", "cvae", num_classes=3, options={"channels": [8, 16]})
    a, b = blob(tmp_path / "a.png"), blob(tmp_path / "b.png", top=10, left=10)
    ok(invoke("encode", a, b, "--label", "2", "-o", "z.json", *use(tmp_path, "c.safetensors")))
    stored = latentfile.read(tmp_path / "z.json")
    assert stored.labels.tolist() == [2, 2]
    x, y = load(cvae, a, b), torch.tensor([2, 2])
    np.testing.assert_allclose(stored.mean, encoded(cvae, x, y).numpy(), rtol=1e-6, atol=1e-6)
    ok(invoke("decode", "z.json", "-o", "out.png", *use(tmp_path, "c.safetensors")))
    with torch.no_grad():
        expected = render(cvae.reconstruct(x, y))
    assert np.array_equal(png(tmp_path / "out.png"), expected)
    ok(invoke("decode", "z.json", "--label", "0", "-o", "other.png", *use(tmp_path, "c.safetensors")))
    assert not np.array_equal(png(tmp_path / "other.png"), expected)  # --label overrides the file's labels


def test_a_conditional_model_needs_a_label_to_encode(tmp_path):
    make_model(tmp_path / "c.safetensors", "cvae", num_classes=3, options={"channels": [8, 16]})
    assert_clean_error(invoke("encode", blob(tmp_path / "a.png"), *use(tmp_path, "c.safetensors")), "--label")


def test_encode_without_output_prints_a_table(tmp_path, vae):
    a, b = blob(tmp_path / "first.png"), blob(tmp_path / "second.png", top=10, left=9)
    result = ok(invoke("encode", a, b, *use(tmp_path)))
    means = encoded(vae, load(vae, a, b))
    assert "posterior means (4-D)" in result.stdout
    lines = result.stdout.splitlines()
    for name, row in zip(("first.png", "second.png"), means):
        line = next(line for line in lines if name in line)
        assert [f"{v:+.2f}" for v in row.tolist()] == [cell for cell in line.split() if cell[0] in "+-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.png", "m.safetensors", "second.png"]


def test_encode_a_folder_in_sorted_order(tmp_path, vae):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i, name in enumerate(["c.png", "a.png", "b.png"]):
        blob(folder / name, top=2 + 4 * i, left=3)
    (folder / "notes.txt").write_text("not an image, and not named like one")
    ok(invoke("encode", folder, "-o", "z.npy", *use(tmp_path)))
    stored = latentfile.read(tmp_path / "z.npy")
    assert stored.names == ["a.png", "b.png", "c.png"]
    np.testing.assert_allclose(stored.mean, encoded(vae, load(vae, *(folder / n for n in stored.names))).numpy(),
                               rtol=1e-6, atol=1e-6)


def scattered(folder, n):
    folder.mkdir()
    for i in range(n):
        blob(folder / f"{i:02d}.png", top=i % 11, left=(3 * i) % 11, size=2 + i % 4)
    return folder


def test_encode_plot_projects_a_wide_latent_with_pca(tmp_path, vae):
    folder = scattered(tmp_path / "pics", 8)
    result = ok(invoke("encode", folder, "-o", "z.npy", "--plot", "latents.png", *use(tmp_path)))
    assert "Wrote latents.png (PCA)" in result.stdout
    assert png(tmp_path / "latents.png").shape[:2] > (300, 300)


def test_encode_plot_with_tsne(tmp_path, vae):
    folder = scattered(tmp_path / "pics", 30)
    result = ok(invoke("encode", folder, "--plot", "tsne.png", "--method", "tsne", *use(tmp_path)))
    assert result.stdout.strip() == "Wrote tsne.png (t-SNE)"  # the plot alone: no table of its 30 rows
    png(tmp_path / "tsne.png")


def test_encode_plot_draws_a_2d_latent_as_it_is(tmp_path):
    make_model(tmp_path / "m2.safetensors", latent_dim=2)
    folder = scattered(tmp_path / "pics", 5)
    result = ok(invoke("encode", folder, "--plot", "z.png", *use(tmp_path, "m2.safetensors")))
    assert "Wrote z.png (latent)" in result.stdout
    png(tmp_path / "z.png")


def test_encode_a_dataset_split_records_its_labels(tmp_path, vae, tiny_dataset):
    result = ok(invoke("encode", "--data", tiny_dataset, "--split", "test", "--limit", "20", "-o", "z.npy",
                       "--data-dir", tmp_path / "data", "--plot", "p.png", *use(tmp_path)))
    assert "Wrote 20 latents" in result.stdout
    split = TinySquares().load("test")
    stored = latentfile.read(tmp_path / "z.npy")
    assert stored.labels.tolist() == split.labels[:20].tolist()
    assert len(set(stored.labels.tolist())) == 2
    assert stored.names == [f"{tiny_dataset}/test/{i}" for i in range(20)]
    np.testing.assert_allclose(stored.mean, encoded(vae, split.images[:20].float() / 255).numpy(),
                               rtol=1e-5, atol=1e-6)
    png(tmp_path / "p.png")


def test_encode_a_dataset_of_another_image_shape(tmp_path, tiny_dataset):
    torch.manual_seed(0)
    vaetool.save(vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2,
                                architecture_options={"hidden": [8]}), tmp_path / "small.safetensors")
    result = invoke("encode", "--data", tiny_dataset, "--data-dir", tmp_path, *use(tmp_path, "small.safetensors"))
    assert_clean_error(result, "(1, 16, 16)", "(1, 8, 8)")


def test_encode_needs_files_or_a_dataset_but_not_both(tmp_path, vae, tiny_dataset):
    a = blob(tmp_path / "a.png")
    assert_clean_error(invoke("encode", a, "--data", tiny_dataset, *use(tmp_path)), "--data")
    assert_clean_error(invoke("encode", *use(tmp_path)), "--data")


# -- interpolate -----------------------------------------------------------------------------------

def route_pictures(model, points, steps, method="slerp"):
    with torch.no_grad():
        return model.decode(latents.path(points, steps, method))


def test_an_interpolation_strip_starts_and_ends_at_the_reconstructions(tmp_path, vae):
    a, b = blob(tmp_path / "a.png", top=1, left=1), blob(tmp_path / "b.png", top=10, left=9)
    result = ok(invoke("interpolate", a, b, "--steps", "5", "--zoom", "2", "-o", "strip.png", *use(tmp_path)))
    assert "Wrote 5 frames to strip.png" in result.stdout
    strip = png(tmp_path / "strip.png")
    assert strip.shape == grid_size(1, 5, side=32)
    x = load(vae, a, b)
    with torch.no_grad():
        recon = vae.reconstruct(x)
    assert_near(tile(strip, 0, 5, 32), render(recon[:1], nrow=1, zoom=2, pad=0))
    assert_near(tile(strip, 4, 5, 32), render(recon[1:], nrow=1, zoom=2, pad=0))
    assert not np.array_equal(tile(strip, 0, 5, 32), tile(strip, 4, 5, 32))
    # the middle is the decoded slerp path, not a cross-fade of the two ends
    points = torch.cat([encoded(vae, x[:1]), encoded(vae, x[1:])])
    assert np.array_equal(strip, render(route_pictures(vae, points, 5), nrow=5, zoom=2))
    assert not np.array_equal(strip, render(route_pictures(vae, points, 5, "lerp"), nrow=5, zoom=2))


def test_lerp_interpolation(tmp_path, vae):
    a, b = blob(tmp_path / "a.png", top=1, left=1), blob(tmp_path / "b.png", top=10, left=9)
    ok(invoke("interpolate", a, b, "--steps", "4", "--method", "lerp", "--zoom", "1", "-o", "s.png", *use(tmp_path)))
    x = load(vae, a, b)
    points = torch.cat([encoded(vae, x[:1]), encoded(vae, x[1:])])
    assert np.array_equal(png(tmp_path / "s.png"), render(route_pictures(vae, points, 4, "lerp"), nrow=4, zoom=1))


@pytest.mark.parametrize("bounce, frames", [([], 6 + 4), (["--no-bounce"], 6)])
def test_an_interpolation_gif(tmp_path, vae, bounce, frames):
    a, b = blob(tmp_path / "a.png", top=1, left=1), blob(tmp_path / "b.png", top=10, left=9)
    result = ok(invoke("interpolate", a, b, "--steps", "6", *bounce, "-o", "anim.gif", *use(tmp_path)))
    assert f"Wrote {frames} frames to anim.gif" in result.stdout
    read = gif_frames(tmp_path / "anim.gif")
    assert len(read) == frames
    assert all(frame.shape == (SIDE, SIDE) for frame in read)  # 16 px × the default zoom of 6
    x = load(vae, a, b)
    expected = route_pictures(vae, torch.cat([encoded(vae, x[:1]), encoded(vae, x[1:])]), 6)
    order = list(range(6)) + ([4, 3, 2, 1] if not bounce else [])
    for frame, i in zip(read, order):
        assert np.array_equal(frame, render(expected[i:i + 1], nrow=1, pad=0))


def test_the_gif_frame_size_follows_zoom(tmp_path, vae):
    a, b = blob(tmp_path / "a.png", top=1, left=1), blob(tmp_path / "b.png", top=10, left=9)
    ok(invoke("interpolate", a, b, "--steps", "3", "--zoom", "3", "-o", "anim.gif", *use(tmp_path)))
    read = gif_frames(tmp_path / "anim.gif")
    assert len(read) == 3 + 1 and read[0].shape == (48, 48)


def test_interpolation_chains_more_than_two_images(tmp_path, vae):
    paths = [blob(tmp_path / f"{i}.png", top=1 + 5 * i, left=2 + 4 * i) for i in range(3)]
    ok(invoke("interpolate", *paths, "--steps", "4", "-o", "chain.png", *use(tmp_path)))
    strip = png(tmp_path / "chain.png")
    assert strip.shape == grid_size(1, 7)  # (3 − 1)·(4 − 1) + 1 pictures
    with torch.no_grad():
        recon = vae.reconstruct(load(vae, *paths))
    for i, at in enumerate((0, 3, 6)):
        assert_near(tile(strip, at, 7), render(recon[i:i + 1], nrow=1, pad=0))


def test_interpolation_with_an_autoencoder(tmp_path):
    ae = make_model(tmp_path / "ae.safetensors", autoencoder=True)
    a, b = blob(tmp_path / "a.png", top=1, left=1), blob(tmp_path / "b.png", top=10, left=9)
    ok(invoke("interpolate", a, b, "--steps", "5", "-o", "ae.png", *use(tmp_path, "ae.safetensors")))
    ok(invoke("interpolate", a, b, "--steps", "5", "-o", "ae.gif", *use(tmp_path, "ae.safetensors")))
    strip = png(tmp_path / "ae.png")
    with torch.no_grad():
        recon = ae.reconstruct(load(ae, a, b))
    assert_near(tile(strip, 0, 5), render(recon[:1], nrow=1, pad=0))
    assert_near(tile(strip, 4, 5), render(recon[1:], nrow=1, pad=0))
    assert len(gif_frames(tmp_path / "ae.gif")) == 5 + 3


def test_interpolation_between_inline_latents(tmp_path, vae):
    z = torch.tensor([[2.0, 0, 0, 0], [0, -2, 0.5, 0], [0, 0, 1, 2]])
    args = [a for row in z.tolist() for a in ("--z", ",".join(map(str, row)))]
    ok(invoke("interpolate", *args, "--steps", "3", "-o", "z.png", *use(tmp_path)))
    strip = png(tmp_path / "z.png")
    assert strip.shape == grid_size(1, 5)
    assert np.array_equal(strip, render(route_pictures(vae, z, 3), nrow=5))


def test_interpolation_between_latents_in_a_file(tmp_path, vae):
    a, b = blob(tmp_path / "a.png", top=1, left=1), blob(tmp_path / "b.png", top=10, left=9)
    ok(invoke("encode", a, b, "-o", "z.safetensors", *use(tmp_path)))
    ok(invoke("interpolate", "z.safetensors", "--steps", "4", "-o", "f.png", *use(tmp_path)))
    ok(invoke("interpolate", a, b, "--steps", "4", "-o", "i.png", *use(tmp_path)))
    strip = png(tmp_path / "f.png")
    assert strip.shape == grid_size(1, 4)
    assert_near(strip, png(tmp_path / "i.png"))


def test_interpolation_needs_two_points(tmp_path, vae):
    a = blob(tmp_path / "a.png")
    assert_clean_error(invoke("interpolate", a, "-o", "x.gif", *use(tmp_path)), "two or more", "1")
    assert_clean_error(invoke("interpolate", "--z", "0,0,0,0", "-o", "x.gif", *use(tmp_path)), "two or more")
    assert_clean_error(invoke("interpolate", "-o", "x.gif", *use(tmp_path)), "two or more")
    assert not (tmp_path / "x.gif").exists()


def test_interpolation_needs_two_steps(tmp_path, vae):
    result = invoke("interpolate", "--z", "0,0,0,0", "--z", "1,1,1,1", "--steps", "1", *use(tmp_path))
    assert_clean_error(result, "2 steps")


# -- traverse --------------------------------------------------------------------------------------

def traversal_pictures(model, start, dims, steps, span=3.0):
    offsets = torch.linspace(-span, span, steps)
    z = latents.traversal(start, dims, torch.zeros(steps))
    for row, d in enumerate(dims):
        z[row, :, d] = start[d] + offsets
    with torch.no_grad():
        return model.decode(z.reshape(-1, model.latent_dim))


def traverse_grid(path, rows, steps, side=SIDE):
    """The picture part of a traverse PNG (right of the row labels), as grey."""
    array = png(path)
    height, width = grid_size(rows, steps, side)
    assert array.shape[0] == height and array.shape[1] > width
    part = array[:, -width:]
    assert (part[..., 0] == part[..., 1]).all() and (part[..., 0] == part[..., 2]).all()
    return part[..., 0]


def test_traverse_draws_one_row_per_dimension(tmp_path, vae):
    result = ok(invoke("traverse", "--steps", "5", "-o", "t.png", *use(tmp_path)))
    assert "dimensions 0, 1, 2, 3 from z = 0, ±3 in 5 steps" in result.stdout
    grid = traverse_grid(tmp_path / "t.png", rows=4, steps=5)
    assert np.array_equal(grid, render(traversal_pictures(vae, torch.zeros(4), [0, 1, 2, 3], 5), nrow=5))


def test_traverse_orders_rows_by_the_recorded_kl(tmp_path):
    model = make_model(tmp_path / "k.safetensors", test_kl_per_dim=[0.1, 2.0, 0.0, 1.0])
    result = ok(invoke("traverse", "--steps", "3", "--range", "2", "-o", "t.png", *use(tmp_path, "k.safetensors")))
    assert "dimensions 1, 3, 0, 2 from z = 0, ±2 in 3 steps" in result.stdout
    grid = traverse_grid(tmp_path / "t.png", rows=4, steps=3)
    assert np.array_equal(grid, render(traversal_pictures(model, torch.zeros(4), [1, 3, 0, 2], 3, 2.0), nrow=3))


def test_traverse_shows_at_most_ten_dimensions(tmp_path):
    make_model(tmp_path / "w.safetensors", latent_dim=12, test_kl_per_dim=[float(d * 7 % 12) for d in range(12)])
    result = ok(invoke("traverse", "--steps", "2", "--zoom", "1", "-o", "t.png", *use(tmp_path, "w.safetensors")))
    assert "dimensions 5, 10, 3, 8, 1, 6, 11, 4, 9, 2 from" in result.stdout
    traverse_grid(tmp_path / "t.png", rows=10, steps=2, side=16)


def test_traverse_dims_chooses_the_rows(tmp_path, vae):
    result = ok(invoke("traverse", "--dims", "2,0", "--steps", "4", "-o", "t.png", *use(tmp_path)))
    assert "dimensions 2, 0 from" in result.stdout
    grid = traverse_grid(tmp_path / "t.png", rows=2, steps=4)
    assert np.array_equal(grid, render(traversal_pictures(vae, torch.zeros(4), [2, 0], 4), nrow=4))


@pytest.mark.parametrize("dims, fragment", [("4", "0 to 3"), ("0,-1", "0 to 3"), ("a", "--dims"), ("1.5", "--dims")])
def test_traverse_refuses_bad_dims(tmp_path, vae, dims, fragment):
    assert_clean_error(invoke("traverse", "--dims", dims, *use(tmp_path)), fragment)


@pytest.mark.parametrize("args, fragment", [(["--steps", "1"], "--steps"), (["--range", "0"], "--range"),
                                            (["--range", "-1"], "--range")])
def test_traverse_refuses_bad_settings(tmp_path, vae, args, fragment):
    assert_clean_error(invoke("traverse", *args, *use(tmp_path)), fragment)


@pytest.mark.parametrize("bounce, frames", [([], 5 + 3), (["--no-bounce"], 5)])
def test_a_traverse_gif(tmp_path, vae, bounce, frames):
    ok(invoke("traverse", "--steps", "5", *bounce, "-o", "t.gif", *use(tmp_path)))
    read = gif_frames(tmp_path / "t.gif")
    assert len(read) == frames
    assert read[0].shape == grid_size(1, 4)  # every dimension's picture side by side
    pictures = traversal_pictures(vae, torch.zeros(4), [0, 1, 2, 3], 5).reshape(4, 5, 1, 16, 16)
    order = list(range(5)) + ([3, 2, 1] if not bounce else [])
    for frame, i in zip(read, order):
        assert np.array_equal(frame, render(pictures[:, i], nrow=4))


def test_traverse_from_an_image(tmp_path, vae):
    a = blob(tmp_path / "a.png", top=2, left=9)
    result = ok(invoke("traverse", a, "--steps", "5", "--dims", "0,1,2,3", "-o", "t.png", *use(tmp_path)))
    assert "from the image" in result.stdout
    grid = traverse_grid(tmp_path / "t.png", rows=4, steps=5)
    x = load(vae, a)
    with torch.no_grad():
        centre = render(vae.reconstruct(x), nrow=1, pad=0)
    for row in range(4):
        assert_near(tile(grid, row * 5 + 2, 5), centre)  # offset 0 is the image's own reconstruction
    assert np.array_equal(grid, render(traversal_pictures(vae, encoded(vae, x)[0], [0, 1, 2, 3], 5), nrow=5))


def test_traverse_from_an_image_ranks_a_dead_dimension_last(tmp_path):
    # Without a recorded KL, the image's own posterior ranks the dimensions.
    make_model(tmp_path / "d.safetensors", dead=1, background="dark")
    a = blob(tmp_path / "a.png", top=2, left=9)
    result = ok(invoke("traverse", a, "--steps", "3", "-o", "t.png", *use(tmp_path, "d.safetensors")))
    listed = result.stdout.split("dimensions ")[1].split(" from")[0].split(", ")
    assert sorted(listed) == ["0", "1", "2", "3"] and listed[-1] == "1"


# -- sample ----------------------------------------------------------------------------------------

def prior_draw(n, latent_dim, seed):
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


def test_sample_writes_a_grid(tmp_path, vae):
    result = ok(invoke("sample", "-n", "16", "-o", "s.png", *use(tmp_path)))
    assert "Wrote s.png" in result.stdout
    grid = png(tmp_path / "s.png")
    assert grid.shape == grid_size(2, 8)
    with torch.no_grad():
        assert np.array_equal(grid, render(vae.decode(prior_draw(16, 4, 0))))


def test_sample_is_reproducible_by_seed(tmp_path, vae):
    for name, seed in (("a.png", 1), ("b.png", 1), ("c.png", 2)):
        ok(invoke("sample", "-n", "8", "--seed", seed, "-o", name, *use(tmp_path)))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert not np.array_equal(png(tmp_path / "a.png"), png(tmp_path / "c.png"))


def test_sample_temperature_scales_the_prior(tmp_path, vae):
    ok(invoke("sample", "-n", "8", "--temperature", "0.5", "-o", "t.png", *use(tmp_path)))
    ok(invoke("sample", "-n", "8", "-o", "s.png", *use(tmp_path)))
    with torch.no_grad():
        assert np.array_equal(png(tmp_path / "t.png"), render(vae.decode(0.5 * prior_draw(8, 4, 0))))
    assert not np.array_equal(png(tmp_path / "t.png"), png(tmp_path / "s.png"))


@pytest.mark.parametrize("args, fragment", [(["--temperature", "0"], "--temperature"),
                                            (["--temperature", "-1"], "--temperature"),
                                            (["-n", "0"], "-n")])
def test_sample_refuses_bad_settings(tmp_path, vae, args, fragment):
    assert_clean_error(invoke("sample", *args, "-o", "s.png", *use(tmp_path)), fragment)
    assert not (tmp_path / "s.png").exists()


def conditional(tmp_path):
    return make_model(tmp_path / "c.safetensors", "cvae", num_classes=3, options={"channels": [8, 16]})


def test_conditional_sample_draws_one_row_per_class(tmp_path):
    cvae = conditional(tmp_path)
    ok(invoke("sample", "-n", "6", "-o", "s.png", *use(tmp_path, "c.safetensors")))
    labelled = png(tmp_path / "s.png")
    height, width = grid_size(3, 2)
    grid, names = labelled[:, -width:, 0], labelled[:, :-width, 0]  # each row named by its class at the left
    assert labelled.shape[0] == height and (names < 100).sum() > 20
    z = prior_draw(2, 4, 0)  # the same z in every row; only the class changes
    with torch.no_grad():
        expected = render(cvae.decode(z.repeat(3, 1), torch.arange(3).repeat_interleave(2)), nrow=2)
    assert np.array_equal(grid, expected)
    rows = [tile(grid, 2 * k, 2) for k in range(3)]
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[1], rows[2])


def test_conditional_sample_of_one_class(tmp_path):
    cvae = conditional(tmp_path)
    ok(invoke("sample", "-n", "4", "--label", "1", "-o", "one.png", *use(tmp_path, "c.safetensors")))
    ok(invoke("sample", "-n", "4", "--label", "0", "-o", "zero.png", *use(tmp_path, "c.safetensors")))
    grid = png(tmp_path / "one.png")
    assert grid.shape == grid_size(1, 4)
    with torch.no_grad():
        assert np.array_equal(grid, render(cvae.decode(prior_draw(4, 4, 0), torch.ones(4, dtype=torch.long))))
    assert not np.array_equal(grid, png(tmp_path / "zero.png"))


@pytest.mark.parametrize("label", ["7", "3", "-1"])
def test_conditional_sample_refuses_a_label_outside_the_classes(tmp_path, label):
    conditional(tmp_path)
    result = invoke("sample", "-n", "4", "--label", label, "-o", "s.png", *use(tmp_path, "c.safetensors"))
    assert_clean_error(result, "0 to 2", label)


def test_a_label_for_an_unconditional_model(tmp_path, vae):
    assert_clean_error(invoke("sample", "--label", "1", *use(tmp_path)), "--label", "conditional")
    a, b = blob(tmp_path / "a.png"), blob(tmp_path / "b.png", top=9)
    assert_clean_error(invoke("encode", a, "--label", "1", *use(tmp_path)), "--label", "conditional")
    assert_clean_error(invoke("interpolate", a, b, "--label", "0", *use(tmp_path)), "--label", "conditional")
    assert_clean_error(invoke("decode", "--z", "0,0,0,0", "--label", "0", *use(tmp_path)), "--label")


def test_sample_manifold_of_a_2d_model(tmp_path):
    model = make_model(tmp_path / "m2.safetensors", latent_dim=2)
    ok(invoke("sample", "--manifold", "-n", "16", "-o", "grid.png", *use(tmp_path, "m2.safetensors")))
    grid = png(tmp_path / "grid.png")
    assert grid.shape == grid_size(4, 4)
    with torch.no_grad():
        assert np.array_equal(grid, render(model.decode(latents.manifold(4)), nrow=4))


def test_sample_manifold_needs_a_2d_latent(tmp_path, vae):
    assert_clean_error(invoke("sample", "--manifold", "-o", "g.png", *use(tmp_path)), "2-D", "4")
    assert not (tmp_path / "g.png").exists()


def test_sample_gif_walks_through_the_samples(tmp_path, vae):
    ok(invoke("sample", "-n", "3", "-o", "walk.gif", *use(tmp_path)))
    read = gif_frames(tmp_path / "walk.gif")
    assert len(read) == 3 * 11 + 1  # a loop through 3 samples, 12 pictures per segment, joints shared
    assert read[0].shape == (SIDE, SIDE)
    with torch.no_grad():
        first = vae.decode(prior_draw(3, 4, 0))
    assert_near(read[0], render(first[:1], nrow=1, pad=0))
    assert_near(read[11], render(first[1:2], nrow=1, pad=0))
    assert_near(read[-1], read[0])


# -- real image files ------------------------------------------------------------------------------

def test_images_of_any_size_and_colour_load_into_the_model_shape(tmp_path):
    Image.new("RGB", (50, 37), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (37, 50), 200).save(tmp_path / "grey.jpg", quality=100)
    Image.new("RGB", (23, 61), (10, 200, 30)).save(tmp_path / "green.jpg", quality=100)
    grey, names = images.load_images([tmp_path / "red.png", tmp_path / "grey.jpg"], (1, 16, 16), invert=False)
    assert grey.shape == (2, 1, 16, 16) and grey.dtype == torch.float32
    assert names == ["red.png", "grey.jpg"]
    # ITU-R 601 luma of pure red: 0.299 · 255 ≈ 76
    assert (grey[0] * 255).round().unique().tolist() == [76.0]
    assert (grey[1] * 255 - 200).abs().max() <= 1
    colour, _ = images.load_images([tmp_path / "grey.jpg", tmp_path / "green.jpg"], (3, 16, 16), invert=False)
    assert colour.shape == (2, 3, 16, 16)
    assert torch.equal(colour[0, 0], colour[0, 1]) and torch.equal(colour[0, 1], colour[0, 2])
    assert (colour[1, :, 8, 8] * 255 - torch.tensor([10.0, 200, 30])).abs().max() <= 3


def test_transparent_drawings_are_seen_on_white(tmp_path):
    rgba = np.zeros((30, 30, 4), dtype=np.uint8)  # transparent black ...
    rgba[10:20, 12:16] = (0, 0, 0, 255)  # ... around an opaque black stroke
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "ink.png")
    white = np.full((30, 30), 255, dtype=np.uint8)
    white[10:20, 12:16] = 0
    Image.fromarray(white, mode="L").save(tmp_path / "paper.png")
    la = Image.fromarray(rgba, mode="RGBA").convert("LA")
    la.save(tmp_path / "la.png")
    x, _ = images.load_images([tmp_path / n for n in ("ink.png", "la.png", "paper.png")], (1, 16, 16), invert=False)
    assert x[0].mean() > 0.7  # not black, as dropping the alpha channel would give
    assert torch.equal(x[0], x[2]) and torch.equal(x[1], x[2])


def test_the_cli_reads_images_of_other_sizes_and_modes(tmp_path, vae):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (50, 37), (255, 0, 0)).save(folder / "a.png")
    Image.new("L", (37, 50), 40).save(folder / "b.jpg")
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(folder / "c.png")
    Image.new("P", (17, 17), 3).save(folder / "d.gif")
    ok(invoke("encode", folder, "-o", "z.json", *use(tmp_path)))
    stored = latentfile.read(tmp_path / "z.json")
    assert stored.names == ["a.png", "b.jpg", "c.png", "d.gif"]
    assert stored.mean.shape == (4, 4) and np.isfinite(stored.mean).all()


def drawing_pair(tmp_path):
    """A black-ink drawing on white paper, and the same drawing inverted (white on black)."""
    paper = np.full((40, 40), 255, dtype=np.uint8)
    paper[8:32, 18:23] = 0
    paper[8:13, 12:23] = 0
    Image.fromarray(paper, mode="L").save(tmp_path / "ink.png")
    Image.fromarray(255 - paper, mode="L").save(tmp_path / "chalk.png")
    return tmp_path / "ink.png", tmp_path / "chalk.png"


def encode_one(tmp_path, image, *flags, model="m.safetensors"):
    ok(invoke("encode", image, *flags, "-o", "z.npy", "--force", *use(tmp_path, model)))
    return latentfile.read(tmp_path / "z.npy").mean[0]


def test_a_drawing_on_white_is_inverted_for_a_model_trained_on_dark_images(tmp_path, vae):
    ink, chalk = drawing_pair(tmp_path)
    automatic = encode_one(tmp_path, ink)
    as_chalk = encode_one(tmp_path, chalk, "--no-invert")
    as_ink = encode_one(tmp_path, ink, "--no-invert")
    np.testing.assert_allclose(automatic, as_chalk, rtol=1e-6, atol=1e-6)
    assert np.abs(automatic - as_ink).max() > 0.05  # the model does tell the two apart
    # a dark-background image is left alone, and --invert forces the flip
    np.testing.assert_allclose(encode_one(tmp_path, chalk), as_chalk, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(encode_one(tmp_path, chalk, "--invert"), as_ink, rtol=1e-6, atol=1e-6)


def test_inversion_follows_the_model_background(tmp_path):
    ink, chalk = drawing_pair(tmp_path)
    make_model(tmp_path / "light.safetensors", background="light")
    make_model(tmp_path / "plain.safetensors")  # no background recorded: never inverted
    light = encode_one(tmp_path, chalk, model="light.safetensors")
    np.testing.assert_allclose(light, encode_one(tmp_path, ink, "--no-invert", model="light.safetensors"),
                               rtol=1e-6, atol=1e-6)
    plain = encode_one(tmp_path, ink, model="plain.safetensors")
    np.testing.assert_allclose(plain, encode_one(tmp_path, ink, "--no-invert", model="plain.safetensors"),
                               rtol=1e-6, atol=1e-6)
    assert np.abs(plain - encode_one(tmp_path, chalk, "--no-invert", model="plain.safetensors")).max() > 0.05


def test_interpolate_and_traverse_invert_too(tmp_path, vae):
    ink, chalk = drawing_pair(tmp_path)
    other = blob(tmp_path / "b.png", top=2, left=2)
    for source, flags, name in ((ink, [], "auto"), (chalk, ["--no-invert"], "chalk"), (ink, ["--no-invert"], "ink")):
        ok(invoke("interpolate", source, other, "--steps", "3", *flags, "-o", f"i-{name}.png", *use(tmp_path)))
        ok(invoke("traverse", source, "--steps", "3", *flags, "-o", f"t-{name}.png", *use(tmp_path)))
    for kind in ("i", "t"):
        auto = png(tmp_path / f"{kind}-auto.png")
        assert_near(auto, png(tmp_path / f"{kind}-chalk.png"))
        assert not np.array_equal(auto, png(tmp_path / f"{kind}-ink.png"))


# -- bad input: one line, no traceback -----------------------------------------------------------------

def test_a_file_that_is_not_an_image(tmp_path, vae):
    (tmp_path / "x.png").write_text("this is text, not a PNG")
    other = blob(tmp_path / "b.png")
    assert_clean_error(invoke("encode", "x.png", *use(tmp_path)), "x.png", "not an image")
    assert_clean_error(invoke("interpolate", "x.png", other, *use(tmp_path)), "x.png", "not an image")
    assert_clean_error(invoke("traverse", "x.png", *use(tmp_path)), "x.png", "not an image")


def test_a_folder_without_images(tmp_path, vae):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    assert_clean_error(invoke("encode", "empty", *use(tmp_path)), "empty", "no images")


def test_a_missing_path(tmp_path, vae):
    other = blob(tmp_path / "b.png")
    assert_clean_error(invoke("encode", "nowhere.png", *use(tmp_path)), "nowhere.png")
    assert_clean_error(invoke("interpolate", "nowhere.png", other, *use(tmp_path)), "nowhere.png")
    assert_clean_error(invoke("traverse", "nowhere.png", *use(tmp_path)), "nowhere.png")
    assert_clean_error(invoke("decode", "nowhere.npy", *use(tmp_path)), "nowhere.npy")
    assert_clean_error(invoke("interpolate", "nowhere.json", other, *use(tmp_path)), "nowhere.json")


def test_a_latent_of_the_wrong_size(tmp_path, vae):
    assert_clean_error(invoke("decode", "--z", "1,2", *use(tmp_path)), "4 dimensions", "2")
    assert_clean_error(invoke("decode", "--z", "1,2,3,4", "--z", "1,2", *use(tmp_path)), "same number")
    assert_clean_error(invoke("interpolate", "--z", "1,2", "--z", "3,4", *use(tmp_path)), "4 dimensions")


def test_inline_latents_of_different_sizes_for_interpolate(tmp_path, vae):
    result = invoke("interpolate", "--z", "1,2,3,4", "--z", "1,2", *use(tmp_path))
    assert_clean_error(result, "4 dimensions")


def test_a_latent_file_of_the_wrong_width(tmp_path, vae):
    np.save(tmp_path / "narrow.npy", np.zeros((2, 3), dtype=np.float32))
    latentfile.write(tmp_path / "wide.json", latentfile.Latents(np.zeros((2, 5), dtype=np.float32)))
    assert_clean_error(invoke("decode", "narrow.npy", *use(tmp_path)), "4 dimensions", "3")
    assert_clean_error(invoke("decode", "wide.json", *use(tmp_path)), "4 dimensions", "5")
    assert_clean_error(invoke("interpolate", "narrow.npy", *use(tmp_path)), "4 dimensions")


def test_a_non_numeric_latent_for_decode(tmp_path, vae):
    assert_clean_error(invoke("decode", "--z", "1,a,3,4", *use(tmp_path)), "--z")
    assert_clean_error(invoke("decode", "--z", "abc", *use(tmp_path)), "--z")


def test_a_non_numeric_latent_for_interpolate(tmp_path, vae):
    result = invoke("interpolate", "--z", "1,a,3,4", "--z", "0,0,0,0", *use(tmp_path))
    assert_clean_error(result, "--z")


def test_a_non_finite_latent(tmp_path, vae):
    latentfile.write(tmp_path / "inf.csv", latentfile.Latents(np.array([[0, np.inf, 0, 0]], dtype=np.float32)))
    assert_clean_error(invoke("decode", "inf.csv", *use(tmp_path)), "finite")


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_corrupt_latent_file(tmp_path, vae, suffix):
    (tmp_path / f"z{suffix}").write_bytes(b"\x93NUMPY garbage \x00\xff" * 4)
    assert_clean_error(invoke("decode", f"z{suffix}", *use(tmp_path)), f"z{suffix}")


def test_an_empty_latent_file(tmp_path, vae):
    (tmp_path / "z.npy").write_bytes(b"")
    assert_clean_error(invoke("decode", "z.npy", *use(tmp_path)), "z.npy")


@pytest.mark.parametrize("command", [["sample"], ["interpolate", "--z", "0,0,0,0", "--z", "1,1,1,1"], ["traverse"],
                                     ["decode", "--z", "0,0,0,0"]])
def test_an_unsupported_picture_format(tmp_path, vae, command):
    assert_clean_error(invoke(*command, "-o", "out.bmp", *use(tmp_path)), "out.bmp", ".png")
    assert not (tmp_path / "out.bmp").exists()


def test_an_unsupported_latent_or_plot_format(tmp_path, vae):
    a = blob(tmp_path / "a.png")
    assert_clean_error(invoke("encode", a, "-o", "z.txt", *use(tmp_path)), "z.txt", ".npy")
    assert_clean_error(invoke("encode", a, "--plot", "p.jpg", *use(tmp_path)), "p.jpg", ".png")
    assert not (tmp_path / "z.txt").exists() and not (tmp_path / "p.jpg").exists()
    # --plot without its file takes the next flag as one: said as that, not "-o: the output must end in .png".
    assert_clean_error(invoke("encode", a, "--plot", "-o", "z.npy", *use(tmp_path)), "--plot takes the file", "'-o'")


@pytest.mark.parametrize("command", [["encode", "a.png"], ["decode", "--z", "0,0,0,0"], ["sample"],
                                     ["interpolate", "a.png", "a.png"], ["traverse"]])
def test_no_trained_model(tmp_path, command):
    blob(tmp_path / "a.png")
    (tmp_path / "runs").mkdir()
    error = assert_clean_error(invoke(*command, "--runs-dir", tmp_path / "runs", "--device", "cpu"), "No trained model")
    assert "vaetool train" in error and "--model" in error


def test_the_latest_run_is_used_without_model(tmp_path, vae):
    (tmp_path / "runs" / "r").mkdir(parents=True)
    vaetool.save(vae, tmp_path / "runs" / "r")
    ok(invoke("sample", "-n", "4", "-o", "s.png", "--device", "cpu", "--runs-dir", tmp_path / "runs"))
    ok(invoke("sample", "-n", "4", "-o", "t.png", *use(tmp_path)))
    assert (tmp_path / "s.png").read_bytes() == (tmp_path / "t.png").read_bytes()


@pytest.mark.parametrize("content", [b"", b"not a model at all" * 10])
def test_a_corrupt_model_file(tmp_path, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    assert_clean_error(invoke("sample", *use(tmp_path, "bad.safetensors")), "bad.safetensors")
    assert_clean_error(invoke("decode", "--z", "0", *use(tmp_path, "bad.safetensors")), "bad.safetensors")


def test_a_latent_file_is_not_a_model(tmp_path):
    latentfile.write(tmp_path / "z.safetensors", latentfile.Latents(np.zeros((2, 4), dtype=np.float32)))
    assert_clean_error(invoke("sample", *use(tmp_path, "z.safetensors")), "z.safetensors")


def test_a_missing_model_file(tmp_path):
    assert_clean_error(invoke("sample", *use(tmp_path, "absent.safetensors")), "absent.safetensors")


def test_a_json_latent_file_written_by_hand(tmp_path, vae):
    # The documented layout, typed by a person: no log_var-free shortcut is needed beyond nulls.
    items = [{"name": "p", "label": -1, "mean": [1, 0, 0, 0], "log_var": [None] * 4},
             {"name": "q", "label": -1, "mean": [0, 0, 0, -1.5], "log_var": [0, 0, 0, 0]}]
    (tmp_path / "hand.json").write_text(json.dumps({"latent_dim": 4, "items": items}))
    ok(invoke("decode", "hand.json", "-o", "h.png", *use(tmp_path)))
    with torch.no_grad():
        expected = render(vae.decode(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, -1.5]])))
    assert np.array_equal(png(tmp_path / "h.png"), expected)


def test_encode_of_the_models_own_dataset_uses_the_options_it_was_trained_with(tmp_path):
    # Trained on 16×16 shapes: the default shapes size (32) would not fit the model.
    options = {"size": 16, "n_train": 32, "n_test": 16, "seed": 0, "grid": False}
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=4,
                           architecture_options={"hidden": [8]}, dataset="shapes", dataset_options=options)
    vaetool.save(model, tmp_path / "m.safetensors")
    result = ok(invoke("encode", "--data", "shapes", "--limit", "5", "-o", tmp_path / "z.json",
                       "--model", tmp_path / "m.safetensors", "--device", "cpu"))
    assert "Wrote 5 latents" in result.stdout


def _shapes_model(tmp_path):
    options = {"size": 16, "n_train": 32, "n_test": 64, "seed": 0, "grid": False}
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=3,
                           architecture_options={"hidden": [8]}, dataset="shapes", dataset_options=options)
    vaetool.save(model, tmp_path / "shapes.safetensors")
    return tmp_path / "shapes.safetensors"


def test_traverse_names_the_factor_each_dimension_captures(tmp_path):
    path = _shapes_model(tmp_path)
    result = ok(invoke("traverse", "-o", tmp_path / "t.png", "--model", path, "--device", "cpu"))
    names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert sum(f"({name})" in result.stdout for name in names) >= 1, result.stdout
    plain = ok(invoke("traverse", "-o", tmp_path / "t.png", "--model", path, "--device", "cpu", "--no-factors"))
    assert not any(f"({name})" in plain.stdout for name in names)


def test_traverse_factors_insisted_on_says_why_there_are_none(tmp_path):
    """The default labels rows only where the dataset has factors; --factors insists, in one sentence."""
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 28, 28), latent_dim=3,
                           architecture_options={"hidden": [8]}, dataset="mnist")
    vaetool.save(model, tmp_path / "mnist.safetensors")
    plain = ok(invoke("traverse", "-o", tmp_path / "t.png", "--model", tmp_path / "mnist.safetensors",
                      "--device", "cpu"))
    assert "dimensions 0, 1, 2 from" in plain.stdout
    error = assert_clean_error(invoke("traverse", "-o", tmp_path / "u.png", "--model", tmp_path / "mnist.safetensors",
                                      "--device", "cpu", "--factors"))
    assert "mnist, has no ground-truth factors" in error and not (tmp_path / "u.png").exists()


def test_traverse_reads_factors_from_its_data_dir(tmp_path):
    """A dataset read from a file (dsprites) is looked for under --data-dir, and named when it is not there."""
    from test_dsprites import write_fake

    write_fake(tmp_path / "data" / "dsprites")
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 64, 64), latent_dim=3,
                           architecture_options={"hidden": [8]}, dataset="dsprites")
    vaetool.save(model, tmp_path / "d.safetensors")
    args = ("traverse", "--model", tmp_path / "d.safetensors", "--device", "cpu", "--factors")
    labelled = ok(invoke(*args, "-o", tmp_path / "t.png", "--data-dir", tmp_path / "data"))
    assert any(f"({name})" in labelled.stdout for name in ("shape", "scale", "orientation", "pos_x", "pos_y"))
    error = assert_clean_error(invoke(*args, "-o", tmp_path / "u.png", "--data-dir", tmp_path / "empty"))
    assert "dsprites, cannot be loaded here" in error and "dsprites_ndarray" in error


@pytest.mark.parametrize("command", [
    ("decode", "--z", "0,0,0,0,0"),                    # 5 numbers for a 3-D latent: refused
    ("traverse",),
    ("sample", "-n", "2"),
])
def test_the_latest_run_is_named_at_once_when_model_is_left_out(tmp_path, command):
    """Every command that falls back on the latest run says so first, on stderr, even when it then refuses."""
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=3, architecture_options={"hidden": [8]})
    vaetool.save(model, run / "model.safetensors")
    result = invoke(*command, "-o", tmp_path / "out.png", "--runs-dir", tmp_path / "runs", "--device", "cpu",
                    *(["--no-factors"] if command[0] == "traverse" else []))
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"Using the latest run, {run} (--model picks another).", result.output
    if command[0] == "decode":
        assert result.exit_code == 2 and lines[1].startswith("Error: ") and len(lines) == 2
    else:
        assert result.exit_code == 0 and (tmp_path / "out.png").is_file()
