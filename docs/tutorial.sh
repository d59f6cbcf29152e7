#!/usr/bin/env bash
# Trains the models of docs/tutorial.md on real MNIST and writes its reports.
#   VAETOOL_DATA=../shared/data bash docs/tutorial.sh [RUNS_DIR]
# About 15 minutes on a 2-core CPU (training ~8, evaluation ~7).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/tutorial}
out=docs/tutorial
train() { [ -f "$runs/$1/model.safetensors" ] || vaetool train --runs-dir "$runs" --name "$@" --epochs 10; }

# 1. Is deeper better? A linear encoder/decoder against an MLP, same 16-D latent.
train linear --arch linear --latent-dim 16
# 2. The β sweep, same MLP (β = 1 doubles as the MLP of experiment 1).
for beta in 0 0.5 1 4 10; do train "mlp-beta$beta" --arch mlp --latent-dim 16 --beta "$beta"; done
# 3. AE versus VAE: the same MLP as a deterministic autoencoder.
train ae --arch mlp --latent-dim 16 --autoencoder
# 4. A conditional VAE.
train cvae --arch cvae --arch-opt backbone=mlp --latent-dim 16
# 5. The linear VAE against exact probabilistic PCA (Gaussian decoder, identity link, learned σ).
train linear-gaussian --arch linear --latent-dim 16 --likelihood gaussian --likelihood-opt link=identity

# One comparison of everything on the 10,000 test images: the table, the verdicts and the pictures.
vaetool compare "$runs"/linear "$runs"/mlp-beta0 "$runs"/mlp-beta0.5 "$runs"/mlp-beta1 "$runs"/mlp-beta4 \
    "$runs"/mlp-beta10 "$runs"/ae "$runs"/cvae "$runs"/linear-gaussian --iw-samples 100 --iw-images 10000 -o "$out/report.md"
vaetool sample -m "$runs"/cvae -n 80 -o "$out/cvae-samples.png"
