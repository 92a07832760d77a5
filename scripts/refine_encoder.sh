#!/usr/bin/env bash
# The encoder refinement of 2026-11-27 on top of a shipped pipeline: the LiT image tower
# retrained with the alignment term (`lit_loss(..., align_weight=1)`, the lit stage's default
# since then), so that an image's embedding lands on the normalised mean of the captions it can
# carry instead of only ranking them (cosine to that mean 0.44 -> 0.89). The text tower, the
# keyframe model and the cascade stages are kept; image-to-video and variations condition on
# image embeddings, and interpolation gets its keyframes' (its centroid error did not move).
#
#   bash scripts/refine_encoder.sh [RUN_DIR] [BASE_PIPELINE]
#
# Same settings as step 2 of scripts/train_default.sh: 600 steps of 64 frames, lr 1e-3, seed 0;
# about 2.5 minutes on 2 CPU cores. The result replaces BASE_PIPELINE when SHIP=1 (the default
# at SCALE=1), else goes to RUN_DIR/pipeline; the base's record of the stage is kept in
# training_metrics.json as lit_round1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/refine_encoder}
BASE=${2:-$DEFAULT}
TARGET=$(ship_target "$RUN")
START=$(date +%s)
mkdir -p "$RUN"
magicvideo train --stage lit -o "$RUN/lit" --steps "$(steps 600)" --batch-size 64 --lr 1e-3 --seed 0 \
  $(resume "$RUN/lit")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --base "$BASE" --keep-previous \
  --wall "lit_wall_s=$(( $(date +%s) - START ))"
