"""Achieved GFLOP/s of a U-Net training step vs this machine's plain matmul GFLOP/s.

    python benchmarks/roofline.py [--configs tiny mid] [--batch 1] [--frames 16] [--repeats 3]

A 2048^3 float32 matmul is timed in the same process, just before and after the models, as
the machine's practical peak. A step is forward + backward (no optimizer) of the
VideoUNet at the config's latent size; FLOPs are counted by ``torch.utils.flop_counter``
(matmuls, convolutions, attention; elementwise ops are not counted, so "achieved" is a
lower bound on the work the machine did). The mid config is the one of
``benchmarks/train_step.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import torch
from train_step import CONFIGS

from magicvideo import VideoUNet
from magicvideo.models import count_flops


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    peak_before = matmul_gflops()
    rows = []
    for name in args.configs:
        cfg = dataclasses.replace(CONFIGS[name], max_frames=max(args.frames, CONFIGS[name].max_frames))
        torch.manual_seed(0)
        unet = VideoUNet(cfg).train()
        x = torch.randn(args.batch, cfg.in_channels, args.frames, cfg.sample_size, cfg.sample_size)
        ctx = torch.randn(args.batch, 77, cfg.cross_attention_dim)
        t = torch.full((args.batch,), 500)

        def step() -> None:
            unet.zero_grad(set_to_none=True)
            unet(x, t, ctx, fps=8.0).square().mean().backward()

        flops = count_flops(step)  # step() runs forward and backward
        seconds = min(_timed(step) for _ in range(args.repeats))
        rows.append((name, sum(p.numel() for p in unet.parameters()), flops, seconds))
    peak = max(peak_before, matmul_gflops())

    print(f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"batch {args.batch} x {args.frames} frames, forward + backward, best of {args.repeats}")
    print(f"plain 2048^3 float32 matmul: {peak:.1f} GFLOP/s")
    print(f"{'config':<8}{'params':>9}{'GFLOP':>9}{'step s':>9}{'GFLOP/s':>9}{'of matmul':>11}")
    for name, params, flops, seconds in rows:
        achieved = flops / seconds / 1e9
        print(f"{name:<8}{params / 1e6:8.1f}M{flops / 1e9:9.1f}{seconds:9.2f}{achieved:9.1f}{achieved / peak:10.0%}")


if __name__ == "__main__":
    main()
