"""The Shapes dataset: dSprites factors, deterministic rendering, sprites that look right."""
import math

import pytest
import torch

from vaetool.contracts import Split
from vaetool.datasets.shapes import Shapes, factor_values, grid_indices, indices_to_values, render
from vaetool.errors import VaetoolError

GRID_SIZE = 3 * 6 * 40 * 32 * 32
SQUARE, ELLIPSE, HEART = 0, 1, 2


def _draw(rows, size=32):
    """Render (shape, scale, orientation, pos_x, pos_y) rows as a bool (N, size, size) mask."""
    return render(torch.tensor(rows, dtype=torch.float32), size)[:, 0] > 0


def _centroid(mask):
    rows, cols = mask.nonzero(as_tuple=True)
    return rows.float().mean().item(), cols.float().mean().item()


def test_attributes_describe_the_dsprites_grid():
    ds = Shapes(size=64)
    assert ds.image_shape == (1, 64, 64)
    assert ds.num_classes == 3 and ds.class_names == ("square", "ellipse", "heart")
    assert ds.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert list(ds.factor_values) == list(ds.factor_names)
    assert [len(v) for v in ds.factor_values.values()] == [3, 6, 40, 32, 32]
    values = ds.factor_values
    assert values["scale"][0] == 0.5 and values["scale"][-1] == 1.0
    assert values["orientation"][-1].item() == pytest.approx(2 * math.pi)
    assert values["pos_x"][0] == 0 and values["pos_y"][-1] == 1


def test_split_has_the_promised_types_and_values():
    ds = Shapes(size=32, n_train=300, n_test=40, seed=1)
    train, test = ds.load("train", None), ds.load("test", None)
    assert isinstance(train, Split) and len(train) == 300 and len(test) == 40
    assert train.images.dtype == torch.uint8 and train.images.shape == (300, 1, 32, 32)
    assert set(train.images.unique().tolist()) == {0, 255}
    assert train.labels.dtype == torch.int64 and train.labels.shape == (300,)
    assert train.factors.dtype == torch.float32 and train.factors.shape == (300, 5)
    assert torch.equal(train.labels.float(), train.factors[:, 0])
    for column, values in enumerate(ds.factor_values.values()):
        distance = (train.factors[:, column, None] - values[None, :]).abs().min(dim=1).values
        assert distance.max() < 1e-6
    # Every image shows a sprite, and it is the sprite its factors describe.
    assert (train.images.flatten(1) > 0).any(dim=1).all()
    assert torch.equal(train.images, render(train.factors, 32))


def test_same_seed_same_data_other_seed_other_data():
    a = Shapes(size=16, n_train=200, n_test=50, seed=7).load("train", None)
    b = Shapes(size=16, n_train=200, n_test=50, seed=7).load("train", None)
    c = Shapes(size=16, n_train=200, n_test=50, seed=8).load("train", None)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors) and not torch.equal(a.images, c.images)


def test_train_and_test_are_disjoint_draws():
    ds = Shapes(n_train=5000, n_test=1000, seed=3)
    flat = {tuple(row) for row in ds.split_indices("train").tolist()}
    test = {tuple(row) for row in ds.split_indices("test").tolist()}
    assert len(flat) == 5000 and len(test) == 1000 and not flat & test
    # Uniform over the grid: every shape and scale turns up in roughly equal numbers.
    indices = ds.split_indices("train")
    assert torch.bincount(indices[:, 0], minlength=3).min() > 5000 / 3 * 0.85
    assert torch.bincount(indices[:, 1], minlength=6).min() > 5000 / 6 * 0.8


def test_grid_indices_follow_dsprites_order():
    grid = grid_indices()
    assert grid.shape == (GRID_SIZE, 5)
    assert grid[0].tolist() == [0, 0, 0, 0, 0]
    assert grid[1].tolist() == [0, 0, 0, 0, 1]  # pos_y fastest
    assert grid[32].tolist() == [0, 0, 0, 1, 0]
    assert grid[32 * 32].tolist() == [0, 0, 1, 0, 0]
    assert grid[-1].tolist() == [2, 5, 39, 31, 31]
    s, sc, o, x, y = grid[123_457].tolist()
    assert (((s * 6 + sc) * 40 + o) * 32 + x) * 32 + y == 123_457
    values = indices_to_values(grid[[0, -1]])
    assert values[1].tolist() == pytest.approx([2, 1, 2 * math.pi, 1, 1])


