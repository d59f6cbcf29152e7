"""Latent-space operations (interpolation, traversal, the 2-D manifold, per-dimension KL) and latent files."""
from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest
import torch

import vaetool
from vaetool import latentfile, latents
from vaetool.errors import VaetoolError
from vaetool.latentfile import Latents


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# -- lerp and slerp --------------------------------------------------------------------------------

T = torch.linspace(0, 1, 11)


def test_lerp_hits_its_endpoints_and_moves_in_a_straight_line():
    a, b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 4.0, -1.0])
    points = latents.lerp(a, b, T)
    assert points.shape == (11, 3)
    assert torch.equal(points[0], a) and torch.equal(points[-1], b)
    close(points[5], (a + b) / 2)
    close(points[1:] - points[:-1], ((b - a) / 10).expand(10, 3))  # equal steps along one direction


def test_slerp_with_equal_norms_stays_on_the_sphere():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    b = b / b.norm() * a.norm()
    points = latents.slerp(a, b, T)
    close(points.norm(dim=1), a.norm().expand(11))
    close(points[0], a)
    close(points[-1], b)


def test_slerp_moves_the_norm_linearly_and_the_angle_evenly():
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])  # norms 3 and 1, 90° apart
    points = latents.slerp(a, b, T)
    close(points.norm(dim=1), (1 - T) * 3 + T * 1)
    angles = torch.atan2(points[:, 1], points[:, 0])
    close(angles, T * torch.pi / 2)  # constant angular speed along the great circle
    close(points[0], a)
    close(points[-1], b)


def test_slerp_differs_from_lerp_between_its_endpoints():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    s, l = latents.slerp(a, b, T), latents.lerp(a, b, T)
    close(s[0], l[0])
    close(s[-1], l[-1])
    assert not torch.allclose(s[5], l[5])
    # lerp cuts through the low-density region near the origin; slerp keeps the norm
    assert l[5].norm() < 1.5 < s[5].norm()


def test_slerp_of_parallel_or_zero_vectors_is_lerp():
    a = torch.tensor([1.0, 2.0])
    for b in (2 * a, torch.zeros(2)):
        close(latents.slerp(a, b, T), latents.lerp(a, b, T))


# -- paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["slerp", "lerp"])
@pytest.mark.parametrize("k, steps", [(2, 2), (2, 7), (3, 5), (5, 4)])
def test_a_path_runs_through_every_point_in_order(method, k, steps):
    points = torch.randn(k, 6, generator=torch.Generator().manual_seed(k * 10 + steps))
    route = latents.path(points, steps, method)
    assert route.shape == ((k - 1) * (steps - 1) + 1, 6)
    for i in range(k):
        close(route[i * (steps - 1)], points[i])
    # the joints are shared, not repeated: no two consecutive latents are the same
    assert ((route[1:] - route[:-1]).norm(dim=1) > 1e-3).all()


def test_path_segments_use_the_chosen_method():
    points = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    close(latents.path(points, 11, "lerp"), latents.lerp(points[0], points[1], T))
    close(latents.path(points, 11, "slerp"), latents.slerp(points[0], points[1], T))


@pytest.mark.parametrize("points, steps, method, fragment", [
    (torch.zeros(2, 3), 5, "cubic", "slerp, lerp"),
    (torch.zeros(1, 3), 5, "slerp", "two points"),
    (torch.zeros(0, 3), 5, "lerp", "two points"),
    (torch.ones(2, 3), 1, "slerp", "2 steps"),
    (torch.ones(2, 3), 0, "lerp", "2 steps"),
])
def test_bad_path_arguments(points, steps, method, fragment):
    with pytest.raises(VaetoolError, match=fragment):
        latents.path(points, steps, method)


# -- traversal -------------------------------------------------------------------------------------

