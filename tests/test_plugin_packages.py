"""The plugin packages in plugins/, installed for real: discovery, a broken plugin, a model that needs a
plugin, and a plugin written for another API version.

Each package is installed once per session with ``pip install --target`` into a throwaway folder, and
vaetool runs in a subprocess with that folder on ``PYTHONPATH``: importlib.metadata then finds the
package's dist-info and entry points exactly as after a ``pip install`` into the environment, and the
environment itself is never touched. This works whether or not CI has also installed the plugins into
the environment: a folder on ``PYTHONPATH`` comes first, and to run *without* a plugin that the
environment has, an empty dist-info of the same name shadows it (importlib.metadata keeps the first
distribution of each name it finds).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from vaetool import __version__

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
# package → (kind, registry name, the option that `vaetool plugins` shows for it)
PACKAGES = {
    "vaetool-resnet": ("architecture", "resnet", "channels=(64, 128, 256), blocks=1"),
    "vaetool-laplace": ("likelihood", "laplace", "per_pixel=True"),
    "vaetool-mog-prior": ("prior", "mog", "components=10"),
    "vaetool-npz": ("dataset", "npz", "path='', test_fraction=0.1, seed=0"),
}
TINY_SHAPES = ["--data", "shapes", "--data-opt", "n_train=128", "--data-opt", "n_test=32", "--data-opt", "size=16"]
TINY_TRAINING = ["--epochs", "1", "--batch-size", "64", "--latent-dim", "2", "--device", "cpu"]

PYPROJECT = """
    [build-system]
    requires = ["setuptools"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "{package}"
    version = "{version}"
    requires-python = ">=3.10"
    dependencies = ["vaetool"]

    [project.entry-points."vaetool.architectures"]
    {name} = "{module}:{cls}"

    [tool.setuptools]
    py-modules = ["{module}"]
"""
# Tiny one-module packages: (package, version, architecture name, class, module source).
BROKEN = ("vaetool-broken-plugin", "0.0.1", "broken", "Broken", """
    raise ImportError("vaetool_broken_plugin needs the library 'frobnicate', which is not installed")
""")
FUTURE = ("vaetool-future-plugin", "9.0.0", "future", "FromTheFuture", """
    import math

    from torch import nn

    from vaetool.contracts import Architecture


    class FromTheFuture(Architecture):
        api_version = 999  # a well-formed architecture, written for another plugin API

        def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0):
            super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
            self.encoder = nn.Linear(math.prod(input_shape), 2 * latent_dim)
            self.decoder = nn.Linear(latent_dim, self.output_channels * math.prod(input_shape[1:]))

        def encode(self, x, y=None):
            return self.encoder(x.flatten(1)).chunk(2, dim=-1)

        def decode(self, z, y=None):
            return self.decoder(z).view(-1, self.output_channels, *self.input_shape[1:])
""")


# -- installing and running -----------------------------------------------------------------------

def _pip_install(sources: list[Path], target: Path) -> None:
    """``pip install --target`` the packages, each built from a copy so the source tree stays clean."""
    copies = target.parent / f"{target.name}-sources"
    for source in sources:
        shutil.copytree(source, copies / source.name,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--target", str(target), *(str(copies / s.name) for s in sources)]
    offline = [*command[:4], "--no-build-isolation", *command[4:]]  # builds with this environment's setuptools
    has_setuptools = importlib.util.find_spec("setuptools") is not None
    done = subprocess.run(offline if has_setuptools else command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and not has_setuptools:
        pytest.skip("pip cannot build the plugin packages here: setuptools is not installed and could not be "
                    f"fetched ({done.stderr.strip().splitlines()[-1:]})")
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"


def _write_package(root: Path, package: str, version: str, name: str, cls: str, source: str) -> Path:
    """A one-module package registering ``module:cls`` as the architecture ``name``."""
    folder, module = root / package, package.replace("-", "_")
    folder.mkdir(parents=True)
    pyproject = PYPROJECT.format(package=package, version=version, name=name, module=module, cls=cls)
    (folder / "pyproject.toml").write_text(textwrap.dedent(pyproject).lstrip(), encoding="utf-8")
    (folder / f"{module}.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return folder


def _shadow(folder: Path, packages) -> Path:
    """Empty dist-infos named like ``packages``: first on the path, they hide the real ones' entry points."""
    for package in packages:
        info = folder / f"{package.replace('-', '_')}-0.0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.0\n")
    return folder


