"""Options shared by the commands that use a trained model, as reusable ``Annotated`` aliases."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

MODEL_PANEL, OUTPUT_PANEL = "Model", "Output"

Model = Annotated[Optional[Path], typer.Option(
    "--model", "-m", help="A model file or run directory. \\[default: the latest run in RUNS_DIR]",
    rich_help_panel=MODEL_PANEL)]
RunsDir = Annotated[Optional[Path], typer.Option(
    help="Where runs are found. \\[default: $VAETOOL_RUNS, else ./runs]", rich_help_panel=MODEL_PANEL)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=MODEL_PANEL)]
Seed = Annotated[int, typer.Option(help="Seed for every random draw, so the output is reproducible.")]
Label = Annotated[Optional[int], typer.Option(
    "--label", "-y", help="Class to condition on (conditional models only).")]
Zoom = Annotated[Optional[int], typer.Option(
    help="Upscale factor for viewing (nearest-neighbour). \\[default: to about 96 px]", rich_help_panel=OUTPUT_PANEL)]
Invert = Annotated[Optional[bool], typer.Option(
    "--invert/--no-invert", help="Invert input images. \\[default: when their background differs from the "
    "model's training data, e.g. black ink on white for an MNIST model]")]
Fps = Annotated[float, typer.Option(help="GIF frames per second.", rich_help_panel=OUTPUT_PANEL)]
Bounce = Annotated[bool, typer.Option("--bounce/--no-bounce", help="GIF plays forth and back.",
                                      rich_help_panel=OUTPUT_PANEL)]
Threads = Annotated[Optional[int], typer.Option(
    help="CPU threads for torch's arithmetic (1 is often fastest for small models on a busy machine). "
    "\\[default: torch's choice]", show_default=False)]
