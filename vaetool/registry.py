"""Plugin discovery: one entry-point group per plugin kind, looked up by plain name.

The built-ins are registered through vaetool's own entry points, exactly like a third-party
package, so ``pip install some-plugin`` is all it takes to add one. The entry-point name is the
only identity a plugin has: it is what ``--arch`` takes, what ``vaetool plugins`` shows and
what a model file records.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib import metadata
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from vaetool.errors import VaetoolError

GROUPS = {
    "architecture": "vaetool.architectures",
    "likelihood": "vaetool.likelihoods",
    "prior": "vaetool.priors",
    "latent": "vaetool.latents",
    "dataset": "vaetool.datasets",
    "objective": "vaetool.objectives",
    "lr_schedule": "vaetool.lr_schedules",
}

# Constructor arguments that vaetool itself supplies; everything else is a plugin option.
CORE_ARGUMENTS = {"self", "input_shape", "latent_dim", "params_per_channel", "num_classes", "encoder_scale",
                  "autoencoder"}

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
            raise _not_installed(kind, name)
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must never take the tool down with it
            raise VaetoolError(f"The {kind} plugin {name!r} ({ep.value}) failed to import: "
                               f"{type(exc).__name__}: {exc}.") from exc
    _check_api_version(kind, name, cls)
    return cls


def _not_installed(kind: str, name: str) -> VaetoolError:
    installed = ", ".join(names(kind)) or "none"
    return VaetoolError(f"No {kind} named {name!r} is installed; installed {kind}s: {installed}.")


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


def static_options(kind: str, name: str) -> dict[str, Any] | None:
    """A plugin's options and their defaults, read from its source without importing it.

    ``vaetool plugins`` shows every plugin's options, and importing the plugins to read their
    signatures would import torch and each plugin's own dependencies: seconds, for a listing that
    should answer at once. So the constructor is read from the source with :mod:`ast` instead (see
    :func:`source_options`). ``None`` when the source does not settle the options; then
    :func:`options_of` on the imported class is the answer (``vaetool plugins --check``).
    A plugin registered in-process is already imported, and is asked directly.
    """
    _check_kind(kind)
    if name in _registered[kind]:
        return options_of(_registered[kind][name])
    ep = _entry_points(kind).get(name)
    if ep is None:
        raise _not_installed(kind, name)
    return source_options(ep.value)


def source_options(target: str) -> dict[str, Any] | None:
    """The options of the class that an entry point value ``module.path:Class`` names, read from source.

    Nothing is imported or executed: the module's file is found through the import system's finders
    (:func:`static_options` says why). If the class defines no ``__init__``, its base class is
    followed, where it is defined in the same module or imported by name into it. A default that is a
    literal comes back as its value, any other as its source text. ``None`` when the source does not
    settle the options: a decorated class, several base classes, a module that is not Python source.
    """
    module, _, qualname = target.partition(":")
    found = _class_in_source(module.strip(), qualname.split("[")[0].strip())  # [...]: the entry point's extras
    walked = set()
    while found is not None and found[1] not in walked:  # a cycle of bases is no class Python would build
        module, node = found
        walked.add(node)
        if node.decorator_list:  # a decorator, @dataclass say, may write the constructor
            return None
        init = _binding(node.body, "__init__")
        if isinstance(init, ast.FunctionDef) and not init.decorator_list:
            return _arguments(init.args)
        if init is not None:
            return None
        bases = [base for base in node.bases if not (isinstance(base, ast.Name) and base.id == "object")]
        if not bases:
            return {}  # object.__init__ takes no options
        if len(bases) > 1 or node.keywords:  # the MRO or a metaclass is beyond a simple walk
            return None
        if isinstance(bases[0], ast.Attribute) and bases[0].attr == "Module" \
                and _module_in_source(module, bases[0].value) == "torch.nn":
            return {}  # nn.Module takes no options; known without parsing torch's largest file
        found = _base_in_source(module, bases[0])
    return None


class _SourceText(str):
    """A default that is not a literal, as its source text; its repr is that text, unquoted."""

    def __repr__(self) -> str:
        return str(self)


def _arguments(args: ast.arguments) -> dict[str, Any]:
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    # Positional-only arguments cannot be given by name, so, as in options_of, they are no options.
    pairs = [*zip(positional, defaults)][len(args.posonlyargs):] + [*zip(args.kwonlyargs, args.kw_defaults)]
    return {arg.arg: _default(value) for arg, value in pairs if arg.arg not in CORE_ARGUMENTS}


def _default(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return _SourceText(ast.unparse(node))


def _source_path(module: str) -> Path | None:
    """A module's source file, found without executing the module or its parent packages."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing to import first
    except (ImportError, ValueError):
        return None
    for depth in range(1, len(rest) + 1):
        # find_spec("a.b") would import a; PathFinder looks in a's folders only.
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = PathFinder.find_spec(".".join([top, *rest[:depth]]), list(spec.submodule_search_locations))
    if spec is None or not (spec.origin or "").endswith(".py"):
        return None
    return Path(spec.origin)


