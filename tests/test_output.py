"""How commands talk: -V, -q and -v, shell completion, flags without a value in help, whole lines
off a terminal, the latest run named on stderr, and the staged progress and fitted tables."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import vaetool
from conftest import invoke, ok
from vaetool.cli import app, output

TINY = ["--data", "shapes", "--data-opt", "size=16", "--data-opt", "n_train=128", "--data-opt", "n_test=32",
        "--arch", "mlp", "--hidden", "16", "--latent-dim", "3", "--epochs", "1", "--batch-size", "64",
        "--device", "cpu"]
COMMANDS = ["train", "encode", "decode", "sample", "interpolate", "traverse", "compare", "show", "plugins"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAETOOL_RUNS", raising=False)
    yield
    output.set_verbosity(False, False)  # -q and -v are process-wide; leave them as found


def test_short_version_flag():
    for flag in ("-V", "--version"):
        assert ok(invoke(flag)).stdout.strip() == f"vaetool {vaetool.__version__}"


@pytest.mark.parametrize("flag", ["-q", "--quiet", "-v", "--verbose", "--debug"])
def test_a_root_option_after_the_command_is_told_where_it_goes(flag):
    result = invoke("sample", flag, "--n", "4")
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())
    assert f"{flag} is an option of vaetool itself and goes before the command: vaetool {flag} sample" in said
    # Other unknown options keep click's own message and its suggestions.
    other = invoke("sample", "--zom")
    assert other.exit_code == 2 and "No such option: --zom" in other.output and "--zoom" in other.output


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_value_in_help(command):
    text = ok(invoke(command, "--help", columns=200)).stdout
    assert "<bool>" not in text
    assert re.search(r"--help\s+-h\s+Show this message", text), text  # a flag, with nothing between
    # Options that take a value still say so (typer ≥ 0.2x writes <int>, click-based typer INTEGER).
    assert re.search(r"<int>|<path>|INTEGER|PATH", text) or command == "plugins"


def test_shell_completion_is_on():
    assert "--install-completion" in ok(invoke("--help", columns=200)).stdout
    script = CliRunner().invoke(app, [], prog_name="vaetool", env={"_VAETOOL_COMPLETE": "source_bash"}).stdout
    assert "_VAETOOL_COMPLETE=complete_bash" in script and "complete " in script  # what --install-completion writes
    result = CliRunner().invoke(app, [], prog_name="vaetool",
                                env={"_VAETOOL_COMPLETE": "complete_bash", "COMP_WORDS": "vaetool tr", "COMP_CWORD": "1"})
    assert result.stdout.split() == ["train", "traverse"]
    result = CliRunner().invoke(app, [], prog_name="vaetool", env={
        "_VAETOOL_COMPLETE": "complete_bash", "COMP_WORDS": "vaetool train --print-c", "COMP_CWORD": "2"})
    assert result.stdout.split() == ["--print-config"]


def test_off_a_terminal_epoch_lines_and_plugin_rows_are_not_wrapped(tmp_path):
    result = ok(invoke("train", *TINY, "--runs-dir", tmp_path / "runs", columns=40))
    (epoch,) = [line for line in result.stdout.splitlines() if line.startswith("epoch   1")]
    assert "train ELBO" in epoch and "test ELBO" in epoch and epoch.rstrip().endswith(" s")  # the whole line
    listing = ok(invoke("plugins", columns=40)).stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listing.splitlines() if "│" in line]
    (conv,) = [row for row in rows if row[:2] == ["architecture", "conv"]]
    assert "channels=(32, 64, 128)" in conv[-1]  # the options stay on the plugin's row, unbroken
    assert all(row[0] for row in rows)  # no continuation lines: every row is one line


def test_quiet_prints_results_only_and_verbose_more(tmp_path):
    runs = tmp_path / "runs"
    quiet = ok(invoke("-q", "train", *TINY, "--runs-dir", runs))
    assert "epoch   1" not in quiet.stdout and "parameters" not in quiet.stdout
    assert "Trained 1 epoch" in quiet.stdout and quiet.stderr == ""
    noisy = ok(invoke("train", *TINY, "--runs-dir", runs))
    assert "epoch   1" in noisy.stdout and "parameters" in noisy.stdout
    quiet = ok(invoke("-q", "sample", "-n", "4", "--runs-dir", runs, "-o", tmp_path / "s.png"))
    assert quiet.stderr == ""  # not even which run was used
    verbose = ok(invoke("-v", "compare", runs / "mlp-shapes-z3", "--iw-samples", "2", "--limit", "16",
                        "--no-sample-quality", "--no-disentanglement", "--device", "cpu"))
    assert "ELBO (nats/image): Evidence lower bound" in verbose.stdout  # the glossary


def test_commands_on_the_latest_run_say_which_on_stderr(tmp_path):
    runs = tmp_path / "runs"
    ok(invoke("train", *TINY, "--runs-dir", runs))
    result = ok(invoke("sample", "-n", "4", "--runs-dir", runs, "-o", tmp_path / "s.png"))
    assert f"Using the latest run, {runs / 'mlp-shapes-z3'}" in result.stderr
    assert "Using the latest run" not in result.stdout
    named = ok(invoke("sample", "-n", "4", "--model", runs / "mlp-shapes-z3", "-o", tmp_path / "t.png"))
    assert named.stderr == ""
    resumed = ok(invoke("train", "--resume", "--epochs", "2", "--device", "cpu", "--runs-dir", runs))
    assert f"Resuming the latest run, {runs / 'mlp-shapes-z3'}" in resumed.stderr


# -- the pieces ----------------------------------------------------------------------------------------

def test_tables_fit_or_transpose_or_split_and_never_shorten_a_number():
    from rich.console import Console

    headings = ["params", "ELBO", "log p(x) IW"]
    rows = [(f"model-{i}", ["1,079,600", f"-{100 + i}.25", f"-{99 + i}.75"]) for i in range(6)]
    wide, transposed = output.fitted_tables("t", headings, rows, 200, descriptions=["an mlp"] * 6)
    assert not transposed and len(wide) == 1
    for width in (80, 40):
        tables, transposed = output.fitted_tables("t", headings, rows, width, units=["count", "nats", "nats"],
                                                  descriptions=["a description too long for the wide layout"] * 6)
        assert transposed
        console = Console(width=width, record=True, file=open("/dev/null", "w"))
        for table in tables:
            console.print(table)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        assert "…" not in text
        for name, cells in rows:
            for cell in cells:
                assert cell in text
    assert len(output.fitted_tables("t", headings, rows, 40)[0]) > 1  # split by model at 40 columns


def test_stages_off_a_terminal_name_long_stages_and_their_times(monkeypatch):
    import io
    import time

    from rich.console import Console

    buffer = io.StringIO()
    monkeypatch.setattr(output.Stages, "QUIET_START", 0.05)
    monkeypatch.setattr(output.Stages, "LOG_EVERY", 0.3)
    with output.Stages(Console(file=buffer, width=80)) as stages:
        with stages.stage("quick"):
            pass
        for done in range(5):
            stages("slow", done, 5)
            time.sleep(0.2)
        stages("slow", 5, 5)
    lines = buffer.getvalue().splitlines()
    assert "quick" not in buffer.getvalue()  # too short to mention
    assert lines[0] == "slow …"
    assert any(re.fullmatch(r"slow: \d/5 \(\d+%\), \d\.\d s", line) for line in lines[1:-1]), lines
    assert re.fullmatch(r"slow: done, \d\.\d s", lines[-1])
