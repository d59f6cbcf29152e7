"""The ``vaetool`` command line. One module per command; commands parse, call the library, render.

Nothing here imports torch at import time, so ``vaetool --help`` answers at once.
"""
from __future__ import annotations

import typer

from vaetool import __version__
from vaetool.cli import common, compare, decode, encode, explore, interpolate, plugins, sample, show, train, traverse

app = typer.Typer(
    name="vaetool",
    help="Train, inspect and compare variational autoencoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("train")(train.train)
app.command("encode")(encode.encode)
app.command("decode")(decode.decode)
app.command("sample")(sample.sample)
app.command("interpolate")(interpolate.interpolate)
app.command("traverse")(traverse.traverse)
app.command("compare")(compare.compare)
app.command("show")(show.show)
app.command("explore")(explore.explore)
app.command("plugins")(plugins.plugins)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vaetool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error "
                                     "(also VAETOOL_DEBUG=1).")) -> None:
    """Train, inspect and compare variational autoencoders.

    Exit codes: 0 success, 2 a usage error (a flag, value or input file the command cannot use),
    1 a failure while running, 130 interrupted.
    """
    common.set_debug(debug)


def main() -> None:
    app()
