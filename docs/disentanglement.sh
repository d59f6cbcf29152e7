#!/usr/bin/env bash
# The β-VAE study of docs/disentanglement.md on the embedded shapes dataset (32×32, 10-D latent).
#   bash docs/disentanglement.sh [RUNS_DIR]
# About 35 minutes on a 2-core CPU: four trainings of ~3–8 minutes, then the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/disentanglement}
out=docs/disentanglement
mkdir -p "$out"
have() { [ -f "$runs/$1/model.safetensors" ]; }

have shapes-beta1 && have shapes-beta4 && have shapes-beta16 || \
    vaetool train --data shapes --latent-dim 10 --beta 1,4,16 --name shapes --runs-dir "$runs"
have shapes-tc6 || vaetool train --data shapes --latent-dim 10 --tc-weight 6 --name shapes-tc6 --runs-dir "$runs"

# disentanglement_lib's sample counts × 0.05: the published protocol (× 1) takes hours per model on a CPU.
vaetool compare "$runs"/shapes-beta1 "$runs"/shapes-beta4 "$runs"/shapes-beta16 "$runs"/shapes-tc6 \
    --iw-samples 20 --iw-images 2000 --disentanglement-scale 0.05 -o "$out/report.md"
for run in shapes-beta1 shapes-beta16 shapes-tc6; do
    vaetool traverse -m "$runs/$run" --range 2.5 -o "$out/traverse-$run.png"
done
