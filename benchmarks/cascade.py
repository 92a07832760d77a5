"""The full cascade timed stage by stage, under the sampling defaults before and after a change.

    python benchmarks/cascade.py [--pipeline DIR] [--before sr_steps=6] [--after KEY=VALUE ...]
                                 [--channels-last] [--repeats 3] [--threads 1]
                                 [--prompt "a red circle moving right"] [--out docs/cascade_speed.json]
    python benchmarks/cascade.py --sr-sweep 1 2 3 4 6 [--seeds 8] [--frames 16] [--out docs/sr_steps.json]

One process, one pipeline (the shipped one, or ``--pipeline``), the full cascade of a pipeline
call: 16 keyframes, VideoVAE decoding, interpolation to 61 frames, super-resolution to 4x the
side. Each variant is the pipeline's ``SamplingOptions`` with some fields replaced: ``before``
by ``--before`` (default ``sr_steps=6``, the shipped default until 2026-12-02), ``after`` by
``--after`` (default: none, the pipeline's own defaults). ``--channels-last`` adds ``after``
with the SR U-Net's weights in channels-last memory format (``pipe.sr.to(memory_format=
torch.channels_last)``, opt-in: its output differs in the last bits).

After one untimed warm-up call of each, the variants take turns ``--repeats`` times, the order
rotated each round (the machine's load drifts). Every call reports its stages through the
pipeline's ``on_progress`` hook; the time between two consecutive reports (and from the call's
start to the first) is the stage of the report that ends it, and the rest after the last report
(the projection of the last SR batch, the conversion to uint8) belongs to the last stage. Both
wall and CPU seconds are taken: with one thread on a shared machine the CPU seconds hardly move
with the load while the wall seconds do. Per stage and in total the best of the repeats is kept.
The output frames of every call are hashed (SHA-256 of the uint8 array): a variant that is not
byte-identical to ``before`` says so, and one whose repeats differ fails.

Prints per stage the seconds of each variant and the ratio to ``before`` (CPU and wall), the SR
seconds per output frame, writes ``--out`` with the command and the thread count, and exits
non-zero when ``after``'s total CPU time is above ``--target`` times ``before``'s (issue 29: the
cascade from ~20 s to <= 12 s on 2 cores, 0.6x).

``--sr-sweep STEPS...`` measures instead what the SR step count costs in quality: the SR figures of
``magicvideo.evaluation.cascade`` (PSNR and SSIM against the true frames of its ``--frames``
held-out 64 -> 256 pairs, uint8, after the projection onto the input and before it) for each step
count, with SR seeds 0 .. ``--seeds``-1 (the shipped figure is seed 0's). Their noise: the spread
over seeds (the mean, its standard deviation and, paired seed by seed, the difference to the
largest step count) and a bootstrap over the frames of seed 0's figure (2,000 resamples, 95%
interval). A step count is "within noise" when its mean over seeds is at least the largest step
count's mean minus twice that one's standard deviation over seeds, in PSNR and in SSIM.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from magicvideo.cli import key_value

STAGES = ("keyframes", "decoding", "interpolation", "super-resolution")


def timed_call(pipe, prompt: str) -> tuple[dict, dict, str, tuple]:
    """One full-cascade call: (wall and CPU seconds per stage, hash of the frames, their shape)."""
    marks: list[tuple[str, float, float]] = []

    def on_progress(stage: str, step: int, total: int) -> None:
        marks.append((stage, time.perf_counter(), time.process_time()))

    start = (time.perf_counter(), time.process_time())
    video = pipe(prompt, seed=0, progress=False, on_progress=on_progress)
    end = (time.perf_counter(), time.process_time())
    wall, cpu = dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0.0)
    previous = start
    for stage, w, c in marks:
        wall[stage] += w - previous[0]
        cpu[stage] += c - previous[1]
        previous = (w, c)
    wall[marks[-1][0]] += end[0] - previous[0]
    cpu[marks[-1][0]] += end[1] - previous[1]
    frames = video.frames
    digest = hashlib.sha256(frames.tobytes()).hexdigest()
    return wall, cpu, digest, tuple(frames.shape)


def sr_sweep(pipe, steps_list: list[int], seeds: int, frames: int) -> dict:
    """SR PSNR/SSIM on the held-out frames per step count and seed (see the module docstring)."""
    import numpy as np
    import torch.nn.functional as F
    from skimage.metrics import structural_similarity

    from magicvideo.evaluation.cascade import heldout_sr_frames
    from magicvideo.evaluation.common import frames_u8
    from magicvideo.models.sr_unet import project_to_low_res, upscale_video

    low, high = heldout_sr_frames(pipe, frames)
    truth = frames_u8(high)
    scale = pipe.sr.config.scale

    def per_frame(frames_out: torch.Tensor) -> tuple[np.ndarray, list[float]]:
        out = frames_u8(frames_out)
        err = (out.astype(np.float64) - truth.astype(np.float64)) / 255
        ssim = [structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(out, truth)]
        return (err ** 2).reshape(len(out), -1).mean(1), ssim

    def psnr(mse: np.ndarray) -> float:  # as analyzers.reconstruction.psnr: over all frames at once
        return float(10 * np.log10(1 / mse.mean()))

    resample = np.random.default_rng(0).integers(0, frames, (2000, frames))
    bicubic = per_frame(F.interpolate(low, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1))
    sweep = {"frames": frames, "seeds": list(range(seeds)), "steps": steps_list,
             "bicubic": {"psnr": psnr(bicubic[0]), "ssim": float(np.mean(bicubic[1]))}, "by_steps": {}}
    settings = {**pipe.sr_settings(), "consistency_steps": 0}
    for steps in steps_list:
        row = {"psnr": [], "ssim": [], "psnr_unprojected": [], "ssim_unprojected": [], "cpu_s": []}
        for seed in range(seeds):
            start = time.process_time()
            # the model's sample; projected as upscale_video does with consistency_steps (the
            # clamp it starts with is a no-op on clamped frames), so both figures from one run
            raw = upscale_video(pipe.sr, low, pipe.sr_schedule, seed=seed, **{**settings, "steps": steps})
            projected = project_to_low_res(raw, low, scale, pipe.defaults.sr_consistency_steps)
            row["cpu_s"].append(time.process_time() - start)
            (mse, ssim), (mse_raw, ssim_raw) = per_frame(projected), per_frame(raw)
            row["psnr"].append(psnr(mse))
            row["ssim"].append(float(np.mean(ssim)))
            row["psnr_unprojected"].append(psnr(mse_raw))
            row["ssim_unprojected"].append(float(np.mean(ssim_raw)))
            if seed == 0:
                boot_psnr = 10 * np.log10(1 / mse[resample].mean(1))
                boot_ssim = np.asarray(ssim)[resample].mean(1)
                row["seed0_psnr_95"] = [float(np.percentile(boot_psnr, q)) for q in (2.5, 97.5)]
                row["seed0_ssim_95"] = [float(np.percentile(boot_ssim, q)) for q in (2.5, 97.5)]
            print(f"sr_steps {steps} seed {seed}: PSNR {row['psnr'][-1]:.3f} dB, SSIM {row['ssim'][-1]:.5f} "
                  f"({row['cpu_s'][-1]:.1f} CPU s)", flush=True)
        for key in ("psnr", "ssim"):
            row[f"{key}_mean"], row[f"{key}_sd"] = float(np.mean(row[key])), float(np.std(row[key], ddof=1))
        sweep["by_steps"][str(steps)] = row
    ref = sweep["by_steps"][str(max(steps_list))]
    print(f"\nSR on {frames} held-out frames, seeds 0-{seeds - 1}: mean (sd over seeds); "
          f"bicubic {sweep['bicubic']['psnr']:.2f} dB / {sweep['bicubic']['ssim']:.4f}")
    for steps in steps_list:
        row = sweep["by_steps"][str(steps)]
        row["psnr_diff_mean"] = float(np.mean(np.subtract(row["psnr"], ref["psnr"])))
        row["ssim_diff_mean"] = float(np.mean(np.subtract(row["ssim"], ref["ssim"])))
        row["within_noise"] = bool(row["psnr_mean"] >= ref["psnr_mean"] - 2 * ref["psnr_sd"]
                                   and row["ssim_mean"] >= ref["ssim_mean"] - 2 * ref["ssim_sd"])
        print(f"sr_steps {steps}: PSNR {row['psnr_mean']:.3f} ({row['psnr_sd']:.3f}) dB, paired "
              f"{row['psnr_diff_mean']:+.3f}; SSIM {row['ssim_mean']:.5f} ({row['ssim_sd']:.5f}), paired "
              f"{row['ssim_diff_mean']:+.5f}; {np.mean(row['cpu_s']):.1f} CPU s; "
              f"{'within' if row['within_noise'] else 'OUTSIDE'} noise")
    return sweep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped one)")
    parser.add_argument("--before", type=key_value, nargs="*", default=[("sr_steps", 6)],
                        help="SamplingOptions fields of the reference (default: sr_steps=6)")
    parser.add_argument("--after", type=key_value, nargs="*", default=[],
                        help="SamplingOptions fields of the variant measured (default: the pipeline's own)")
    parser.add_argument("--channels-last", action="store_true",
                        help="also time 'after' with the SR U-Net in channels-last memory format (opt-in)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt", default="a red circle moving right")
    parser.add_argument("--target", type=float, default=0.6, help="most after/before total CPU time allowed")
    parser.add_argument("--sr-sweep", type=int, nargs="+", default=None, metavar="STEPS",
                        help="measure SR PSNR/SSIM per step count instead of timing the cascade")
    parser.add_argument("--seeds", type=int, default=8, help="SR seeds per step count of --sr-sweep")
    parser.add_argument("--frames", type=int, default=16, help="held-out frames of --sr-sweep")
    parser.add_argument("--out", default=None, help="default: docs/cascade_speed.json, with --sr-sweep docs/sr_steps.json")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)

    from magicvideo.evaluation.common import machine
    from magicvideo.pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    if not (pipe.has_stage("interpolation") and pipe.has_stage("sr")):
        print("the pipeline has no interpolation or no sr stage: there is no full cascade to time", file=sys.stderr)
        return 2
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    if args.sr_sweep:
        if min(args.sr_sweep) < 1 or args.seeds < 2 or args.frames < 1:
            parser.error("--sr-sweep steps and --frames must be >= 1, --seeds >= 2 (a spread needs two)")
        sweep = sr_sweep(pipe, sorted(set(args.sr_sweep)), args.seeds, args.frames)
        out = args.out or "docs/sr_steps.json"
        Path(out).write_text(json.dumps({"command": command, "threads": args.threads, "machine": machine(),
                                         "sr_settings": pipe.sr_settings(), **sweep}, indent=1) + "\n")
        print(f"wrote {out}")
        return 0
    shipped = pipe.defaults
    try:
        settings = {"before": dataclasses.replace(shipped, **dict(args.before)),
                    "after": dataclasses.replace(shipped, **dict(args.after))}
    except (TypeError, ValueError) as err:
        parser.error(f"--before/--after: {err}")
    variants = ["before", "after"] + (["after, SR channels-last"] if args.channels_last else [])

    def run(variant: str):
        pipe.defaults = settings["before" if variant == "before" else "after"]
        layout = torch.channels_last if "channels-last" in variant else torch.contiguous_format
        pipe.sr.to(memory_format=layout)
        return timed_call(pipe, args.prompt)

    best = {v: {"wall": dict.fromkeys(STAGES, float("inf")), "cpu": dict.fromkeys(STAGES, float("inf")),
                "total_wall": float("inf"), "total_cpu": float("inf")} for v in variants}
    digests: dict[str, set[str]] = {v: set() for v in variants}
    shape = None
    for v in variants:  # warm-up: first-call allocations and kernel choices, not timed
        shape = run(v)[3]
    for r in range(args.repeats):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            wall, cpu, digest, _ = run(v)
            digests[v].add(digest)
            b = best[v]
            for stage in STAGES:
                b["wall"][stage] = min(b["wall"][stage], wall[stage])
                b["cpu"][stage] = min(b["cpu"][stage], cpu[stage])
            b["total_wall"] = min(b["total_wall"], sum(wall.values()))
            b["total_cpu"] = min(b["total_cpu"], sum(cpu.values()))
            print(f"round {r + 1} {v:<26} wall {sum(wall.values()):6.2f} s  cpu {sum(cpu.values()):6.2f} s", flush=True)
    pipe.defaults = shipped
    pipe.sr.to(memory_format=torch.contiguous_format)

    frames, side = shape[0], shape[1]
    figures = {
        "command": command,
        "threads": args.threads, "machine": machine(), "prompt": args.prompt, "repeats": args.repeats,
        "frames": frames, "size": side, "target_ratio": args.target,
        "settings": {"before": dict(args.before), "after": dict(args.after)},
        "variants": {},
    }
    ref = best["before"]
    print(f"\n{frames} frames at {side}x{side}, {args.threads} thread(s), best of {args.repeats}; CPU s (wall s)")
    print(f"{'stage':<18}" + "".join(f"{v:>30}" for v in variants))
    for stage in (*STAGES, "total"):
        cells = []
        for v in variants:
            cpu = best[v]["total_cpu"] if stage == "total" else best[v]["cpu"][stage]
            wall = best[v]["total_wall"] if stage == "total" else best[v]["wall"][stage]
            ref_cpu = ref["total_cpu"] if stage == "total" else ref["cpu"][stage]
            cells.append(f"{cpu:7.2f} ({wall:6.2f}) {cpu / ref_cpu:5.2f}x")
        print(f"{stage:<18}" + "".join(f"{c:>30}" for c in cells))
    for v in variants:
        b = best[v]
        sr_frame = b["cpu"]["super-resolution"] / frames
        figures["variants"][v] = {
            "stages_cpu_s": b["cpu"], "stages_wall_s": b["wall"],
            "total_cpu_s": b["total_cpu"], "total_wall_s": b["total_wall"],
            "sr_cpu_s_per_frame": sr_frame,
            "ratio_cpu": {s: b["cpu"][s] / ref["cpu"][s] for s in STAGES} | {"total": b["total_cpu"] / ref["total_cpu"]},
            "ratio_wall": {s: b["wall"][s] / ref["wall"][s] for s in STAGES} | {"total": b["total_wall"] / ref["total_wall"]},
            "byte_identical_to_before": digests[v] == digests["before"],
            "repeats_identical": len(digests[v]) == 1,
        }
        print(f"{v}: SR {sr_frame * 1000:.0f} ms CPU per output frame; frames "
              f"{'identical to' if digests[v] == digests['before'] else 'differ from'} before's")
    out = args.out or "docs/cascade_speed.json"
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    print(f"wrote {out}")
    ratio = figures["variants"]["after"]["ratio_cpu"]["total"]
    ok = ratio <= args.target and all(len(d) == 1 for d in digests.values())
    print(f"after / before, total CPU time: {ratio:.3f} (target <= {args.target}) {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
