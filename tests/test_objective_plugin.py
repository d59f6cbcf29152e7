"""An objective written outside vaetool (tests/plugins/vaetool-cyclical), installed for real: it is listed,
trains, resumes bit for bit and reloads; and the kit holds it, and broken objectives, to the contract."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from safetensors.torch import load_file

from conftest import invoke, ok
from test_plugin_packages import _pip_install, run_vaetool
from vaetool import registry
from vaetool.contracts import Objective
from vaetool.objectives.elbo import ELBO
from vaetool.testing import ContractViolation, ObjectiveConformance, check_objective

PACKAGE = Path(__file__).parent / "plugins" / "vaetool-cyclical"
TINY = ["--data", "shapes", "--data-opt", "n_train=128", "--data-opt", "n_test=32", "--data-opt", "size=16",
        "--arch", "mlp", "--hidden", "32", "--latent-dim", "2", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package pip-installed into a folder of its own, for subprocesses to put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("cyclical") / "site"
    _pip_install([PACKAGE], target)
    return target


def _ok(done):
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_an_objective_from_another_package_trains_resumes_exactly_and_reloads(installed, tmp_path, monkeypatch):
    listing = _ok(run_vaetool(["plugins"], [installed])).stdout
    assert "cyclical" in listing and "vaetool-cyclical" in listing and "cycles=4" in listing
    # The same installed folder on this process's path: importlib.metadata finds the entry point there.
    monkeypatch.syspath_prepend(str(installed))
    assert "cyclical" in registry.names("objective") and registry.package_of("objective", "cyclical") == "vaetool-cyclical"
    runs = ["--runs-dir", tmp_path]
    options = ["--objective", "cyclical", "--objective-opt", "cycles=2", "--objective-opt", "epochs=2"]
    ok(invoke("train", *TINY, *options, "--epochs", "2", "--name", "straight", *runs))
    ok(invoke("train", *TINY, *options, "--epochs", "1", "--name", "resumed", *runs))
    ok(invoke("train", "--resume", "--name", "resumed", "--epochs", "2", "--device", "cpu", *runs))
    for file in ("model.safetensors", "checkpoint.safetensors"):
        a, b = load_file(tmp_path / "straight" / file), load_file(tmp_path / "resumed" / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    lines = [[{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}
              for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("straight", "resumed")]
    assert lines[0] == lines[1]
    assert [line["beta"] for line in lines[0]] == [0.0, 0.0]  # each epoch ends where the next cycle starts
    # The model file names the objective and reloads; using a model does not need its objective installed.
    saved = json.loads(_header(tmp_path / "straight" / "model.safetensors"))
    assert saved["config"]["objective"] == "cyclical"
    assert saved["config"]["objective_options"] == {"beta": 1.0, "cycles": 2, "ratio": 0.5, "epochs": 2}
    monkeypatch.undo()
    assert "cyclical" not in registry.names("objective")
    ok(invoke("sample", "--model", tmp_path / "straight", "-n", "4", "-o", tmp_path / "s.png"))
    assert (tmp_path / "s.png").is_file()


def _header(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["vaetool"]


class TestCyclicalWithTheMixin(ObjectiveConformance):
    """The kit, in-process, on the plugin's class straight from its source folder."""

    @classmethod
    def setup_class(cls):
        sys.path.insert(0, str(PACKAGE / "src"))
        from vaetool_cyclical import Cyclical

        cls.plugin = Cyclical

    @classmethod
    def teardown_class(cls):
        sys.path.remove(str(PACKAGE / "src"))


# -- the kit catches broken objectives ---------------------------------------------------------------

class ForgetsTheDecoder(ELBO):
    def loss(self, terms, epochs_done):
        return terms.kl.mean(0).sum()  # no reconstruction: the decoder learns nothing


class NeedsTheMoon(ELBO):
    needs = ("the-moon",)


class CountsInSecret(ELBO):
    """State that changes the loss but is not saved: a resumed run starts counting again."""

    def __init__(self, beta: float = 1.0):
        super().__init__(beta=beta)
        self.steps = 0

    def loss(self, terms, epochs_done):
        return super().loss(terms, epochs_done) * (1 + 0.1 * self.steps)

    def after_step(self, terms):
        self.steps += 1


class SampleCountOfNone(ELBO):
    samples = None


class NotAnObjective:
    api_version = ELBO.api_version
    needs = ()


@pytest.mark.parametrize("cls, rule", [
    (ForgetsTheDecoder, r"gradient reaches every encoder and decoder weight"),
    (NeedsTheMoon, r"needs names only what vaetool knows"),
    (CountsInSecret, r"one epoch and a resume to two equal two epochs straight, bit for bit"),
    (SampleCountOfNone, r"samples is an int"),
    (NotAnObjective, r"subclasses vaetool.contracts.Objective"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_a_broken_objective_is_caught(cls, rule):
    with pytest.raises(ContractViolation, match=rule) as error:
        check_objective(cls)
    assert repr(cls.__qualname__) in str(error.value)
    assert all(not name.startswith("conformance-") for name in registry.names("objective"))


def test_the_contract_is_the_base_class():
    assert issubclass(ELBO, Objective) and Objective.samples == 1 and Objective.bound == "elbo"