@functools.lru_cache(maxsize=None)
def _parsed(module: str) -> ast.Module | None:
    path = _source_path(module)
    if path is None:
        return None
    try:
        return ast.parse(importlib.util.decode_source(path.read_bytes()), str(path))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return None


def _binding(body: list[ast.stmt], name: str) -> ast.stmt | None:
    """The last statement of ``body`` (not nested) that binds ``name``."""
    found = None
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            bound = [node.name]
        elif isinstance(node, ast.Import):
            bound = [alias.asname or alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            bound = [alias.asname or alias.name for alias in node.names]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound = [n.id for target in targets for n in ast.walk(target)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        else:
            continue
        if name in bound:
            found = node
    return found


def _imported_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module that ``from ... import`` in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    path = _source_path(module)
    package = module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imported_name(node: ast.Import | ast.ImportFrom, name: str) -> str:
    """What the import statement ``node``, which binds ``name``, imports under that name."""
    for alias in reversed(node.names):
        if isinstance(node, ast.ImportFrom) and (alias.asname or alias.name) == name:
            return alias.name
        if isinstance(node, ast.Import) and alias.asname == name:
            return alias.name
        if isinstance(node, ast.Import) and not alias.asname and alias.name.split(".")[0] == name:
            return name  # import a.b binds a
    raise ValueError(f"{ast.unparse(node)!r} does not bind {name!r}")


def _class_in_source(module: str, qualname: str, seen: frozenset = frozenset()) -> tuple[str, ast.ClassDef] | None:
    """The class named ``qualname`` in ``module``, where it is defined or imported by name into it."""
    tree = _parsed(module)
    if tree is None or not qualname or (module, qualname) in seen:
        return None
    seen |= {(module, qualname)}
    name, *inner = qualname.split(".")
    node = _binding(tree.body, name)
    if isinstance(node, ast.ImportFrom):
        original = _imported_name(node, name)
        return _class_in_source(_imported_from(module, node), ".".join([original, *inner]), seen)
    if node is None:  # perhaps from a star import; the last one wins, as the last binding would
        stars = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.names[0].name == "*"]
        for star in reversed(stars):
            found = _class_in_source(_imported_from(module, star), qualname, seen)
            if found is not None:
                return found
        return None
    for part in inner:
        node = _binding(node.body, part) if isinstance(node, ast.ClassDef) else None
    return (module, node) if isinstance(node, ast.ClassDef) else None


def _module_in_source(module: str, expr: ast.expr) -> str | None:
    """The module that ``expr`` (``nn`` or ``torch.nn``, say) names in ``module``, if it names one."""
    if isinstance(expr, ast.Attribute):
        parent = _module_in_source(module, expr.value)
        return f"{parent}.{expr.attr}" if parent else None
    tree = _parsed(module)
    if not isinstance(expr, ast.Name) or tree is None:
        return None
    node = _binding(tree.body, expr.id)
    if isinstance(node, ast.Import):
        return _imported_name(node, expr.id)
    if isinstance(node, ast.ImportFrom):  # from torch import nn: the submodule torch.nn
        return f"{_imported_from(module, node)}.{_imported_name(node, expr.id)}"
    return None


def _base_in_source(module: str, expr: ast.expr) -> tuple[str, ast.ClassDef] | None:
    if isinstance(expr, ast.Name):
        return _class_in_source(module, expr.id)
    if isinstance(expr, ast.Attribute):
        owner = _module_in_source(module, expr.value)
        return _class_in_source(owner, expr.attr) if owner else None
    return None  # Generic[T], a call: not settled by reading


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


def defaults_of(cls, options: dict[str, Any]) -> dict[str, Any]:
    """The defaults of the options in ``options`` that differ from them: those a user (or a file) gave."""
    try:
        known = options_of(cls)
    except Exception:  # noqa: BLE001 — a constructor whose signature cannot be read: no hint, the error stands
        return {}
    return {k: d for k, d in known.items() if k in options and options[k] != d}


def build(kind: str, name: str, options: dict[str, Any] | None = None, *core: Any) -> tuple[Any, dict[str, Any]]:
    """The plugin ``name`` of ``kind`` built from ``options``, and the full options it was built with.

    The one place a plugin is made from its name and options: the options are resolved as in
    :func:`resolve_options` and passed by name after the ``core`` arguments vaetool supplies
    (``latent_dim`` for a prior, say); the resolved options are what a model file records.
    """
    from vaetool.validate import plugin_errors

    resolved = resolve_options(kind, name, options or {})
    cls = get(kind, name)
    with plugin_errors(kind, name, resolved, cls):
        return cls(*core, **resolved), resolved


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
