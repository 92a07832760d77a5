"""The applications of a pipeline (default: the shipped one) measured on the shapes domain,
with rendered clips as sources and the shapes analyzer as judge (keyframes only, 64x64):

    python -m magicvideo.evaluation.applications [--pipeline DIR] [--n 24] [--strength S] [--out FILE.json]

Prints, with the targets of issue 7, and exits non-zero when one is missed:
  image-to-video: color and shape of the output match the input image      >= 85%
  variations:     color, shape and direction match the source               >= 80%, pairwise different
  editing:        recolouring follows the new prompt                        >= 80%, direction kept >= 80%
  long videos (64 keyframes at 16 fps): direction of every 16-frame segment right; seam jitter vs elsewhere
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .common import evaluation_parser, machine, report_checks


def source_clips(n: int, seed: int) -> tuple[list, list[np.ndarray], np.random.Generator]:
    """``n`` seen (color, shape, direction) combinations and a rendered 16-frame 8 fps clip of
    each (uint8, 64x64), drawn with ``seed``; the generator, advanced past them, comes too."""
    from ..data.synthetic import SEEN, render_clip, spec_for

    rng = np.random.default_rng(seed)
    combos = [SEEN[i] for i in rng.choice(len(SEEN), n, replace=False)]
    return combos, [render_clip(spec_for(*c, rng), 16, 8.0) for c in combos], rng


def recolour_target(i: int, color: str) -> str:
    """The ``i``-th source's new color in the editing check: cycles through the other colors."""
    from ..data.synthetic import COLORS

    others = [k for k in COLORS if k != color]
    return others[i % len(others)]


def object_shift(edited, source) -> float:
    """Mean distance (px) between the object's centroids in two analyses (``analyze_video``),
    frame by frame, over the frames where both found it."""
    return float(np.nanmean(np.linalg.norm(edited.centroids - source.centroids, axis=1)))


def main(argv: list[str] | None = None) -> int:
    parser = evaluation_parser(__doc__)
    parser.add_argument("--n", type=int, default=24, help="sources per application")
    parser.add_argument("--strength", type=float, default=None, help="edit strength (default: the pipeline's)")
    args = parser.parse_args(argv)

    from ..analyzers.shapes import analyze_video
    from ..data.synthetic import make_caption
    from ..pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    fast = dict(progress=False, interpolate=False, upscale=False)
    combos, sources, rng = source_clips(args.n, seed=7)
    t0 = time.time()

    def mean(values):
        return float(np.mean(values))

    # image-to-video: the first frame of a rendered clip
    animated = [analyze_video(pipe.animate(src[0], seed=i, **fast).frames) for i, src in enumerate(sources)]
    animate_color = mean([a.color == c[0] for a, c in zip(animated, combos)])
    animate_shape = mean([a.shape == c[1] for a, c in zip(animated, combos)])
    prompted = [analyze_video(pipe.animate(src[0], prompt=f"moving {c[2]}", seed=i, **fast).frames)
                for i, (src, c) in enumerate(zip(sources, combos))]
    animate_prompt_dir = mean([a.direction == c[2] for a, c in zip(prompted, combos)])

    # variations: two per source
    vary_match, vary_gap = [], []
    for i, (src, c) in enumerate(zip(sources[: args.n // 2], combos)):
        videos = pipe.vary(src, n=2, seed=10 * i, **fast)
        for v in videos:
            a = analyze_video(v.frames)
            vary_match.append((a.color, a.shape, a.direction) == c)
        vary_gap.append(np.abs(videos[0].frames.astype(int) - videos[1].frames).mean())

    # editing: recolour to another palette color, same shape and motion; how far the object
    # moved from where the source had it (what a higher strength gives up)
    strength = float(pipe.defaults.edit_strength if args.strength is None else args.strength)
    edit_color, edit_dir, edit_shift = [], [], []
    for i, (src, c) in enumerate(zip(sources, combos)):
        new = recolour_target(i, c[0])
        out = analyze_video(pipe.edit(src, make_caption(new, c[1], c[2], rng), strength=strength, seed=i,
                                      **fast).frames)
        edit_color.append(out.color == new)
        edit_dir.append(out.direction == c[2])
        edit_shift.append(object_shift(out, analyze_video(src)))

    # long videos: 64 keyframes in windows of 16 holding 8; direction per segment, seam jitter
    segment_ok, seam, elsewhere = [], [], []
    window, context = pipe.unet.config.max_frames, pipe.unet.config.max_frames // 2
    seams = set(range(window, 64, window - context))
    for i, c in enumerate(combos[: max(4, args.n // 4)]):
        # at 16 fps, 64 frames are 4 s: the longest motion that stays inside the frame
        frames = pipe(make_caption(*c, rng), num_frames=64, fps=16.0, seed=i, **fast).frames
        segment_ok += [analyze_video(frames[s : s + 16]).direction == c[2] for s in range(0, 64, 16)]
        track = analyze_video(frames).centroids
        second = np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=1)  # at frames 1..62
        for f, value in zip(range(1, 63), second):
            if np.isfinite(value):
                (seam if f in seams or f - 1 in seams else elsewhere).append(value)
    elapsed = time.time() - t0

    figures = {
        "machine": machine(),
        "animate_color": animate_color, "animate_shape": animate_shape, "animate_prompt_direction": animate_prompt_dir,
        "vary_match": mean(vary_match), "vary_mean_pixel_gap": mean(vary_gap),
        "vary_min_pixel_gap": float(np.min(vary_gap)), "edit_strength": strength,
        "edit_color": mean(edit_color), "edit_direction_kept": mean(edit_dir),
        "edit_object_shift_px": float(np.nanmean(edit_shift)), "image_guidance": float(pipe.defaults.image_guidance),
        "long_segment_direction": mean(segment_ok), "long_seam_jitter": mean(seam),
        "long_other_jitter": mean(elsewhere), "wall_s": round(elapsed, 1),
    }
    checks = [
        ("image-to-video color", animate_color, ">=", 0.85), ("image-to-video shape", animate_shape, ">=", 0.85),
        ("variations same color/shape/direction", figures["vary_match"], ">=", 0.80),
        ("variations pairwise pixel gap (mean |diff|, 0-255)", figures["vary_min_pixel_gap"], ">=", 0.01),
        ("edit new color", figures["edit_color"], ">=", 0.80),
        ("edit direction kept", figures["edit_direction_kept"], ">=", 0.80),
        ("long video segment direction", figures["long_segment_direction"], ">=", 0.80),
        ("long video seam / other jitter", figures["long_seam_jitter"] / max(figures["long_other_jitter"], 1e-9),
         "<=", 1.5),
    ]
    print(f"{elapsed:.0f} s on {figures['machine']}")
    return 0 if report_checks(checks, figures, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
