#!/usr/bin/env bash
# The shipped shapes pipeline (magicvideo/weights/default), replayed from nothing: every training
# run that made it, in the order they ran, each with the settings it ran with (its record in
# magicvideo/weights/default/training_metrics.json), then `magicvideo ship`.
#
#   bash scripts/recipe_shapes.sh [RUN_DIR]                   # RUN_DIR defaults to runs/shapes
#   SCALE=0.002 bash scripts/recipe_shapes.sh runs/smoke      # steps and clip pools scaled: a smoke run
#
# Resumable: a step whose model exists is skipped, one cut mid-way goes on from its checkpoint
# (--resume). Each group of steps ships its pipeline to RUN_DIR/NN_group/pipeline; where the
# original run started from the pipeline shipped at the time (--init-from, --vae, --encoder,
# --base of magicvideo/weights/default), the replay starts from the previous group's pipeline.
# The last group's pipeline is RUN_DIR/pipeline; with SHIP=1 (the default at SCALE=1) it is
# measured (eval_metrics.json, cascade_metrics.json beside it) and installed over
# magicvideo/weights/default. The steps that ran on a GPU run on cuda when torch sees one, else
# on the CPU with a warning (DEVICE=cpu|cuda chooses).
#
# group / step (README step)                                 ran on          took (training_metrics.json)
# 01_base (2026-11-25)                                       2 CPU cores     4,970 s in all
#   1  vae: image VAE, 1,200 steps of 16 frames                              644 s
#   2  lit: LiT image tower, 600 steps of 64, no alignment term              105 s
#   3  keyframe_unsup: video U-Net, image embeddings as proxy text,
#      1,000 steps of 8 from a pool of 2,500 clips                           681 s
#   4  keyframe: on captions, 3,500 steps of 8, pool of 4,000                2,863 s
# 02_cascade (2026-11-26)                                    2 CPU cores     3,095 s in all
#   5  sr: 4x super-resolution, 1,000 steps of 8 crops                       1,224 s
#   6  interpolation: from step 4's keyframe model, 600 steps of 8           897 s
#   7  videovae: the decoder's temporal layers, 400 steps of 4               975 s
# 03_keyframe_cond (4, second part, 2026-11-26)              2 CPU cores     4,200 s (2,933 s training)
#      the condition embedding added to step 4's model, 1,600 steps of 8     on a machine half as fast
# 04_refine (8, 2026-11-27)                                  2 CPU cores     3,683 s in all
#      vae_decoder: the decoder finetuned, object-weighted loss, 1,500 steps 1,968 s
#      videovae: retrained on that decoder, with the dithering term, 400     1,285 s
#      sr: trained on, a quarter of the crops anywhere, 600 steps            392 s
# 05_keyframe_round1 (9): object-weighted loss, 2,500 steps  one H100        293 s
#      of 32 from a pool of 3,000, lr 1e-4, seed 2
# 06_keyframe_round2 (9): on top, lr 5e-5, seed 3            one H100        278 s
# 07_lit_align1 (10, first try): alignment weight 1, 600     2 CPU cores     142 s
#      steps (replaced by 08 two hours later; kept for its record, lit_round2)
# 08_lit_align4 (10): alignment weight 4, 1,200 steps        2 CPU cores     277 s
# 09_keyframe_round3 (9): on top of round 2, lr 5e-5, seed 4 one H100        572 s (cut after step
#      ships as 0.75 x round 2 + 0.25 x round 3 (python -m magicvideo.average)  1,557, resumed from 1,500)
# 10_sr (11): 4,000 more SR steps of 8, seed 2               2 CPU cores     1,947 s
# 11_keyframe_bf16 (12): bf16 autocast, 64 clips a step,     one H100,       430 s
#      lr 3e-5 on a 2,000-step schedule ended at 1,250       shared
#
# About 5.1 hours of CPU steps on 2 cores and 26 minutes on one H100. On a CPU instead, rounds
# 1-3 take about 17 hours (8.1 s a step of 32 clips on 2 cores) and step 12 about 3 days
# (bfloat16 autocast is slow there: about 210 s a step of 64 clips on 2 busy cores).
#
# What today's code cannot replay exactly (the first runs predate it; no flag restores it):
#  * step 1: the VAE loss is now weighted onto the object (9x); the shipped VAE's encoder was
#    trained with the plain MSE + L1 loss (its decoder got the weighted loss in 04_refine);
#  * steps 3-4: the tiny preset now has the condition embedding; step 3 runs without it
#    (--unet use_condition_embedding=false) as it ran, but --init-from gives step 4 the
#    zero-initialised embedding that the original model got only in 03_keyframe_cond;
#  * step 5: a quarter of the SR crops lie anywhere in the frame (--stage sr now always does
#    that); the original step 5 cropped around the object only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/shapes}
mkdir -p "$RUN"
echo "recipe_shapes: RUN_DIR=$RUN SCALE=$SCALE SHIP=$SHIP, GPU steps on $GPU"

