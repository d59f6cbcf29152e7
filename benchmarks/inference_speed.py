#!/usr/bin/env python3
"""Inference speed of vaetool's Python API, and what a CLI command adds on top of it.

Images per second for four operations, on MNIST-shaped inputs (1×28×28), in eval mode under
``torch.no_grad()``:

- ``encode``: ``model.encode(x)``, q(z|x) for a batch of images;
- ``decode``: ``model.decode(z)``, the mean of p(x|z) for a batch of latents;
- ``sample``: ``model.sample(n, generator=...)``, z ~ p(z) then decode;
- ``posterior_moments``: ``vaetool.metrics.posterior_moments(model, images, batch_size=B)``, the
  library's batched encoder pass (float64 results gathered on the CPU), as ``compare`` uses it.

Each operation processes ``--images`` inputs per round in batches of each ``--batch-sizes`` size,
for each ``--arch``: ``mlp`` is the textbook 784-400-20 MLP of train_speed.py, ``conv`` vaetool's
default conv VAE (channels 32,64,128, 16-D latent). The models are untrained, built with
``vaetool.create``: the arithmetic, and so the speed, does not depend on the weights' values.
Inputs are made once, on the device, before timing; warm-up calls run before the first round, and
on a GPU every timing is bracketed by ``torch.cuda.synchronize()``. Every round runs every case,
in alternating order, so that a noisy neighbour slows all cases alike; reported is the median
of ``--rounds`` rounds (min and max beside it).

Then, end to end: ``vaetool sample -n 1000 -o x.png`` as a subprocess, against the same model's
``model.sample(1000)`` in this process. The model is an MLP trained for one epoch on the embedded
``shapes`` data (1×32×32, offline) into a temporary runs directory, not timed. The difference is
the per-command overhead — starting Python, importing torch and vaetool, loading the model file,
writing the PNG; ``python -c "import torch"`` is timed too, as the floor of that overhead.
Subprocesses inherit the environment, OMP_NUM_THREADS included.

    OMP_NUM_THREADS=1 python benchmarks/inference_speed.py --device cpu --rounds 5
    python benchmarks/inference_speed.py --device cuda --batch-sizes 1,64,500,5000

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

import torch

import vaetool
from vaetool import devices, metrics

ARCHITECTURES = {  # name -> vaetool.create keyword arguments
    "mlp": {"latent_dim": 20, "architecture_options": {"hidden": [400]}},
    "conv": {},
}
OPERATIONS = ("encode", "decode", "sample", "posterior_moments")
INPUT_SHAPE = (1, 28, 28)


def cpu_name() -> str:
    """The CPU's name, with its family and model where /proc/cpuinfo has them: a VM's name alone
    ("AMD EPYC") does not say which generation, and which kernels are fast differs between them."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    if "cpu family" not in fields:
        return fields["model name"]
    return f"{fields['model name']} (family {fields['cpu family']}, model {fields.get('model', '?')})"