def test_a_traversal_changes_only_the_chosen_dimension_in_each_row():
    start = torch.tensor([0.5, -1.0, 2.0, 0.25, 3.0])
    values = torch.linspace(-2, 2, 7)
    dims = [3, 0, 4]
    z = latents.traversal(start, dims, values)
    assert z.shape == (3, 7, 5)
    for row, d in enumerate(dims):
        assert torch.equal(z[row, :, d], values)
        others = [i for i in range(5) if i != d]
        assert torch.equal(z[row][:, others], start[others].expand(7, 4))
    assert torch.equal(start, torch.tensor([0.5, -1.0, 2.0, 0.25, 3.0]))  # the start is not modified


@pytest.mark.parametrize("dims", [[4], [-1], [0, 7]])
def test_traversal_refuses_dimensions_out_of_range(dims):
    with pytest.raises(VaetoolError, match="0 to 3"):
        latents.traversal(torch.zeros(4), dims, torch.linspace(-1, 1, 3))


# -- the 2-D manifold --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5])
def test_the_manifold_is_a_grid_of_prior_quantiles(n):
    z = latents.manifold(n)
    assert z.shape == (n * n, 2)
    expected = torch.tensor([NormalDist().inv_cdf(q) for q in np.linspace(0.05, 0.95, n)], dtype=torch.float32)
    grid = z.reshape(n, n, 2)  # (row, column, coordinate) as the picture lays it out
    for r in range(n):
        close(grid[r, :, 0], expected)  # x increases left to right in every row
        close(grid[r, :, 1], expected[n - 1 - r].expand(n))  # y is constant along a row ...
    assert (grid[1:, 0, 1] < grid[:-1, 0, 1]).all()  # ... and decreases down the rows
    close(expected, -expected.flip(0))  # the grid is symmetric about 0
    close(z.sum(0), torch.zeros(2))


def test_the_manifold_quantile_range_can_be_chosen():
    z = latents.manifold(3, low=0.1, high=0.9)
    close(z[:, 0].max(), torch.tensor(NormalDist().inv_cdf(0.9)))
    close(z[:, 1].min(), torch.tensor(NormalDist().inv_cdf(0.1)))


# -- per-dimension KL ------------------------------------------------------------------------------

def model_with_a_dead_dimension(dead: int, latent_dim: int = 4, autoencoder: bool = False):
    """An mlp VAE whose encoder outputs mean 0 and log-variance 0 (the prior) for one dimension."""
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 16, 16), latent_dim=latent_dim,
                           architecture_options={"hidden": [32]}, autoencoder=autoencoder).eval()
    last = model.architecture.net.encoder[-1]  # outputs [mean (L), log-variance (L)]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # an untrained model's posterior is close to the prior everywhere; spread it out
        for row in (dead, latent_dim + dead):
            last.weight[row] = 0
            last.bias[row] = 0
    return model


@pytest.mark.parametrize("dead", [0, 2])
def test_kl_per_dimension_finds_a_dead_dimension(dead):
    model = model_with_a_dead_dimension(dead)
    images = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    kl = latents.kl_per_dimension(model, images)
    assert kl.shape == (4,)
    assert kl[dead].abs() < 1e-6
    alive = [d for d in range(4) if d != dead]
    assert (kl[alive] > 1e-3).all()
    assert kl.argsort(descending=True)[-1].item() == dead  # ranked last
    # the definition: the average over images of each dimension's KL(q(z|x) ‖ N(0, I))
    close(kl, model.encode(images).kl().mean(0))


