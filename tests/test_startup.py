"""``vaetool --help``, ``vaetool plugins`` and every command's ``--help`` import neither torch nor any plugin.

Importing torch alone takes seconds on a cold start; a command line that pays it only to print its
help feels broken. Each case runs in a fresh interpreter, so nothing imported by another test hides
an import here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vaetool import registry

COMMANDS = ["train", "encode", "decode", "sample", "interpolate", "traverse", "compare", "explore", "plugins"]
CASES = [["--help"], ["plugins"], *([command, "--help"] for command in COMMANDS)]

RUN = """
import json, sys

from vaetool.cli import app

try:
    app(sys.argv[1:], prog_name="vaetool")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""


def _plugin_modules() -> set[str]:
    """Each installed plugin's module, and its top-level package unless that is vaetool itself."""
    modules = set()
    for kind in registry.GROUPS:
        for info in registry.infos(kind):
            module = info.target.partition(":")[0].strip()
            modules |= {module} | ({module.split(".")[0]} - {"vaetool"})
    return modules


@pytest.mark.parametrize("args", CASES, ids=[" ".join(case) for case in CASES])
def test_answers_without_importing_torch_or_any_plugin(args):
    env = dict(os.environ, COLUMNS="200")
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["exit"] in (0, None), done.stdout + done.stderr
    expected = "Usage: vaetool" if args[-1] == "--help" else "vaetool plugins"
    assert expected in "\n".join(printed)

    heavy = {"torch", "starlette", "uvicorn"} | _plugin_modules()
    assert "vaetool.architectures.conv" in heavy  # the plugins were found, so their absence means something
    imported = [m for m in result["modules"] if any(m == h or m.startswith(f"{h}.") for h in heavy)]
    assert imported == []


IMPORT_TORCH = """
import gc, json

from vaetool.cli import common

collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(info["generation"]))
common.import_torch()
print(json.dumps({"collections": collections, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def test_torch_is_imported_with_the_collector_paused_and_its_objects_exempt_after():
    done = subprocess.run([sys.executable, "-c", IMPORT_TORCH], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # With the collector running, importing torch sets off dozens of collections, full ones among them.
    assert result["collections"] == []
    assert result["enabled"]  # paused for the import only
    assert result["frozen"] > 50_000  # torch's objects, which later collections skip


PLOTTING = """
import gc, json

from vaetool import plots

collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(info["generation"]))
before = gc.get_freeze_count()
plots.training_curves([{"epoch": e, **{f"{s}_{k}": -e for s in ("train", "test") for k in ("elbo", "rec", "kl")}}
                       for e in (1, 2)], "curves.png")
print(json.dumps({"full": collections.count(2), "frozen": gc.get_freeze_count() - before}))
"""


def test_matplotlib_is_imported_the_same_way_and_a_plot_walks_none_of_its_objects(tmp_path):
    done = subprocess.run([sys.executable, "-c", PLOTTING], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert result["frozen"] > 10_000  # matplotlib's and pyplot's objects
    assert result["full"] == 0  # with them walked again, drawing the figure set off a full collection


COMMAND_FREEZES = """
import gc, sys

from vaetool.cli import app

try:
    app(sys.argv[1:], prog_name="vaetool")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print(gc.get_freeze_count())
"""


def test_a_command_imports_torch_with_its_objects_exempt_from_collection(tmp_path):
    import vaetool

    model = tmp_path / "m.safetensors"
    vaetool.save(vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=2,
                                architecture_options={"hidden": [8]}), model)
    done = subprocess.run([sys.executable, "-c", COMMAND_FREEZES, "sample", "-m", str(model), "-n", "4",
                           "-o", str(tmp_path / "s.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.png").exists()
    assert int(done.stdout.strip().splitlines()[-1]) > 50_000
