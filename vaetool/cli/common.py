"""What every command shares: turning VaetoolError into one line on stderr, and option parsing."""
from __future__ import annotations

import functools
import json
from typing import Any

import typer

from vaetool.errors import VaetoolError


def fail(message: str, code: int = 2):
    typer.echo(f"Error: {message}", err=True)
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