def test_grid_mode_splits_the_whole_grid_ten_percent_test():
    ds = Shapes(size=16, grid=True, n_train=5, n_test=5, seed=0)
    train, test = ds.split_indices("train"), ds.split_indices("test")
    assert len(test) == GRID_SIZE // 10 and len(train) + len(test) == GRID_SIZE
    flat = lambda i: (((i[:, 0] * 6 + i[:, 1]) * 40 + i[:, 2]) * 32 + i[:, 3]) * 32 + i[:, 4]
    everything = torch.cat([flat(train), flat(test)]).sort().values
    assert torch.equal(everything, torch.arange(GRID_SIZE))
    assert (flat(test).diff() > 0).all()  # kept in dSprites order
    assert not torch.equal(test, Shapes(size=16, grid=True, seed=1).split_indices("test"))
    split = ds.load("test", None)
    assert split.images.shape == (GRID_SIZE // 10, 1, 16, 16)
    assert torch.equal(split.factors, indices_to_values(test))


@pytest.mark.parametrize("size", [16, 32, 64])
def test_largest_sprites_stay_inside_the_frame(size):
    values = factor_values()
    rows = [[shape, 1.0, angle, x, y] for shape in range(3) for angle in values["orientation"].tolist()
            for x in (0.0, 1.0) for y in (0.0, 1.0)]
    masks = _draw(rows, size)
    border = masks[:, 0, :].any(1) | masks[:, -1, :].any(1) | masks[:, :, 0].any(1) | masks[:, :, -1].any(1)
    assert not border.any()
    assert masks.flatten(1).any(1).all()
    # ...yet the frame is used: a square corner at pos 0 comes within a few pixels of the edge.
    corner = _draw([[SQUARE, 1.0, math.pi / 4, 0.0, 0.5]], size)[0]
    assert corner.any(0).nonzero().min().item() <= size // 16 + 1


def test_sprite_areas_match_their_geometry():
    # At scale 1 the square's side is a third of the image; the ellipse has semi-axes 1.2
    # and 0.6 half-sides; the heart (x² + y² − 1)³ ≤ x² y³ has area 3.66 in the same units.
    size, half_side = 64, 64 / 6
    masks = _draw([[shape, 1.0, 0.4, 0.5, 0.5] for shape in range(3)], size)
    expected = torch.tensor([4.0, math.pi * 1.2 * 0.6, 3.66]) * half_side ** 2
    areas = masks.flatten(1).sum(1).float()
    assert ((areas - expected).abs() / expected).max() < 0.04


def test_square_has_quarter_turn_symmetry_ellipse_does_not():
    square = _draw([[SQUARE, 1.0, 0.0, 0.5, 0.5], [SQUARE, 1.0, math.pi / 2, 0.5, 0.5]])
    ellipse = _draw([[ELLIPSE, 1.0, 0.0, 0.5, 0.5], [ELLIPSE, 1.0, math.pi / 2, 0.5, 0.5]])
    assert (square[0] ^ square[1]).sum() <= 2
    assert (ellipse[0] ^ ellipse[1]).sum() > 0.5 * ellipse[0].sum()
    # At orientation 0 the ellipse lies flat, and a quarter turn stands it up.
    assert ellipse[0].any(0).sum() > ellipse[0].any(1).sum()
    assert ellipse[1].any(1).sum() > ellipse[1].any(0).sum()


def test_heart_is_upright_at_orientation_zero():
    up, down = _draw([[HEART, 1.0, 0.0, 0.5, 0.5], [HEART, 1.0, math.pi, 0.5, 0.5]], 64)
    for mask, heavy_top in ((up, True), (down, False)):
        rows = mask.any(1).nonzero()
        middle = (rows.min() + rows.max()).item() / 2
        # The lobes hold most of the area, so the centroid sits above the middle.
        assert (_centroid(mask)[0] < middle) == heavy_top


def test_shapes_at_the_same_pose_differ():
    masks = _draw([[shape, 1.0, 0.3, 0.5, 0.5] for shape in range(3)])
    for a in range(3):
        for b in range(a + 1, 3):
            assert (masks[a] ^ masks[b]).sum() > 0.15 * masks[a].sum()


def test_larger_scale_draws_more_pixels():
    scales = factor_values()["scale"].tolist()
    for shape in range(3):
        areas = _draw([[shape, s, 0.5, 0.5, 0.5] for s in scales]).flatten(1).sum(1)
        assert (areas.diff() > 0).all()


def test_position_moves_the_centroid():
    masks = _draw([[HEART, 0.75, 0.0, x, 0.5] for x in (0.0, 0.5, 1.0)]
                  + [[HEART, 0.75, 0.0, 0.5, y] for y in (0.0, 1.0)])
    (r0, c0), (r1, c1), (r2, c2), (top, _), (bottom, _) = [_centroid(m) for m in masks]
    assert c0 < c1 < c2 and c2 - c0 > 10
    assert abs(r0 - r2) < 0.5
    assert bottom - top > 10  # pos_y grows downwards, as image rows do


def test_rendering_does_not_depend_on_the_batch():
    factors = Shapes(size=32, n_train=500, n_test=0, seed=5).load("train", None).factors
    whole = render(factors, 32)
    picks = [0, 17, 250, 499]
    one_by_one = torch.cat([render(factors[i:i + 1], 32) for i in picks])
    assert torch.equal(whole[picks], one_by_one)
    assert torch.equal(render(factors.flip(0), 32), whole.flip(0))


def test_user_errors_are_vaetool_errors():
    ds = Shapes(n_train=10, n_test=10)
    with pytest.raises(VaetoolError, match="split"):
        ds.load("validation", None)
    with pytest.raises(VaetoolError, match="size"):
        Shapes(size=8)
    with pytest.raises(VaetoolError):
        Shapes(n_train=GRID_SIZE, n_test=1)
    with pytest.raises(VaetoolError):
        Shapes(n_train=-1)
