"""Our VideoUNet vs diffusers' video U-Nets at matched size: time and memory of a step.

    python benchmarks/unet_step.py [--widths 32 64 64] [--frames 16] [--size 32] [--head-dim 8]
                                   [--layers-per-block 1] [--repeats 5] [--device cpu|cuda]
                                   [--dtype float32|bfloat16] [--gradient-checkpointing] [--compile]
    python benchmarks/unet_step.py --grid [--quick] [--repeats 2] --out benchmarks/unet_grid.json

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

``--grid`` runs every point of a shape grid (head dims 4, 8, 32, 64; widths (32, 64, 64) and
(64, 128, 128); 8, 16 and 32 frames; 16x16 and 32x32 latents; 8- and 77-token contexts), each
point measured as above (train and inference, all three models interleaved), and writes one JSON
with every point: seconds, GFLOP, GFLOP/s and its share of a plain fp32 matmul's GFLOP/s measured
in the same process right before and after the point (the better of the two), memory, and the ratios. ``--quick`` keeps a subset
(head dims 4, 8, 32 and both context lengths at the first widths, 16 frames of 16x16; head dim 64
(the first widths cannot hold it) at the second widths, 8 frames of 16x16; and the
issue's reference point: head dim 4 at the first level, 16 frames of 32x32, short context).

Exits non-zero when ours is not >= ``--min-speedup`` times faster per training step than
``UNet3DConditionModel`` or its memory is above ``--max-memory-ratio`` times that model's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
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
    parser.add_argument("--grid", action="store_true", help="run the shape grid (ignores the shape flags)")
    parser.add_argument("--quick", action="store_true", help="with --grid: the subset described above")
    parser.add_argument("--limit", type=int, default=0, help="with --grid: only the first N points (cheapest first)")
    parser.add_argument("--head-dims", type=int, nargs="+", default=None,
                        help="with --grid: only the points at these head dims")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="with --grid: only the points at these latent sizes")
    parser.add_argument("--out", type=Path, default=None, help="with --grid: JSON file for every point")
    parser.add_argument("--profile", choices=["ours", "UNet3DConditionModel", "UNetMotionModel"], default=None,
                        help="print the top 10 operators (self CPU time) of this model's training step at the shape")
    args = parser.parse_args()

    if args.grid:
        run_grid(args)
        return
    if args.profile:
        profile_step(args)
        return
    point = measure_point(args, tuple(args.widths), args.head_dim, args.frames, args.size, args.tokens)
    report_point(args, point)
    failed = False
    for peer in ("UNet3DConditionModel", "UNetMotionModel"):
        speed, mem = point["train_speedup"][peer], point["memory_ratio"][peer]
        if peer == "UNet3DConditionModel" and (speed < args.min_speedup or mem > args.max_memory_ratio):
            print(f"MISSED: goal is >= {args.min_speedup}x faster and <= {args.max_memory_ratio}x memory", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


def matmul_gflops(device: torch.device, n: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of a plain fp32 n^3 matmul (best of ``repeats``): the machine's roof here."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def measure_point(args: argparse.Namespace, widths: tuple[int, ...], head_dim: int, frames: int, size: int,
                  tokens: int) -> dict:
    """One shape: every model's training and inference step, interleaved; FLOPs and memory."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    roof_before = matmul_gflops(device)
    models = build_models(widths, head_dim, frames, size, args.context_dim, args.layers_per_block)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 4, frames, size, size, generator=g).to(device, dtype)
    ctx = torch.randn(args.batch, tokens, args.context_dim, generator=g).to(device, dtype)
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

    # the better of before and after the point: a busy machine only ever makes the roof look lower
    roof = max(roof_before, matmul_gflops(device))
    ours = "ours"
    return {
        "widths": list(widths), "head_dim": head_dim, "frames": frames, "size": size, "tokens": tokens,
        "heads": [max(w // head_dim, 1) for w in widths], "matmul_gflops": roof,
        "models": {name: {"params": sum(p.numel() for p in models[name].parameters()), "train_gflop": flops[name] / 1e9,
                          "train_s": train_s[name], "infer_s": infer_s[name],
                          "train_gflops": flops[name] / 1e9 / train_s[name],
                          "matmul_share": flops[name] / 1e9 / train_s[name] / roof, "memory_mb": memory[name] / 2**20}
                   for name in calls},
        "train_speedup": {peer: train_s[peer] / train_s[ours] for peer in calls if peer != ours},
        "infer_speedup": {peer: infer_s[peer] / infer_s[ours] for peer in calls if peer != ours},
        "memory_ratio": {peer: memory[ours] / memory[peer] for peer in calls if peer != ours},
        "flops_ratio": {peer: flops[ours] / flops[peer] for peer in calls if peer != ours},
    }


def machine(args: argparse.Namespace) -> str:
    device = torch.device(args.device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def report_point(args: argparse.Namespace, point: dict) -> None:
    print(f"{machine(args)}, torch {torch.__version__}, {args.dtype}; batch {args.batch} x {point['frames']} frames of "
          f"4x{point['size']}x{point['size']} latents, widths {tuple(point['widths'])}, {args.layers_per_block} resnet(s) "
          f"per level, head dim {point['head_dim']}, {point['tokens']}x{args.context_dim} tokens"
          f"{', gradient checkpointing' if args.gradient_checkpointing else ''}"
          f"{', torch.compile' if args.compile else ''}; best of {args.repeats} interleaved repeats; "
          f"fp32 matmul {point['matmul_gflops']:.1f} GFLOP/s")
    mem_label = "step peak+params MB" if args.device.startswith("cuda") else "saved+params+grads MB"
    print(f"{'model':<22} {'params':>8} {'train GFLOP':>12} {'train s':>8} {'GFLOP/s':>8} {'of mm':>6} "
          f"{'infer s':>8} {mem_label:>22}")
    for name, m in point["models"].items():
        print(f"{name:<22} {m['params'] / 1e6:7.2f}M {m['train_gflop']:12.1f} {m['train_s']:8.3f} "
              f"{m['train_gflops']:8.1f} {m['matmul_share']:6.0%} {m['infer_s']:8.3f} {m['memory_mb']:22.1f}")
    for peer in point["train_speedup"]:
        print(f"ours vs {peer}: train step {point['train_speedup'][peer]:.2f}x faster, inference "
              f"{point['infer_speedup'][peer]:.2f}x faster, memory {point['memory_ratio'][peer]:.2f}x, "
              f"FLOPs {point['flops_ratio'][peer]:.2f}x")


def profile_step(args: argparse.Namespace) -> None:
    """Where one training step's time goes, by operator (after a warm-up step)."""
    from torch.profiler import ProfilerActivity, profile

    models = build_models(tuple(args.widths), args.head_dim, args.frames, args.size, args.context_dim,
                          args.layers_per_block)
    model = models[args.profile].train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 4, args.frames, args.size, args.size, generator=g)
    ctx = torch.randn(args.batch, args.tokens, args.context_dim, generator=g)
    call = make_call(args.profile, model, x, torch.full((args.batch,), 500), ctx)
    train_step(call, model)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        train_step(call, model)
        wall = time.perf_counter() - start
    print(f"{machine(args)}: {args.profile} training step, widths {tuple(args.widths)}, head dim {args.head_dim}, "
          f"{args.frames}x{args.size}x{args.size} latents, {args.tokens} tokens: {wall:.3f} s under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))


def grid_points(quick: bool) -> list[tuple[tuple[int, ...], int, int, int, int]]:
    """(widths, head dim, frames, latent size, tokens) of every grid point, cheapest first. A head
    dim above the first width is left out: UNet3DConditionModel's heads (width // head dim) would
    be zero there, so head dim 64 runs at widths (64, 128, 128) only."""
    if quick:
        points = [((32, 64, 64), hd, 16, 16, tokens) for hd in (4, 8, 32) for tokens in (8, 77)]
        return points + [((64, 128, 128), 64, 8, 16, tokens) for tokens in (8, 77)] + [((32, 64, 64), 4, 16, 32, 8)]
    points = [(w, hd, f, s, tokens) for w in ((32, 64, 64), (64, 128, 128)) for hd in (4, 8, 32, 64)
              for f in (8, 16, 32) for s in (16, 32) for tokens in (8, 77) if hd <= w[0]]
    return sorted(points, key=lambda p: (p[0][0] * p[2] * p[3] ** 2, p))


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def write_grid(args: argparse.Namespace, results: list[dict], summary: dict | None = None) -> None:
    """Every point measured so far (and, at the end, the summary) as one JSON file."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "machine": machine(args), "torch": torch.__version__,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "dtype": args.dtype, "batch": args.batch, "context_dim": args.context_dim, "repeats": args.repeats,
        "layers_per_block": args.layers_per_block, "points_planned": len(selected_points(args)),
        "complete": summary is not None, "summary": summary, "points": results}, indent=1) + "\n")


def selected_points(args: argparse.Namespace) -> list[tuple[tuple[int, ...], int, int, int, int]]:
    """The grid's points that ``--head-dims``, ``--sizes`` and ``--limit`` leave."""
    points = [p for p in grid_points(args.quick)
              if (args.head_dims is None or p[1] in args.head_dims) and (args.sizes is None or p[3] in args.sizes)]
    return points[:args.limit] if args.limit else points


def run_grid(args: argparse.Namespace) -> None:
    points = selected_points(args)
    results, start = [], time.perf_counter()
    for i, (widths, hd, frames, size, tokens) in enumerate(points):
        point = measure_point(args, widths, hd, frames, size, tokens)
        results.append(point)
        print(f"[{i + 1}/{len(points)} {time.perf_counter() - start:.0f} s] widths {widths} head dim {hd}, {frames}x{size}x{size}, "
              f"{tokens} tokens: ours {point['models']['ours']['train_s']:.3f} s "
              f"({point['models']['ours']['matmul_share']:.0%} of matmul); vs UNet3D train "
              f"{point['train_speedup']['UNet3DConditionModel']:.2f}x infer {point['infer_speedup']['UNet3DConditionModel']:.2f}x "
              f"mem {point['memory_ratio']['UNet3DConditionModel']:.2f}x; vs Motion train "
              f"{point['train_speedup']['UNetMotionModel']:.2f}x", flush=True)
        if args.out:
            write_grid(args, results)
    summary = {}
    for peer in ("UNet3DConditionModel", "UNetMotionModel"):
        train = [p["train_speedup"][peer] for p in results]
        summary[peer] = {"train_speedup_geomean": geomean(train), "train_speedup_min": min(train),
                         "infer_speedup_geomean": geomean([p["infer_speedup"][peer] for p in results]),
                         "memory_ratio_max": max(p["memory_ratio"][peer] for p in results)}
        print(f"ours vs {peer} over {len(results)} points: train geomean {summary[peer]['train_speedup_geomean']:.2f}x "
              f"(min {summary[peer]['train_speedup_min']:.2f}x), inference geomean "
              f"{summary[peer]['infer_speedup_geomean']:.2f}x, memory max {summary[peer]['memory_ratio_max']:.2f}x")
    shares = [p["models"]["ours"]["matmul_share"] for p in results]
    print(f"ours: {min(shares):.0%}-{max(shares):.0%} of the fp32 matmul's GFLOP/s (median "
          f"{sorted(shares)[len(shares) // 2]:.0%})")
    if args.out:
        write_grid(args, results, summary)
        print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
