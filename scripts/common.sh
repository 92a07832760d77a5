# Sourced by the recipes (scripts/recipe_*.sh, from the repository root): step scaling, resuming,
# the device of the GPU steps and the shipped pipeline's directory.
#   SCALE=0.002      scales every step count and clip pool (a smoke run of a step or two each)
#   SHIP=1           installs the result over the shipped default (the default when SCALE=1)
#   DEVICE=cpu|cuda  the device of the steps that ran on a GPU (default: cuda when torch sees one)
SCALE=${SCALE:-1}
SHIP=${SHIP:-$([ "$SCALE" = "1" ] && echo 1 || echo 0)}
DEFAULT=$(python3 -c "from magicvideo.pipeline import DEFAULT_PIPELINE; print(DEFAULT_PIPELINE)")
GPU=${DEVICE:-$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
PARTIAL=0  # set when a step of the current group was skipped or resumed: its wall time is not recorded

steps() { python3 -c "print(max(1, int(round($1 * float('$SCALE')))))"; }
resume() { [ -f "$1/checkpoint/state.json" ] && echo --resume || true; }

# train OUT ARGS...: `magicvideo train -o OUT ARGS...`, skipped when OUT/model exists (a finished
# step), with --resume when OUT/checkpoint exists (a step cut mid-way), --overwrite when OUT holds
# a run cut before its first checkpoint (nothing to resume: it starts again)
train() {
  local out=$1
  shift
  if [ -d "$out/model" ]; then
    echo "== $out: done, skipped"
    PARTIAL=1
    return
  fi
  local again
  again=$(resume "$out")
  [ -z "$again" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ] && again=--overwrite
  [ -n "$again" ] && PARTIAL=1
  echo "== magicvideo train -o $out $*${again:+ $again}"
  magicvideo train -o "$out" "$@" $again
}

# ship RUN TARGET WALL_KEY START ARGS...: `magicvideo ship RUN TARGET ARGS...`, skipped when
# TARGET/pipeline.json exists; records WALL_KEY = seconds since START unless a step was skipped
# or resumed. Starts the next group's wall clock (PARTIAL=0).
ship() {
  local run=$1 target=$2 key=$3 start=$4
  shift 4
  if [ -f "$target/pipeline.json" ]; then
    echo "== $target: done, skipped"
  else
    local wall=()
    [ "$PARTIAL" = "0" ] && wall=(--wall "$key=$(( $(date +%s) - start ))")
    echo "== magicvideo ship $run $target $*${wall[*]+ ${wall[*]}}"
    magicvideo ship "$run" "$target" "$@" ${wall[@]+"${wall[@]}"}
  fi
  PARTIAL=0
}

# gpu_warning WHAT CPU_ESTIMATE: say so when a step that ran on a GPU is about to run on the CPU
gpu_warning() {
  if [ "$GPU" = "cpu" ]; then
    echo "warning: $1 ran on one NVIDIA H100; here it runs on the CPU, about $2 at SCALE=1" \
      "(run the recipe on a GPU machine, or DEVICE=cuda)" >&2
  fi
}

# install_default PIPELINE: replace the shipped default by PIPELINE, keeping the default's
# hand-written files (MODEL_CARD.md); the old one stays until the new one is complete beside it
install_default() {
  rm -rf "$DEFAULT.new"
  cp -a "$1" "$DEFAULT.new"
  for f in "$DEFAULT"/*.md; do [ -f "$f" ] && cp -a "$f" "$DEFAULT.new/"; done
  rm -rf "$DEFAULT.old"
  [ -d "$DEFAULT" ] && mv "$DEFAULT" "$DEFAULT.old"
  mv "$DEFAULT.new" "$DEFAULT"
  rm -rf "$DEFAULT.old"
  echo "installed $1 as the shipped default ($DEFAULT); its kept MODEL_CARD.md quotes the old figures:" \
    "update them from eval_metrics.json and cascade_metrics.json"
}
