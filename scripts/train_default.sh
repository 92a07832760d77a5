#!/usr/bin/env bash
# Train the embedded default (tiny preset, shapes domain) from scratch and install it as the
# shipped pipeline in magicvideo/weights/default. Re-runnable by anyone; CPU is enough.
#
#   bash scripts/train_default.sh [RUN_DIR]
#   BASE=magicvideo/weights/default bash scripts/train_default.sh [RUN_DIR]   # step 5 only
#
# Steps 1-4 are the settings the shipped VAE, encoder and keyframe model were trained with
# (each stage's settings are recorded in magicvideo/weights/default/training_metrics.json).
# Step 5, the condition-embedding finetune of the keyframe model, was run on top of the
# shipped model with BASE=magicvideo/weights/default: it adds the zero-initialised embedding
# of the prompt to the timestep embedding (VideoUNetConfig.use_condition_embedding) and goes
# on training on captions. Then scripts/refine_default.sh finetuned the shipped VAE's decoder
# with the object-weighted loss (step 6 here) and retrained the VideoVAE and SR stages. Two
# differences from a run from scratch: the shipped VAE's encoder predates the object-weighted
# VAE loss, and from scratch the tiny preset has the condition embedding from step 3 on.
# Last, scripts/refine_keyframe.sh (run on one GPU) trained the shipped keyframe model on with
# the object-weighted loss; this script does not include it (about 17 hours on 2 CPU cores).
# Then scripts/refine_encoder.sh retrained the shipped image tower with the LiT alignment term
# (weight 4); the lit stage of step 2 has it by default since, at weight 1 (so from scratch,
# step 3's proxy text comes from an aligned tower; the shipped keyframe model was pretrained
# on the earlier one).
#
# Time on 2 CPU cores: steps 1-4 took 83 minutes (4,970 s) on the machine of the shipped run;
# step 5 takes about 15 minutes of clip encoding plus 1.8 s per step on a machine twice slower,
# step 6 about 30 minutes (1.2 s per step).
# The cascade stages follow (scripts/train_cascade.sh, about 60 minutes). Step counts can be
# scaled with SCALE=0.1 for a quick smoke run (the result is then not shipped unless SHIP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/default}
BASE=${BASE:-}
mkdir -p "$RUN"
START=$(date +%s)
TARGET=$(ship_target "$RUN")

if [ -z "$BASE" ]; then
  # 1. image VAE on single frames (f=4: 64x64 frames -> 4x16x16 latents), loss weighted onto the object
  magicvideo train --stage vae -o "$RUN/vae" --steps "$(steps 1200)" --batch-size 16 --lr 1e-3 $(resume "$RUN/vae")
  # 2. LiT: image tower matched to the frozen MiniLM text tower
  magicvideo train --stage lit -o "$RUN/lit" --steps "$(steps 600)" --batch-size 64 --lr 1e-3 $(resume "$RUN/lit")
  # 3. keyframe U-Net, unsupervised: image embeddings of the clip's frames as proxy text
  magicvideo train --stage keyframe --condition image -o "$RUN/keyframe_unsup" --vae "$RUN/vae/model" \
    --encoder "$RUN/lit/model" --pool-clips "$(steps 2500)" --steps "$(steps 1000)" --batch-size 8 --lr 3e-4 \
    $(resume "$RUN/keyframe_unsup")
  # 4. keyframe U-Net, supervised finetuning on captions. The encoded clip pool is cached for step 5.
  magicvideo train --stage keyframe --condition text -o "$RUN/keyframe" --vae "$RUN/vae/model" \
    --encoder "$RUN/lit/model" --init-from "$RUN/keyframe_unsup/model" --pool-clips "$(steps 4000)" \
    --pool-cache "$RUN/clip_pool_text" --steps "$(steps 3500)" --batch-size 8 --lr 2e-4 \
    $(resume "$RUN/keyframe")
  VAE="$RUN/vae/model" ENCODER="$RUN/lit/model" KEYFRAME="$RUN/keyframe/model"
else
  VAE="$BASE/vae" ENCODER="$BASE/encoder" KEYFRAME="$BASE/keyframe"
fi
# 5. keyframe U-Net with the condition embedding (a model without one gets it, zero-initialised,
#    on --init-from), more captioned training
magicvideo train --stage keyframe --condition text -o "$RUN/keyframe_cond" --vae "$VAE" --encoder "$ENCODER" \
  --init-from "$KEYFRAME" --pool-clips "$(steps 4000)" --pool-cache "$RUN/clip_pool_text" \
  --steps "$(steps 1600)" --batch-size 8 --lr 2e-4 $(resume "$RUN/keyframe_cond")
# 6. the VAE decoder finetuned with the object-weighted loss (corners: squares vs circles); the
#    encoder and the latent scaling are kept, so the keyframe model's latent space does not move.
#    (With BASE: scripts/refine_default.sh, which also retrains the VideoVAE and SR on top.)
if [ -z "$BASE" ]; then
  magicvideo train --stage vae --init-from "$VAE" -o "$RUN/vae_decoder" --steps "$(steps 1500)" --batch-size 16 \
    --lr 3e-4 --seed 1 $(resume "$RUN/vae_decoder")
fi

WALL_KEY=$([ -z "$BASE" ] && echo wall_s || echo wall_s_keyframe_cond)
python3 scripts/ship_pipeline.py "$RUN" "$TARGET" ${BASE:+--base "$BASE"} --wall "$WALL_KEY=$(( $(date +%s) - START ))"

# 7-9. the cascade stages (super-resolution, interpolation, VideoVAE) on top of what was just
# shipped; with BASE they are kept from it (they do not depend on the keyframe model)
if [ -z "$BASE" ]; then
  SCALE="$SCALE" SHIP="$SHIP" bash scripts/train_cascade.sh "$RUN/cascade" "$TARGET"
fi
