"""The keyframe model of a pipeline (default: the shipped one) measured with the shapes
analyzer: 16 keyframes at 64x64, without the interpolation and super-resolution stages.

    python -m magicvideo.evaluation.keyframes [--pipeline DIR] [--steps 25] [--guidance 5]
                                              [--seed-offset N] [--out eval_metrics.json]

Prints, with the targets of issue 4, and exits 1 when one is missed:
  seen prompts (96, one seed each):  color >= 90%, shape >= 80%, direction >= 85%
  held-out combinations:             color >= 80%, direction >= 75%
  fps control: mean per-frame displacement at fps 4 >= 2.5x that at fps 16
152 videos; about 7 minutes on 2 CPU cores (433 s on 2026-11-27).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .common import evaluation_parser, machine, report_checks


def main(argv: list[str] | None = None) -> int:
    parser = evaluation_parser(__doc__)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="added to every sampling seed: other noise for the same prompts (a validation set "
                             "to choose between models on, keeping the reported seeds out of the choice)")
    args = parser.parse_args(argv)

    from ..analyzers.shapes import analyze_video, score
    from ..data.synthetic import HELD_OUT, SEEN, make_caption, parse_prompt
    from ..pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    rng = np.random.default_rng(1234)
    seen = list(SEEN) + [SEEN[i] for i in rng.choice(len(SEEN), 96 - len(SEEN), replace=False)]
    held = [c for c in HELD_OUT for _ in range(3)]

    def run(combos, fps=8.0, seed0=0):
        seed0 += args.seed_offset
        analyses, expected = [], []
        for i, (color, shape, direction) in enumerate(combos):
            prompt = make_caption(color, shape, direction, rng)
            video = pipe(prompt, fps=fps, steps=args.steps, guidance=args.guidance, seed=seed0 + i, progress=False,
                         interpolate=False, upscale=False)  # the keyframe model (the cascade: cascade.py)
            analyses.append(analyze_video(video.frames))
            expected.append(parse_prompt(prompt))
        return analyses, expected

    t0 = time.time()
    seen_scores = score(*run(seen))
    held_scores = score(*run(held, seed0=1000))
    fps_combos = [(c, s, d) for c, s, d in SEEN if s == "square"][:16]
    slow = score(*run(fps_combos, fps=16.0, seed0=2000))["mean_displacement"]
    fast = score(*run(fps_combos, fps=4.0, seed0=2000))["mean_displacement"]
    elapsed = time.time() - t0

    figures = {
        "machine": machine(), "seen": seen_scores, "held_out": held_scores,
        "displacement_fps4": fast, "displacement_fps16": slow, "fps_ratio": fast / max(slow, 1e-9),
        "generations": len(seen) + len(held) + 2 * len(fps_combos), "wall_s": round(elapsed, 1),
        "seed_offset": args.seed_offset, "steps": args.steps, "guidance": args.guidance,
    }
    checks = [
        ("seen color", seen_scores["color_acc"], ">=", 0.90), ("seen shape", seen_scores["shape_acc"], ">=", 0.80),
        ("seen direction", seen_scores["direction_acc"], ">=", 0.85),
        ("held-out color", held_scores["color_acc"], ">=", 0.80),
        ("held-out direction", held_scores["direction_acc"], ">=", 0.75),
        ("fps 4 / fps 16 displacement", figures["fps_ratio"], ">=", 2.5),
    ]
    print(f"{figures['generations']} videos in {elapsed:.0f} s on {figures['machine']}")
    return 0 if report_checks(checks, figures, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
