#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run (about 4 minutes on one H100, plus up to
# COMPILE_S for step 4):
#
#   bash benchmarks/gpu.sh [LOG_DIR]        # default runs/gpu
#
# 1. a smoke test of the GPU path: the tiny VideoUNet's output on CUDA (float32, SDPA kernels,
#    directed temporal attention) against the same weights on CPU, and one bf16 autocast step;
# 2. benchmarks/unet_step.py at the sd15 layout (widths 320/640/1280/1280, two resnets per level,
#    40-channel heads, 16 frames of 32x32 latents = 256x256 video) in bfloat16, against diffusers'
#    UNet3DConditionModel and UNetMotionModel;
# 3. benchmarks/train_step.py: a full training step (forward, backward, AdamW) of the tiny and the
#    sd15 preset under bf16 autocast, batch 2, with and without gradient checkpointing;
# 4. step 2 again under torch.compile (cut off after COMPILE_S seconds, default 240).
# Each step's output goes to LOG_DIR/<step>.log as well as to the terminal.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-runs/gpu}
COMPILE_S=${COMPILE_S:-240}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() {
  local name=$1
  shift
  echo "== $*" | tee -a "$LOG/$name.log"
  "$@" 2>&1 | grep --line-buffered -v "should be kept in float32" | tee -a "$LOG/$name.log"
}
SD15=(--device cuda --dtype bfloat16 --widths 320 640 1280 1280 --layers-per-block 2 --head-dim 40 --size 32)

step env nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step smoke python3 - <<'EOF'
import torch, diffusers
from magicvideo import VideoUNet, get_preset
print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, {torch.cuda.get_device_name()}")
# exact float32 on the GPU for the comparison (cuDNN convolutions default to TF32, ~1e-3 relative)
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
torch.manual_seed(0)
unet = VideoUNet(get_preset("tiny").unet).eval()
cfg = unet.config
x = torch.randn(2, cfg.in_channels, 16, cfg.sample_size, cfg.sample_size)
ctx, t = torch.randn(2, 77, cfg.cross_attention_dim), torch.tensor([10, 900])
with torch.no_grad():
    ref = unet(x, t, ctx, fps=8.0)
    out = unet.cuda()(x.cuda(), t.cuda(), ctx.cuda(), fps=8.0).cpu()
err = (out - ref).abs().max().item() / ref.abs().max().item()
print(f"tiny VideoUNet, CUDA vs CPU float32: max relative difference {err:.2e}")
assert err < 1e-4, err
unet.train()
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = (unet(x.cuda(), t.cuda(), ctx.cuda(), fps=8.0).float() - x.cuda()).square().mean()
loss.backward()
grads = [p.grad for p in unet.parameters() if p.requires_grad]
assert all(g is not None and torch.isfinite(g).all() for g in grads)
print(f"bf16 autocast training step: loss {loss.item():.4f}, {len(grads)} finite gradients")
EOF
step unet_sd15 python3 benchmarks/unet_step.py "${SD15[@]}" --repeats 5
step train_sd15 python3 benchmarks/train_step.py --device cuda --mixed-precision bf16 --configs tiny sd15 --batch 2 --repeats 5
step unet_sd15_compile timeout "$COMPILE_S" python3 benchmarks/unet_step.py "${SD15[@]}" --repeats 5 --compile
