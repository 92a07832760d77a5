"""Render the README's example GIF with the shipped default model.

    python scripts/make_readme_gif.py [--out docs/example.gif]
"""
from __future__ import annotations

import argparse

import numpy as np

PROMPTS = ("a red circle moving right", "a blue square sliding upward",
           "a yellow triangle drifting to the left", "a green circle going down")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/example.gif")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from magicvideo.pipeline import MagicVideoPipeline
    from magicvideo.video_io import write_video

    pipe = MagicVideoPipeline.from_pretrained()
    outputs = [pipe(p, seed=args.seed, progress=False) for p in PROMPTS]  # the full cascade
    videos = [o.frames for o in outputs]
    top, bottom = np.concatenate(videos[:2], axis=2), np.concatenate(videos[2:], axis=2)
    grid = np.concatenate([top, bottom], axis=1)
    write_video(grid, args.out, fps=outputs[0].fps)
    print(f"wrote {args.out}: " + "; ".join(f"{i}: {p}" for i, p in enumerate(PROMPTS)))


if __name__ == "__main__":
    main()
