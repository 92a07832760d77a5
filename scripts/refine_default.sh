#!/usr/bin/env bash
# The refinements of 2026-11-26 on top of a shipped pipeline (what turned the previous
# default into the current one; a run of scripts/train_default.sh from scratch includes them):
#
#   bash scripts/refine_default.sh [RUN_DIR] [BASE_PIPELINE]
#
# 1. the VAE decoder finetuned with the object-weighted loss (encoder and latent scaling kept,
#    so the keyframe and interpolation models stay valid): squares keep their corners;
# 2. the VideoVAE temporal layers retrained on that decoder, with the dithering term;
# 3. the SR model trained on, with a quarter of its crops on the empty background.
# About 61 minutes on 2 CPU cores (3,683 s on 2026-11-27). The result replaces BASE_PIPELINE when SHIP=1
# (the default at SCALE=1), else goes to RUN_DIR/pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/refine}
BASE=${2:-$DEFAULT}
mkdir -p "$RUN"
START=$(date +%s)

magicvideo train --stage vae --init-from "$BASE/vae" -o "$RUN/vae_decoder" --steps "$(steps 1500)" --batch-size 16 \
  --lr 3e-4 --seed 1 $(resume "$RUN/vae_decoder")
magicvideo train --stage videovae -o "$RUN/videovae" --vae "$RUN/vae_decoder/model" --steps "$(steps 400)" \
  --batch-size 4 --lr 5e-4 $(resume "$RUN/videovae")
magicvideo train --stage sr -o "$RUN/sr" --init-from "$BASE/sr" --steps "$(steps 600)" --batch-size 8 --lr 2e-4 \
  --seed 1 $(resume "$RUN/sr")

TARGET=$(ship_target "$RUN")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --base "$BASE" --wall "refine_wall_s=$(( $(date +%s) - START ))"
