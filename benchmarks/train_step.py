"""Training-step time and peak memory of the VideoUNet: tiny preset and a mid config, with
and without gradient checkpointing.

    python benchmarks/train_step.py [--batch 2] [--frames 16] [--repeats 3] [--configs tiny mid sd15]
                                    [--device cpu|cuda] [--mixed-precision no|bf16]

Each configuration runs in its own child process; its peak memory is reported next to the
fp32 weights + gradients + AdamW state (16 bytes per parameter): on CPU the peak RSS (Linux
VmHWM: Python, torch, weights, AdamW state and the largest step's activations), on CUDA
``torch.cuda.max_memory_allocated``. ``--mixed-precision bf16`` runs forward and backward
under bfloat16 autocast with float32 weights and optimizer, as ``magicvideo train`` does. A
step is forward + backward + AdamW on the v-prediction loss, batch of ``--batch`` clips of
``--frames`` latent frames. The
"mid" config is SD's layout at a quarter of its width: (80, 160, 320, 320) channels, two
resnets per level, 768-d tokens, 32x32 latents (256x256 video with the f=8 VAE); "sd15" is
the full ``sd15`` preset (a GPU config).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time

import torch

from magicvideo.config import VideoUNetConfig, get_preset

CONFIGS = {
    "tiny": get_preset("tiny").unet,
    "mid": VideoUNetConfig(block_out_channels=(80, 160, 320, 320), layers_per_block=2,
                           attention_levels=(True, True, True, False), num_attention_heads=(4, 4, 8, 8),
                           cross_attention_dim=768, norm_num_groups=16, sample_size=32),
    "sd15": get_preset("sd15").unet,
}
CPU_CONFIGS = ("tiny", "mid")


def rss(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def child(name: str, checkpointing: bool, batch: int, frames: int, repeats: int, device: str, bf16: bool) -> dict:
    from magicvideo import VideoUNet

    torch.manual_seed(0)
    dev = torch.device(device)
    cfg = dataclasses.replace(CONFIGS[name], max_frames=max(frames, CONFIGS[name].max_frames))
    unet = VideoUNet(cfg).to(dev).train().enable_gradient_checkpointing(checkpointing)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    x = torch.randn(batch, cfg.in_channels, frames, cfg.sample_size, cfg.sample_size, device=dev)
    tokens = torch.randn(batch, 77, cfg.cross_attention_dim, device=dev)
    t = torch.randint(0, 1000, (batch,), device=dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.mse_loss(unet(x, t, tokens, fps=8.0).float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up; AdamW state allocated
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in unet.parameters())
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else rss("VmHWM")
    return {"config": name, "checkpointing": checkpointing, "params_m": params / 1e6, "step_s": min(times),
            "peak_mb": peak / 2**20, "state_mb": params * 16 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None,
                        help=f"default: {' '.join(CPU_CONFIGS)} on CPU, all on CUDA")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1", args.batch, args.frames, args.repeats,
                               args.device, args.mixed_precision == "bf16")))
        return
    cuda = torch.device(args.device).type == "cuda"
    where = torch.cuda.get_device_name() if cuda else f"{platform.machine()}, {torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}, mixed precision {args.mixed_precision}; "
          f"batch {args.batch} x {args.frames} frames, best of {args.repeats}")
    print(f"{'config':<6} {'ckpt':<5} {'params':>8} {'step s':>8} {'peak alloc MB' if cuda else 'peak RSS MB':>13} "
          f"{'weights+grads+AdamW MB':>23}")
    for name in args.configs or (list(CONFIGS) if cuda else CPU_CONFIGS):
        for ckpt in (False, True):
            out = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--frames", str(args.frames),
                                  "--repeats", str(args.repeats), "--device", args.device,
                                  "--mixed-precision", args.mixed_precision, "--child", name, "1" if ckpt else "0"],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            print(f"{name:<6} {'yes' if ckpt else 'no':<5} {r['params_m']:7.1f}M {r['step_s']:8.2f} "
                  f"{r['peak_mb']:13.0f} {r['state_mb']:23.0f}", flush=True)


if __name__ == "__main__":
    main()
