"""Our VideoUNet vs diffusers' video U-Nets at matched size: time and memory of a step.

    python benchmarks/unet_step.py [--widths 32 64 64] [--frames 16] [--size 32] [--head-dim 8]
                                   [--layers-per-block 1] [--repeats 5] [--device cpu|cuda]
                                   [--dtype float32|bfloat16] [--gradient-checkpointing] [--compile]

Peers, built from diffusers with the same widths, resnets per level (``--layers-per-block``), attention levels
(all but the deepest), attention heads, cross-attention width, frames and latent size:

* ``UNet3DConditionModel`` (ModelScope / VideoCrafter 1 style): 2D resnets followed by a
  4-layer 3D temporal conv block, spatial transformers followed by temporal transformers,
  plus a temporal transformer on the input.
* ``UNetMotionModel`` (AnimateDiff style): SD's 2D U-Net with a motion module (temporal
  transformer with positional encoding) after every resnet/attention pair.

All models run in one process; each repeat runs every model once, in turn (interleaved), so
that machine noise hits them alike; the best repeat is reported. "train" is forward +
backward of an MSE loss; "infer" is a forward pass under ``torch.no_grad``.

Memory: on CUDA, the peak ``torch.cuda.max_memory_allocated`` of a training step above what was
allocated before it (the activations and the model's gradients; every model's gradients are
freed first), plus the model's weights. On CPU (no
allocator statistics) the bytes of distinct tensors autograd keeps for backward (the
activations, which dominate a training step's peak), counted with saved-tensor hooks, plus
parameters and their gradients.

``--compile`` runs every model through ``torch.compile`` (FLOPs are counted eagerly first; the
compile time, taken by a first training and inference call, is printed and not timed).

Exits non-zero when ours is not >= ``--min-speedup`` times faster per training step than
``UNet3DConditionModel`` or its memory is above ``--max-memory-ratio`` times that model's.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Callable

import torch
from torch import nn

from magicvideo.models import count_flops


def build_models(widths: tuple[int, ...], head_dim: int, frames: int, size: int, ctx_dim: int,
                 layers: int = 1) -> dict[str, nn.Module]:
    from diffusers import UNet3DConditionModel, UNetMotionModel

    from magicvideo import VideoUNet
    from magicvideo.config import VideoUNetConfig

    levels = len(widths)
    heads = tuple(max(w // head_dim, 1) for w in widths)
    attention = tuple(i < levels - 1 for i in range(levels))
    down3d = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in attention)
    down_motion = tuple("CrossAttnDownBlockMotion" if a else "DownBlockMotion" for a in attention)
    groups = min(32, min(widths))
    common = dict(sample_size=size, in_channels=4, out_channels=4, block_out_channels=widths, layers_per_block=layers,
                  cross_attention_dim=ctx_dim, norm_num_groups=groups)
    torch.manual_seed(0)
    return {
        "ours": VideoUNet(VideoUNetConfig(block_out_channels=widths, layers_per_block=layers,
                                          attention_levels=attention, num_attention_heads=heads,
                                          cross_attention_dim=ctx_dim, norm_num_groups=groups, max_frames=frames,
                                          sample_size=size)),
        # UNet3DConditionModel's blocks read ``attention_head_dim`` as channels per head (heads =
        # width / head_dim); its input temporal transformer has 8 heads of that size
        "UNet3DConditionModel": UNet3DConditionModel(
            down_block_types=down3d, up_block_types=tuple(s.replace("Down", "Up") for s in reversed(down3d)),
            attention_head_dim=head_dim, **common),
        "UNetMotionModel": UNetMotionModel(
            down_block_types=down_motion, up_block_types=tuple(s.replace("Down", "Up") for s in reversed(down_motion)),
            num_attention_heads=heads, motion_num_attention_heads=heads, motion_max_seq_length=max(32, frames), **common),
    }


def make_call(name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> Callable[[], torch.Tensor]:
    frames = x.shape[2]
    if name == "ours":
        return lambda: model(x, t, ctx)
    if name == "UNetMotionModel":
        # AnimateDiff's pipeline repeats the prompt tokens for every frame before the U-Net
        per_frame = ctx.repeat_interleave(frames, dim=0)
        return lambda: model(x, t, per_frame).sample
    return lambda: model(x, t, ctx).sample  # UNet3DConditionModel repeats them itself


def saved_activation_bytes(call: Callable[[], torch.Tensor], model: nn.Module) -> int:
    """Bytes of distinct storages (parameters excluded) autograd saves for backward."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = call()
    out.float().square().mean().backward()
    return sum(seen.values())