# -- 01_base: steps 1-4 (was scripts/train_default.sh) ---------------------------------------------
G=$RUN/01_base
start=$(date +%s)
# 1. image VAE on single frames (f=4: 64x64 frames -> 4x16x16 latents)
train "$G/vae" --stage vae --steps "$(steps 1200)" --batch-size 16 --lr 1e-3
# 2. LiT: image tower matched to the frozen MiniLM text tower (as it ran: no alignment term)
train "$G/lit" --stage lit --steps "$(steps 600)" --batch-size 64 --lr 1e-3 --align-weight 0
# 3. keyframe U-Net, unsupervised: image embeddings of the clip's frames as proxy text
train "$G/keyframe_unsup" --stage keyframe --condition image --vae "$G/vae/model" --encoder "$G/lit/model" \
  --pool-clips "$(steps 2500)" --steps "$(steps 1000)" --batch-size 8 --lr 3e-4 --unet use_condition_embedding=false
# 4. keyframe U-Net on captions; the encoded clip pool is kept for 03_keyframe_cond
train "$G/keyframe" --stage keyframe --condition text --vae "$G/vae/model" --encoder "$G/lit/model" \
  --init-from "$G/keyframe_unsup/model" --pool-clips "$(steps 4000)" --pool-cache "$RUN/clip_pool_text" \
  --steps "$(steps 3500)" --batch-size 8 --lr 2e-4
ship "$G" "$G/pipeline" wall_s "$start"
P=$G/pipeline

# -- 02_cascade: steps 5-7 (was scripts/train_cascade.sh), on 01's pipeline (then the shipped one)
G=$RUN/02_cascade
start=$(date +%s)
# 5. 4x pixel-space super-resolution (64 -> 256) on single frames: x0-prediction of the
#    residual over bicubic, noise-conditioning augmentation of the low-res input
train "$G/sr" --stage sr --steps "$(steps 1000)" --batch-size 8 --lr 5e-4
# 6. latent frame interpolation (3 frames between keyframes), initialised from step 4's keyframe U-Net
train "$G/interpolation" --stage interpolation --vae "$P/vae" --encoder "$P/encoder" --init-from "$P/keyframe" \
  --steps "$(steps 600)" --batch-size 8 --lr 3e-4
# 7. VideoVAE: the decoder's directed temporal attention (encoder and image decoder frozen)
train "$G/videovae" --stage videovae --vae "$P/vae" --steps "$(steps 400)" --batch-size 4 --lr 5e-4
ship "$G" "$G/pipeline" cascade_wall_s "$start" --base "$P"
P=$G/pipeline

# -- 03_keyframe_cond: step 4, second part (train_default.sh with BASE=the shipped pipeline) ----
# the keyframe U-Net gets the condition embedding (zero-initialised on --init-from), more captions;
# the original started from the shipped pipeline, here 02's
G=$RUN/03_keyframe_cond
start=$(date +%s)
train "$G/keyframe_cond" --stage keyframe --condition text --vae "$P/vae" --encoder "$P/encoder" \
  --init-from "$P/keyframe" --pool-clips "$(steps 4000)" --pool-cache "$RUN/clip_pool_text" \
  --steps "$(steps 1600)" --batch-size 8 --lr 2e-4
ship "$G" "$G/pipeline" wall_s_keyframe_cond "$start" --base "$P"
P=$G/pipeline

# -- 04_refine: step 8 (was scripts/refine_default.sh), on 03's pipeline (then the shipped one) ----
G=$RUN/04_refine
start=$(date +%s)
# the VAE decoder finetuned with the object-weighted loss (encoder, latent scaling and temporal
# layers kept, so the keyframe and interpolation models stay valid): squares keep their corners
train "$G/vae_decoder" --stage vae --init-from "$P/vae" --steps "$(steps 1500)" --batch-size 16 --lr 3e-4 --seed 1
# the VideoVAE temporal layers retrained on that decoder, with the dithering term
train "$G/videovae" --stage videovae --vae "$G/vae_decoder/model" --steps "$(steps 400)" --batch-size 4 --lr 5e-4
# the SR model trained on, a quarter of its crops on the empty background
train "$G/sr" --stage sr --init-from "$P/sr" --steps "$(steps 600)" --batch-size 8 --lr 2e-4 --seed 1
ship "$G" "$G/pipeline" refine_wall_s "$start" --base "$P"
P=$G/pipeline

# -- 05, 06, 09: step 9 (was scripts/refine_keyframe.sh, one H100), each round on the pipeline the
# round before shipped; the weight-1 tower (07) and the weight-4 tower (08) came between rounds 2 and 3
keyframe_round() {  # GROUP BASE_PIPELINE LR SEED: one round of the object-weighted keyframe training
  train "$1/keyframe_object" --stage keyframe --condition text --vae "$2/vae" --encoder "$2/encoder" \
    --init-from "$2/keyframe" --pool-clips "$(steps 3000)" --steps "$(steps 2500)" --batch-size 32 --lr "$3" \
    --object-weight 4 --seed "$4" --checkpoint-every 250 --device "$GPU"
}
gpu_warning "each round of step 9 (2,500 steps of 32 clips)" "5.6 hours"
G=$RUN/05_keyframe_round1
start=$(date +%s)
keyframe_round "$G" "$P" 1e-4 2
ship "$G" "$G/pipeline" keyframe_object_round1_wall_s "$start" --base "$P" --keep-previous
P=$G/pipeline

