"""``vaetool explore``: the latent space in the browser — sliders, your own images, paths, the map."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.common import handle_errors, import_torch
from vaetool.errors import VaetoolError


@handle_errors
def explore(
    model: options.Model = None,
    runs_dir: options.RunsDir = None,
    device: options.Device = "auto",
    port: Annotated[int, typer.Option(help="Port to serve on; 0 picks a free one.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to serve on. Anything but a loopback address lets other "
                                           "machines in.")] = "127.0.0.1",
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open the page in a web browser.")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads the model computes with; one image at a time decodes "
                                              "fastest on one.", rich_help_panel=options.MODEL_PANEL)] = 1,
    allow_nonfinite: options.AllowNonfinite = False,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where the model's dataset is stored, for the map of its "
                                                          "test codes. \\[default: $VAETOOL_DATA, else the user cache]")] = None,
) -> None:
    """Open a page to explore a model's latent space in the browser.

    A slider per latent dimension, your own images and drawings encoded, interpolation GIFs, and the
    map of the test codes.

      vaetool explore                                     [dim]# the latest run; opens the browser[/dim]
      vaetool explore -m runs/conv-mnist --port 8765 --no-browser
    """
    import_torch()
    from vaetool import devices, io, runs
    from vaetool.explore import server

    server.require_web()
    if threads < 1:
        raise VaetoolError(f"--threads must be at least 1, not {threads}.")
    if not 0 <= port <= 65535:
        raise VaetoolError(f"--port must be a port number from 0 to 65535, not {port}.")
    where = runs.find_model(model, runs.runs_root(runs_dir))
    vae = io.load(where, devices.resolve(device), allow_nonfinite=allow_nonfinite)  # a missing plugin is reported here, before any port is taken
    server.serve(vae, where, host=host, port=port, open_browser=browser, data_dir=data_dir, threads=threads,
                 say=typer.echo, warn=lambda text: typer.echo(text, err=True))
