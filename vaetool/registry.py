"""Plugin discovery: one entry-point group per plugin kind, looked up by plain name.

The built-ins are registered through vaetool's own entry points, exactly like a third-party
package, so ``pip install some-plugin`` is all it takes to add one. The entry-point name is the
only identity a plugin has: it is what ``--arch`` takes, what ``vaetool plugins`` shows and
what a model file records.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from vaetool.errors import VaetoolError

GROUPS = {
    "architecture": "vaetool.architectures",
    "likelihood": "vaetool.likelihoods",
    "prior": "vaetool.priors",
    "dataset": "vaetool.datasets",
}

# Constructor arguments that vaetool itself supplies; everything else is a plugin option.
CORE_ARGUMENTS = {"self", "input_shape", "latent_dim", "params_per_channel", "num_classes"}

_registered: dict[str, dict[str, type]] = {kind: {} for kind in GROUPS}
_reported: set[tuple[str, str]] = set()


@dataclass
class PluginInfo:
    """What ``vaetool plugins`` shows about one plugin, known without importing it."""

    kind: str
    name: str
    package: str
    version: str
    target: str


def _check_kind(kind: str) -> None:
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(GROUPS)}")


def _entry_points(kind: str) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=GROUPS[kind])}


def register(kind: str, name: str, cls: type) -> None:
    """Register a plugin in this process only (tests, notebooks). Entry points are the real way."""
    _check_kind(kind)
    _registered[kind][name] = cls


def unregister(kind: str, name: str) -> None:
    _registered[kind].pop(name, None)


def names(kind: str) -> list[str]:
    """Every installed name of this kind, without importing any plugin."""
    _check_kind(kind)
    return sorted(set(_entry_points(kind)) | set(_registered[kind]))


def infos(kind: str) -> list[PluginInfo]:
    """Name, package and version of every installed plugin of this kind, without importing any."""
    _check_kind(kind)
    found = []
    for name, ep in _entry_points(kind).items():
        dist = ep.dist
        found.append(PluginInfo(kind, name, dist.name if dist else "?", dist.version if dist else "?", ep.value))
    for name, cls in _registered[kind].items():
        found.append(PluginInfo(kind, name, "(registered in-process)", "", f"{cls.__module__}:{cls.__qualname__}"))
    return sorted(found, key=lambda info: info.name)


def package_of(kind: str, name: str) -> str | None:
    """The distribution that provides a plugin, to tell users what to install."""
    ep = _entry_points(kind).get(name)
    return ep.dist.name if ep is not None and ep.dist is not None else None


def get(kind: str, name: str) -> type:
    """The class registered as ``name``; a clear error if it is unknown, broken or incompatible."""
    _check_kind(kind)
    if name in _registered[kind]:
        cls = _registered[kind][name]
    else:
        ep = _entry_points(kind).get(name)
        if ep is None:
            installed = ", ".join(names(kind)) or "none"
            raise VaetoolError(f"No {kind} named {name!r} is installed; installed {kind}s: {installed}.")
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must never take the tool down with it
            raise VaetoolError(f"The {kind} plugin {name!r} ({ep.value}) failed to import: "
                               f"{type(exc).__name__}: {exc}.") from exc
    _check_api_version(kind, name, cls)
    return cls


def _check_api_version(kind: str, name: str, cls: type) -> None:
    from vaetool.contracts import PLUGIN_API_VERSION

    version = getattr(cls, "api_version", None)
    if version != PLUGIN_API_VERSION:
        raise VaetoolError(f"The {kind} plugin {name!r} was written for plugin API version {version}, "
                           f"but this vaetool speaks version {PLUGIN_API_VERSION}; upgrade the plugin or vaetool.")


def load_all(kind: str) -> dict[str, type]:
    """Import every plugin of a kind; one that fails is reported once on stderr and skipped."""
    loaded = {}
    for name in names(kind):
        try:
            loaded[name] = get(kind, name)
        except VaetoolError as exc:
            if (kind, name) not in _reported:
                _reported.add((kind, name))
                print(f"vaetool: skipping plugin: {exc}", file=sys.stderr)
    return loaded


def options_of(cls: type) -> dict[str, Any]:
    """A plugin's options and their defaults, read from its constructor's signature."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in params
            if p.name not in CORE_ARGUMENTS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def resolve_options(kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The full option set a plugin is built with: its own defaults, overridden by the options given.

    Options that are ``None`` were not given by the user and never override a default. The
    result is JSON-able data recorded in the model file, so it rebuilds the same module even if
    the plugin's defaults later change.
    """
    cls = get(kind, name)
    known = options_of(cls)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(known))
    if unknown:
        choices = ", ".join(known) or "none"
        raise VaetoolError(f"The {kind} {name!r} has no option {', '.join(map(repr, unknown))}; its options are: {choices}.")
    return _jsonable({**known, **given})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
