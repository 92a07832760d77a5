#!/usr/bin/env bash
# The sprites pipeline from nothing: every stage of the cascade trained on the sprites domain
# (magicvideo/data/sprites.py; docs/sprites.md), then `magicvideo ship` and the domain's
# vocabulary.json beside the weights (`magicvideo info --pipeline DIR` prints it).
#
#   bash scripts/recipe_sprites.sh [RUN_DIR]                     # RUN_DIR defaults to runs/sprites
#   SCALE=0.001 bash scripts/recipe_sprites.sh /tmp/sprites_smoke  # steps and clip pools scaled: a smoke run
#   PRESET=tiny bash scripts/recipe_sprites.sh runs/sprites_tiny  # the shapes pipeline's model sizes
#
# Needs the Noto Color Emoji font (apt-get install fonts-noto-color-emoji, or
# MAGICVIDEO_EMOJI_FONT=/path/to/NotoColorEmoji.ttf) and scikit-image (the photographs).
# Resumable: a step whose model exists is skipped, one cut mid-way goes on from its checkpoint.
# Every step runs on cuda when torch sees a GPU, else on the CPU (DEVICE=cpu|cuda chooses). The
# pipeline is RUN_DIR/pipeline; nothing is installed over the shipped default (that is a
# decision for the README's owner, with the measured figures).
#
# step                                                     preset small (PRESET=small)
#   1  vae: image VAE on single frames (photos, sprites), images split (still-only sprites too)
#   2  lit: LiT image tower matched to the frozen MiniLM text tower, images split
#   3  keyframe_unsup: video U-Net, image embeddings of the clip as proxy text (--condition image)
#   4  keyframe: on captions (--condition text), from step 3
#   5  interpolation: 3 latents between keyframes, clips at 4x the fps, from step 4
#   6  sr: 4x pixel-space super-resolution (64 -> 256) on single frames, images split
#   7  videovae: the decoder's directed temporal attention, on step 1's VAE (textured clips)
# Time: see docs/sprites.md (the smoke run's seconds per step, scaled to these step counts).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
RUN=${1:-runs/sprites}
PRESET=${PRESET:-small}
mkdir -p "$RUN"
python3 - <<'EOF'  # no font: stop now with the one line that says how to install it
import sys
from magicvideo.data.sprites import EmojiFontMissing, emoji_font_path
try:
    emoji_font_path()
except EmojiFontMissing as err:
    sys.exit(f"recipe_sprites: {err}")
EOF
echo "recipe_sprites: RUN_DIR=$RUN SCALE=$SCALE PRESET=$PRESET on $GPU"
SPRITES=(--domain sprites --preset "$PRESET" --device "$GPU")
start=$(date +%s)

# 1. image VAE (f=4: 64x64 frames -> 4x16x16 latents), loss weighted onto bright pixels (on a
#    photo that is most of the frame: the weighting then evens out)
train "$RUN/vae" --stage vae "${SPRITES[@]}" --steps "$(steps 4000)" --batch-size 16 --lr 1e-3
# 2. LiT image tower, with the alignment term at the weight the shapes pipeline settled on
train "$RUN/lit" --stage lit "${SPRITES[@]}" --steps "$(steps 2000)" --batch-size 64 --lr 1e-3 --align-weight 4
# 3. keyframe U-Net, unsupervised (proxy text: the image tower's embedding of the clip's frames)
train "$RUN/keyframe_unsup" --stage keyframe --condition image "${SPRITES[@]}" --vae "$RUN/vae/model" \
  --encoder "$RUN/lit/model" --pool-clips "$(steps 6000)" --steps "$(steps 4000)" --batch-size 16 --lr 3e-4
# 4. keyframe U-Net on captions: 124 sprites x 10 motions x 19 backgrounds need a larger pool
train "$RUN/keyframe" --stage keyframe --condition text "${SPRITES[@]}" --vae "$RUN/vae/model" \
  --encoder "$RUN/lit/model" --init-from "$RUN/keyframe_unsup/model" --pool-clips "$(steps 12000)" \
  --pool-cache "$RUN/clip_pool_text" --steps "$(steps 12000)" --batch-size 16 --lr 2e-4
# 5. latent frame interpolation, initialised from step 4
train "$RUN/interpolation" --stage interpolation "${SPRITES[@]}" --vae "$RUN/vae/model" --encoder "$RUN/lit/model" \
  --init-from "$RUN/keyframe/model" --steps "$(steps 2000)" --batch-size 8 --lr 3e-4
# 6. super-resolution: x0-prediction of the residual over bicubic, noise-conditioning augmentation
train "$RUN/sr" --stage sr "${SPRITES[@]}" --steps "$(steps 3000)" --batch-size 8 --lr 5e-4
# 7. VideoVAE: temporal layers only (encoder and image decoder frozen), with the dithering term
train "$RUN/videovae" --stage videovae "${SPRITES[@]}" --vae "$RUN/vae/model" --steps "$(steps 1000)" \
  --batch-size 4 --lr 5e-4

ship "$RUN" "$RUN/pipeline" wall_s "$start"
python3 -c "from magicvideo.data.sprites import write_vocabulary; print('wrote', write_vocabulary('$RUN/pipeline'))"
echo "recipe_sprites: the pipeline is $RUN/pipeline (magicvideo info --pipeline $RUN/pipeline lists its vocabulary)"
