#!/usr/bin/env bash
# The super-resolution refinement of 2026-11-27 on top of a shipped pipeline: the SR model
# trained on for 4,000 more steps of 8 crops (lr 2e-4, seed 2; the crops and the loss of
# `--stage sr`, a quarter of them anywhere in the frame).
#
#   bash scripts/refine_sr.sh [RUN_DIR] [BASE_PIPELINE]
#
# About 26 minutes on 2 CPU cores (2.6 steps/s). The result replaces BASE_PIPELINE when SHIP=1
# (the default at SCALE=1), else goes to RUN_DIR/pipeline; the base's record of the stage is
# kept in training_metrics.json as sr_round1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/refine_sr}
BASE=${2:-$DEFAULT}
mkdir -p "$RUN"
START=$(date +%s)

magicvideo train --stage sr -o "$RUN/sr" --init-from "$BASE/sr" --steps "$(steps 4000)" --batch-size 8 --lr 2e-4 \
  --seed 2 --checkpoint-every 500 $(resume "$RUN/sr")

TARGET=$(ship_target "$RUN")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --base "$BASE" --keep-previous \
  --wall "sr_refine_wall_s=$(( $(date +%s) - START ))"