def _installed_here(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def run_vaetool(args: list[str], path: list[Path], timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m vaetool ARGS`` in a fresh process with exactly ``path`` on PYTHONPATH."""
    return _python(["-m", "vaetool", *args], path, timeout)


def _python(args: list[str], path: list[Path], timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="400", OMP_NUM_THREADS="1")  # a wide table; tiny models run best on one thread
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(map(str, path))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _rows(table: str) -> dict[tuple[str, str], list[str]]:
    """The rows of the `vaetool plugins` table, by (kind, name): [package, version, options]."""
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 5 and cells[0] not in ("", "kind"):
            rows[cells[0], cells[1]] = cells[2:]
    return rows


def _error_line(done: subprocess.CompletedProcess) -> str:
    """The one line a failed command writes on stderr."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The four plugin packages, pip-installed into a throwaway folder."""
    target = tmp_path_factory.mktemp("plugins") / "site"
    _pip_install([PLUGINS_DIR / package for package in PACKAGES], target)
    return target


@pytest.fixture(scope="session")
def bad_site(tmp_path_factory) -> Path:
    """A broken plugin and one written for plugin API version 999, pip-installed into a throwaway folder."""
    root = tmp_path_factory.mktemp("bad-plugins")
    sources = [_write_package(root, *BROKEN), _write_package(root, *FUTURE)]
    _pip_install(sources, root / "site")
    return root / "site"


@pytest.fixture(scope="session")
def listing_with_bad_plugins(plugin_site, bad_site) -> subprocess.CompletedProcess:
    return run_vaetool(["plugins", "--check"], [plugin_site, bad_site])


# -- discovery ------------------------------------------------------------------------------------

def test_vaetool_plugins_lists_each_package_with_kind_name_and_version(plugin_site):
    done = run_vaetool(["plugins"], [plugin_site])
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    for package, (kind, name, options) in PACKAGES.items():
        assert rows.get((kind, name)) == [package, "0.1.0", options], done.stdout
    assert rows["architecture", "conv"][:2] == ["vaetool", __version__]  # the built-ins, beside them


# -- a broken plugin --------------------------------------------------------------------------------

def test_a_broken_plugin_is_listed_as_unusable_and_the_others_still_work(listing_with_bad_plugins):
    done = listing_with_bad_plugins
    assert done.returncode == 1, done.stderr  # --check fails when a plugin would
    rows = _rows(done.stdout)
    package, version, shown = rows["architecture", "broken"]
    assert (package, version) == ("vaetool-broken-plugin", "0.0.1")
    assert shown.startswith("unusable:") and "failed to import" in shown, shown
    assert "ImportError: vaetool_broken_plugin needs the library 'frobnicate'" in shown
    for package, (kind, name, options) in PACKAGES.items():
        assert rows[kind, name] == [package, "0.1.0", options]


def test_training_still_works_beside_a_broken_plugin(plugin_site, bad_site, tmp_path):
    done = run_vaetool(["train", "--arch", "mlp", "--hidden", "16", *TINY_SHAPES, *TINY_TRAINING,
                    "--runs-dir", str(tmp_path), "--name", "run"], [plugin_site, bad_site])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_training_the_broken_plugin_is_one_clear_error(plugin_site, bad_site, tmp_path):
    line = _error_line(run_vaetool(["train", "--arch", "broken", *TINY_SHAPES, *TINY_TRAINING,
                                "--runs-dir", str(tmp_path)], [plugin_site, bad_site]))
    assert "architecture plugin 'broken'" in line and "failed to import" in line
    assert "ImportError: vaetool_broken_plugin needs the library 'frobnicate'" in line
    assert not any(tmp_path.iterdir())  # nothing was started


# -- a plugin for another API version ---------------------------------------------------------------

def test_a_plugin_for_another_api_version_is_refused(listing_with_bad_plugins, plugin_site, bad_site, tmp_path):
    package, version, shown = _rows(listing_with_bad_plugins.stdout)["architecture", "future"]
    assert (package, version) == ("vaetool-future-plugin", "9.0.0")
    assert shown.startswith("unusable:") and "plugin API version 999" in shown
    line = _error_line(run_vaetool(["train", "--arch", "future", *TINY_SHAPES, *TINY_TRAINING,
                                "--runs-dir", str(tmp_path)], [plugin_site, bad_site]))
    assert "architecture plugin 'future'" in line and "plugin API version 999" in line
    assert "speaks version 1" in line and "upgrade" in line


# -- models that need a plugin ----------------------------------------------------------------------

ROUND_TRIP = """
import sys

import numpy as np
import torch

import vaetool

mode, path, out = sys.argv[1:]
if mode == "create":
    torch.manual_seed(0)
    model = vaetool.create("resnet", "laplace", prior="mog", input_shape=(3, 12, 12), latent_dim=3,
                           architecture_options={"channels": [4, 8]}, likelihood_options={"per_pixel": False},
                           prior_options={"components": 3})
    with torch.no_grad():  # weights unlike any fresh initialisation: the file must carry them all
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    vaetool.save(model, path)
else:
    model = vaetool.load(path)
model.eval()
with torch.no_grad():
    means = model.sample(4, generator=torch.Generator().manual_seed(1))
    pixels = model.sample(4, generator=torch.Generator().manual_seed(2), sample_pixels=True)
np.save(out, torch.cat([means, pixels]).numpy())
"""


def test_a_model_made_with_plugins_round_trips_between_processes(plugin_site, tmp_path):
    path = tmp_path / "model.safetensors"
    for mode in ("create", "load"):
        done = _python(["-c", ROUND_TRIP, mode, str(path), str(tmp_path / f"{mode}.npy")], [plugin_site])
        assert done.returncode == 0, done.stderr
    created, loaded = np.load(tmp_path / "create.npy"), np.load(tmp_path / "load.npy")
    assert created.shape == (8, 3, 12, 12)
    assert np.array_equal(created, loaded)


def test_a_model_trained_with_plugins_names_the_packages_it_needs(plugin_site, tmp_path):
    run = tmp_path / "run"
    done = run_vaetool(["train", "--arch", "resnet", "--channels", "4,8", "--likelihood", "laplace", "--prior", "mog",
                    "--prior-opt", "components=2", *TINY_SHAPES, *TINY_TRAINING, "--runs-dir", str(tmp_path),
                    "--name", "run"], [plugin_site])
    assert done.returncode == 0, done.stderr
    sample = ["sample", "-m", str(run), "-n", "4", "--device", "cpu", "-o", str(tmp_path / "s.png")]
    done = run_vaetool(sample, [plugin_site])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.png").is_file()

    # Without any of the plugins (hidden, if this environment has them installed too).
    hidden = [package for package in PACKAGES if _installed_here(package)]
    line = _error_line(run_vaetool(sample, [_shadow(tmp_path / "none", hidden)] if hidden else []))
    assert "laplace" in line
    for package in ("vaetool-resnet", "vaetool-laplace", "vaetool-mog-prior"):
        kind, name, _ = PACKAGES[package]
        assert f"the {kind} plugin '{name}' from the package '{package}'" in line, line

    # With every plugin but the architecture.
    line = _error_line(run_vaetool(sample, [_shadow(tmp_path / "no-resnet", ["vaetool-resnet"]), plugin_site]))
    assert "No architecture named 'resnet' is installed" in line
    assert "the architecture plugin 'resnet' from the package 'vaetool-resnet'" in line
