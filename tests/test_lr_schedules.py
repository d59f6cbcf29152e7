"""Learning-rate schedules: the built-ins' rates, what a scheduled run sets and records, exact resume,
the constant default unchanged, the command line and the conformance check."""
from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from safetensors.torch import load_file

import vaetool
from conftest import TINY_DATASET, assert_clean_error, invoke, ok, refused_before_reading, state_dicts_equal
from test_training import config as two_epochs, metrics_of, without_time
from vaetool import registry, smoke, training
from vaetool.compare import model_settings
from vaetool.contracts import LRSchedule
from vaetool.errors import VaetoolError
from vaetool.io import read_tensors
from vaetool.loggers import Logger
from vaetool.lr_schedules.burda import Burda
from vaetool.lr_schedules.cosine import Cosine
from vaetool.lr_schedules.step import Step
from vaetool.testing import ContractViolation, check_lr_schedule
from vaetool.training import Progress, TrainConfig

pytestmark = pytest.mark.usefixtures("tiny_squares_module")


def config(**overrides) -> TrainConfig:
    """Three epochs of four steps of a tiny MLP on 256 tiny images."""
    return two_epochs(**{"epochs": 3, **overrides})


def optimiser_rates(run_dir):
    return [g["lr"] for g in read_tensors(run_dir / "checkpoint.safetensors")[1]["optimizer"]["param_groups"]]


# -- the built-ins' rates -----------------------------------------------------------------------------

@pytest.mark.parametrize("epochs_done, lr", [(0, 1e-3), (0.999, 1e-3), (1, 7.2e-4), (3.999, 7.2e-4), (4, 5.2e-4),
                                             (13, 3.7e-4), (40, 2.7e-4), (121, 1.9e-4), (364, 1.4e-4),
                                             (1092.9, 1.4e-4), (1093, 1e-4), (3279.5, 1e-4)])
def test_burda_follows_the_papers_passes(epochs_done, lr):
    # Pass i (1 to 8) lasts 3^(i-1) epochs at 1e-4 * round(10^(1-(i-1)/7), 1): yburda/iwae, experiments.py.
    assert 1e-3 * Burda().factor(epochs_done, 3280) == pytest.approx(lr, rel=1e-12)


def test_burda_lasts_3280_epochs_and_scales_with_lr():
    from vaetool.lr_schedules import burda

    assert burda.EPOCHS == 3280 and burda.ENDS[-1] == 3280
    assert [b - a for a, b in zip((0, *burda.ENDS), burda.ENDS)] == [3 ** (i - 1) for i in range(1, 9)]
    paper = [1e-4 * round(10 ** (1 - (i - 1) / 7), 1) for i in range(1, 9)]
    starts = (0, *burda.ENDS[:-1])
    assert [3e-4 * Burda().factor(s, 3280) for s in starts] == pytest.approx([0.3 * p for p in paper], rel=1e-12)


def test_burda_without_fit_stops_part_way_through_a_short_run():
    # Ten epochs reach the third pass (epochs 4 to 12) and no further; past 3,280 the last rate stays.
    assert Burda().factor(9.75, 10) == 0.52
    assert Burda().factor(5000, 6000) == 0.1


@pytest.mark.parametrize("epochs_done, lr", [(0, 1e-3), (0.003, 1e-3), (0.0031, 7.2e-4), (0.1, 3.7e-4),
                                             (1, 1.9e-4), (1.2, 1.4e-4), (3.33, 1.4e-4), (3.34, 1e-4), (9.75, 1e-4)])
def test_burda_with_fit_walks_the_whole_schedule_in_a_short_run(epochs_done, lr):
    # fit=true maps the 3,280 epochs onto 10: pass i starts at 10 · (its paper epoch) / 3280.
    assert 1e-3 * Burda(fit=True).factor(epochs_done, 10) == pytest.approx(lr, rel=1e-12)


def test_burda_with_fit_on_a_run_of_3280_epochs_is_the_paper():
    points = [e + s / 4 for e in range(3280) for s in range(4)]
    assert [Burda(fit=True).factor(at, 3280) for at in points] == [Burda().factor(at, 3280) for at in points]


@pytest.mark.parametrize("epochs_done, factor", [(0, 1), (1.75, 1), (2, 0.5), (3.9, 0.5), (4, 0.25), (5.5, 0.25),
                                                 (10, 0.5 ** 5)])
