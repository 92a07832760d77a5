"""Sweep one setting of an application on development sources, to choose the pipeline's
defaults (``image_guidance``, ``vary_strength``, ``edit_strength``) without looking at the
sources ``python -m magicvideo.evaluation.applications`` reports on (those are drawn with seed 7; these
with seed 11, so positions, sizes and speeds differ and the combinations mostly do):

    python experiments/sweep_applications.py animate --values 1.5,2.5,5       # guidance
    python experiments/sweep_applications.py vary --values 0.5,0.6,0.7 [--guidance 2.5]  # strength
    python experiments/sweep_applications.py edit --values 0.6,0.7,0.8,0.9   # strength

Prints one line per value with the analyzer's figures (keyframes only, 64x64): animate,
color and shape kept; vary, color / shape / direction kept and all three (two variations per
source), and the mean pixel gap between them; edit, the new color, direction kept and how far
the object moved from where the source had it (px, mean over frames).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from magicvideo.evaluation.applications import object_shift, recolour_target, source_clips


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("application", choices=("animate", "vary", "edit"))
    parser.add_argument("--values", required=True, help="comma-separated: guidance (animate) or strength")
    parser.add_argument("--guidance", type=float, default=None, help="vary / edit: guidance (default: the pipeline's)")
    parser.add_argument("--n", type=int, default=24, help="sources")
    parser.add_argument("--pipeline", default=None)
    args = parser.parse_args()

    from magicvideo.data.synthetic import make_caption
    from magicvideo.analyzers.shapes import analyze_video
    from magicvideo.pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    fast = dict(progress=False, interpolate=False, upscale=False)
    combos, sources, rng = source_clips(args.n, seed=11)
    new_colors = [recolour_target(i, c[0]) for i, c in enumerate(combos)]
    captions = [make_caption(new, c[1], c[2], rng) for new, c in zip(new_colors, combos)]
    analyzed = [analyze_video(src) for src in sources] if args.application == "edit" else None
    print(f"{args.application}, {args.n} sources (seed 11); varying "
          f"{'guidance' if args.application == 'animate' else 'strength'}")
    for value in (float(v) for v in args.values.split(",")):
        t0, rows, extra = time.time(), [], []
        for i, (src, c) in enumerate(zip(sources, combos)):
            if args.application == "animate":
                a = analyze_video(pipe.animate(src[0], guidance=value, seed=i, **fast).frames)
                rows.append((a.color == c[0], a.shape == c[1]))
            elif args.application == "vary":
                videos = pipe.vary(src, n=2, strength=value, guidance=args.guidance, seed=10 * i, **fast)
                for v in videos:
                    a = analyze_video(v.frames)
                    rows.append((a.color == c[0], a.shape == c[1], a.direction == c[2],
                                 (a.color, a.shape, a.direction) == c))
                extra.append(np.abs(videos[0].frames.astype(int) - videos[1].frames).mean())
            else:
                out = analyze_video(pipe.edit(src, captions[i], strength=value, guidance=args.guidance, seed=i,
                                              **fast).frames)
                rows.append((out.color == new_colors[i], out.direction == c[2]))
                extra.append(object_shift(out, analyzed[i]))
        r = np.mean(rows, axis=0)
        if args.application == "animate":
            figures = f"color {r[0]:.3f}  shape {r[1]:.3f}"
        elif args.application == "vary":
            figures = f"color {r[0]:.3f}  shape {r[1]:.3f}  direction {r[2]:.3f}  all {r[3]:.3f}  gap {np.mean(extra):.2f}"
        else:
            figures = f"new color {r[0]:.3f}  direction kept {r[1]:.3f}  object shift {np.nanmean(extra):.2f} px"
        print(f"  {value:g}: {figures}  ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