G=$RUN/06_keyframe_round2
start=$(date +%s)
keyframe_round "$G" "$P" 5e-5 3
ship "$G" "$G/pipeline" keyframe_object_round2_wall_s "$start" --base "$P" --keep-previous
P=$G/pipeline
ROUND2=$P

# -- 07, 08: step 10 (was scripts/refine_encoder.sh), the image tower retrained with the alignment
# term, first at weight 1 over 600 steps, then at weight 4 over 1,200; on the pipeline of round 2
# (then the shipped one). The text tower, the keyframe model and the cascade stages are kept.
G=$RUN/07_lit_align1
start=$(date +%s)
train "$G/lit" --stage lit --steps "$(steps 600)" --batch-size 64 --lr 1e-3 --seed 0 --align-weight 1
ship "$G" "$G/pipeline" lit_wall_s "$start" --base "$P" --keep-previous
P=$G/pipeline

G=$RUN/08_lit_align4
start=$(date +%s)
train "$G/lit" --stage lit --steps "$(steps 1200)" --batch-size 64 --lr 1e-3 --seed 0 --align-weight 4
ship "$G" "$G/pipeline" lit_wall_s "$start" --base "$P" --keep-previous
P=$G/pipeline

# -- 09: step 9, round 3, on 08's pipeline (then the shipped one; its keyframe model is round 2's).
# It drew shapes better and directions worse, so it ships as its weight-space average with round 2,
# the weight chosen on validation seeds (python -m magicvideo.evaluation.keyframes --seed-offset 10000);
# the record of the stage is round 3's
G=$RUN/09_keyframe_round3
start=$(date +%s)
keyframe_round "$G" "$P" 5e-5 4
if [ ! -d "$G/average/keyframe_object/model" ]; then
  mkdir -p "$G/average/keyframe_object"
  cp "$G/keyframe_object/metrics.jsonl" "$G/average/keyframe_object/"
  python3 -m magicvideo.average "$ROUND2/keyframe:0.75" "$G/keyframe_object/model:0.25" \
    -o "$G/average/keyframe_object/model"
fi
ship "$G/average" "$G/pipeline" keyframe_object_wall_s "$start" --base "$P" --keep-previous
P=$G/pipeline

# -- 10: step 11 (was scripts/refine_sr.sh), the SR model trained on, on 09's pipeline
G=$RUN/10_sr
start=$(date +%s)
train "$G/sr" --stage sr --init-from "$P/sr" --steps "$(steps 4000)" --batch-size 8 --lr 2e-4 --seed 2 \
  --checkpoint-every 500
ship "$G" "$G/pipeline" sr_refine_wall_s "$start" --base "$P" --keep-previous
P=$G/pipeline

# -- 11: step 12 (was scripts/refine_keyframe_bf16.sh, one H100), one more round of step 9 under
# bfloat16 autocast at twice the batch, on 10's pipeline; the original run's time limit stopped it
# after step 1,450 and its step-1,250 checkpoint shipped, which is what --stop-at 1250 writes
G=$RUN/11_keyframe_bf16
gpu_warning "step 12 (1,250 steps of 64 clips under bfloat16 autocast)" "3 days"
start=$(date +%s)
train "$G/keyframe_object" --stage keyframe --condition text --vae "$P/vae" --encoder "$P/encoder" \
  --init-from "$P/keyframe" --pool-clips "$(steps 3000)" --steps "$(steps 2000)" --stop-at "$(steps 1250)" \
  --batch-size 64 --lr 3e-5 --object-weight 4 --seed 6 --checkpoint-every 250 --mixed-precision bf16 --device "$GPU"
ship "$G" "$RUN/pipeline" keyframe_object_bf16_wall_s "$start" --base "$P" --keep-previous

# -- the shipped pipeline: measured, then installed (SHIP=1) ------------------------------------
if [ "$SHIP" = "1" ]; then
  for evaluation in keyframes:eval_metrics cascade:cascade_metrics; do
    out=$RUN/pipeline/${evaluation#*:}.json
    [ -f "$out" ] || python3 -m "magicvideo.evaluation.${evaluation%%:*}" --pipeline "$RUN/pipeline" --out "$out" ||
      echo "recipe_shapes: magicvideo.evaluation.${evaluation%%:*} exited $? (1: a target missed, see $out)" >&2
  done
  install_default "$RUN/pipeline"
else
  echo "recipe_shapes: the pipeline is $RUN/pipeline (SHIP=1 installs it as the shipped default)"
fi
