"""``vaetool plugins``: what is installed, from which package, and each plugin's options."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vaetool.cli.common import handle_errors

if TYPE_CHECKING:
    from vaetool.registry import PluginInfo


@handle_errors
def plugins(
    check: Annotated[bool, typer.Option("--check", help="Import every plugin: its options from the real signature, "
                                        "and whether it loads at all (slower: imports torch).")] = False,
) -> None:
    """List the installed architectures, likelihoods, priors and datasets, with their packages and options.

    The options are read from each plugin's source, so the listing imports no plugin; --check
    imports them all, to diagnose one that fails to load.
    """
    from rich.table import Table

    from vaetool import registry
    from vaetool.cli import output

    table = Table(title="vaetool plugins", title_justify="left")
    for column in ("kind", "name", "package", "version"):
        table.add_column(column, no_wrap=True)
    table.add_column("options", overflow="fold")
    for kind in registry.GROUPS:
        for info in registry.infos(kind):
            table.add_row(kind, f"[bold]{info.name}[/bold]", info.package, info.version, _options(info, check))
    output.console(wide=True).print(table)  # off a terminal, rows stay whole for grep


def _options(info: PluginInfo, check: bool) -> str:
    """The options cell: read from the source, or with --check from the imported class, or why not."""
    from rich.markup import escape

    from vaetool import registry
    from vaetool.errors import VaetoolError

    if check:
        try:
            options = registry.options_of(registry.get(info.kind, info.name))
        except VaetoolError as exc:
            return f"[red]unusable: {escape(str(exc))}[/red]"
    else:
        # By the entry point's value, already at hand: by name would scan every installed package again.
        options = registry.source_options(info.target)
        if options is None:
            return "[dim](run `vaetool plugins --check` to see)[/dim]"
    return escape(", ".join(f"{k}={v!r}" for k, v in options.items())) or "—"
