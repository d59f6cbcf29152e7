"""How fast the decoded image follows a slider in ``vaetool explore``.

Starts the explorer's real server (Starlette on uvicorn) on a free loopback port for a trained
model and sends ``--requests`` slider updates, each a ``POST /api/decode`` with a fresh z over one
keep-alive connection, as the page does while you drag: one request in flight at a time. Reports
the median round trip and, as the reference measured in the same run, the model's decode alone
and the server's decode path without HTTP (decode + PNG). Median of ``--rounds`` rounds.

    python benchmarks/explore_latency.py -m runs/conv-mnist --threads 1
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="runs/conv-mnist", help="model file or run directory")
    parser.add_argument("--requests", type=int, default=300, help="slider updates per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args()

    import vaetool
    from vaetool.explore import server
    from vaetool.explore.app import create_app
    from vaetool.explore.explorer import Explorer

    torch.set_num_threads(args.threads)
    model = vaetool.load(args.model, "cpu")
    explorer = Explorer(model, args.model)
    generator = torch.Generator().manual_seed(0)
    latents = [torch.randn(model.latent_dim, generator=generator).tolist() for _ in range(args.requests)]
    labels = [0] * args.requests if model.conditional else [None] * args.requests

    def direct_decode() -> list[float]:
        times = []
        for z, y in zip(latents, labels):
            started = time.perf_counter()
            with torch.no_grad():
                model.decode(explorer.latent(z), explorer.label(y, 1))
            times.append(time.perf_counter() - started)
        return times

    def decode_path() -> list[float]:
        times = []
        for z, y in zip(latents, labels):
            started = time.perf_counter()
            explorer.decode_png(z, y)
            times.append(time.perf_counter() - started)
        return times

    with server.running(create_app(explorer, threads=args.threads)) as url:
        host, port = url.split("//")[1].strip("/").rsplit(":", 1)

        def over_http() -> list[float]:
            # A fresh keep-alive connection per round: uvicorn closes one idle for 5 s.
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            times = []
            for z, y in zip(latents, labels):
                body = json.dumps({"z": z, **({"label": y} if y is not None else {})}).encode()
                started = time.perf_counter()
                connection.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                times.append(time.perf_counter() - started)
                assert answer.status == 200, answer.status
            connection.close()
            return times

        over_http()  # warm-up: first calls pay for lazy initialisation
        rounds = {"model.decode alone": [], "decode + PNG (the server's path)": [], "POST /api/decode over HTTP": []}
        for _ in range(args.rounds):
            for name, measure in zip(rounds, (direct_decode, decode_path, over_http)):
                rounds[name].append(statistics.median(measure()) * 1000)

    print(f"{args.model}: {model.config['architecture']}, {model.latent_dim}-D latent, "
          f"{'x'.join(map(str, model.input_shape))} images; {args.threads} CPU thread(s); "
          f"{args.requests} requests x {args.rounds} rounds")
    reference = statistics.median(rounds["model.decode alone"])
    for name, medians in rounds.items():
        value = statistics.median(medians)
        print(f"  {name:34s} median {value:7.2f} ms   ({value / reference:4.1f}x model.decode)")


if __name__ == "__main__":
    main()
