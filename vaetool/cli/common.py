"""What every command shares: turning VaetoolError into one line on stderr, and option parsing."""
from __future__ import annotations

import functools
import json
import os
from typing import Any

import typer

from vaetool.errors import VaetoolError


def fail(message: str, code: int = 2):
    rank = os.environ.get("RANK", "0")  # under torchrun every process reports; rank 0 as if alone
    typer.echo(f"Error: {message}" if rank == "0" else f"Error (process {rank}): {message}", err=True)
    raise typer.Exit(code)


def handle_errors(command):
    """Run a command so that a user's mistake ends in one clear sentence and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VaetoolError as exc:
            fail(str(exc))

    return wrapper


def literal(text: str) -> Any:
    """A CLI value as data: numbers, true/false, JSON, or comma-separated lists of those."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [literal(part.strip()) for part in text.split(",") if part.strip()]
    return text


def key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["hidden=512,256", "x=1"]`` → ``{"hidden": [512, 256], "x": 1}``."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VaetoolError(f"{flag} takes KEY=VALUE, not {pair!r}.")
        options[key.strip().replace("-", "_")] = literal(value.strip())
    return options


def open_model(model, runs_dir, device: str):
    """The model named by ``--model`` (or the latest run), loaded on the chosen device."""
    from vaetool import devices, io, runs

    path = runs.find_model(model, runs.runs_root(runs_dir))
    return io.load(path, devices.resolve(device))


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
        images.save_gif([images.grid(f[None], nrow=1, zoom=zoom, pad=0) for f in frames], path, fps)
    else:
        raise VaetoolError(f"Pictures are written as .png or .gif; {Path(path).name} is neither.")


def check_output(path, allowed: tuple[str, ...]) -> None:
    """Refuse an output extension before any work is done."""
    from pathlib import Path

    if Path(path).suffix.lower() not in allowed:
        raise VaetoolError(f"{Path(path).name}: the output must end in {', '.join(allowed)}.")
