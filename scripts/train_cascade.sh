#!/usr/bin/env bash
# Train the cascade stages after the keyframes (super-resolution, interpolation, VideoVAE) on
# top of a pipeline that has keyframe, vae and encoder stages, and ship the result.
#
#   bash scripts/train_cascade.sh [RUN_DIR] [BASE_PIPELINE]
#
# BASE_PIPELINE defaults to the shipped default (magicvideo/weights/default); the result
# replaces it when SHIP=1 (the default at SCALE=1), else goes to RUN_DIR/pipeline.
# scripts/train_default.sh runs this at its end. About 35 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/default}
BASE=${2:-$DEFAULT}
mkdir -p "$RUN"
START=$(date +%s)

# 5. 4x pixel-space super-resolution (64 -> 256) on single frames: x0-prediction of the
#    residual over bicubic, noise-conditioning augmentation of the low-res input
magicvideo train --stage sr -o "$RUN/sr" --steps "$(steps 1000)" --batch-size 8 --lr 5e-4 $(resume "$RUN/sr")
# 6. latent frame interpolation (3 frames between keyframes), initialised from the keyframe U-Net
magicvideo train --stage interpolation -o "$RUN/interpolation" --vae "$BASE/vae" --encoder "$BASE/encoder" \
  --init-from "$BASE/keyframe" --steps "$(steps 600)" --batch-size 8 --lr 3e-4 $(resume "$RUN/interpolation")
# 7. VideoVAE: the decoder's directed temporal attention (encoder and image decoder frozen)
magicvideo train --stage videovae -o "$RUN/videovae" --vae "$BASE/vae" --steps "$(steps 400)" --batch-size 4 \
  --lr 5e-4 $(resume "$RUN/videovae")

TARGET=$(ship_target "$RUN")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --base "$BASE" --wall "cascade_wall_s=$(( $(date +%s) - START ))"
