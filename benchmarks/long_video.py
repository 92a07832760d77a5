"""Long videos that stream: time per keyframe window and peak memory against the video's length.

Each length runs in a fresh child process, as ``magicvideo generate --num-frames N -o out.mp4``
does: ``pipe(..., stream=True)`` handed to ``write_video``, which encodes each window's frames
as the window finishes. The child reports the time between windows (each window is sampled,
decoded, interpolated, decoded, super-resolved and encoded in that time) and its peak resident
memory (VmHWM of /proc/self/status), before and after the generation. Time per window is the
process's CPU time (what one thread spends, less disturbed than wall time on a shared machine);
wall time is reported beside it. Flat means: peak memory
of the longest video within ``--max-rss-growth`` MiB of the shortest video of several windows
(a one-window video never holds a window's state beside the next window's buffers, so it is
reported, not the baseline), and its time per window the same at the end as at the start (the
median of the last quarter of its windows after the first, over that of the first quarter,
within ``--max-time-drift``). ``--recheck FILE`` recomputes the checks of every sweep in FILE
from its runs.

Few steps keep the 1,024-keyframe run within minutes on one thread: the stages run at the
pipeline's shapes, fewer denoising steps each (``--steps``, ``--interpolation-steps``,
``--sr-steps``, ``--sr-consistency-steps``); the time per window scales with them, the memory
does not. Exits 1 when a threshold is missed.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/long_video.py --out docs/long_video.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red square moving right"


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """One length, in this process: generate through the stream into an mp4, print one JSON line."""
    import dataclasses

    import torch

    from magicvideo.pipeline import MagicVideoPipeline
    from magicvideo.video_io import write_video

    torch.set_num_threads(args.threads)
    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    pipe.defaults = dataclasses.replace(pipe.defaults, interpolation_steps=args.interpolation_steps,
                                        sr_steps=args.sr_steps, sr_consistency_steps=args.sr_consistency_steps)
    loaded = (pipe.interpolation, pipe.sr)  # loaded now: their weights count in the memory before the generation
    assert all(stage is not None for stage in loaded), "the benchmark runs the full cascade's pipeline"
    rss_loaded = peak_rss_mib()
    video = pipe(PROMPT, num_frames=args.child, steps=args.steps, seed=0, progress=False,
                 interpolate=not args.no_interpolate, upscale=not args.no_upscale, stream=True)
    marks, walls, sizes = [time.process_time()], [time.perf_counter()], []

    def timed(chunks):
        for chunk in chunks:
            sizes.append(len(chunk))
            yield chunk
            marks.append(time.process_time())  # the window's frames are encoded: the next window starts
            walls.append(time.perf_counter())
            del chunk  # not held while the next window is computed

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(timed(video.frames), Path(tmp) / "long.mp4", fps=video.fps)
        file_bytes = path.stat().st_size
    print(json.dumps({"keyframes": args.child, "frames": sum(sizes), "frame_size": list(video.frames.shape[1:3]),
                      "window_frames": sizes, "window_s": [b - a for a, b in zip(marks, marks[1:])],
                      "window_wall_s": [b - a for a, b in zip(walls, walls[1:])],
                      "peak_rss_loaded_mib": rss_loaded, "peak_rss_mib": peak_rss_mib(), "mp4_bytes": file_bytes}))


def summarise(run: dict) -> dict:
    later = run["window_s"][1:]  # the first window is larger (16 keyframes, not 8) and warms up
    quarter = max(1, len(later) // 4)
    summary = {"keyframes": run["keyframes"], "frames": run["frames"], "windows": len(run["window_s"]),
               "total_s": sum(run["window_s"]), "total_wall_s": sum(run["window_wall_s"]),
               "first_window_s": run["window_s"][0],
               "peak_rss_loaded_mib": run["peak_rss_loaded_mib"], "peak_rss_mib": run["peak_rss_mib"],
               "generation_rss_mib": run["peak_rss_mib"] - run["peak_rss_loaded_mib"]}
    if later:
        summary.update(later_window_median_s=statistics.median(later),
                       first_quarter_median_s=statistics.median(later[:quarter]),
                       last_quarter_median_s=statistics.median(later[-quarter:]))
        summary["last_over_first_quarter"] = summary["last_quarter_median_s"] / summary["first_quarter_median_s"]
    return summary


def flatness(runs: dict, max_rss_growth: float, max_time_drift: float) -> dict:
    """The checks: peak memory of the longest run against the shortest of several windows, and
    the longest run's time per window at its end against its start (see the module docstring)."""
    lengths = sorted(runs, key=int)
    several = [n for n in lengths if runs[n]["windows"] > 1] or lengths
    longest, baseline = runs[lengths[-1]], runs[several[0]]
    growth = longest["peak_rss_mib"] - baseline["peak_rss_mib"]
    drift = longest.get("last_over_first_quarter", 1.0)
    return {"rss_baseline_keyframes": int(several[0]), "rss_growth_mib": growth,
            "rss_over_one_window_mib": longest["peak_rss_mib"] - runs[lengths[0]]["peak_rss_mib"],
            "rss_flat": growth <= max_rss_growth, "time_drift": drift, "time_flat": drift <= max_time_drift}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256, 1024], help="keyframes per video")
    parser.add_argument("--pipeline", default=None, help="pipeline folder (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=2, help="keyframe denoising steps")
    parser.add_argument("--interpolation-steps", type=int, default=1)
    parser.add_argument("--sr-steps", type=int, default=1)
    parser.add_argument("--sr-consistency-steps", type=int, default=1)
    parser.add_argument("--no-interpolate", action="store_true")
    parser.add_argument("--no-upscale", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-rss-growth", type=float, default=64.0,
                        help="MiB the longest video's peak memory may exceed that of the shortest video of several "
                             "windows (a one-window video is reported, not the baseline)")
    parser.add_argument("--max-time-drift", type=float, default=1.25,
                        help="the longest video's last-quarter / first-quarter median time per window")
    parser.add_argument("--out", default=None, help="JSON file for the figures (sweeps of other names in it are kept)")
    parser.add_argument("--name", default="full", help="this sweep's key in --out")
    parser.add_argument("--recheck", default=None, help="recompute the checks of the sweeps in this JSON file")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recheck:
        path = Path(args.recheck)
        report = json.loads(path.read_text())
        for sweep in report.values():
            settings = sweep["settings"]
            sweep["checks"] = flatness(sweep["runs"], settings["max_rss_growth"], settings["max_time_drift"])
        path.write_text(json.dumps(report, indent=1) + "\n")
        return 0 if all(s["checks"]["rss_flat"] and s["checks"]["time_flat"] for s in report.values()) else 1
    if args.child is not None:
        child(args)
        return 0

    import torch

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    forwarded = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in
                 ("steps", "interpolation_steps", "sr_steps", "sr_consistency_steps", "threads")]
    forwarded += [flag for flag, on in (("--no-interpolate", args.no_interpolate), ("--no-upscale", args.no_upscale))
                  if on] + ([f"--pipeline={args.pipeline}"] if args.pipeline else [])
    runs = {}
    print(f"{'keyframes':>9} {'frames':>6} {'windows':>7} {'first s':>8} {'later s':>8} {'last/first q':>12} "
          f"{'total s':>8} {'wall s':>7} {'RSS loaded':>10} {'peak RSS':>9}  (CPU s, MiB)", flush=True)
    for n in args.lengths:
        done = subprocess.run([sys.executable, __file__, "--child", str(n), *forwarded], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:  # its error, not a bare CalledProcessError with the output swallowed
            print(f"the {n}-keyframe run failed (exit {done.returncode}):\n{done.stderr.strip()}", file=sys.stderr)
            return 2
        run = json.loads(done.stdout.strip().splitlines()[-1])
        s = summarise(run)
        runs[str(n)] = {**s, "window_s": run["window_s"], "window_wall_s": run["window_wall_s"],
                        "window_frames": run["window_frames"], "frame_size": run["frame_size"],
                        "mp4_bytes": run["mp4_bytes"]}
        later, drift = s.get("later_window_median_s", float("nan")), s.get("last_over_first_quarter", float("nan"))
        print(f"{n:>9} {s['frames']:>6} {s['windows']:>7} {s['first_window_s']:>8.2f} {later:>8.2f} {drift:>12.2f} "
              f"{s['total_s']:>8.1f} {s['total_wall_s']:>7.0f} {s['peak_rss_loaded_mib']:>10.0f} "
              f"{s['peak_rss_mib']:>9.0f}", flush=True)
    checks = flatness(runs, args.max_rss_growth, args.max_time_drift)
    growth, drift = checks["rss_growth_mib"], checks["time_drift"]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "torch": torch.__version__, "python": platform.python_version()}
    sweep = {"command": "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python " + " ".join(sys.argv),
             "machine": machine, "settings": {k: v for k, v in vars(args).items() if k not in ("child", "out", "name")},
             "runs": runs, "checks": checks}
    print(f"peak RSS {args.lengths[-1]} vs {checks['rss_baseline_keyframes']} keyframes: {growth:+.0f} MiB "
          f"({checks['rss_over_one_window_mib']:+.0f} vs one window) "
          f"(limit {args.max_rss_growth:g}); time per window, last / first quarter of the longest: {drift:.2f} "
          f"(limit {args.max_time_drift:g}); {machine['cores']} cores, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    if args.out:
        out = Path(args.out)
        report = json.loads(out.read_text()) if out.is_file() else {}
        report[args.name] = sweep
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if checks["rss_flat"] and checks["time_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
