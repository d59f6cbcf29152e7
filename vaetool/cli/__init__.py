"""The ``vaetool`` command line. One module per command; commands parse, call the library, render.

Nothing here imports torch at import time, so ``vaetool --help`` answers at once.
"""
from __future__ import annotations

import typer
from typer.core import TyperGroup

from vaetool import __version__
from vaetool.cli import common, compare, decode, encode, explore, interpolate, plugins, sample, show, train, traverse

class _Commands(TyperGroup):
    """vaetool's commands; a root option given after the command is told where it goes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as error:
            # click's NoSuchOption, or the copy of it a newer typer carries: the class by its name.
            usage = next((c for c in type(error).__mro__ if c.__name__ == "UsageError"), None)
            own = {name for param in ctx.command.params for name in (*param.opts, *param.secondary_opts)}
            if (type(error).__name__ != "NoSuchOption" or usage is None
                    or getattr(error, "option_name", None) not in own
                    or getattr(error, "ctx", None) is None or error.ctx.parent is not ctx):
                raise
            raise usage(f"{error.option_name} is an option of vaetool itself and goes before the command: "
                        f"vaetool {error.option_name} {error.ctx.info_name} ...", error.ctx) from None


app = typer.Typer(
    name="vaetool",
    cls=_Commands,
    help="Train, inspect and compare variational autoencoders.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
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
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results: no progress, no notes on stderr."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail: each stage's time (train: an epoch's steps and test evaluation), compare's glossary."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error "
                               "(also VAETOOL_DEBUG=1)."),
) -> None:
    """Train, inspect and compare variational autoencoders.

    Exit codes: 0 success, 2 a usage error (a flag, value or input file the command cannot use),
    1 a failure while running, 130 interrupted.
    """
    from vaetool.cli import output

    output.set_verbosity(quiet, verbose)
    common.set_debug(debug)


def _flags_take_no_value() -> None:
    """Help shows no ``<bool>`` after an on/off flag: it takes no value (this typer prints one)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # another typer: nothing to correct
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_vaetool", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) and self.metavar is None else shown(self, ctx)

    display_type_rich._vaetool = True
    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()


def main() -> None:
    import sys

    from vaetool.cli import output

    output.command = ["vaetool", *sys.argv[1:]]
    app()
