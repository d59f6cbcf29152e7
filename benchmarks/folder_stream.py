#!/usr/bin/env python3
"""An image folder: decoding it once into the uint8 cache, and training from it streamed or resident.

Writes ``--images`` PNG files of the ``shapes`` sprites (64×64 grey by default) into a temporary
folder, then measures

1. the first load, which decodes every file into the cache in parallel worker processes (images
   per second), and a second load, which only memory-maps the cache;
2. a training epoch of the default conv VAE on that folder, ``--stream`` (batches read from the
   memory-mapped cache by DataLoader workers) against ``--no-stream`` (the split held as one
   tensor), alternating, ``--rounds`` times: the median seconds per epoch of each and the median
   of the per-round ratios.

    python benchmarks/folder_stream.py --images 20000 --rounds 3

Prints a table and, last, one JSON line with every number and the machine.
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
from pathlib import Path


def write_folder(folder: Path, n: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    from vaetool.datasets.shapes import Shapes

    images = Shapes(size=size, n_train=n, n_test=1).load("train").images.numpy()
    for i, pixels in enumerate(images):
        Image.fromarray(np.ascontiguousarray(pixels[0]), "L").save(folder / f"{i:06d}.png")


def train_epoch(folder: Path, runs: Path, name: str, stream: bool, device: str) -> float:
    subprocess.run([sys.executable, "-m", "vaetool", "train", "--data", str(folder), "--epochs", "1",
                    "--stream" if stream else "--no-stream", "--device", device, "--runs-dir", str(runs),
                    "--name", name], check=True, capture_output=True, text=True)
    line = json.loads((runs / name / "metrics.jsonl").read_text().splitlines()[-1])
    return line["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, runs = tmp / "sprites", tmp / "runs"
        folder.mkdir()
        os.environ["VAETOOL_CACHE"] = str(tmp / "cache")  # a cold cache of its own, inherited by the runs
        write_folder(folder, args.images, args.size)
        from vaetool.datasets.folder import ImageFolder

        started = time.perf_counter()
        ImageFolder(str(folder)).load("train")
        build = time.perf_counter() - started
        started = time.perf_counter()
        ImageFolder(str(folder)).load("train")
        reload = time.perf_counter() - started
        print(f"first load (decode {args.images:,} PNGs into the cache): {build:.1f} s, "
              f"{args.images / build:,.0f} images/s; second load (memory-map): {reload:.2f} s", flush=True)

        rounds = []
        for i in range(args.rounds):
            streamed = train_epoch(folder, runs, f"stream-{i}", True, args.device)
            resident = train_epoch(folder, runs, f"resident-{i}", False, args.device)
            rounds.append({"streamed": streamed, "resident": resident, "ratio": streamed / resident})
            print(f"round {i + 1}: streamed {streamed:.2f} s/epoch, resident {resident:.2f} s/epoch, "
                  f"streamed/resident {streamed / resident:.3f}", flush=True)

    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {__import__('torch').__version__}, device {args.device}",
        "images": args.images, "size": args.size, "rounds": args.rounds,
        "cache_build_seconds": build, "decode_images_per_second": args.images / build,
        "cache_reload_seconds": reload,
        "streamed_sec_per_epoch": statistics.median(r["streamed"] for r in rounds),
        "resident_sec_per_epoch": statistics.median(r["resident"] for r in rounds),
        "streamed_over_resident_median": statistics.median(r["ratio"] for r in rounds),
    }
    print(f"median over {args.rounds} rounds: streamed {summary['streamed_sec_per_epoch']:.2f} s/epoch, "
          f"resident {summary['resident_sec_per_epoch']:.2f} s/epoch, "
          f"streamed/resident {summary['streamed_over_resident_median']:.3f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
