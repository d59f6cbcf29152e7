#!/usr/bin/env python3
"""Start-up time of the command line, read against the interpreter's own start-up in the same run.

Each command runs as a fresh process (``python -m vaetool ...``, output discarded), round after
round, every command once per round, so that a noisy neighbour slows all of them alike; one
untimed round first warms the file cache. Reported: the median wall time of each, and beside it
the two references: ``python -c pass`` (the interpreter alone, the floor) and
``python -c "import torch"`` (what a command would cost if it imported torch). One command that
does import torch is timed too: ``vaetool sample`` from a small model the script saves first (the
784-400-20 MLP, untrained), 64 samples into a PNG.

``--against DIR`` names another vaetool checkout (a ``git worktree`` of an earlier commit, say): every
vaetool command then runs from both, in the same rounds, each with its checkout first on
``PYTHONPATH`` and from a neutral working directory, so their medians compare the two versions under
the same load.

    python benchmarks/cli_startup.py --runs 10
    git worktree add /tmp/before HEAD~1 && python benchmarks/cli_startup.py --runs 7 --against /tmp/before

Prints a table and, last, one JSON line with every number.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent

VAETOOL = [sys.executable, "-m", "vaetool"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "vaetool --help": [*VAETOOL, "--help"],
    "vaetool plugins": [*VAETOOL, "plugins"],
    "vaetool train --help": [*VAETOOL, "train", "--help"],
    "vaetool compare --help": [*VAETOOL, "compare", "--help"],
}
FLOOR = "python -c pass"


def wall_time(command: list[str], checkout: Path = HERE.parent, cwd: str | None = None) -> float:
    env = dict(os.environ, COLUMNS="120",  # the same table width whatever the terminal
               PYTHONPATH=os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])]))
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - start


def save_model(folder: Path) -> Path:
    import vaetool

    path = folder / "mlp.safetensors"
    vaetool.save(vaetool.create("mlp", "bernoulli", latent_dim=20, architecture_options={"hidden": [400]}), path)
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {metadata.version('torch')}, typer {metadata.version('typer')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    parser.add_argument("--against", type=Path, help="another vaetool checkout, its commands timed beside these")
    args = parser.parse_args()
    if args.against and not (args.against / "vaetool" / "__init__.py").is_file():
        sys.exit(f"{args.against} is not a vaetool checkout (no vaetool/__init__.py in it).")

    with tempfile.TemporaryDirectory() as folder:
        model = save_model(Path(folder))
        commands = {**COMMANDS, "vaetool sample (loads torch)": [*VAETOOL, "sample", "-m", str(model), "-n", "64",
                                                                 "-o", str(Path(folder) / "samples.png")]}
        checkouts = {"": HERE.parent, **({" [against]": args.against.resolve()} if args.against else {})}
        cases = {name + label: (command, checkout) for name, command in commands.items()
                 for label, checkout in checkouts.items() if label == "" or command[:3] == VAETOOL}
        for command, checkout in cases.values():
            wall_time(command, checkout, folder)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (command, checkout) in cases.items():
                times[name].append(wall_time(command, checkout, folder))

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'max s':>7} {'over python -c pass':>20}")
    for name, values in times.items():
        print(f"{name:<40} {median[name]:9.3f} {min(values):7.3f} {max(values):7.3f} "
              f"{median[name] - median[FLOOR]:+20.3f}")
    print(json.dumps({"machine": machine(), "runs": args.runs, "against": str(args.against or ""),
                      "median_s": median, "min_s": {name: min(values) for name, values in times.items()}}))


if __name__ == "__main__":
    main()
