#!/usr/bin/env python3
"""Start-up time of the command line, read against the interpreter's own start-up in the same run.

Each command runs as a fresh process (``python -m vaetool ...``, output discarded), round after
round, every command once per round, so that a noisy neighbour slows all of them alike; one
untimed round first warms the file cache. Reported: the median wall time of each, and beside it
the two references: ``python -c pass`` (the interpreter alone, the floor) and
``python -c "import torch"`` (what a command would cost if it imported torch).

    python benchmarks/cli_startup.py --runs 10

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
import time
from importlib import metadata

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


def wall_time(command: list[str]) -> float:
    env = dict(os.environ, COLUMNS="120")  # the same table width whatever the terminal
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


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
    args = parser.parse_args()

    for command in COMMANDS.values():
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'command':<26} {'median s':>9} {'min s':>7} {'max s':>7} {'over python -c pass':>20}")
    for name, values in times.items():
        print(f"{name:<26} {median[name]:9.3f} {min(values):7.3f} {max(values):7.3f} "
              f"{median[name] - median[FLOOR]:+20.3f}")
    print(json.dumps({"machine": machine(), "runs": args.runs,
                      "median_s": median, "min_s": {name: min(values) for name, values in times.items()}}))


if __name__ == "__main__":
    main()
