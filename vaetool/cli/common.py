"""What every command shares: errors as one line on stderr with the right exit code, and option parsing."""
from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any

import typer

from vaetool.errors import INTERRUPT_EXIT, RUNTIME_EXIT, USAGE_EXIT, VaetoolError

DEBUG_ENV = "VAETOOL_DEBUG"
_debug = False  # set by ``vaetool --debug``


def set_debug(value: bool) -> None:
    global _debug
    _debug = value


def debugging() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def fail(message: str, code: int = USAGE_EXIT):
    rank = os.environ.get("RANK", "0")  # under torchrun every process reports; rank 0 as if alone
    message = " ".join(message.split())  # one line, whatever the message held
    typer.echo(f"Error: {message}" if rank == "0" else f"Error (process {rank}): {message}", err=True)
    raise typer.Exit(code)


def handle_errors(command):
    """Run a command so that nothing a user can cause ends in a traceback.

    A :class:`VaetoolError` is printed as its one sentence, with its exit code (2: usage, 1: a
    runtime failure); an interrupt exits with 130; anything else is named in one sentence with a
    pointer to ``--debug`` (or ``VAETOOL_DEBUG=1``), which shows the traceback instead.
    """
    # typer's own exits and usage errors (its ClickException, from click or typer's copy of it).
    passed_on = (typer.Exit, typer.Abort,
                 next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except passed_on:
            raise
        except BaseException as exc:
            if debugging() or isinstance(exc, (SystemExit, GeneratorExit)):
                raise
            message, code = describe(exc, command.__name__)
            fail(message, code)

    return wrapper


def describe(exc: BaseException, command: str) -> tuple[str, int]:
    """One sentence and an exit code for an exception that ended ``vaetool COMMAND``."""
    if isinstance(exc, VaetoolError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted.", INTERRUPT_EXIT
    hint = f"run `vaetool --debug {command} ...` (or set {DEBUG_ENV}=1) to see the traceback."
    # torch says "out of memory" on GPUs and "can't allocate memory" for host memory.
    if isinstance(exc, MemoryError) or any(s in str(exc).lower() for s in ("out of memory", "can't allocate memory")):
        return f"`vaetool {command}` ran out of memory; try smaller sizes or batches, or {hint}", RUNTIME_EXIT
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"`vaetool {command}` failed: {exc.strerror}{where}.", RUNTIME_EXIT
    text = " ".join(str(exc).split())
    text = f": {text[:300]}{'…' if len(text) > 300 else ''}" if text else ""
    return f"`vaetool {command}` failed unexpectedly ({type(exc).__name__}{text}); {hint}", RUNTIME_EXIT


def literal(text: str, flag: str | None = None) -> Any:
    """A CLI value as data: numbers, true/false, JSON, or comma-separated lists of those."""
    from vaetool.validate import loads_json

    try:
        return loads_json(text, flag or "The value")
    except VaetoolError:
        pass
    if "," in text:
        parts = [part.strip() for part in text.split(",")]
        if any(not part for part in parts):
            raise VaetoolError(f"{flag or 'The value'} {text!r} has an empty item between its commas.")
        return [literal(part, flag) for part in parts]
    return text


def key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["hidden=512,256", "x=1"]`` → ``{"hidden": [512, 256], "x": 1}``."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VaetoolError(f"{flag} takes KEY=VALUE, not {pair!r}.")
        options[key.strip().replace("-", "_")] = literal(value.strip(), f"{flag} {key.strip()}")
    return options


def import_torch():
    """torch, imported with Python's cyclic collector paused and its objects exempt from it after
    (:mod:`vaetool.heavy_imports`). The commands that need torch call this first; ``--help``, ``plugins``
    and ``show`` on a model file never import torch."""
    from vaetool import heavy_imports

    return heavy_imports.load("torch")


def open_model(model, runs_dir, device: str, allow_nonfinite: bool = False, layer: int | None = None):
    """The model named by ``--model`` (or the latest run), loaded on the chosen device, its code at ``--layer``."""
    from vaetool import devices, io, runs

    path = runs.find_model(model, runs.runs_root(runs_dir))
    loaded = io.load(path, devices.resolve(device), allow_nonfinite=allow_nonfinite)
    loaded.source = path  # so a command can say which run it used
    say_latest(loaded, model)  # at once: a mistake found later is then read against the right model
    try:
        loaded.select_layer(layer)
    except VaetoolError as error:
        text = str(error)
        raise VaetoolError(f"--layer {layer}: {text[0].lower()}{text[1:]}") from None
    return loaded


def say_latest(vae, model) -> None:
    """On stderr, which run was used when ``--model`` was left out."""
    if model is None:
        from vaetool.cli import output

        output.note(f"Using the latest run, {vae.source.parent} (--model picks another).")


def condition_label(label: str | None, index: str | None = None) -> int | None:
    """``--label`` without ``--data``: the one class a conditional model is conditioned on."""
    if index is not None:
        raise VaetoolError("--index picks images from a dataset; give --data too, e.g. --data mnist.")
    if label is None:
        return None
    try:
        return int(label)
    except ValueError:
        raise VaetoolError(f"Without --data, --label is the one class a conditional model is conditioned on, not "
                           f"{label!r}; add --data to pick a dataset's images by label.") from None


def dataset_images(vae, data: str, *, split: str, label: str | None, index: str | None, data_dir,
                   per_label: int | None = None, seed: int | None = None):
    """The images ``--data``/``--label``/``--index`` pick, for ``vae``: ``(images, labels, picked)``,
    images as floats in [0, 1] on the model's device, and labels there too for a conditional model."""
    from vaetool import picking

    if label is None and index is None:
        raise VaetoolError("With --data, choose the images by --label (e.g. 2,7) or --index (e.g. 0,1).")
    picked = picking.from_options(data, split=split, label=label, index=index, per_label=per_label, seed=seed,
                                  data_dir=data_dir, model=vae)
    y = picked.labels.to(vae.device) if vae.conditional and picked.labels is not None else None
    if vae.conditional and y is None:
        raise VaetoolError(f"This model is conditional, and {data} has no labels to condition it on.")
    return picked.floats().to(vae.device), y, picked


def read_latents(model, path):
    """A latent file for ``model``: codes for a discrete latent, posterior means otherwise, or one sentence."""
    from vaetool import latentfile

    read = latentfile.as_kind(latentfile.read(path), model.discrete, path)
    if read.discrete != model.discrete:
        held, taken = ("codes", "continuous latents") if read.discrete else ("continuous latents", "codes")
        raise VaetoolError(f"{path} holds {held}, but this model's {model.config['latent']} latent takes {taken}.")
    return read


def layer_note(model) -> str:
    """For a model with several stochastic layers, which one the code is: " (layer 2 of 2; --layer picks another)"."""
    count = len(model.latent.layers)
    return f" (layer {model.latent.layer} of {count}; --layer picks another)" if count > 1 else ""


def refuse_discrete(model, what: str, remedy: str) -> None:
    """One sentence for a command that only makes sense for a continuous latent, given a discrete one."""
    if model.discrete:
        raise VaetoolError(f"{what}, but this model's {model.config['latent']} latent is a row of discrete codes, "
                           f"which {remedy}.")


def generator(model, seed: int):
    import torch

    return torch.Generator(device=model.device).manual_seed(seed)


def labels_for(model, label: int | None, n: int, required: bool = True):
    """``n`` copies of ``--label`` as a tensor for a conditional model; None for an unconditional one."""
    import torch

    if not model.conditional:
        if label is not None:
            raise VaetoolError("--label applies to conditional models only; this one is not conditional.")
        return None
    if label is None:
        if not required:
            return None
        raise VaetoolError(f"This model is conditional: give --label, a class from 0 to {model.num_classes - 1}.")
    if not 0 <= label < model.num_classes:
        raise VaetoolError(f"--label must be a class from 0 to {model.num_classes - 1} for this model, not {label}.")
    return torch.full((n,), label, dtype=torch.long, device=model.device)


def write_pictures(frames, path, zoom: int | None, fps: float = 12.0, nrow: int = 8) -> None:
    """Images ``(N, C, H, W)`` as a PNG grid, or as a GIF with one image per frame, by ``path``'s extension."""
    from pathlib import Path

    from vaetool import images

    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        images.save_png(images.grid(frames, nrow=nrow, zoom=zoom), path)
    elif suffix == ".gif":
        images.check_picture_size(len(frames) * images.grid_pixels(1, *frames.shape[-2:], 1, zoom, 0), zoom)
        images.save_gif([images.grid(f[None], nrow=1, zoom=zoom, pad=0) for f in frames], path, fps)
    else:
        raise VaetoolError(f"Pictures are written as .png or .gif; {Path(path).name} is neither.")


def check_output(path, allowed: tuple[str, ...], force: bool | None = None, inputs=()) -> None:
    """Refuse, before any work is done, an output with another extension, one that would replace a
    model or checkpoint, one of the command's ``inputs`` (even with ``force``), or (``force=False``)
    any existing file; ``None`` lets pictures be re-made."""
    from pathlib import Path

    from vaetool import io

    if Path(path).is_dir():
        raise VaetoolError(f"{path} is a folder; the output is a file ending in {', '.join(allowed)} "
                           f"(for instance {Path(path) / ('out' + allowed[0])}).")
    if Path(path).suffix.lower() not in allowed:
        raise VaetoolError(f"{Path(path).name}: the output must end in {', '.join(allowed)}.")
    for given in inputs or ():
        with contextlib.suppress(OSError):  # one that does not exist is not the output, and is reported elsewhere
            if os.path.samefile(path, given):
                raise VaetoolError(f"{path} is also an input of this command; write the output to another file.")
    io.refuse_to_replace(path, force)
