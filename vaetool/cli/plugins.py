"""``vaetool plugins``: what is installed, from which package, and each plugin's options."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vaetool.cli.common import handle_errors
from vaetool.errors import RUNTIME_EXIT

if TYPE_CHECKING:
    from vaetool.registry import PluginInfo


@handle_errors
def plugins(
    check: Annotated[bool, typer.Option("--check", help="Import every plugin and try it: its options from the real "
                                        "signature, and whether a tiny model with it survives one forward and "
                                        "backward pass (slower: imports torch).")] = False,
) -> None:
    """List the installed plugins of every kind, with their packages and options.

    The kinds: architectures, likelihoods, priors, latents, datasets, objectives and learning-rate
    schedules. The options are read from each plugin's source, so the listing imports no plugin; --check
    imports them all and builds a tiny model with each architecture, likelihood and prior for one
    forward and backward pass (a training step for an objective, a run's rates for a schedule),
    listing one that fails as unusable with its error and then exiting with status 1.
    """
    from rich.table import Table

    from vaetool import registry
    from vaetool.cli import output

    table = Table(title="vaetool plugins", title_justify="left")
    for column in ("kind", "name", "package", "version"):
        table.add_column(column, no_wrap=True)
    table.add_column("options", overflow="fold")
    unusable, count = 0, 0
    for kind in registry.GROUPS:
        for info in registry.infos(kind):
            cell, usable = _options(info, check)
            unusable += not usable
            count += 1
            table.add_row(kind, f"[bold]{info.name}[/bold]", info.package, info.version, cell)
    console = output.console(wide=True)
    console.print(table)  # off a terminal, rows stay whole for grep
    if check:
        console.print(f"Checked {count} plugins: each imported and tried on a tiny model; "
                      + (f"{unusable} unusable (in red above)." if unusable else "all usable."), highlight=False)
        if unusable:  # a check a CI job can run: it fails when a plugin would
            raise typer.Exit(RUNTIME_EXIT)


def _options(info: PluginInfo, check: bool) -> tuple[str, bool]:
    """The options cell, read from the source or with --check from the imported class, and whether the
    plugin is usable (False only when --check found it is not, the cell then saying why)."""
    from rich.markup import escape

    from vaetool import registry
    from vaetool.errors import VaetoolError

    if check:
        from vaetool import smoke

        try:
            options = registry.options_of(registry.get(info.kind, info.name))
            smoke.check(info.kind, info.name)
        except Exception as exc:  # whatever a plugin does wrong, the listing goes on
            text = str(exc) if isinstance(exc, VaetoolError) else f"{type(exc).__name__}: {exc}"
            return f"[red]unusable: {escape(' '.join(text.split()))}[/red]", False
    else:
        # By the entry point's value, already at hand: by name would scan every installed package again.
        options = registry.source_options(info.target)
        if options is None:
            return "[dim](run `vaetool plugins --check` to see)[/dim]", True
    return escape(", ".join(f"{k}={v!r}" for k, v in options.items())) or "—", True
