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
AllowNonfinite = Annotated[bool, typer.Option(
    "--allow-nonfinite", help="Load a model whose weights hold NaN or infinity (refused otherwise), for debugging.",
    rich_help_panel=MODEL_PANEL)]
Layer = Annotated[Optional[int], typer.Option(
    help="For a model with several stochastic layers (--latent hierarchical): the layer whose code this works on, "
    "1 (nearest the data) to the top. \\[default: the top]", show_default=False, rich_help_panel=MODEL_PANEL)]
# torch takes a seed of 64 bits; one out of that range was an overflow deep inside it.
SEED_MAX = 2 ** 63 - 1
Seed = Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed for every random draw, so the output is reproducible.")]
Label = Annotated[Optional[int], typer.Option(
    "--label", "-y", help="Class to condition on (conditional models only).")]
Zoom = Annotated[Optional[int], typer.Option(
    min=1, help="Upscale factor for viewing (nearest-neighbour). \\[default: to about 96 px]", rich_help_panel=OUTPUT_PANEL)]
Invert = Annotated[Optional[bool], typer.Option(
    "--invert/--no-invert", help="Invert input images. \\[default: when their background differs from the "
    "model's training data, e.g. black ink on white for an MNIST model]")]
Fps = Annotated[float, typer.Option(help="GIF frames per second.", rich_help_panel=OUTPUT_PANEL)]
Bounce = Annotated[bool, typer.Option("--bounce/--no-bounce", help="GIF plays forth and back.",
                                      rich_help_panel=OUTPUT_PANEL)]
Threads = Annotated[Optional[int], typer.Option(
    help="CPU threads for torch's arithmetic (1 is often fastest for small models on a busy machine). "
    "\\[default: torch's choice]", show_default=False)]

# Picking images from a dataset (see vaetool.picking), for show and the commands that take images.
DATA_PANEL = "Images from a dataset"
PickData = Annotated[str, typer.Option("--data", "-d", help="Dataset to take images from: mnist, shapes, … or a folder.",
                                       rich_help_panel=DATA_PANEL)]
OptionalPickData = Annotated[Optional[str], typer.Option(
    "--data", "-d", help="Take the images from this dataset (mnist, shapes, … or a folder) instead of files; "
    "choose them with --label or --index.", rich_help_panel=DATA_PANEL)]
PickSplit = Annotated[str, typer.Option(help="train or test.", rich_help_panel=DATA_PANEL)]
PickLabel = Annotated[Optional[str], typer.Option(
    "--label", "-y", help="With --data: the labels to pick, as numbers or class names, e.g. 2,7. Without it: the class "
    "to condition on (conditional models).", rich_help_panel=DATA_PANEL)]
PickIndex = Annotated[Optional[str], typer.Option(
    "--index", "-i", help="With --data: the images at these positions of the split, e.g. 0,1,2.", rich_help_panel=DATA_PANEL)]
DataDir = Annotated[Optional[Path], typer.Option(
    help="Where datasets are stored. \\[default: $VAETOOL_DATA, else the user cache]", rich_help_panel=DATA_PANEL)]
Models = Annotated[Optional[list[Path]], typer.Option(
    "--model", "-m", help="A model file or run directory; repeat it to plot several models side by side. "
    "\\[default: the latest run in RUNS_DIR]", rich_help_panel=MODEL_PANEL)]