@pytest.mark.parametrize("autoencoder", [False, True], ids=["vae", "autoencoder"])
def test_kl_per_dimension_is_the_same_in_any_batch_size(autoencoder):
    # 23 images in batches of 5: the last batch holds 3. The batch size is a memory setting only.
    model = model_with_a_dead_dimension(1, autoencoder=autoencoder)
    images = torch.rand(23, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    close(latents.kl_per_dimension(model, images, batch_size=5), latents.kl_per_dimension(model, images))


def test_kl_per_dimension_of_an_autoencoder_ranks_by_the_code_variance():
    model = model_with_a_dead_dimension(3, autoencoder=True)
    images = torch.rand(30, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    score = latents.kl_per_dimension(model, images)
    assert torch.isfinite(score).all()
    assert score[3].abs() < 1e-10 and (score[:3] > 0).all()
    close(score, model.encode(images).mean.var(0, unbiased=False))


def test_kl_per_dimension_of_a_conditional_model_uses_the_labels():
    torch.manual_seed(0)
    model = vaetool.create("cvae", "bernoulli", input_shape=(1, 16, 16), latent_dim=3, num_classes=3,
                           architecture_options={"backbone": "mlp", "hidden": [32]}).eval()
    images = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    labels = torch.arange(12) % 3
    kl = latents.kl_per_dimension(model, images, labels, batch_size=5)
    close(kl, model.encode(images, labels).kl().mean(0))
    assert not torch.allclose(kl, latents.kl_per_dimension(model, images, torch.zeros(12, dtype=torch.long)))


# -- latent files ----------------------------------------------------------------------------------

FORMATS = [".npy", ".csv", ".json", ".safetensors"]


def example_latents(with_log_var: bool = True) -> Latents:
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 3)).astype(np.float32)
    mean[0, 0] = 1 / 3  # not exactly representable in decimal: round-trips only if written in full
    log_var = rng.normal(size=(4, 3)).astype(np.float32) if with_log_var else None
    return Latents(mean, log_var, np.array([2, -1, 0, 7]), ["a.png", "b, with a comma.jpg", "ünï cödé", "3"])


def assert_same(read: Latents, written: Latents):
    np.testing.assert_array_equal(read.mean, written.mean)
    np.testing.assert_array_equal(read.log_var, written.log_var)  # NaN matches NaN here
    np.testing.assert_array_equal(read.labels, written.labels)
    assert list(read.names) == list(written.names)
    assert read.mean.dtype == np.float32


@pytest.mark.parametrize("suffix", FORMATS)
def test_latent_files_round_trip(tmp_path, suffix):
    written = example_latents()
    latentfile.write(tmp_path / f"z{suffix}", written)
    assert_same(latentfile.read(tmp_path / f"z{suffix}"), written)


@pytest.mark.parametrize("suffix", FORMATS)
def test_latent_files_keep_the_missing_variance_of_an_autoencoder(tmp_path, suffix):
    written = example_latents(with_log_var=False)
    assert np.isnan(written.log_var).all()
    latentfile.write(tmp_path / f"z{suffix}", written)
    read = latentfile.read(tmp_path / f"z{suffix}")
    assert read.log_var.shape == (4, 3) and np.isnan(read.log_var).all()
    assert_same(read, written)


def test_defaults_for_labels_names_and_log_var():
    latent = Latents(np.zeros((3, 2), dtype=np.float32))
    assert latent.labels.tolist() == [-1, -1, -1]
    assert latent.names == ["0", "1", "2"]
    assert latent.log_var.shape == (3, 2) and np.isnan(latent.log_var).all()


def test_npy_latents_load_without_pickle(tmp_path):
    latentfile.write(tmp_path / "z.npy", example_latents())
    array = np.load(tmp_path / "z.npy", allow_pickle=False)
    assert set(array.dtype.names) == {"name", "label", "mean", "log_var"}
    np.testing.assert_array_equal(array["mean"], example_latents().mean)
    assert array["name"][2] == "ünï cödé"


def test_json_latents_are_plain_json(tmp_path):
    latentfile.write(tmp_path / "z.json", example_latents(with_log_var=False))
    data = json.loads((tmp_path / "z.json").read_text())  # NaN is written as null, not as invalid JSON
    assert data["latent_dim"] == 3 and len(data["items"]) == 4
    assert data["items"][1]["log_var"] == [None, None, None] and data["items"][1]["name"] == "b, with a comma.jpg"


