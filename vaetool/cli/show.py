"""``vaetool show``: look at a dataset's images, picked by label, by index or at random."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaetool.cli import options
from vaetool.cli.output import counted
from vaetool.cli.common import handle_errors, key_values
from vaetool.errors import VaetoolError


@handle_errors
def show(
    data: options.PickData = "mnist",
    split: options.PickSplit = "test",
    label: options.PickLabel = None,
    index: options.PickIndex = None,
    n: Annotated[int, typer.Option("-n", "--num", help="How many images (with --label: of each label).")] = 64,
    seed: Annotated[Optional[int], typer.Option(help="Draw at random with this seed (with --label: random images of "
                                                     "each label). \\[default: the first ones; seed 0 without --label]")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="A .png grid, or a folder (ending in /) that gets one "
                                                                "PNG file per image at its own size.",
                                        rich_help_panel=options.OUTPUT_PANEL)] = "show.png",
    captions: Annotated[bool, typer.Option("--captions/--no-captions", help="Write each image's index and label under it (grids).",
                                           rich_help_panel=options.OUTPUT_PANEL)] = False,
    factors: Annotated[bool, typer.Option("--factors", help="Also write its ground-truth factor values (datasets with factors, e.g. shapes).",
                                          rich_help_panel=options.OUTPUT_PANEL)] = False,
    nrow: Annotated[int, typer.Option(help="Images per row of the grid.", rich_help_panel=options.OUTPUT_PANEL)] = 8,
    zoom: options.Zoom = None,
    data_dir: options.DataDir = None,
    data_opt: Annotated[Optional[list[str]], typer.Option(help="Any dataset option as KEY=VALUE (repeatable), e.g. size=64.")] = None,
) -> None:
    """Show a dataset's images: a grid, or a folder of PNG files to give other commands.

      vaetool show --data mnist --label 3 -n 16 -o threes.png
      vaetool show --data mnist --index 0,1,2 -o picked/
      vaetool show --data shapes --label heart -n 8 --factors -o hearts.png
    """
    from vaetool import images, picking

    folder = output.endswith(("/", "\\")) or Path(output).is_dir() or not Path(output).suffix
    if not folder and Path(output).suffix.lower() != ".png":
        raise VaetoolError(f"{Path(output).name}: show writes a .png grid, or PNG files into a folder (end it in /).")
    if n < 1:
        raise VaetoolError(f"-n must be at least 1, not {n}.")
    if nrow < 1:
        raise VaetoolError(f"--nrow must be at least 1, not {nrow}.")
    chosen = picking.from_options(data, split=split, label=label, index=index, per_label=n,
                                  count=n, seed=seed, data_dir=data_dir,
                                  options=key_values(data_opt, "--data-opt"))
    if factors and chosen.factors is None:
        raise VaetoolError(f"{data} has no ground-truth factors to write; --captions writes labels.")
    if folder:
        target = Path(output)
        if target.exists() and not target.is_dir():
            raise VaetoolError(f"{target} is a file, not a folder.")
        stem = Path(data).name if "/" in data or "\\" in data else data
        for i, image in zip(chosen.indices, chosen.floats()):
            images.save_png(images.grid(image[None], nrow=1, zoom=zoom or 1, pad=0), target / f"{stem}-{split}-{i}.png")
        typer.echo(f"Wrote {len(chosen)} PNG files to {target}/ ({_what(chosen, label)})")
        return
    pictures = chosen.floats()
    if captions or factors:
        array = images.captioned_grid(pictures, chosen.captions(factors=factors), nrow=nrow, zoom=zoom)
    else:
        array = images.grid(pictures, nrow=nrow, zoom=zoom)
    images.save_png(array, output)
    typer.echo(f"Wrote {output}: {counted(len(chosen), 'image')} ({_what(chosen, label)})")


def _what(chosen, label: str | None) -> str:
    where = chosen.names[0].rsplit("/", 1)[0] if chosen.names else ""
    if label is not None:
        return f"label {label} from {where}"
    return f"{where} {', '.join(map(str, chosen.indices[:8]))}{'…' if len(chosen) > 8 else ''}"
