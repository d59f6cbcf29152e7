"""The plugin registry: discovery through entry points, lookup by name, options, broken plugins."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import invoke, ok
from test_plugin_packages import _rows

from vaetool import __version__, registry
from vaetool.contracts import PLUGIN_API_VERSION, Architecture, Dataset, Likelihood
from vaetool.errors import VaetoolError

BUILT_INS = {
    "architecture": {"linear", "mlp", "conv", "cvae"},
    "likelihood": {"bernoulli", "continuous-bernoulli", "gaussian", "logistic"},
    "dataset": {"mnist", "fashion-mnist", "kmnist", "cifar10", "folder", "shapes"},
}
CONTRACTS = {"architecture": Architecture, "likelihood": Likelihood, "dataset": Dataset}


class Toy(Architecture):
    """A registered-in-process architecture with known option defaults."""

    def __init__(self, input_shape, latent_dim, params_per_channel=1, num_classes=0,
                 width: int = 7, activation: str = "relu", sizes=(1, 2)):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)


class FromTheFuture(Toy):
    api_version = PLUGIN_API_VERSION + 1


class NotAPlugin:
    """Declares no api_version at all."""


@pytest.fixture
def toy():
    registry.register("architecture", "toy", Toy)
    yield "toy"
    registry.unregister("architecture", "toy")


@pytest.mark.parametrize("kind", sorted(BUILT_INS))
def test_built_ins_are_discovered_through_entry_points(kind):
    # Through the entry points only: nothing is registered in-process here.
    assert BUILT_INS[kind] <= set(registry._entry_points(kind))
    assert BUILT_INS[kind] <= set(registry.names(kind))
    infos = {info.name: info for info in registry.infos(kind)}
    for name in BUILT_INS[kind]:
        assert infos[name].package == "vaetool"
        assert registry.package_of(kind, name) == "vaetool"
        assert issubclass(registry.get(kind, name), CONTRACTS[kind])


def test_get_returns_the_class_each_entry_point_names():
    from vaetool.architectures.mlp import MLP
    from vaetool.likelihoods.logistic import DiscretizedLogistic

    assert registry.get("architecture", "mlp") is MLP
    assert registry.get("likelihood", "logistic") is DiscretizedLogistic


def test_listing_plugins_imports_no_plugin_and_no_torch():
    code = ("import sys; from vaetool import registry, list_plugins\n"
            "for kind in registry.GROUPS: registry.names(kind); registry.infos(kind)\n"
            "list_plugins()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(("
            "'vaetool.architectures', 'vaetool.likelihoods', 'vaetool.datasets.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", sorted(BUILT_INS))
def test_unknown_name_lists_the_installed_ones(kind):
    with pytest.raises(VaetoolError) as error:
        registry.get(kind, "no-such-plugin")
    message = str(error.value)
    assert "'no-such-plugin'" in message
    for name in registry.names(kind):
        assert name in message


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        registry.names("optimizer")


def test_register_and_unregister_in_process(toy):
    assert "toy" in registry.names("architecture")
    assert registry.get("architecture", "toy") is Toy
    [info] = [i for i in registry.infos("architecture") if i.name == "toy"]
    assert info.package == "(registered in-process)"
    assert info.target.endswith(":Toy")
    registry.unregister("architecture", "toy")
    assert "toy" not in registry.names("architecture")
    with pytest.raises(VaetoolError):
        registry.get("architecture", "toy")


def test_options_of_reads_the_constructor_and_leaves_out_core_arguments():
    assert registry.options_of(Toy) == {"width": 7, "activation": "relu", "sizes": (1, 2)}


def test_resolve_options_fills_plugin_defaults(toy):
    # Tuples become lists: the result is JSON data for the model file.
    assert registry.resolve_options("architecture", "toy", {}) == {"width": 7, "activation": "relu", "sizes": [1, 2]}


def test_resolve_options_given_values_win(toy):
    resolved = registry.resolve_options("architecture", "toy", {"width": 3, "sizes": (4,)})
    assert resolved == {"width": 3, "activation": "relu", "sizes": [4]}


def test_a_none_option_does_not_override_a_default(toy):
    resolved = registry.resolve_options("architecture", "toy", {"width": None, "activation": None})
    assert resolved == {"width": 7, "activation": "relu", "sizes": [1, 2]}


def test_resolve_options_on_built_ins():
    assert registry.resolve_options("likelihood", "gaussian", {"sigma": None}) == {"sigma": None, "per_pixel": False, "link": "sigmoid",
                                                                                           "reduction": "sum"}
    assert registry.resolve_options("likelihood", "gaussian", {"sigma": 0.1})["sigma"] == 0.1
    assert registry.resolve_options("architecture", "mlp", {"hidden": (32,)}) == {"hidden": [32], "scale_init": None, "activation": "relu",
        "init": "default", "output_bias": "default"}


def test_an_unknown_option_is_a_clear_error(toy):
    with pytest.raises(VaetoolError) as error:
        registry.resolve_options("architecture", "toy", {"depth": 3, "width": 2})
    message = str(error.value)
    assert "'depth'" in message and "'toy'" in message
    for option in ("width", "activation", "sizes"):
        assert option in message  # it lists what the plugin does take


def test_an_unknown_option_of_a_built_in_likelihood():
    with pytest.raises(VaetoolError, match="sigma"):
        registry.resolve_options("likelihood", "bernoulli", {"sigma": 0.1})


@pytest.mark.parametrize("cls", [FromTheFuture, NotAPlugin])
def test_a_plugin_for_another_api_version_is_refused(cls):
    registry.register("architecture", "odd", cls)
    try:
        with pytest.raises(VaetoolError) as error:
            registry.get("architecture", "odd")
        assert "'odd'" in str(error.value)
        assert f"version {PLUGIN_API_VERSION}" in str(error.value)
        with pytest.raises(VaetoolError):
            registry.resolve_options("architecture", "odd", {})
    finally:
        registry.unregister("architecture", "odd")


class _BrokenEntryPoint:
    name = "broken"
    value = "broken_plugin.module:Thing"
    dist = None

    def load(self):
        raise ImportError("No module named 'broken_plugin'")


@pytest.fixture
def broken_architecture(monkeypatch):
    real = registry._entry_points

    def with_broken(kind):
        found = dict(real(kind))
        if kind == "architecture":
            found["broken"] = _BrokenEntryPoint()
        return found

    monkeypatch.setattr(registry, "_entry_points", with_broken)
    monkeypatch.setattr(registry, "_reported", set())
    return "broken"


def test_a_broken_plugin_is_listed_but_get_gives_a_clear_error(broken_architecture):
    assert "broken" in registry.names("architecture")
    with pytest.raises(VaetoolError) as error:
        registry.get("architecture", "broken")
    assert "'broken'" in str(error.value) and "ImportError" in str(error.value)
    assert "broken_plugin" in str(error.value)


def test_load_all_skips_a_broken_plugin_and_reports_it_once(broken_architecture, capsys):
    loaded = registry.load_all("architecture")
    assert "broken" not in loaded
    assert BUILT_INS["architecture"] <= set(loaded)
    first = capsys.readouterr().err
    assert first.count("\n") == 1
    assert "broken" in first and "ImportError" in first
    again = registry.load_all("architecture")
    assert set(again) == set(loaded)
    assert capsys.readouterr().err == ""  # reported once per process, not on every call


def test_load_all_skips_an_incompatible_plugin(capsys, monkeypatch):
    monkeypatch.setattr(registry, "_reported", set())
    registry.register("architecture", "odd", FromTheFuture)
    try:
        loaded = registry.load_all("architecture")
    finally:
        registry.unregister("architecture", "odd")
    assert "odd" not in loaded and BUILT_INS["architecture"] <= set(loaded)
    assert "'odd'" in capsys.readouterr().err


# -- options read from source, without importing the plugin ---------------------------------------

INSTALLED = [(kind, name) for kind in registry.GROUPS for name in registry.names(kind)]


@pytest.mark.parametrize("kind, name", INSTALLED, ids=[f"{kind}-{name}" for kind, name in INSTALLED])
def test_options_read_from_source_match_the_imported_signature(kind, name):
    assert registry.static_options(kind, name) == registry.options_of(registry.get(kind, name))


def test_static_options_of_an_unknown_name_is_a_clear_error():
    with pytest.raises(VaetoolError, match="'no-such-plugin'"):
        registry.static_options("architecture", "no-such-plugin")


def test_static_options_of_an_in_process_plugin(toy):
    assert registry.static_options("architecture", toy) == registry.options_of(Toy)


SOURCE_PACKAGE = {
    "__init__.py": "raise RuntimeError('reading options must not execute the package')\n",
    "base.py": """
        import math

        class Base:
            def __init__(self, input_shape, latent_dim, *, width: int = 3, scale=math.pi, names=("a", "b")):
                pass

        class NoInit:
            pass
    """,
    "everything.py": "from .base import *\n",
    "unparsable.py": "class Thing(:\n",
    "plugin.py": """
        from dataclasses import dataclass

        from . import base
        from .everything import Base as Renamed

        class Local(base.Base):
            pass

        class Direct(Local):
            pass

        class ViaImport(Renamed):
            pass

        class Plain(base.NoInit):
            pass

        class Own(Direct):
            def __init__(self, input_shape, latent_dim, only, /, depth=2, **rest):
                pass

        @dataclass
        class Decorated:
            size: int = 1

        class TwoBases(Local, Plain):
            pass

        class Chicken(Egg):
            pass

        class Egg(Chicken):
            pass
    """,
}


@pytest.fixture
def source_package(tmp_path, monkeypatch):
    """A package whose options can only be read: importing it raises."""
    package = tmp_path / "source_only_plugins"
    package.mkdir()
    for name, text in SOURCE_PACKAGE.items():
        (package / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._parsed.cache_clear()
    yield package.name
    registry._parsed.cache_clear()


def test_source_options_follow_base_classes_through_imports(source_package):
    base = {"width": 3, "scale": "math.pi", "names": ("a", "b")}
    for cls in ("Local", "Direct", "ViaImport"):
        assert registry.source_options(f"{source_package}.plugin:{cls}") == base
    assert repr(registry.source_options(f"{source_package}.plugin:Direct")["scale"]) == "math.pi"  # shown as code
    assert registry.source_options(f"{source_package}.plugin:Plain") == {}
    assert registry.source_options(f"{source_package}.plugin:Own") == {"depth": 2}
    assert source_package not in sys.modules


@pytest.mark.parametrize("target", ["{package}.plugin:Decorated", "{package}.plugin:TwoBases", "{package}.plugin:Egg",
                                    "{package}.plugin:Missing", "{package}.missing:Thing", "{package}.unparsable:Thing",
                                    "no_such_package.module:Thing"])
def test_source_options_that_reading_cannot_settle_are_none(source_package, target):
    assert registry.source_options(target.format(package=source_package)) is None


# -- the listing ----------------------------------------------------------------------------------

def _shown(options: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items()) or "—"


@pytest.mark.parametrize("check", [False, True], ids=["from-source", "check"])
def test_vaetool_plugins_lists_the_built_ins_with_their_options(check):
    rows = _rows(ok(invoke("plugins", *(["--check"] if check else []))).stdout)
    for kind, built_ins in BUILT_INS.items():
        for name in built_ins:
            assert rows[kind, name] == ["vaetool", __version__, _shown(registry.options_of(registry.get(kind, name)))]
    assert rows["architecture", "mlp"][2] == ("hidden=(512, 256), scale_init=None, activation='relu', init='default', "
                                              "output_bias='default'")


def test_only_vaetool_plugins_check_reports_a_broken_plugin(broken_architecture):
    listed = _rows(ok(invoke("plugins")).stdout)["architecture", "broken"]
    assert listed[2] == "(run `vaetool plugins --check` to see)"
    result = invoke("plugins", "--check")
    assert result.exit_code == 1
    checked = _rows(result.stdout)["architecture", "broken"]
    assert checked[2].startswith("unusable:") and "ImportError" in checked[2]


def test_plugins_check_passes_when_every_plugin_is_usable():
    result = ok(invoke("plugins", "--check"))  # status 0: the built-ins and this environment's plugins all work
    assert "all usable." in result.stdout and "unusable" not in result.stdout
