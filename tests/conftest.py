"""Shared fixtures: tiny plugin options, a tiny in-process dataset, and the real-MNIST gate.

Every test runs on the CPU in a few seconds at most, and writes only under ``tmp_path``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from vaetool import registry
from vaetool.contracts import Dataset, Split
from vaetool.errors import VaetoolError

# The models here are tiny: one thread is fastest, and on a busy 2-core machine a second OpenMP
# thread spin-waits for a core and makes small convolutions up to 100× slower.
torch.set_num_threads(1)



@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Decoded-image caches and cached classifiers go to a folder of the test's own."""
    monkeypatch.setenv("VAETOOL_CACHE", str(tmp_path_factory.mktemp("cache")))


# Options that make each built-in architecture tiny; a third-party architecture gets its defaults.
TINY_ARCHITECTURE_OPTIONS = {
    "linear": {},
    "mlp": {"hidden": [32]},
    "conv": {"channels": [8, 16]},
    "cvae": {"channels": [8, 16]},
}


def tiny_options(architecture: str) -> dict:
    return dict(TINY_ARCHITECTURE_OPTIONS.get(architecture, {}))


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# Training compared with numbers an earlier version recorded: equal up to float rounding. Kernels
# that sum in another order (channels-last convolutions, another torch release, another CPU's
# vector units) move the last digits: about 1e-7 on the Intel machine that recorded them, up to
# 4e-6 on an AMD EPYC with the same torch. Any change to what is trained moves a weight by about a
# learning rate (1e-3) in one step, and the metrics in their fourth digit.
RECORDED_RTOL, RECORDED_ATOL = 1e-5, 1e-5


def assert_weights_match_recorded(new: dict, recorded: dict) -> None:
    assert new.keys() == recorded.keys()
    for key in recorded:
        torch.testing.assert_close(new[key], recorded[key], rtol=RECORDED_RTOL, atol=RECORDED_ATOL,
                                   msg=lambda m, key=key: f"{key}: {m}")


def metrics_match_recorded(new, recorded) -> bool:
    """Metrics lines (dicts, lists, numbers, strings) equal to the recorded ones, floats to RECORDED_RTOL."""
    if isinstance(recorded, dict):
        return isinstance(new, dict) and new.keys() == recorded.keys() and \
            all(metrics_match_recorded(new[k], recorded[k]) for k in recorded)
    if isinstance(recorded, list):
        return isinstance(new, list) and len(new) == len(recorded) and \
            all(metrics_match_recorded(a, b) for a, b in zip(new, recorded))
    if isinstance(recorded, float):
        return isinstance(new, float) and new == pytest.approx(recorded, rel=RECORDED_RTOL, abs=RECORDED_ATOL)
    return new == recorded


# -- a tiny, learnable, labelled dataset owned by the tests ---------------------------------------

TINY_DATASET = "tiny-squares"


class TinySquares(Dataset):
    """16×16 grey images of one bright 5×5 square at a seeded random position; the label says whether
    it sits in the top or bottom half. Learnable in a few steps and built in microseconds."""

    num_classes = 2
    class_names = ("top", "bottom")

    def __init__(self, n_train: int = 256, n_test: int = 64, seed: int = 0):
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.image_shape = (1, 16, 16)

    def load(self, split: str, root: Path | None = None) -> Split:
        if split not in ("train", "test"):
            raise VaetoolError(f"Unknown split {split!r}; choose train or test.")
        generator = torch.Generator().manual_seed(self.seed + (0 if split == "train" else 1))
        n = self.n_train if split == "train" else self.n_test
        rows = torch.randint(0, 12, (n,), generator=generator)
        cols = torch.randint(0, 12, (n,), generator=generator)
        images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
        for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
            images[i, 0, r:r + 5, c:c + 5] = 255
        return Split(images, (rows >= 6).long())


@pytest.fixture(scope="module")
def tiny_squares_module():
    """:class:`TinySquares` registered as ``tiny-squares`` for a whole module, for runs trained once per module."""
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield TINY_DATASET
    registry.unregister("dataset", TINY_DATASET)


@pytest.fixture
def tiny_dataset():
    """Registers :class:`TinySquares` as ``tiny-squares`` for the test's duration; yields its name."""
    registry.register("dataset", TINY_DATASET, TinySquares)
    yield TINY_DATASET
    registry.unregister("dataset", TINY_DATASET)


# -- real MNIST: the one allowed skip ------------------------------------------------------------

@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The data root holding MNIST (``$VAETOOL_DATA``); tests that need it skip when it is absent."""
    value = os.environ.get("VAETOOL_DATA")
    if not value:
        pytest.skip("VAETOOL_DATA is not set; the real-MNIST tests need it (a folder holding MNIST/raw/*-ubyte)")
    root = Path(value).expanduser()
    needed = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    missing = [name for name in needed if not (root / "MNIST" / "raw" / name).is_file()]
    if missing:
        pytest.skip(f"VAETOOL_DATA={root} lacks MNIST/raw/{missing[0]}; the real-MNIST tests need it")
    return root


# -- the command line ---------------------------------------------------------------------------

def invoke(*args, columns: int = 600):
    """Run ``vaetool ARGS`` in-process; a wide terminal so rich neither wraps nor shortens what it prints."""
    from typer.testing import CliRunner

    from vaetool.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def refused_before_reading(tmp_path, monkeypatch, *flags) -> str:
    """``vaetool train --data tiny-squares FLAGS`` refused in one sentence before any data is read: its error."""
    def unreadable(self, split, root=None):
        raise AssertionError("the data was read")

    monkeypatch.setattr(TinySquares, "load", unreadable)
    error = assert_clean_error(invoke("train", "--data", TINY_DATASET, *flags, "--runs-dir", tmp_path, "--name", "r"))
    assert not (tmp_path / "r").exists()
    return error


_LATEST_RUN = re.compile(r"Using the latest run, [^\n]+ \(--model picks another\)\.")
_PROGRESS_LINE = re.compile(r"(?!Error: )(?:[^\n]* …|[^\n]*: (done, )?([\d,]+/[\d,]+ \(\d+%\), )?\d+\.\d s)")


def assert_clean_error(result, *fragments):
    """A non-zero exit with exactly one line, "Error: ...", on stderr, and no traceback."""
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    # Staged progress (output.Stages) may precede the error on a slow machine: a stage that runs over
    # a second is announced on stderr when it is not a terminal. So may the note naming the latest run a
    # command fell back on, said as soon as it is loaded. Those lines are talk, not the error.
    lines = [line for line in result.stderr.strip().splitlines()
             if not _PROGRESS_LINE.fullmatch(line) and not _LATEST_RUN.fullmatch(line)]
    error = "\n".join(lines)
    assert error.startswith("Error: "), result.output
    assert "\n" not in error, error
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in error, error
    return error
