"""``vaetool plugins``: what is installed, from which package, and each plugin's options."""
from __future__ import annotations

from vaetool.cli.common import handle_errors


@handle_errors
def plugins() -> None:
    """List the installed architectures, likelihoods and datasets, with their packages and options."""
    from rich.console import Console
    from rich.table import Table

    from vaetool import registry
    from vaetool.errors import VaetoolError

    table = Table(title="vaetool plugins", title_justify="left")
    for column in ("kind", "name", "package", "version"):
        table.add_column(column, no_wrap=True)
    table.add_column("options", overflow="fold")
    for kind in registry.GROUPS:
        for info in registry.infos(kind):
            try:
                options = registry.options_of(registry.get(kind, info.name))
                shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "—"
            except VaetoolError as exc:
                shown = f"[red]unusable: {exc}[/red]"
            table.add_row(kind, f"[bold]{info.name}[/bold]", info.package, info.version, shown)
    Console().print(table)
