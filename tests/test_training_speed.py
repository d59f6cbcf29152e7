"""What the training loop does to be fast must not change what it trains or what a run leaves behind."""
from __future__ import annotations

import pytest

from test_training import CtrlC, config, report_every_step, tiny_squares  # noqa: F401
from vaetool import plots, training


@pytest.fixture
def drawings(monkeypatch):
    """The number of epochs each drawing of curves.png showed."""
    drawn = []
    draw = plots.training_curves
    monkeypatch.setattr(plots, "training_curves", lambda metrics, path: (drawn.append(len(metrics)), draw(metrics, path)))
    return drawn


def test_short_epochs_share_one_drawing_of_the_curves_and_the_last_is_complete(tmp_path, drawings):
    training.train(config(epochs=4), tmp_path / "run", device="cpu")
    assert drawings == [1, 4]  # the first epoch, then none for 30 s, then the last
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0


def test_epochs_apart_by_the_interval_each_get_a_drawing(tmp_path, drawings, monkeypatch):
    monkeypatch.setattr(training, "CURVES_SECONDS", 0.0)
    training.train(config(epochs=3), tmp_path / "run", device="cpu")
    assert drawings == [1, 2, 3]


def test_an_interruption_draws_the_epochs_not_drawn_yet(tmp_path, drawings, report_every_step):  # noqa: F811
    result = training.train(config(epochs=4), tmp_path / "run", device="cpu", progress=CtrlC(epoch=2, at=2))
    assert result.status == "interrupted" and drawings == [1, 2]
