"""Model files and latent files as untrusted input: checked before anything is allocated.

A model file's header says what to build; its tensors say what was stored. Nothing from the
header is trusted until the two agree: the JSON is parsed under size and depth limits, every core
size in the config is checked for its type and against sane bounds, and the model is first built
on the ``meta`` device — which allocates no memory — so that its ``state_dict`` shapes and dtypes
can be compared with the stored tensors' before the real module exists. Only then is the model
built for real and loaded; its weights must be finite unless the caller says otherwise.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vaetool.errors import VaetoolError

MAX_HEADER_CHARS = 16 << 20  # a model header is a few kB; a checkpoint's a little more
MAX_JSON_DEPTH = 64  # configs nest four or five levels
MAX_SIDE = 1 << 16  # pixels along one side of an image
MAX_CHANNELS = 1 << 12
MAX_PIXELS = 1 << 28  # channels × height × width
MAX_LATENT = 1 << 16
MAX_CLASSES = 1 << 20
# Memory a model may hold beyond its stored tensors (non-persistent buffers), in bytes.
EXTRA_BYTES = 64 << 20

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def loads_json(text: str | bytes, what: str, max_chars: int = MAX_HEADER_CHARS) -> Any:
    """``json.loads`` with a size and a nesting limit, so that hostile JSON cannot exhaust the
    stack (``RecursionError``) or the memory; one sentence naming ``what`` otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VaetoolError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    if len(text) > max_chars:
        raise VaetoolError(f"{what} holds {len(text):,} characters of JSON; the limit is {max_chars:,}.")
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise VaetoolError(f"{what} nests JSON {deepest} levels deep; the limit is {MAX_JSON_DEPTH}.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise VaetoolError(f"{what} is not valid JSON ({exc}).") from exc


# -- the config ------------------------------------------------------------------------------------

def _whole(value: Any, name: str, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise VaetoolError(f"The model config in {where} has {name} {_show(value)}; it must be a whole number.")
    if not low <= value <= high:
        raise VaetoolError(f"The model config in {where} has {name} {value}; it must lie in {low} to {high:,}.")
    return value


def _finite(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (not a bool, which JSON's true would be)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_config(config: Any, where: str | Path) -> dict[str, Any]:
    """The core of a model config, checked for type and bounds; one sentence for the first fault."""
    if not isinstance(config, dict):
        raise VaetoolError(f"{where} has no vaetool model config in its header.")
    for key in ("architecture", "architecture_options", "likelihood", "likelihood_options", "input_shape",
                "latent_dim", "num_classes"):
        if key not in config:
            raise VaetoolError(f"The model config in {where} has no {key!r} entry.")
    for key in ("architecture", "likelihood", "prior", "latent", "dataset", "encoder_scale", "objective"):
        if key in config and (not isinstance(config[key], str) or not config[key]):
            raise VaetoolError(f"The model config in {where} has {key} {_show(config[key])}; it must be a name.")
    for key in ("architecture_options", "likelihood_options", "prior_options", "latent_options", "dataset_options",
                "objective_options", "training"):
        if key in config and not isinstance(config[key], dict):
            raise VaetoolError(f"The model config in {where} has {key} {_show(config[key])}; it must be a mapping.")
    shape = config["input_shape"]
    if not isinstance(shape, list) or len(shape) != 3:
        raise VaetoolError(f"The model config in {where} has input_shape {_show(shape)}; it must be "
                           "[channels, height, width].")
    channels = _whole(shape[0], "input_shape channels", 1, MAX_CHANNELS, where)
    height, width = (_whole(s, "an input_shape side", 1, MAX_SIDE, where) for s in shape[1:])
    if channels * height * width > MAX_PIXELS:
        raise VaetoolError(f"The model config in {where} has input_shape {shape}: {channels * height * width:,} "
                           f"values per image, over the limit of {MAX_PIXELS:,}.")
    _whole(config["latent_dim"], "latent_dim", 1, MAX_LATENT, where)
    _whole(config["num_classes"], "num_classes", 0, MAX_CLASSES, where)
    if not isinstance(config.get("autoencoder", False), bool):
        raise VaetoolError(f"The model config in {where} has autoencoder {_show(config['autoencoder'])}; "
                           "it must be true or false.")
    from vaetool.distributions import SCALES

    if config.get("encoder_scale", "exp") not in SCALES:
        raise VaetoolError(f"The model config in {where} has encoder_scale {_show(config['encoder_scale'])}; "
                           f"it must be one of {', '.join(SCALES)}.")
    names = config.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise VaetoolError(f"The model config in {where} has class_names {_show(names)}; it must be a list of names.")
    if names and len(names) != config["num_classes"]:  # a name per class, as datasets give them; none in older files
        raise VaetoolError(f"The model config in {where} has {len(names)} class_names for num_classes "
                           f"{config['num_classes']}; it must name every class or none.")
    from vaetool import objectives, registry

    # vaetool's own objectives' shorthand options are read as numbers to describe the model; a plugin's are its own.
    objective = objectives.recorded(config)[0]
    own = objective == objectives.DEFAULT or registry.package_of("objective", objective) == "vaetool"
    for key, value in (config.get("objective_options", {}) if own else {}).items():
        if key in objectives.SHORTHANDS and value is not None and not _finite(value):
            raise VaetoolError(f"The model config in {where} has objective option {key} {_show(value)}; it must be "
                               "a finite number.")
    if config.get("background") not in (None, "dark", "light"):  # anything else would invert every image given
        raise VaetoolError(f"The model config in {where} has background {_show(config['background'])}; it must be "
                           "dark or light.")
    kl = config.get("test_kl_per_dim", [])
    if not isinstance(kl, list) or not all(_finite(v) for v in kl):
        raise VaetoolError(f"The model config in {where} has test_kl_per_dim {_show(kl)}; it must be a list of "
                           "finite numbers.")
    return config


# -- building the model ----------------------------------------------------------------------------

@contextlib.contextmanager
def plugin_errors(kind: str, name: str, options: Any, plugin: type | None = None) -> Iterator[None]:
    """Turn whatever a plugin's constructor raises into one sentence naming the plugin and its options;
    where an option in ``options`` is of another kind than ``plugin``'s default for it (a word for a
    number, say), that option is named instead."""
    try:
        yield
    except VaetoolError:
        raise
    except Exception as exc:
        from vaetool import registry

        text = " ".join(str(exc).split())
        given = options if isinstance(options, dict) else {}
        for key, default in (registry.defaults_of(plugin, given) if plugin is not None else {}).items():
            value = given[key]
            wanted = _kind_of(default)
            if value is not None and wanted is not None and _kind_of(value) != wanted:
                raise VaetoolError(f"The {kind} {name!r} could not use {key}={value!r}: it takes {wanted}, "
                                   f"like its default {default!r}.") from exc
        asked = re.search(r"tried to allocate (\d+) bytes", text)
        if isinstance(exc, MemoryError) or "can't allocate memory" in text or asked:  # torch's own words
            size = f" ({int(asked.group(1)) / 2 ** 30:,.0f} GiB for one tensor)" if asked else ""
            raise VaetoolError(f"The {kind} {name!r} with the options {_show(options)} needs more memory than "
                               f"there is{size}; choose smaller sizes.") from exc
        raise VaetoolError(f"The {kind} {name!r} could not be built with the options {_show(options)} "
                           f"({type(exc).__name__}: {text[:200]}).") from exc


def _kind_of(value: Any) -> str | None:
    """What kind of value an option holds, in words, for the kinds a command line gives."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a word"
    return None  # a list, a mapping, None: plugins take those in too many shapes to say


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def build_model(config: dict[str, Any], stored: dict[str, tuple[tuple[int, ...], str]], where: str | Path):
    """A model rebuilt from ``config`` whose ``state_dict`` matches the ``stored`` tensors' shapes and
    dtypes (``{key: (shape, safetensors dtype)}``), checked on the meta device before it is built."""
    import torch

    from vaetool import registry
    from vaetool.model import DEFAULT_LATENT, DEFAULT_PRIOR, VAE

    defaults = {"prior": DEFAULT_PRIOR, "latent": DEFAULT_LATENT}
    for kind in ("architecture", "likelihood", "prior", "latent"):  # imported outside the meta context below
        registry.get(kind, config.get(kind, defaults.get(kind)))
    try:
        with torch.device("meta"):
            meta = VAE.from_config(config)
    except Exception:
        # A plugin that cannot be built on the meta device (or a config it refuses, which the real
        # build below reports): its tensors must still match before they are loaded.
        meta = None
    if meta is not None:
        expected = meta.state_dict()
        _compare(expected, stored, where)
        held = sum(t.numel() * t.element_size() for t in [*meta.parameters(), *meta.buffers()])
        stored_bytes = sum(t.numel() * t.element_size() for t in expected.values())
        if held > stored_bytes + EXTRA_BYTES:
            raise VaetoolError(f"The model in {where} would hold {held / 2**20:,.0f} MiB beyond its stored weights; "
                               "its config is not one vaetool wrote.")
    model = VAE.from_config(config)
    if meta is None:
        _compare(model.state_dict(), stored, where)
    # One test KL per dimension of every layer, or one for a Monte Carlo KL (contracts.LatentTerms):
    # traverse and explore order the dimensions by it.
    kl, widths = config.get("test_kl_per_dim"), model.latent.layers
    if kl is not None and len(kl) not in (1, sum(widths)):
        raise VaetoolError(f"The model config in {where} has {len(kl)} test_kl_per_dim values for a latent of "
                           f"{sum(widths)} dimensions; it must have one for each dimension, or a single one.")
    return model


def _compare(expected: dict[str, Any], stored: dict[str, tuple[tuple[int, ...], str]], where) -> None:
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise VaetoolError(f"The weights in {where} do not fit the model its header describes: {len(missing)} "
                           f"tensor(s) it needs are missing, e.g. {missing[0]!r}.")
    unexpected = sorted(set(stored) - set(expected))
    if unexpected:
        raise VaetoolError(f"The weights in {where} do not fit the model its header describes: {len(unexpected)} "
                           f"tensor(s) have no place in it, e.g. {unexpected[0]!r}.")
    for key, tensor in expected.items():
        shape, dtype = stored[key]
        if tuple(shape) != tuple(tensor.shape):
            raise VaetoolError(f"The weights in {where} do not fit the model its header describes: {key} is stored "
                               f"as {tuple(shape)}, the model needs {tuple(tensor.shape)}.")
        if _SAFETENSORS_DTYPES.get(dtype) != str(tensor.dtype).removeprefix("torch."):
            raise VaetoolError(f"The weights in {where} do not fit the model its header describes: {key} is stored "
                               f"as {dtype}, the model needs {tensor.dtype}.")


def check_finite(tensors: dict[str, Any], where: str | Path) -> None:
    """Refuse weights that hold NaN or infinity: such a model decodes garbage without a word."""
    bad = {key: int((~t.isfinite()).sum()) for key, t in tensors.items() if t.is_floating_point()}
    bad = {key: count for key, count in bad.items() if count}
    if bad:
        first = next(iter(bad))
        raise VaetoolError(f"The weights in {where} hold {sum(bad.values()):,} values that are NaN or infinite "
                           f"(in {len(bad)} tensor(s), e.g. {first}); pass --allow-nonfinite (in Python, "
                           "allow_nonfinite=True) to load them anyway for debugging.")
