#!/usr/bin/env bash
# The keyframe refinement of 2026-11-27 on top of a shipped pipeline: the text-conditioned
# keyframe model trained on with the object-weighted loss (`--object-weight 4`: the loss
# weighted 5x on the latent pixels off the black background, the few that decide an object's
# shape), 2,500 steps of 32 clips drawn from a pool of 3,000 encoded clips, lr 1e-4.
#
#   DEVICE=cuda bash scripts/refine_keyframe.sh [RUN_DIR] [BASE_PIPELINE]
#
# The shipped model was made on one NVIDIA H100: 294 s (about 35 s of pool encoding, then
# ~10 steps/s). DEVICE defaults to cpu: on 2 cores a step of 8 clips takes 2.1 s, so this
# recipe would take 5-6 hours (SCALE=0.1 for a short run). The result replaces BASE_PIPELINE when SHIP=1 (the
# default at SCALE=1), else goes to RUN_DIR/pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/refine_keyframe}
BASE=${2:-$DEFAULT}
DEVICE=${DEVICE:-cpu}
mkdir -p "$RUN"
START=$(date +%s)

magicvideo train --stage keyframe --condition text -o "$RUN/keyframe_object" --vae "$BASE/vae" \
  --encoder "$BASE/encoder" --init-from "$BASE/keyframe" --pool-clips 3000 --steps "$(steps 2500)" \
  --batch-size 32 --lr 1e-4 --object-weight 4 --seed 2 --checkpoint-every 250 --device "$DEVICE" \
  $(resume "$RUN/keyframe_object")

TARGET=$([ "$SHIP" = "1" ] && echo "$DEFAULT" || echo "$RUN/pipeline")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --base "$BASE" \
  --wall "keyframe_object_wall_s=$(( $(date +%s) - START ))"