def train_step(call: Callable[[], torch.Tensor], model: nn.Module) -> None:
    model.zero_grad(set_to_none=True)
    call().float().square().mean().backward()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--head-dim", type=int, default=8, help="channels per attention head (all models)")
    parser.add_argument("--layers-per-block", type=int, default=1, help="resnets per down level (all models)")
    parser.add_argument("--context-dim", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=77)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (after counting FLOPs)")
    parser.add_argument("--min-speedup", type=float, default=1.5)
    parser.add_argument("--max-memory-ratio", type=float, default=0.7)
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    models = build_models(tuple(args.widths), args.head_dim, args.frames, args.size, args.context_dim,
                          args.layers_per_block)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 4, args.frames, args.size, args.size, generator=g).to(device, dtype)
    ctx = torch.randn(args.batch, args.tokens, args.context_dim, generator=g).to(device, dtype)
    t = torch.full((args.batch,), 500, device=device)
    calls = {}
    for name, model in models.items():
        model.to(device, dtype).train()
        if args.gradient_checkpointing:
            if getattr(model, "_supports_gradient_checkpointing", True):
                model.enable_gradient_checkpointing()
            else:
                print(f"{name}: diffusers does not support gradient checkpointing for it; it runs without")
        calls[name] = make_call(name, model, x, t, ctx)

    flops = {name: count_flops(call, backward=True) for name, call in calls.items()}
    if args.compile:
        for name, model in models.items():
            calls[name] = make_call(name, torch.compile(model), x, t, ctx)
            start = time.perf_counter()
            train_step(calls[name], model)
            with torch.no_grad():
                calls[name]()
            synchronize(device)
            print(f"{name}: compiled in {time.perf_counter() - start:.1f} s", flush=True)
    memory = {}
    for name, call in calls.items():
        params = sum(p.numel() * p.element_size() for p in models[name].parameters())
        if device.type == "cuda":
            # all models stay on the GPU: count what this model's step adds (activations and its
            # gradients) above what is allocated before it, plus its own weights
            for model in models.values():
                model.zero_grad(set_to_none=True)
            synchronize(device)
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            train_step(call, models[name])
            synchronize(device)
            memory[name] = torch.cuda.max_memory_allocated() - before + params
        else:
            memory[name] = saved_activation_bytes(call, models[name]) + 2 * params
        models[name].zero_grad(set_to_none=True)

    train_s = {name: float("inf") for name in calls}
    infer_s = dict(train_s)
    for _ in range(args.repeats):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            train_step(call, models[name])
            synchronize(device)
            train_s[name] = min(train_s[name], time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                call()
            synchronize(device)
            infer_s[name] = min(infer_s[name], time.perf_counter() - start)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}, {args.dtype}; batch {args.batch} x {args.frames} frames of 4x{args.size}x{args.size} "
          f"latents, widths {tuple(args.widths)}, {args.layers_per_block} resnet(s) per level, head dim {args.head_dim}, "
          f"{args.tokens}x{args.context_dim} tokens{', gradient checkpointing' if args.gradient_checkpointing else ''}"
          f"{', torch.compile' if args.compile else ''}; best of {args.repeats} interleaved repeats")
    mem_label = "step peak+params MB" if device.type == "cuda" else "saved+params+grads MB"
    print(f"{'model':<22} {'params':>8} {'train GFLOP':>12} {'train s':>8} {'GFLOP/s':>8} {'infer s':>8} {mem_label:>22}")
    for name in calls:
        params = sum(p.numel() for p in models[name].parameters())
        print(f"{name:<22} {params / 1e6:7.2f}M {flops[name] / 1e9:12.1f} {train_s[name]:8.3f} "
              f"{flops[name] / 1e9 / train_s[name]:8.1f} {infer_s[name]:8.3f} {memory[name] / 2**20:22.1f}")
    failed = False
    for peer in ("UNet3DConditionModel", "UNetMotionModel"):
        speed = train_s[peer] / train_s["ours"]
        mem = memory["ours"] / memory[peer]
        print(f"ours vs {peer}: train step {speed:.2f}x faster, inference {infer_s[peer] / infer_s['ours']:.2f}x faster, "
              f"memory {mem:.2f}x, FLOPs {flops['ours'] / flops[peer]:.2f}x")
        if peer == "UNet3DConditionModel" and (speed < args.min_speedup or mem > args.max_memory_ratio):
            print(f"MISSED: goal is >= {args.min_speedup}x faster and <= {args.max_memory_ratio}x memory", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
