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
# About 30 + 21 + 13 minutes on 2 CPU cores. The result replaces BASE_PIPELINE when SHIP=1
# (the default at SCALE=1), else goes to RUN_DIR/pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/refine}
DEFAULT=$(python3 -c "from magicvideo.pipeline import DEFAULT_PIPELINE; print(DEFAULT_PIPELINE)")
BASE=${2:-$DEFAULT}
SCALE=${SCALE:-1}
SHIP=${SHIP:-$([ "$SCALE" = "1" ] && echo 1 || echo 0)}
steps() { python3 -c "print(max(1, int(round($1 * float('$SCALE')))))"; }
resume() { [ -f "$1/checkpoint/state.json" ] && echo --resume || true; }
mkdir -p "$RUN"
START=$(date +%s)

magicvideo train --stage vae --init-from "$BASE/vae" -o "$RUN/vae_decoder" --steps "$(steps 1500)" --batch-size 16 \
  --lr 3e-4 --seed 1 $(resume "$RUN/vae_decoder")
magicvideo train --stage videovae -o "$RUN/videovae" --vae "$RUN/vae_decoder/model" --steps "$(steps 400)" \
  --batch-size 4 --lr 5e-4 $(resume "$RUN/videovae")
magicvideo train --stage sr -o "$RUN/sr" --init-from "$BASE/sr" --steps "$(steps 600)" --batch-size 8 --lr 2e-4 \
  --seed 1 $(resume "$RUN/sr")

TARGET=$([ "$SHIP" = "1" ] && echo "$DEFAULT" || echo "$RUN/pipeline")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --base "$BASE" --wall "refine_wall_s=$(( $(date +%s) - START ))"
