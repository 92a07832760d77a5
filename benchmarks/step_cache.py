"""Step caching (``VideoUNet.step_cache``) measured: speed-up against fidelity to the exact output.

    python benchmarks/step_cache.py [--pipeline DIR] [--prompts 24] [--thresholds 0.1 0.15 0.2 0.3]
                                    [--exact-above 700] [--orders 0 1] [--steps 25] [--reference-steps 50] [--out benchmarks/step_cache.json]

The shipped pipeline (or ``--pipeline``), keyframes only (no interpolation, no super-resolution),
its default scheduler and guidance, ``--steps`` steps, one thread (``torch.set_num_threads(1)``:
the machine is shared). For each of ``--prompts`` seen-attribute captions (seeds 0, 1, ...) it
generates the uncached video and one per variant (each ``--thresholds`` value at each
``--orders`` forecast), in an order rotated from prompt to prompt (interleaved: the machine's
load drifts), timing each whole call (text encoding, sampling, VAE). Per variant: the median
over prompts of uncached time / cached time, the fraction of U-Net calls that reused
features, the PSNR of the cached frames against the uncached ones (uint8, every frame;
median and worst video) and the shapes analyzer's accuracies of both. PSNR against the
uncached output has no scale of its own, so each video is also made uncached with
``--reference-steps`` steps (a better solve of the same ODE, untimed): the drop is PSNR(uncached
vs reference) - PSNR(cached vs reference), the fidelity the cache costs against what the
sampler's own step count already costs (median over prompts).
Issue 29's target: >= 1.5x for <= 0.5 dB and no accuracy drop beyond noise.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped one)")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--exact-above", type=float, default=700.0,
                        help="timesteps above this are always computed (StepCache's exact_above)")
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 1], choices=(0, 1, 2),
                        help="StepCache orders to measure at every threshold (0: reuse, 1: line, 2: parabola)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--reference-steps", type=int, default=50, help="steps of the reference (0: none)")
    parser.add_argument("--out", default="benchmarks/step_cache.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from magicvideo.analyzers.shapes import analyze_video, score
    from magicvideo.data.synthetic import SEEN, make_caption, parse_prompt
    from magicvideo.evaluation.common import machine
    from magicvideo.pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    rng = np.random.default_rng(1234)
    combos = [SEEN[i] for i in rng.choice(len(SEEN), args.prompts, replace=args.prompts > len(SEEN))]
    prompts = [make_caption(color, shape, direction, rng) for color, shape, direction in combos]
    # None: uncached (the default path); else (threshold, order)
    variants: list[tuple[float, int] | None] = [None, *((t, o) for o in args.orders for t in args.thresholds)]
    times = {v: [] for v in variants}
    frames = {v: [] for v in variants}
    calls = {v: 0 for v in variants}
    skipped = {v: 0 for v in variants}

    def generate(prompt: str, seed: int, steps: int = args.steps):
        return pipe(prompt, steps=steps, seed=seed, progress=False, interpolate=False, upscale=False).frames

    generate(prompts[0], 0)  # warm-up (first-call allocations), not timed
    for i, prompt in enumerate(prompts):
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            t0 = time.perf_counter()
            if v is None:
                out = generate(prompt, i)
            else:
                with pipe.unet.step_cache(v[0], args.exact_above, order=v[1]) as cache:
                    out = generate(prompt, i)
                calls[v] += cache.calls
                skipped[v] += cache.skipped
            times[v].append(time.perf_counter() - t0)
            frames[v].append(out)
        if args.reference_steps:
            frames["reference"] = frames.get("reference", []) + [generate(prompt, i, args.reference_steps)]
        print(f"prompt {i + 1}/{len(prompts)}: " + ", ".join(
            f"{'off' if v is None else '%g/%d' % v}: {times[v][-1]:.2f} s" for v in variants), flush=True)

    expected = [parse_prompt(p) for p in prompts]
    exact_scores = score([analyze_video(f) for f in frames[None]], expected)
    rows = []
    for v in variants[1:]:
        ratios = [a / b for a, b in zip(times[None], times[v])]
        psnrs = [psnr(a, b) for a, b in zip(frames[None], frames[v])]
        drops = [psnr(e, r) - psnr(c, r) for e, c, r in zip(frames[None], frames[v], frames.get("reference", []))]
        scores = score([analyze_video(f) for f in frames[v]], expected)
        rows.append({
            "threshold": v[0], "order": v[1], "speedup_median": round(float(np.median(ratios)), 3),
            "speedup_total": round(sum(times[None]) / sum(times[v]), 3),
            "skipped_fraction": round(skipped[v] / calls[v], 3),
            "psnr_median_db": round(float(np.median(psnrs)), 2), "psnr_worst_db": round(min(psnrs), 2),
            "psnr_drop_vs_reference_median_db": round(float(np.median(drops)), 3) if drops else None,
            "psnr_drop_vs_reference_worst_db": round(max(drops), 3) if drops else None,
            "color_acc": scores["color_acc"], "shape_acc": scores["shape_acc"],
            "direction_acc": scores["direction_acc"],
        })
    report = {
        "machine": machine(), "threads": torch.get_num_threads(), "prompts": len(prompts), "steps": args.steps,
        "exact_above": args.exact_above,
        "scheduler": pipe.defaults.scheduler, "guidance": pipe.defaults.guidance,
        "uncached_median_s": round(float(np.median(times[None])), 3), "reference_steps": args.reference_steps,
        "uncached_psnr_vs_reference_median_db": round(float(np.median(
            [psnr(e, r) for e, r in zip(frames[None], frames["reference"])])), 2) if args.reference_steps else None,
        "uncached": {k: exact_scores[k] for k in ("color_acc", "shape_acc", "direction_acc")},
        "cached": rows,
    }
    print(f"\n{report['machine']}; {len(prompts)} prompts, {args.steps} steps, keyframes only, exact above "
          f"t={args.exact_above:g}; "
          f"uncached median {report['uncached_median_s']} s; uncached accuracies color "
          f"{exact_scores['color_acc']:.3f} shape {exact_scores['shape_acc']:.3f} "
          f"direction {exact_scores['direction_acc']:.3f}")
    if args.reference_steps:
        print(f"uncached vs {args.reference_steps}-step reference: median "
              f"{report['uncached_psnr_vs_reference_median_db']} dB")
    print("threshold order  speed-up (median, total)  skipped  PSNR vs uncached median / worst dB  "
          "drop vs reference median / worst dB  color  shape  direction")
    for r in rows:
        drop = "n/a" if r["psnr_drop_vs_reference_median_db"] is None else \
            f"{r['psnr_drop_vs_reference_median_db']:6.3f} / {r['psnr_drop_vs_reference_worst_db']:6.3f}"
        print(f"{r['threshold']:9g} {r['order']:5d}  {r['speedup_median']:6.2f}x  {r['speedup_total']:6.2f}x          "
              f"{r['skipped_fraction']:6.1%}  {r['psnr_median_db']:7.2f} / {r['psnr_worst_db']:6.2f}"
              f"                    {drop:>17}                  "
              f"{r['color_acc']:.3f}  {r['shape_acc']:.3f}  {r['direction_acc']:.3f}")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
