#!/usr/bin/env bash
# The keyframe refinement of 2026-11-27 on top of a shipped pipeline: the text-conditioned
# keyframe model trained on with the object-weighted loss (`--object-weight 4`: the loss
# weighted 5x on the latent pixels off the black background, the few that decide an object's
# shape), in two rounds of 2,500 steps of 32 clips, each from its own pool of 3,000 encoded
# clips: lr 1e-4 (seed 2), then lr 5e-5 (seed 3) on top of the first round.
#
#   DEVICE=cuda bash scripts/refine_keyframe.sh [RUN_DIR] [BASE_PIPELINE]
#
# The shipped model was made on one NVIDIA H100: 293 s and 278 s (about 35 s of pool encoding,
# then 7-13 steps/s; there the MiniLM text tower answered from a table of its outputs, see
# docs/benchmarks.md section 6). DEVICE defaults to cpu: on 2 cores a step of 32 clips takes
# 8.1 s, so this recipe would take about 11 hours there (SCALE=0.002 scales steps and pool for
# a 3-minute smoke run). The result replaces BASE_PIPELINE when SHIP=1 (the default at SCALE=1), else goes
# to RUN_DIR/pipeline; the base's record of the stage is kept in training_metrics.json as
# keyframe_object_round1 (round2, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/refine_keyframe}
BASE=${2:-$DEFAULT}
DEVICE=${DEVICE:-cpu}
TARGET=$(ship_target "$RUN")

round() {  # NAME BASE_PIPELINE TARGET LR SEED WALL_KEY
  local start
  start=$(date +%s)
  mkdir -p "$RUN/$1"
  magicvideo train --stage keyframe --condition text -o "$RUN/$1/keyframe_object" --vae "$2/vae" \
    --encoder "$2/encoder" --init-from "$2/keyframe" --pool-clips "$(steps 3000)" --steps "$(steps 2500)" \
    --batch-size 32 --lr "$4" --object-weight 4 --seed "$5" --checkpoint-every 250 --device "$DEVICE" \
    $(resume "$RUN/$1/keyframe_object")
  python3 scripts/ship_pipeline.py "$RUN/$1" "$3" --base "$2" --keep-previous \
    --wall "$6=$(( $(date +%s) - start ))"
}
round round1 "$BASE" "$RUN/round1/pipeline" 1e-4 2 keyframe_object_round1_wall_s
round round2 "$RUN/round1/pipeline" "$TARGET" 5e-5 3 keyframe_object_wall_s
