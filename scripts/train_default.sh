#!/usr/bin/env bash
# Train the embedded default (tiny preset, shapes domain) from scratch and install it as the
# shipped pipeline in magicvideo/weights/default. Re-runnable by anyone; CPU is enough.
#
#   bash scripts/train_default.sh [RUN_DIR]
#
# Budget on 2 CPU cores: about 90 minutes for the keyframe model (steps 1-4), then about 35 for
# the cascade stages (scripts/train_cascade.sh). Step counts can be scaled with SCALE=0.1
# for a quick smoke run (the result is then not shipped unless SHIP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}
SCALE=${SCALE:-1}
SHIP=${SHIP:-$([ "$SCALE" = "1" ] && echo 1 || echo 0)}
steps() { python3 -c "import sys; print(max(1, int(round($1 * float('$SCALE')))))"; }
mkdir -p "$RUN"
START=$(date +%s)

resume() { [ -f "$1/checkpoint/state.json" ] && echo --resume || true; }

# 1. image VAE on single frames (f=4: 64x64 frames -> 4x16x16 latents), loss weighted onto the object
magicvideo train --stage vae -o "$RUN/vae" --steps "$(steps 1600)" --batch-size 16 --lr 1e-3 $(resume "$RUN/vae")
# 2. LiT: image tower matched to the frozen MiniLM text tower
magicvideo train --stage lit -o "$RUN/lit" --steps "$(steps 600)" --batch-size 64 --lr 1e-3 $(resume "$RUN/lit")
# 3. keyframe U-Net, unsupervised: image embeddings of the clip's frames as proxy text. The encoded
#    clip pool is cached and reused by step 4; half the noise variance is shared across frames.
KEYFRAME=(--vae "$RUN/vae/model" --encoder "$RUN/lit/model" --pool-clips "$(steps 4000)" --pool-cache "$RUN/clip_pool.safetensors"
          --frame-noise-correlation 0.5 --batch-size 8)
magicvideo train --stage keyframe --condition image -o "$RUN/keyframe_unsup" "${KEYFRAME[@]}" \
  --steps "$(steps 800)" --lr 4e-4 $(resume "$RUN/keyframe_unsup")
# 4. keyframe U-Net, supervised finetuning on captions
magicvideo train --stage keyframe --condition text -o "$RUN/keyframe" "${KEYFRAME[@]}" \
  --init-from "$RUN/keyframe_unsup/model" --steps "$(steps 3600)" --lr 3e-4 $(resume "$RUN/keyframe")

TARGET=$([ "$SHIP" = "1" ] && python3 -c "from magicvideo.pipeline import DEFAULT_PIPELINE; print(DEFAULT_PIPELINE)" || echo "$RUN/pipeline")
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" --wall "wall_s=$(( $(date +%s) - START ))"

# 5-7. the cascade stages (super-resolution, interpolation, VideoVAE) on top of what was just shipped
SCALE="$SCALE" SHIP="$SHIP" bash scripts/train_cascade.sh "$RUN/cascade" "$TARGET"
