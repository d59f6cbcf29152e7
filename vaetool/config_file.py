"""A run's settings as a TOML file: ``config.toml`` in every run directory, and ``train --config``.

The file has two tables, each the fields of one dataclass, so a setting added to either is in
the file with no change here:

- ``[train]``: every field of :class:`vaetool.training.TrainConfig` — what is trained. Plugin
  options (``architecture_options``, ``likelihood_options``, …) are written resolved, the
  plugin's defaults filled in, so the file says everything the run used even if a plugin later
  changes a default.
- ``[run]``: every field of :class:`vaetool.training.RunOptions` — how it runs (compilation,
  streaming, …) — and the device asked for.

Settings that are ``None`` (not set) are left out, as TOML has no null; reading the file back
gives them their defaults again. Where a run is stored (its name, the runs and data folders) is
not a setting of the run and is never written.

TOML is read with the standard library's ``tomllib`` (Python ≥ 3.11) or ``tomli`` (3.10), and
written by :func:`dumps` below: the values here are strings, numbers, booleans, lists and nested
tables, which a few lines write exactly, so writing needs no dependency.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from vaetool.errors import VaetoolError, no_file

CONFIG_FILE = "config.toml"
MAX_BYTES = 1 << 20  # a config file is a few hundred bytes; this is a wrong file, or a device that never ends
HEADER = ("# vaetool run settings: replay with `vaetool train --config FILE`; flags given beside it override.\n"
          "# [train] is what is trained, [run] how it runs.\n")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# -- TOML -------------------------------------------------------------------------------------------

def dumps(data: dict[str, Any]) -> str:
    """``data`` as TOML: scalars and lists first, then each nested dict as a ``[table]``.
    ``None`` values are left out."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(data: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines += ["", f"[{'.'.join(_key(p) for p in path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for key, table in tables.items():
        _table(table, [*path, key], lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-tripping form: 0.001, 1e-05, 4.0 are all TOML floats
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are a subset of TOML's basic strings
    if isinstance(value, (list, tuple)):
        if any(v is None for v in value):
            raise VaetoolError(f"A list with an empty entry cannot be written to TOML: {value!r}.")
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise VaetoolError(f"A setting of type {type(value).__name__} cannot be written to TOML: {value!r}.")


def loads(text: str, source: str = "the config") -> dict[str, Any]:
    """TOML text as a dict; a syntax error is one sentence naming ``source``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VaetoolError(f"{source} is not valid TOML: {exc}.") from None


# -- run settings -----------------------------------------------------------------------------------

def settings(config, options=None, device: str | None = None, resolve: bool = True) -> dict[str, Any]:
    """The ``{"train": ..., "run": ...}`` tables of a run: every field of ``config`` (a
    ``TrainConfig``) and of ``options`` (a ``RunOptions``), plugin options resolved."""
    from vaetool.training import RunOptions

    train = dataclasses.asdict(config)
    if resolve:
        train.update(resolved_options(config))
    run = dataclasses.asdict(options if options is not None else RunOptions())
    if device is not None:
        run["device"] = device
    return {"train": train, "run": run}


def resolved_options(config) -> dict[str, dict[str, Any]]:
    """Each plugin's full options: for every field ``X`` naming a plugin kind that has an
    ``X_options`` field beside it, the plugin's defaults overridden by the options given."""
    from vaetool import registry

    out = {}
    for field in dataclasses.fields(config):
        kind = field.name
        if kind in registry.GROUPS and hasattr(config, f"{kind}_options") and getattr(config, kind) is not None:
            out[f"{kind}_options"] = registry.resolve_options(kind, getattr(config, kind),
                                                              getattr(config, f"{kind}_options") or {})
    return out


def save(run_dir: str | Path, config, options=None, device: str | None = None) -> Path:
    """Write ``run_dir/config.toml`` atomically; returns its path."""
    from vaetool.io import atomic_write_text

    path = Path(run_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, HEADER + dumps(settings(config, options, device)))
    return path


def load(path: str | Path):
    """``(TrainConfig, RunOptions, device or None)`` from a config file (or a run directory
    holding one). An unknown table or setting is an error naming it, so a typo never passes
    silently."""
    from vaetool.training import RunOptions, TrainConfig

    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():  # nor a pipe or device, which would block or never end
        raise no_file(path, "config file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise VaetoolError(f"Cannot read the config file {path} ({exc.strerror or exc}).") from None
    if len(raw) > MAX_BYTES:
        raise VaetoolError(f"{path} is larger than {MAX_BYTES >> 20} MiB, far more than any config file; "
                           "is it the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VaetoolError(f"The config file {path} is not UTF-8 text.") from None
    data = loads(text, str(path))
    unknown = sorted(set(data) - {"train", "run"})
    if unknown:
        key = unknown[0]
        if isinstance(data[key], dict):
            raise VaetoolError(f"{path} has a table [{key}]; a config has [train] and [run].")
        # A setting above every table header, the likeliest slip in a file written by hand.
        homes = [table for table, cls in (("train", TrainConfig), ("run", RunOptions))
                 if key in {f.name for f in dataclasses.fields(cls)} or (table, key) == ("run", "device")]
        if homes:
            raise VaetoolError(f"{path}: {key} = {_value(data[key])} is outside any table; put it under [{homes[0]}].")
        raise VaetoolError(f"{path}: {key} = {_value(data[key])} is outside any table, and a config's [train] and "
                           "[run] have no such setting (`vaetool train --print-config` shows theirs).")
    for table in ("train", "run"):
        if not isinstance(data.get(table, {}), dict):
            raise VaetoolError(f"{path}: {table} must be a table, [{table}], not {_value(data[table])}.")
    run = dict(data.get("run", {}))
    device = run.pop("device", None)
    return (_build(TrainConfig, data.get("train", {}), path, "train"), _build(RunOptions, run, path, "run"),
            device)


def _build(cls, values: dict[str, Any], path: Path, table: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise VaetoolError(f"{path}: [{table}] has no setting {unknown[0]!r}; its settings are: {', '.join(sorted(names))}.")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        kinds = _kinds(hints[key])
        if not _fits(value, kinds):
            raise VaetoolError(f"{path}: [{table}] {key} must be {' or '.join(_KIND_NAMES[k] for k in kinds)}, "
                               f"not {_value(value) if not isinstance(value, dict) else 'a table'}.")
    return cls(**values)


# What a setting's annotation admits, in TOML's terms: a flag's value is typed by the command line,
# a file's only by this check (``autoencoder = "false"`` is a string, and a true one).
_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", dict: "a table"}


def _kinds(hint) -> list[type]:
    arguments = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [k for a in arguments if a is not type(None) for k in _kinds(a)]
    origin = typing.get_origin(hint) or hint
    return [origin] if origin in _KIND_NAMES else []


def _fits(value: Any, kinds: list[type]) -> bool:
    if not kinds:  # an annotation this check does not know: the dataclass's own checks decide
        return True
    if isinstance(value, bool):  # TOML's true is no number here, though Python's bool is an int
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return any(isinstance(value, k) for k in kinds if k is not bool)


def replace(config, given: dict[str, Any]):
    """``config`` with the settings in ``given`` replaced; ``X_options`` given are merged into
    the config's, except when the plugin ``X`` itself changes: then its old options are dropped,
    as they belonged to the other plugin. A shorthand for an objective's option (``beta``, …)
    replaces that option in the config's ``objective_options``."""
    changes = {}
    for key, value in given.items():
        if key.endswith("_options"):
            kind = key[:-len("_options")]
            same_plugin = given.get(kind, getattr(config, kind, None)) == getattr(config, kind, None)
            changes[key] = {**(getattr(config, key) if same_plugin else {}), **value}
        else:
            changes[key] = value
    for key in given:  # a new plugin without options of its own given: none of the old plugin's
        if f"{key}_options" in {f.name for f in dataclasses.fields(config)} and f"{key}_options" not in given \
                and given[key] != getattr(config, key):
            changes[f"{key}_options"] = {}
    # A shorthand flag for an objective option (--beta for beta, …) replaces that option in the file.
    from vaetool.objectives import SHORTHANDS

    shorthand_options = {SHORTHANDS[key][0] for key in given if key in SHORTHANDS}
    if shorthand_options and hasattr(config, "objective_options"):
        options = changes.get("objective_options", config.objective_options)
        changes["objective_options"] = {k: v for k, v in options.items() if k not in shorthand_options}
    return dataclasses.replace(config, **changes)
