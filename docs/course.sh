#!/usr/bin/env bash
# Makes the pictures of "The course assignments, one command each" in docs/tutorial.md, on real
# MNIST, with small seeded subsets (--train-limit) and one CPU thread so that it all fits in
# about half an hour on a shared 2-core machine.
#   VAETOOL_DATA=../shared/data bash docs/course.sh [RUNS_DIR]
# Every step's wall time is appended to docs/course/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/course}
out=docs/course
mkdir -p "$out"
quick=(--train-limit 10000 --test-limit 2000 --epochs 10 --threads 1)
look=(--limit 2000 --iw-samples 0 --no-sample-quality)     # compare, for its pictures
: > "$out/timings.txt"
step() {  # step NAME COMMAND...: run it, record how long it took
  local name=$1 start=$SECONDS; shift
  "$@"
  echo "$name $((SECONDS - start)) s" >> "$out/timings.txt"
}
train() { [ -f "$runs/$1/model.safetensors" ] || step "train-$1" vaetool train --runs-dir "$runs" --name "$@" "${quick[@]}"; }
r() { echo "$runs/$1"; }

# 1. AE then VAE (the VAE also keeps per-epoch snapshots and its best epoch).
train ae --arch mlp --autoencoder
train vae --arch mlp --snapshot-every 1 --keep-best
cp "$(r vae)/snapshots/samples-by-epoch.png" "$out/samples-by-epoch.png"
# 6. ... and their interpolations between dataset digits picked by label (the same report).
step compare-ae-vae vaetool compare "$(r ae)" "$(r vae)" --pairs 2:7,1:8 "${look[@]}" -o "$out/ae-vae.md"

# 2. Summing versus averaging log p(x|z): the classic bug, on purpose.
train vae-mean --arch mlp --likelihood-opt reduction=mean
step compare-sum-mean vaetool compare "$(r vae)" "$(r vae-mean)" "${look[@]}" -o "$out/sum-mean.md"

# 3. exp versus softplus for σ, and exp with σ starting at 1 (scale_init=0); a larger step size
#    makes the difference visible.
train exp --arch mlp --lr 0.003
train exp-scale0 --arch mlp --lr 0.003 --arch-opt scale_init=0
train softplus --arch mlp --lr 0.003 --encoder-scale softplus
step compare-scale vaetool compare "$(r exp)" "$(r exp-scale0)" "$(r softplus)" "${look[@]}" -o "$out/scale.md"

# 4. β from 0 to 200 on a 2-D latent, the latent spaces side by side.
for beta in 0 1 10 50 200; do train "beta$beta" --arch mlp --latent-dim 2 --beta "$beta"; done
step encode-betas vaetool encode --data mnist --split test --limit 2000 --plot "$out/betas.png" \
    -m "$(r beta0)" -m "$(r beta1)" -m "$(r beta10)" -m "$(r beta50)" -m "$(r beta200)"

# 5. Linear versus deep.
train linear --arch linear
step compare-linear-deep vaetool compare "$(r linear)" "$(r vae)" "${look[@]}" -o "$out/linear-deep.md"

# 7. t-SNE of the 16-D latent.
step tsne vaetool encode --data mnist --split test --limit 2000 --method tsne --plot "$out/tsne.png" -m "$(r vae)"

# 8. The 2-D manifold of the β = 1 model.
step manifold vaetool sample -m "$(r beta1)" --manifold -n 400 --zoom 1 -o "$out/manifold.png"

# 9. A conditional VAE: one labelled row per digit.
train cvae --arch cvae --arch-opt backbone=mlp
step cvae-samples vaetool sample -m "$(r cvae)" -n 80 -o "$out/cvae-samples.png"

# Looking at the data: the first sixteen 3s, and one digit interpolated into another.
step show vaetool show --data mnist --label 3 -n 16 -o "$out/threes.png"
step interpolate vaetool interpolate --data mnist --label 2,7 -m "$(r vae)" -o "$out/two-to-seven.gif"
