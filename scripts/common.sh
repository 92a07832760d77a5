# Sourced by the training scripts (from the repository root): step scaling, resume flags, the
# shipped pipeline's directory and where a run's pipeline goes.
#   SCALE=0.1  scales every step count (a quick smoke run); SHIP=1 installs the result as the
#              default pipeline (the default when SCALE=1)
SCALE=${SCALE:-1}
SHIP=${SHIP:-$([ "$SCALE" = "1" ] && echo 1 || echo 0)}
DEFAULT=$(python3 -c "from magicvideo.pipeline import DEFAULT_PIPELINE; print(DEFAULT_PIPELINE)")
steps() { python3 -c "print(max(1, int(round($1 * float('$SCALE')))))"; }
resume() { [ -f "$1/checkpoint/state.json" ] && echo --resume || true; }
ship_target() { [ "$SHIP" = "1" ] && echo "$DEFAULT" || echo "$1/pipeline"; }  # RUN_DIR -> pipeline directory