def test_a_plain_array_of_latents_is_readable(tmp_path):
    values = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.save(tmp_path / "plain.npy", values)
    read = latentfile.read(tmp_path / "plain.npy")
    np.testing.assert_array_equal(read.mean, values.astype(np.float32))
    assert read.labels.tolist() == [-1, -1, -1] and np.isnan(read.log_var).all()


@pytest.mark.parametrize("name, text", [("z.csv", "0.5,-1,2e-1\n3,4,5\n"), ("z.json", "[[0.5, -1, 0.2], [3, 4, 5]]")])
def test_rows_of_numbers_alone_are_readable(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    read = latentfile.read(tmp_path / name)
    assert not read.discrete and read.plain
    np.testing.assert_array_equal(read.mean, np.array([[0.5, -1, 0.2], [3, 4, 5]], dtype=np.float32))
    assert read.labels.tolist() == [-1, -1] and np.isnan(read.log_var).all()
    # Whole numbers alone are codes, and become means for a model that takes those.
    (tmp_path / name).write_text(text.replace("0.5", "1").replace("2e-1", "2").replace("0.2", "2"))
    read = latentfile.read(tmp_path / name)
    assert read.discrete and read.codes.tolist() == [[1, -1, 2], [3, 4, 5]]
    means = latentfile.as_kind(read, discrete=False, path=tmp_path / name)
    assert not means.discrete and means.mean.tolist() == [[1, -1, 2], [3, 4, 5]]


def test_a_single_json_row_is_one_latent(tmp_path):
    (tmp_path / "z.json").write_text("[0.25, 1.5]")
    assert latentfile.read(tmp_path / "z.json").mean.tolist() == [[0.25, 1.5]]


def test_a_file_written_by_encode_is_never_reinterpreted(tmp_path):
    latentfile.write(tmp_path / "z.json", Latents.of_codes(np.zeros((2, 3), dtype=np.int64)))
    read = latentfile.read(tmp_path / "z.json")
    assert not read.plain and latentfile.as_kind(read, discrete=False, path=tmp_path / "z.json") is read


@pytest.mark.parametrize("name, text, fragment", [
    ("z.csv", "1,2\n3\n", "rows of 1 to 2 numbers"),
    ("z.csv", "a,b\n1,2\n", "header without mean_0"),
    ("z.csv", "", "is empty"),
    ("z.json", "[[1, true]]", "something other than numbers"),
    ("z.json", "[[1, 2], [3]]", "rows of 1 to 2 numbers"),
    ("z.json", "[]", "no rows of numbers"),
    ("z.json", '"x"', "holds a string"),
])
def test_bad_rows_of_numbers_are_one_sentence(tmp_path, name, text, fragment):
    (tmp_path / name).write_text(text)
    with pytest.raises(VaetoolError, match=fragment):
        latentfile.read(tmp_path / name)


@pytest.mark.parametrize("name", ["z.txt", "z", "z.pkl"])
def test_an_unknown_extension_is_refused_on_both_sides(tmp_path, name):
    with pytest.raises(VaetoolError, match="npy"):
        latentfile.write(tmp_path / name, example_latents())
    assert not (tmp_path / name).exists()
    (tmp_path / name).write_text("0,1\n")
    with pytest.raises(VaetoolError, match="npy"):
        latentfile.read(tmp_path / name)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("content", [b"", b"\x00\xff\x13garbage\x80\x81 not a latent file \xfe" * 3])
def test_a_corrupt_latent_file_is_a_clear_error(tmp_path, suffix, content):
    path = tmp_path / f"z{suffix}"
    path.write_bytes(content)
    with pytest.raises(VaetoolError, match="z"):
        latentfile.read(path)


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_truncated_latent_file_is_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"z{suffix}"
    latentfile.write(path, example_latents())
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(VaetoolError):
        latentfile.read(path)


def test_a_missing_latent_file(tmp_path):
    with pytest.raises(VaetoolError, match="no latent file"):
        latentfile.read(tmp_path / "absent.json")
