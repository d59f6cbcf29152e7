"""Model files: one ``.safetensors`` file per model, its config as JSON in the header.

The header's ``vaetool`` entry holds everything needed to rebuild the model — the registry names
and options of its plugins, data shape, latent size, classes — plus provenance (dataset, training
settings, versions). Loading asks the registry for those names and nothing else: no class paths,
no pickles. Every write goes to a temporary file first and is renamed into place, so a crash never
leaves half a file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaetool.errors import RuntimeFailure, VaetoolError

SCHEMA_VERSION = 1
MODEL_FILE = "model.safetensors"
HEADER_KEY = "vaetool"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    A failure of the file system (no such folder, no permission, a full disk) is one sentence naming
    ``path``, not the hidden temporary file; whatever was at ``path`` before is left as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise _cannot_write(path, exc) from exc
        raise


def _cannot_write(path: Path, exc: OSError) -> RuntimeFailure:
    above = next((p for p in path.parents if os.path.lexists(p)), None)  # the nearest part that exists
    if path.is_dir():
        reason = "it is a folder"
    elif above is not None and not above.is_dir():
        reason = f"{above} is a file, not a folder"
    else:
        reason = (exc.strerror or str(exc)).lower()
    return RuntimeFailure(f"Cannot write {path}: {reason}.")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_tensors(path: str | Path, tensors: dict[str, Any], header: dict[str, Any]) -> None:
    """Tensors plus a JSON header, written atomically as safetensors."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {HEADER_KEY: json.dumps(header)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_tensors(path: str | Path, device: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, header) of a file written by :func:`save_tensors`; a clear error for anything else."""
    with _opened(path, device) as (f, header):
        try:
            return {key: f.get_tensor(key) for key in f.keys()}, header
        except Exception as exc:  # the file changed or was cut short since it was opened
            raise VaetoolError(f"{path} is damaged: its tensors cannot be read ({type(exc).__name__}).") from exc


@contextlib.contextmanager
def _opened(path: str | Path, device: str = "cpu"):
    """The open safetensors file and its parsed vaetool header, checked as untrusted input."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    from vaetool.validate import loads_json

    path = Path(path)
    if not path.is_file():
        raise VaetoolError(f"There is no file at {path}.")
    try:
        handle = safe_open(str(path), framework="pt", device=str(device))
        f = handle.__enter__()
        metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise VaetoolError(f"{path} is not a vaetool model file ({type(exc).__name__}: {exc}).") from exc
    try:
        if HEADER_KEY not in metadata:
            raise VaetoolError(f"{path} is not a vaetool model file: it is a safetensors file without a vaetool header.")
        try:
            header = loads_json(metadata[HEADER_KEY], "its header")
        except VaetoolError as exc:
            raise VaetoolError(f"{path} is not a vaetool model file: {exc}") from exc
        yield f, header
    finally:
        handle.__exit__(None, None, None)


def read_layout(path: str | Path) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict[str, Any]]:
    """({key: (shape, dtype)}, header) of a safetensors file, without reading any tensor's data."""
    with _opened(path) as (f, header):
        layout = {}
        for key in f.keys():
            view = f.get_slice(key)
            layout[key] = (tuple(view.get_shape()), view.get_dtype())
        return layout, header


def holds_model(path: str | Path) -> bool:
    """Whether ``path`` is a vaetool model or checkpoint file (outputs must never replace one)."""
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return '"config"' in (f.metadata() or {}).get(HEADER_KEY, "")
    except Exception:  # not safetensors at all
        return False


def refuse_to_replace(path: str | Path, force: bool | None = None) -> None:
    """Refuse an output path that holds a model or checkpoint, or, unless ``force`` (None: outputs
    that are re-made every time, such as pictures), any existing file."""
    path = Path(path)
    if path.is_dir():
        raise VaetoolError(f"{path} is a folder; give a file name for the output.")
    if holds_model(path):
        raise VaetoolError(f"{path} is a vaetool model or checkpoint; no command writes its output over one, "
                           "so choose another output name.")
    if force is False and path.exists():
        raise VaetoolError(f"{path} exists; pass --force to replace it.")