def test_step_multiplies_by_gamma_every_few_epochs(epochs_done, factor):
    assert Step(every=2, gamma=0.5).factor(epochs_done, 12) == factor


def test_step_decays_on_epoch_boundaries_only():
    schedule = Step(every=3, gamma=0.1)
    for steps in (3, 7, 10):  # fractions like 2/3 and 9/10 that floating point cannot hold exactly
        rates = [schedule.factor(e + s / steps, 12) for e in range(12) for s in range(steps)]
        assert rates == [0.1 ** (e // 3) for e in range(12) for _ in range(steps)]


@pytest.mark.parametrize("epochs_done, factor", [(0, 1), (2.5, 0.5 * (1 + math.cos(math.pi / 4))), (5, 0.5),
                                                 (7.5, 0.5 * (1 + math.cos(3 * math.pi / 4))), (10, 0)])
def test_cosine_decays_along_half_a_cosine(epochs_done, factor):
    assert Cosine().factor(epochs_done, 10) == pytest.approx(factor, abs=1e-15)


def test_cosine_ends_at_final_and_warms_up_linearly():
    schedule = Cosine(final=0.1, warmup=2, warmup_start=0.01)
    assert schedule.factor(0, 10) == pytest.approx(0.01)
    assert schedule.factor(1, 10) == pytest.approx(0.505)
    assert schedule.factor(2, 10) == pytest.approx(1.0)
    assert schedule.factor(6, 10) == pytest.approx(0.55)  # half-way through the 8 epochs after the warm-up
    assert schedule.factor(10, 10) == pytest.approx(0.1)
    rates = [schedule.factor(e + s / 4, 10) for e in range(10) for s in range(4)]
    assert rates[:8] == sorted(rates[:8]) and rates[8:] == sorted(rates[8:], reverse=True)
    assert min(rates[8:]) > 0.1  # the last step comes before the end of the run


@pytest.mark.parametrize("cls, options, fragment", [
    (Step, {"every": 0}, "every must be a whole number of 1 or more, not 0"),
    (Step, {"every": 2.5}, "every must be a whole number"),
    (Step, {"gamma": 0}, "gamma must be a number above 0, not 0"),
    (Step, {"gamma": "half"}, "not 'half'"),
    (Cosine, {"final": 1.5}, "final must be a number from 0 to 1, not 1.5"),
    (Cosine, {"warmup": -1}, "warmup must be a number of 0 or more"),
    (Cosine, {"warmup_start": 0}, "warmup_start must be a number above 0"),
    (Cosine, {"final": math.nan}, "not nan"),
    (Burda, {"fit": "yes"}, "fit must be true or false, not 'yes'"),
])
def test_bad_options_are_one_sentence_naming_the_schedule(cls, options, fragment):
    with pytest.raises(VaetoolError, match="^The (step|cosine|burda) schedule's ") as error:
        cls(**options)
    assert fragment in str(error.value) and "\n" not in str(error.value)


# -- a scheduled run ----------------------------------------------------------------------------------

class Recorder(Logger):
    """What a tracker receives: every scalar, by name."""

    def __init__(self, run_dir):
        super().__init__(run_dir)
        self.seen = {}

    def scalars(self, values, step):
        for key, value in values.items():
            self.seen.setdefault(key, []).append((step, value))


@pytest.fixture(scope="module")
def step_run(tmp_path_factory):
    """Three epochs on the step schedule, halving the rate every epoch; what a tracker saw of them."""
    run_dir = tmp_path_factory.mktemp("step") / "run"
    recorder = Recorder(run_dir)
    settings = config(lr_schedule="step", lr_schedule_options={"every": 1, "gamma": 0.5})
    result = training.train(settings, run_dir, device="cpu", progress=recorder)
    return run_dir, result, recorder


def test_metrics_record_each_epochs_rate_and_the_optimiser_ends_on_the_schedule(step_run):
    run_dir, result, _ = step_run
    assert [m["lr"] for m in metrics_of(run_dir)] == [3e-3, 1.5e-3, 7.5e-4]
    assert [m["lr"] for m in result.metrics] == [3e-3, 1.5e-3, 7.5e-4]
    assert optimiser_rates(run_dir) == [7.5e-4]


def test_the_schedule_is_recorded_in_the_model_and_rebuilds_the_run(step_run):
    run_dir, _, _ = step_run
    saved = vaetool.load(run_dir).config
    assert saved["training"]["lr_schedule"] == "step"
    assert saved["training"]["lr_schedule_options"] == {"every": 1, "gamma": 0.5}
    again = TrainConfig.from_model_config(saved)
    assert (again.lr_schedule, again.lr_schedule_options) == ("step", {"every": 1, "gamma": 0.5})
    assert "lr_schedule=step (every=1, gamma=0.5)" in model_settings(saved)["training"]  # compare's report


def test_trackers_see_the_rate_per_epoch_and_per_step(step_run):
    _, _, recorder = step_run
    assert recorder.seen["epoch/lr"] == [(1, 3e-3), (2, 1.5e-3), (3, 7.5e-4)]
    steps = recorder.seen["step/lr"]
    assert steps and all(lr == 3e-3 * 0.5 ** ((step - 1) // 4) for step, lr in steps)


def test_a_cosine_run_sets_the_rate_at_every_step(tmp_path, monkeypatch):
    from vaetool import fused

    applied, kernels = [], set()
    real_step, real_fused_step = torch.optim.Adam.step, fused.FusedStep.__call__

    def step(self, *args, **kwargs):  # the rate each optimiser step is taken at
        applied.append([g["lr"] for g in self.param_groups])
        kernels.add(bool(self.defaults.get("fused")))
        return real_step(self, *args, **kwargs)

    def fused_step(self, *args):  # or the rate of the step the hand-written backward pass took, layer by layer
        terms = real_fused_step(self, *args)
        if self.stepped:
            applied.append([g["lr"] for g in self.update.optimizer.param_groups])
            kernels.add(True)
        return terms

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(fused.FusedStep, "__call__", fused_step)
    result = training.train(config(lr_schedule="cosine", lr_schedule_options={"final": 0.1}), tmp_path / "run",
                            device="cpu")
    assert applied == [[3e-3 * Cosine(final=0.1).factor(e + s / 4, 3)] for e in range(3) for s in range(4)]
    assert [m["lr"] for m in result.metrics] == [applied[4 * e + 3][0] for e in range(3)]
    assert optimiser_rates(tmp_path / "run") == applied[-1]
    # Through the fused kernel wherever this torch has one for the CPU, as the trainer picks it.
    assert kernels == {bool(training.adam(torch.nn.Linear(1, 1), 1e-3).defaults.get("fused"))}


class CtrlC(Progress):
    """Presses Ctrl-C when step ``at`` of epoch ``epoch`` has been reported."""

    def __init__(self, epoch, at):
        self.target, self.at, self.epoch, self.pressed = epoch, at, None, False

    def epoch_start(self, epoch, epochs, steps, first_step):
        self.epoch = epoch

    def update(self, step, stats):
        if self.epoch == self.target and step == self.at and not self.pressed:
            self.pressed = True
            signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("schedule, options", [("cosine", {"warmup": 1}), ("burda", {"fit": True})])
def test_an_interrupted_scheduled_run_resumes_exactly(tmp_path, monkeypatch, schedule, options):
    monkeypatch.setattr(training, "REFRESH_SECONDS", -1.0)  # report every step, so Ctrl-C lands mid-epoch
    settings = config(lr_schedule=schedule, lr_schedule_options=options)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    training.train(settings, straight, device="cpu")
    assert training.train(settings, stopped, device="cpu", progress=CtrlC(epoch=1, at=2)).status == "interrupted"
    result = training.resume(stopped, device="cpu")
    assert result.status == "finished" and result.epoch == 3
    assert state_dicts_equal(load_file(stopped / "model.safetensors"), load_file(straight / "model.safetensors"))
    assert state_dicts_equal(load_file(stopped / "checkpoint.safetensors"),
                             load_file(straight / "checkpoint.safetensors"))
    assert optimiser_rates(stopped) == optimiser_rates(straight)
    assert [without_time(m) for m in metrics_of(stopped)] == [without_time(m) for m in metrics_of(straight)]
    assert len({m["lr"] for m in metrics_of(straight)}) > 1  # the rate did move
    assert vaetool.load(stopped).config == vaetool.load(straight).config


def test_a_resumed_run_keeps_its_schedule(tmp_path):
    settings = config(epochs=1, lr_schedule="step", lr_schedule_options={"every": 1, "gamma": 0.5})
    training.train(settings, tmp_path / "run", device="cpu")
    training.resume(tmp_path / "run", epochs=3, device="cpu")
    assert [m["lr"] for m in metrics_of(tmp_path / "run")] == [3e-3, 1.5e-3, 7.5e-4]
    assert vaetool.load(tmp_path / "run").config["training"]["lr_schedule_options"] == {"every": 1, "gamma": 0.5}


# -- the constant default -------------------------------------------------------------------------------

TINY = ["--data", TINY_DATASET, "--data-opt", "n_train=128", "--data-opt", "n_test=32", "--arch", "mlp",
        "--hidden", "16", "--latent-dim", "3", "--epochs", "2", "--batch-size", "64", "--device", "cpu"]


def test_the_constant_schedule_trains_and_records_as_before(tmp_path):
    ok(invoke("train", *TINY, "--runs-dir", tmp_path, "--name", "plain"))
    ok(invoke("train", *TINY, "--lr-schedule", "constant", "--runs-dir", tmp_path, "--name", "constant"))
    plain, constant = tmp_path / "plain", tmp_path / "constant"
    for file in ("model.safetensors", "checkpoint.safetensors"):
        assert state_dicts_equal(load_file(plain / file), load_file(constant / file))
    assert vaetool.load(constant).config == vaetool.load(plain).config
    assert not any(key.startswith("lr_schedule") for key in vaetool.load(constant).config["training"])
    assert [without_time(m) for m in metrics_of(constant)] == [without_time(m) for m in metrics_of(plain)]
    assert "lr" not in metrics_of(constant)[0]
    assert optimiser_rates(constant) == [1e-3]


# -- the command line -----------------------------------------------------------------------------------

def test_the_command_line_trains_on_a_schedule_and_shows_its_rate(tmp_path):
    result = ok(invoke("train", *TINY, "--lr-schedule", "step", "--lr-schedule-opt", "every=1",
                       "--lr-schedule-opt", "gamma=0.5", "--runs-dir", tmp_path, "--name", "r"))
    assert "on the step schedule (every=1, gamma=0.5)" in result.stdout
    assert "lr 0.001 " in result.stdout and "lr 0.0005 " in result.stdout  # each epoch's line
    assert [m["lr"] for m in metrics_of(tmp_path / "r")] == [1e-3, 5e-4]
    steps = [json.loads(line) for line in (tmp_path / "r" / "steps.jsonl").read_text().splitlines()]
    assert {line["lr"] for line in steps} == {1e-3, 5e-4}


def test_a_config_file_replays_the_schedule_and_flags_override_it(tmp_path):
    ok(invoke("train", *TINY, "--lr-schedule", "cosine", "--lr-schedule-opt", "final=0.1", "--runs-dir", tmp_path,
              "--name", "original"))
    original = tmp_path / "original"
    text = (original / "config.toml").read_text()
    assert 'lr_schedule = "cosine"' in text and "[train.lr_schedule_options]" in text
    ok(invoke("train", "--config", original, "--runs-dir", tmp_path, "--name", "replay"))
    assert state_dicts_equal(load_file(original / "model.safetensors"), load_file(tmp_path / "replay" / "model.safetensors"))
    assert (tmp_path / "replay" / "config.toml").read_text() == text
    printed = ok(invoke("train", "--config", original, "--lr-schedule-opt", "warmup=1", "--print-config")).stdout
    assert "final = 0.1" in printed and "warmup = 1" in printed  # merged into the file's options
    printed = ok(invoke("train", "--config", original, "--lr-schedule", "burda", "--print-config")).stdout
    assert 'lr_schedule = "burda"' in printed and "fit = false" in printed and "final" not in printed


@pytest.mark.parametrize("flags, fragment", [
    (["--lr-schedule", "no-such-schedule"], "No lr_schedule named 'no-such-schedule' is installed; installed "
                                            "lr_schedules: burda, constant, cosine, step"),
    (["--lr-schedule", "step", "--lr-schedule-opt", "gamma=-1"], "The step schedule's gamma must be a number above 0"),
    (["--lr-schedule", "cosine", "--lr-schedule-opt", "final=2"], "final must be a number from 0 to 1"),
    (["--lr-schedule", "burda", "--lr-schedule-opt", "fit=maybe"], "fit must be true or false"),
    (["--lr-schedule", "burda", "--lr-schedule-opt", "gamma=0.5"], "has no option 'gamma'; its options are: fit"),
    (["--lr-schedule-opt", "every=2"], "The lr_schedule 'constant' has no option 'every'"),
    (["--lr-schedule", "step", "--lr-schedule-opt", "gamma"], "--lr-schedule-opt takes KEY=VALUE"),
])
def test_a_bad_schedule_is_refused_in_one_sentence_before_reading_data(tmp_path, monkeypatch, flags, fragment):
    assert fragment in refused_before_reading(tmp_path, monkeypatch, *flags)


def test_resuming_refuses_another_schedule(tmp_path):
    ok(invoke("train", *TINY, "--epochs", "1", "--lr-schedule", "step", "--runs-dir", tmp_path, "--name", "r"))
    assert_clean_error(invoke("train", "--resume", "--name", "r", "--runs-dir", tmp_path, "--lr-schedule", "cosine"),
                       "--lr-schedule cannot change when resuming")
    assert_clean_error(invoke("train", "--resume", "--name", "r", "--runs-dir", tmp_path, "--lr-schedule-opt",
                              "gamma=0.5"), "--lr-schedule-opt cannot change when resuming")


def test_plugins_lists_the_schedules_with_their_options():
    out = ok(invoke("plugins")).stdout
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if "│ lr_schedule " in line}
    assert set(rows) >= {"constant", "step", "cosine", "burda"}
    assert "every=10, gamma=0.1" in rows["step"] and "fit=False" in rows["burda"]
    assert "final=0.0, warmup=0.0, warmup_start=0.01" in rows["cosine"]


# -- the conformance check ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", registry.names("lr_schedule"))
def test_installed_schedule_conforms(name):
    check_lr_schedule(name)


@pytest.mark.parametrize("options", [{"fit": False}, {"fit": True}])
def test_burda_conforms_over_the_papers_whole_run(options):
    check_lr_schedule("burda", options=options, epochs=(1, 10, 3280), train=False)


class Decaying(LRSchedule):
    """Broken: keeps a count of its calls, so a resumed run would start the decay again."""

    def __init__(self, rate: float = 0.99):
        self.rate, self.calls = rate, 0

    def factor(self, epochs_done, epochs):
        self.calls += 1
        return self.rate ** self.calls


class FromZero(LRSchedule):
    """Broken: a warm-up from 0, whose first step moves nothing."""

    def factor(self, epochs_done, epochs):
        return epochs_done / epochs


class OnTheDevice(LRSchedule):
    """Broken: a tensor, which the trainer would read back from the device at every step."""

    def factor(self, epochs_done, epochs):
        return torch.tensor(0.5)


class Hidden(LRSchedule):
    """Broken: options hidden in **kwargs."""

    def __init__(self, **options):
        self.options = options

    def factor(self, epochs_done, epochs):
        return 1.0


class NotASchedule:
    """Broken: does not subclass LRSchedule."""

    api_version = 1

    def factor(self, epochs_done, epochs):
        return 1.0


@pytest.mark.parametrize("cls, rule, detail", [
    (Decaying, "pure function", "over 1 epochs"),
    (FromZero, "positive, finite", "factor(0, 1) is 0.0"),
    (OnTheDevice, "positive, finite", "is Tensor"),
    (Hidden, "keyword arguments with defaults", "**kwargs"),
    (NotASchedule, "subclasses vaetool.contracts.LRSchedule", "NotASchedule"),
])
def test_the_check_catches_a_broken_schedule(cls, rule, detail):
    with pytest.raises(ContractViolation) as error:
        check_lr_schedule(cls, train=False)
    assert rule in error.value.rule and detail in error.value.detail, str(error.value)
    assert not any(name.startswith("conformance-") for name in registry.names("lr_schedule"))


def test_plugins_check_reports_a_broken_schedule():
    registry.register("lr_schedule", "from-zero", FromZero)
    try:
        with pytest.raises(VaetoolError, match="its factor at epoch 0 of 3 is 0.0, not a positive finite number"):
            smoke.check("lr_schedule", "from-zero")
    finally:
        registry.unregister("lr_schedule", "from-zero")
    for name in ("constant", "step", "cosine", "burda"):
        smoke.check("lr_schedule", name)
