"""Fuzz the model-file reader: a small model file mutated a thousand ways, each load watched.

    python benchmarks/fuzz.py                       # about 1,300 mutations
    python benchmarks/fuzz.py --cli 40              # and 40 of them through `vaetool sample`

Mutations: byte flips, truncations, the 8-byte header-length field, wrong JSON types for every
config entry, huge/negative/infinite/NaN sizes, deep nesting, missing keys and tensors, non-finite
weights, wrong tensor shapes and dtypes, extra tensors, damaged header text. Each load runs in a
child process forked from one that has already imported torch and vaetool (so a crash, a hang or
a huge allocation harms only that child), with a 10-second limit; the child reports the outcome
and its peak resident memory. The report: how many were tried, how many loaded, how many were
refused with one clean sentence (a VaetoolError on one line), how many ended in any other
exception (a traceback), how many took over 10 s, and peak memory against a valid load's.
With --cli, a sample of the mutated files also goes through the real command line, which must
print one "Error: …" line and exit non-zero, or succeed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_SECONDS = 10.0


def _valid_file(folder: Path) -> Path:
    import torch

    import vaetool

    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", input_shape=(1, 28, 28), latent_dim=8,
                           architecture_options={"hidden": [64]}, dataset="mnist", training={"epochs": 1})
    path = folder / "valid.safetensors"
    vaetool.save(model, path)
    return path


# -- mutations: (category, bytes) ------------------------------------------------------------------

class Parts:
    def __init__(self, data: bytes):
        self.data = data
        (self.length,) = struct.unpack("<Q", data[:8])
        self.header = json.loads(data[8:8 + self.length])
        self.body = data[8 + self.length:]
        self.vaetool = json.loads(self.header["__metadata__"]["vaetool"])

    def tensors(self) -> list[str]:
        return sorted(k for k in self.header if k != "__metadata__")

    def with_header(self, header: dict) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + self.body

    def with_vaetool_text(self, text: str) -> bytes:
        header = json.loads(json.dumps(self.header))
        header["__metadata__"]["vaetool"] = text
        return self.with_header(header)

    def with_config(self, config) -> bytes:
        return self.with_vaetool_text(json.dumps({**self.vaetool, "config": config}))


WRONG_VALUES = [None, True, False, "x", "", [], {}, 1.5, -1, 0, 1e308, float("nan"), float("inf"), [1, 2],
                {"a": 1}, [[[]]], "Infinity"]
SIZES = [10**9, 2**62, 2**63, -1, -2**31, 0, float("inf"), -float("inf"), float("nan"), 1e300, 10000, 3.5]


def mutations(data: bytes, rng: random.Random):
    parts = Parts(data)
    config = parts.vaetool["config"]
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(data))] = rng.randrange(256)
        yield "byte flips", bytes(mutated)
    for _ in range(150):
        yield "truncation", data[:rng.randrange(len(data))]
    lengths = [0, 1, 2, 7, parts.length - 1, parts.length + 1, len(data), len(data) + 1, 2**31, 2**32, 2**63,
               2**64 - 1] + [rng.randrange(2**64) for _ in range(48)]
    for length in lengths:
        yield "length field", struct.pack("<Q", length) + data[8:]
    for key in sorted(config):
        for value in WRONG_VALUES:
            yield "wrong types", parts.with_config({**config, key: value})
    for key in ("schema", "vaetool_version"):
        for value in WRONG_VALUES:
            yield "wrong types", parts.with_vaetool_text(json.dumps({**parts.vaetool, key: value}))
    places = ["latent_dim", "num_classes", "input_shape.0", "input_shape.1", "input_shape.2",
              "architecture_options.hidden.0"]
    for place in places:
        for size in SIZES:
            edited = json.loads(json.dumps(config))
            *path, last = place.split(".")
            target = edited
            for part in path:
                target = target[int(part)] if isinstance(target, list) else target[part]
            target[int(last) if isinstance(target, list) else last] = size
            yield "sizes", parts.with_config(edited)
    for shape in ([10000, 28, 28], [1, 10**6, 10**6], [1, 28], [], [1, 28, 28, 1], "1x28x28"):
        yield "sizes", parts.with_config({**config, "input_shape": shape})
    for hidden in ([10**6, 10**6], [], [0], [-64], [1e6], [float("inf")], "64", [[64]]):
        yield "sizes", parts.with_config({**config, "architecture_options": {"hidden": hidden}})
    for depth in (10, 50, 64, 65, 100, 1000, 10_000, 100_000):
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            nested = f"{opener * depth}1{closer * depth}"
            yield "deep nesting", parts.with_vaetool_text(json.dumps(parts.vaetool)[:-1] + f', "deep": {nested}}}')
            yield "deep nesting", parts.with_config({**config, "architecture_options": json.loads(
                f'{{"hidden": [64], "x": {nested}}}') if depth <= 500 else {"hidden": [64]}})
    for key in sorted(config):
        yield "missing keys", parts.with_config({k: v for k, v in config.items() if k != key})
    for key in ("config", "schema"):
        yield "missing keys", parts.with_vaetool_text(json.dumps({k: v for k, v in parts.vaetool.items() if k != key}))
    yield "missing keys", parts.with_header({k: v for k, v in parts.header.items() if k != "__metadata__"})
    for name in parts.tensors():
        header = {k: v for k, v in parts.header.items() if k != name}
        yield "missing keys", parts.with_header(header)
    for name in parts.tensors():
        start, end = parts.header[name]["data_offsets"]
        for value in (float("nan"), float("inf"), -float("inf")):
            body = bytearray(parts.body)
            body[start:start + 4] = struct.pack("<f", value)
            yield "non-finite weights", data[:8 + parts.length] + bytes(body)
            body = bytearray(parts.body)
            body[start:end] = struct.pack("<f", value) * ((end - start) // 4)
            yield "non-finite weights", data[:8 + parts.length] + bytes(body)
    for name in parts.tensors():
        entry = parts.header[name]
        for shape in (entry["shape"][::-1], [*entry["shape"], 1], [0], [2**40]):
            header = json.loads(json.dumps(parts.header))
            header[name]["shape"] = shape
            yield "tensor shapes and dtypes", parts.with_header(header)
        for dtype in ("F64", "F16", "I64", "U8", "BOOL", "F8_E4M3", "X"):
            header = json.loads(json.dumps(parts.header))
            header[name]["dtype"] = dtype
            yield "tensor shapes and dtypes", parts.with_header(header)
    header = json.loads(json.dumps(parts.header))
    header["stowaway"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    yield "tensor shapes and dtypes", parts.with_header(header)
    text = parts.header["__metadata__"]["vaetool"]
    for _ in range(100):
        if rng.random() < 0.5:
            damaged = text[:rng.randrange(len(text))]
        else:
            i = rng.randrange(len(text))
            damaged = text[:i] + rng.choice('{}[]",:0-eE.9xn ') + text[i + 1:]
        yield "header text", parts.with_vaetool_text(damaged)


# -- one load, in a forked child ---------------------------------------------------------------------

def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _load_in_child(path: Path) -> dict:
    read, write = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: load, report, exit without cleanup
        os.close(read)
        import vaetool
        from vaetool.errors import VaetoolError

        try:
            vaetool.load(path)
            outcome = {"result": "loaded"}
        except VaetoolError as exc:
            message = str(exc)
            outcome = {"result": "refused" if message and "\n" not in message else "unclean", "message": message}
        except BaseException as exc:  # noqa: BLE001 - this is what is being counted
            outcome = {"result": "traceback", "message": f"{type(exc).__name__}: {exc}"[:300]}
        outcome["peak_mib"] = _peak_mib()
        os.write(write, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write)
    deadline = started + LIMIT_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(read)
            return {"result": "over 10 s", "seconds": time.perf_counter() - started}
        time.sleep(0.002)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    seconds = time.perf_counter() - started
    if not chunks:
        return {"result": "crashed", "message": f"exit status {status}", "seconds": seconds}
    return {**json.loads(b"".join(chunks)), "seconds": seconds}


def _cli(paths: list[Path]) -> dict:
    counts = {"tried": 0, "clean": 0, "loaded": 0, "traceback": 0}
    for path in paths:
        done = subprocess.run([sys.executable, "-m", "vaetool", "sample", "--model", str(path), "-n", "4", "-o",
                               str(path.with_suffix(".png")), "--device", "cpu"], capture_output=True, text=True,
                              timeout=120)
        counts["tried"] += 1
        err = done.stderr.strip()
        if done.returncode == 0:
            counts["loaded"] += 1
        elif err.startswith("Error: ") and "\n" not in err and "Traceback" not in err:
            counts["clean"] += 1
        else:
            counts["traceback"] += 1
            print(f"  CLI traceback for {path.name}:\n{err[-500:]}", file=sys.stderr)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", type=int, default=0, help="Also run this many mutated files through `vaetool sample`.")
    parser.add_argument("--json", type=Path, help="Write the counts here as JSON.")
    args = parser.parse_args()
    import torch

    import vaetool  # noqa: F401 - imported once, before the children are forked

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        valid = _valid_file(folder)
        baseline = [_load_in_child(valid) for _ in range(5)]
        assert all(b["result"] == "loaded" for b in baseline), baseline
        valid_peak = sorted(b["peak_mib"] for b in baseline)[2]
        valid_seconds = sorted(b["seconds"] for b in baseline)[2]
        results, by_category, samples = [], {}, []
        for i, (category, data) in enumerate(mutations(valid.read_bytes(), rng)):
            path = folder / f"m{i}.safetensors"
            path.write_bytes(data)
            outcome = _load_in_child(path)
            outcome["category"] = category
            results.append(outcome)
            by_category.setdefault(category, []).append(outcome)
            if outcome["result"] in ("traceback", "unclean", "crashed", "over 10 s"):
                print(f"  {category}: {outcome['result']}: {outcome.get('message', '')}", file=sys.stderr)
            if len(samples) < args.cli and rng.random() < 0.05:
                samples.append(path)
            else:
                path.unlink()
        count = lambda kind: sum(r["result"] == kind for r in results)  # noqa: E731
        peaks = [r["peak_mib"] for r in results if "peak_mib" in r]
        summary = {
            "tried": len(results), "loaded": count("loaded"), "clean refusals": count("refused"),
            "tracebacks": count("traceback") + count("unclean") + count("crashed"), "over 10 s": count("over 10 s"),
            "slowest load (s)": round(max(r["seconds"] for r in results), 2),
            "median load (s)": round(sorted(r["seconds"] for r in results)[len(results) // 2], 3),
            "valid load (s)": round(valid_seconds, 3),
            "valid load peak (MiB)": round(valid_peak, 1), "worst peak (MiB)": round(max(peaks), 1),
            "worst peak / valid": round(max(peaks) / valid_peak, 3),
            "by category": {c: {"tried": len(rs), "refused": sum(r["result"] == "refused" for r in rs),
                                "loaded": sum(r["result"] == "loaded" for r in rs)} for c, rs in by_category.items()},
        }
        if args.cli:
            summary["cli"] = _cli(samples)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    bad = summary["tracebacks"] or summary["over 10 s"] or summary["worst peak / valid"] >= 2 \
        or summary.get("cli", {}).get("traceback")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