def machine(device: torch.device) -> dict:
    """Where the numbers were taken: platform, CPU, threads, torch version, device."""
    info = {"platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "torch": torch.__version__, "vaetool": vaetool.__version__,
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _operations(model, x: torch.Tensor, z: torch.Tensor, batch: int, seed: int) -> dict:
    """One callable per operation, each processing all of ``x`` (or ``z``) ``batch`` at a time."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    counts = [len(b) for b in x.split(batch)]

    def encode():
        for xb in x.split(batch):
            model.encode(xb)

    def decode():
        for zb in z.split(batch):
            model.decode(zb)

    def sample():
        for n in counts:
            model.sample(n, generator=generator)

    def moments():
        metrics.posterior_moments(model, x, batch_size=batch)

    return {"encode": encode, "decode": decode, "sample": sample, "posterior_moments": moments}


def _warm_up(model, x: torch.Tensor, z: torch.Tensor, batch: int, batches: int) -> None:
    """A few batches of each operation, so that lazy initialisation (and cuDNN's choices) are not timed."""
    if batches < 1:
        return
    head = min(len(x), batch * batches)
    for fn in _operations(model, x[:head], z[:head], batch, seed=1).values():
        fn()


def run_checked(command: list[str]) -> subprocess.CompletedProcess:
    """Run a command to completion; if it fails, stop with its command line and the end of its stderr."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)}\nexited with {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def _train_cli_model(runs: Path, device: str) -> Path:
    run_checked([sys.executable, "-m", "vaetool", "train", "--arch", "mlp", "--epochs", "1", "--data", "shapes",
                 "--device", device, "--runs-dir", str(runs), "--name", "cli"])
    return runs / "cli"


def _vaetool_command() -> list[str]:
    script = Path(sys.executable).with_name("vaetool")  # the console script users run, if installed beside python
    return [str(script)] if script.exists() else [sys.executable, "-m", "vaetool"]


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    run_checked(command)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="mlp,conv", help="comma-separated: " + ", ".join(ARCHITECTURES))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as vaetool's --device)")
    parser.add_argument("--batch-sizes", default="500", help="comma-separated, e.g. 1,64,500")
    parser.add_argument("--images", type=int, default=10_000, help="inputs per operation per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="warm-up batches per operation before round 1")
    parser.add_argument("--cli-n", type=int, default=1000, help="-n of the timed `vaetool sample` (0 skips the CLI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        parser.error(f"unknown --arch {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    if args.rounds < 1 or args.images < 1 or min(batches) < 1:
        parser.error("--rounds, --images and every batch size must be at least 1")
    device = devices.resolve(args.device)
    torch.manual_seed(args.seed)

    models = {}
    for arch in archs:
        model = vaetool.create(arch, "bernoulli", input_shape=INPUT_SHAPE, **ARCHITECTURES[arch]).to(device).eval()
        models[arch] = model
    generator = torch.Generator(device=device).manual_seed(args.seed)
    cases = []  # (arch, batch, operation, callable)
    with torch.no_grad():
        for arch, model in models.items():
            x = torch.rand(args.images, *INPUT_SHAPE, generator=generator, device=device)
            z = torch.randn(args.images, model.latent_dim, generator=generator, device=device)
            for batch in batches:
                _warm_up(model, x, z, batch, args.warmup)
                for op, fn in _operations(model, x, z, batch, args.seed).items():
                    cases.append((arch, batch, op, fn))

    cli = None
    tmp = tempfile.TemporaryDirectory()
    if args.cli_n > 0:
        run = _train_cli_model(Path(tmp.name) / "runs", str(device))
        cli_model = vaetool.load(run, str(device)).eval()
        cli_generator = torch.Generator(device=device).manual_seed(args.seed)
        sample_command = _vaetool_command() + ["sample", "-m", str(run), "-n", str(args.cli_n),
                                               "-o", str(Path(tmp.name) / "x.png"), "--device", str(device),
                                               "--seed", str(args.seed)]
        floor_command = [sys.executable, "-c", "import torch"]
        _wall(sample_command)  # warm the file cache: the first start of torch reads it from disk
        with torch.no_grad():
            cli_model.sample(args.cli_n, generator=cli_generator)
        cli = {"command": " ".join(["vaetool"] + sample_command[len(_vaetool_command()):]),
               "model": f"{cli_model.config['architecture']} {cli_model.config['architecture_options']}, "
                        f"{cli_model.latent_dim}-D, {'×'.join(map(str, cli_model.input_shape))}, "
                        "trained 1 epoch on shapes",
               "cli_seconds": [], "api_seconds": [], "import_torch_seconds": []}

    speeds = {(arch, batch, op): [] for arch, batch, op, _ in cases}
    for r in range(args.rounds):
        order = cases if r % 2 == 0 else cases[::-1]
        with torch.no_grad():
            for arch, batch, op, fn in order:
                speeds[(arch, batch, op)].append(args.images / _timed(fn, device))
        line = f"round {r + 1}: " + ", ".join(f"{arch}/{op}@{batch} {speeds[(arch, batch, op)][-1]:,.0f}"
                                               for arch, batch, op, _ in cases) + " images/s"
        if cli is not None:
            cli["cli_seconds"].append(_wall(sample_command))
            with torch.no_grad():
                cli["api_seconds"].append(_timed(lambda: cli_model.sample(args.cli_n, generator=cli_generator), device))
            cli["import_torch_seconds"].append(_wall(floor_command))
            line += (f"; CLI sample {cli['cli_seconds'][-1]:.2f} s vs API {cli['api_seconds'][-1] * 1e3:.1f} ms "
                     f"(import torch {cli['import_torch_seconds'][-1]:.2f} s)")
        print(line, flush=True)
    tmp.cleanup()

    results = []
    for arch, batch, op, _ in cases:
        values = speeds[(arch, batch, op)]
        median = statistics.median(values)
        results.append({"arch": arch, "latent_dim": models[arch].latent_dim,
                        "parameters": sum(p.numel() for p in models[arch].parameters()), "batch": batch, "op": op,
                        "images_per_s": median, "images_per_s_min": min(values), "images_per_s_max": max(values),
                        "ms_per_batch": 1e3 * batch / median, "rounds": values})

    print(f"\nmedian over {args.rounds} rounds, {args.images:,} inputs per operation per round, device {device}:")
    print(f"{'arch':<6} {'batch':>6} {'operation':<18} {'images/s':>12} {'min':>12} {'max':>12} {'ms/batch':>9}")
    for row in results:
        print(f"{row['arch']:<6} {row['batch']:>6} {row['op']:<18} {row['images_per_s']:>12,.0f} "
              f"{row['images_per_s_min']:>12,.0f} {row['images_per_s_max']:>12,.0f} {row['ms_per_batch']:>9.2f}")
    if cli is not None:
        cli["cli_seconds_median"] = statistics.median(cli["cli_seconds"])
        cli["api_seconds_median"] = statistics.median(cli["api_seconds"])
        cli["import_torch_seconds_median"] = statistics.median(cli["import_torch_seconds"])
        cli["overhead_seconds_median"] = statistics.median(
            c - a for c, a in zip(cli["cli_seconds"], cli["api_seconds"]))
        print(f"\n`{cli['command']}` ({cli['model']}):")
        print(f"  whole command {cli['cli_seconds_median']:.2f} s, model.sample({args.cli_n}) in-process "
              f"{cli['api_seconds_median'] * 1e3:.1f} ms: per-command overhead {cli['overhead_seconds_median']:.2f} s, "
              f"of which `python -c 'import torch'` alone {cli['import_torch_seconds_median']:.2f} s")

    summary = {"machine": machine(device),
               "settings": {"arch": archs, "batch_sizes": batches, "images": args.images, "rounds": args.rounds,
                            "warmup_batches": args.warmup, "seed": args.seed, "input_shape": list(INPUT_SHAPE),
                            "weights": "untrained (vaetool.create)"},
               "results": results, "cli": cli}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
