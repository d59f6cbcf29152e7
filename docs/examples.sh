#!/usr/bin/env bash
# Makes every picture in README.md and docs/commands.md with vaetool's own commands.
#   VAETOOL_DATA=../shared/data bash docs/examples.sh [RUNS_DIR]
# Trains (if RUNS_DIR lacks them) on shapes and real MNIST: about 25 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}
out=docs/images
mkdir -p "$out"
train() { [ -f "$runs/$1/model.safetensors" ] || vaetool train --runs-dir "$runs" --name "$@"; }

train conv-shapes --data shapes
train conv-mnist --arch conv
train mlp-mnist-2d --arch mlp --latent-dim 2
train mlp-mnist-ae --arch mlp --autoencoder
train mlp-mnist --arch mlp
train cvae-mlp --arch cvae --arch-opt backbone=mlp --latent-dim 16

# The quick start's pictures, as train wrote them.
cp "$runs/conv-shapes/samples.png" "$out/shapes-samples.png"
cp "$runs/conv-shapes/reconstructions.png" "$out/shapes-reconstructions.png"
cp "$runs/conv-mnist/curves.png" "$out/mnist-curves.png"

# Two test digits as ordinary PNG files drawn black on white at 112×112, as a user's drawing
# would be: the commands invert them for the MNIST models and resize them to 28×28.
python - "$out" <<'PY'
import sys, torchvision
from PIL import ImageOps
test = torchvision.datasets.MNIST(__import__("os").environ["VAETOOL_DATA"], train=False)
for name, index in (("digit-a.png", 3), ("digit-b.png", 2)):
    ImageOps.invert(test[index][0]).resize((112, 112)).save(f"{sys.argv[1]}/{name}")
PY

m() { echo "$runs/$1"; }
vaetool show --data mnist --label 3 -n 16 -o "$out/show-threes.png"
vaetool show --data shapes --label heart -n 6 --factors -o "$out/show-hearts.png"
vaetool sample -m "$(m conv-mnist)" -n 64 -o "$out/sample.png"
vaetool sample -m "$(m mlp-mnist-2d)" --manifold -n 400 --zoom 1 -o "$out/manifold.png"
vaetool sample -m "$(m cvae-mlp)" -n 80 -o "$out/cvae-samples.png"
vaetool encode --data mnist --split test --limit 5000 -m "$(m mlp-mnist-2d)" -o "$out/latents-2d.npy" --plot "$out/latents-2d.png"
vaetool encode --data mnist --split test --limit 2000 -m "$(m conv-mnist)" -o "$out/latents-conv.json" --plot "$out/latents-tsne.png" --method tsne
rm -f "$out/latents-2d.npy" "$out/latents-conv.json"
vaetool encode "$out/digit-a.png" "$out/digit-b.png" -m "$(m conv-mnist)" -o "$out/digits.json"
vaetool decode "$out/digits.json" -m "$(m conv-mnist)" -o "$out/decoded.png"
vaetool interpolate "$out/digit-a.png" "$out/digit-b.png" -m "$(m mlp-mnist)" --steps 12 -o "$out/interpolate-vae.gif"
vaetool interpolate "$out/digit-a.png" "$out/digit-b.png" -m "$(m mlp-mnist-ae)" --steps 12 -o "$out/interpolate-ae.gif"
vaetool interpolate "$out/digit-a.png" "$out/digit-b.png" -m "$(m mlp-mnist)" --steps 12 -o "$out/interpolate-vae.png"
vaetool interpolate "$out/digit-a.png" "$out/digit-b.png" -m "$(m mlp-mnist-ae)" --steps 12 -o "$out/interpolate-ae.png"
vaetool traverse -m "$(m conv-mnist)" --range 2.5 -o "$out/traverse-mnist.png"
vaetool traverse -m "$(m conv-shapes)" -o "$out/traverse-shapes.gif"
vaetool traverse -m "$(m conv-shapes)" -o "$out/traverse-shapes.png"