def model_path(path: str | Path) -> Path:
    """A model file, the model file inside a run directory, or a run's ``RUN:best`` / ``RUN:epoch-N``
    (see :mod:`vaetool.snapshots`)."""
    from vaetool import snapshots

    selected = snapshots.select(path)
    if selected is not None:
        return selected
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def save(model, path: str | Path) -> None:
    """Write a model to one self-describing ``.safetensors`` file (atomically)."""
    from vaetool import __version__, registry

    config = dict(model.config)
    config["packages"] = {kind: registry.package_of(kind, config[kind])
                          for kind in ("architecture", "likelihood", "prior", "latent")
                          if registry.package_of(kind, config[kind])}
    header = {"schema": SCHEMA_VERSION, "vaetool_version": __version__, "config": config}
    # A folder named like a model file is not a run directory to write into: refused by the write.
    target = Path(path) if str(path).endswith(".safetensors") else model_path(path)
    save_tensors(target, model.state_dict(), header)


def load(path: str | Path, device: str = "cpu", *, allow_nonfinite: bool = False):
    """Load a model saved by :func:`save` (or a run directory holding one), ready for inference.

    The file is untrusted input (see :mod:`vaetool.validate`): its config is checked and the
    model it describes is compared with the stored tensors before anything is allocated; weights
    that are NaN or infinite are refused unless ``allow_nonfinite``.
    """
    from vaetool import registry, validate

    path = model_path(path)
    layout, header = read_layout(path)
    if not isinstance(header, dict) or not isinstance(header.get("config"), dict):
        raise VaetoolError(f"{path} is a safetensors file but has no vaetool model config in its header.")
    if header.get("schema") != SCHEMA_VERSION:
        raise VaetoolError(f"{path} has model-file schema {validate._show(header.get('schema'))}; this vaetool "
                           f"reads schema {SCHEMA_VERSION}.")
    config = validate.check_config(header["config"], path)
    try:
        model = validate.build_model(config, layout, path)
    except VaetoolError as exc:
        packages = config.get("packages", {})
        packages = packages if isinstance(packages, dict) else {}
        hint = "".join(f" The model needs the {kind} plugin {config.get(kind)!r} from the package {pkg!r}."
                       for kind, pkg in packages.items()
                       if kind in registry.GROUPS and pkg != "vaetool" and config.get(kind) not in registry.names(kind))
        raise VaetoolError(f"Cannot rebuild the model in {path}: {exc}{hint}") from exc
    except (KeyError, TypeError, ValueError, OverflowError, IndexError, RuntimeError) as exc:
        raise VaetoolError(f"The model config in {path} is damaged ({type(exc).__name__}: {exc}).") from exc
    tensors, _ = read_tensors(path)
    if not allow_nonfinite:
        validate.check_finite(tensors, path)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise VaetoolError(f"The weights in {path} do not fit the model its header describes.") from exc
    model = model.to(device).eval()
    if not allow_nonfinite:
        _refuse_overflow(model, path)
    return model


def _refuse_overflow(model, path: Path) -> None:
    """Refuse a model whose finite weights overflow float32 on the way through its encoder (weights
    scaled up by a damaged or hostile file): every command would compute NaN from it and say nothing."""
    import torch

    try:
        device = next(model.parameters()).device
        x = torch.zeros(1, *model.input_shape, device=device)
        y = torch.zeros(1, dtype=torch.long, device=device) if model.conditional else None
        with torch.no_grad():
            mean = model.encode(x, y).mean
    except Exception:  # the probe looks for overflow only; whatever else fails, the command itself meets
        return
    if isinstance(mean, torch.Tensor) and not bool(torch.isfinite(mean).all()):
        raise VaetoolError(f"The weights in {path} are finite but overflow float32: a blank image encodes to "
                           "infinity or NaN. Pass --allow-nonfinite to load it anyway.")
