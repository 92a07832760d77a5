"""Wall time and peak memory of ``magicvideo generate`` with the shipped default pipeline.

    python benchmarks/generate.py [--keyframes 4 8 16] [--repeats 1] [--pipeline DIR]

Each run is a fresh process (``python -m magicvideo generate ...``), so the wall time
includes interpreter start, imports and model loading, as a user sees it; peak memory is
that process's maximum resident set size (``os.wait4``). Runs: keyframes only (16 frames,
``--no-interpolate --no-upscale``), then the full cascade (interpolation + VideoVAE + SR)
for each ``--keyframes`` count, which gives 4k - 3 output frames (4, 8, 16 -> 13, 29, 61).
VAE decoding and SR run in fixed-size frame chunks, so their memory should not grow with
the frame count: the last line compares the longest and the shortest cascade.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one ``magicvideo`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "magicvideo", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"magicvideo {' '.join(args)} failed:\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keyframes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pipeline", default=None)
    parser.add_argument("--prompt", default="a red circle moving right")
    args = parser.parse_args()

    extra = ["--pipeline", args.pipeline] if args.pipeline else []
    runs = [("keyframes only", 16, ["--no-interpolate", "--no-upscale"])]
    runs += [("full cascade", k, []) for k in args.keyframes]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.mp4")
        for label, k, flags in runs:
            best = min((run(["generate", args.prompt, "-o", out, "--num-frames", str(k), "-q", *flags, *extra])
                        for _ in range(args.repeats)), key=lambda r: r[0])
            frames = k if flags else 4 * k - 3
            results.append((label, k, frames, *best))

    print(f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"`magicvideo generate` in a fresh process, best of {args.repeats}")
    print(f"{'run':<16}{'keyframes':>10}{'frames out':>11}{'wall s':>8}{'peak RSS MiB':>14}")
    for label, k, frames, wall, peak in results:
        print(f"{label:<16}{k:>10}{frames:>11}{wall:8.1f}{peak:14.0f}")
    cascade = [r for r in results if r[0] == "full cascade"]
    if len(cascade) >= 2:
        lo, hi = min(cascade, key=lambda r: r[2]), max(cascade, key=lambda r: r[2])
        print(f"peak memory {hi[2]} vs {lo[2]} frames: {hi[4] / lo[4]:.2f}x "
              f"(frames {hi[2] / lo[2]:.1f}x; wall {hi[3] / lo[3]:.1f}x)")


if __name__ == "__main__":
    main()
