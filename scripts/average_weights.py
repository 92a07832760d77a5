"""Interpolate two trainings of one VideoUNet in weight space (as in WiSE-FT and model soups):
OUT = (1 - alpha) * A + alpha * B, tensor by tensor.

    python scripts/average_weights.py A_DIR B_DIR OUT_DIR [--alpha 0.5]

A and B are model directories of the same config, B usually a further finetune of A (another
round of scripts/refine_keyframe.sh): between two points of one finetuning path the average
trades what the later round gained against what it lost. OUT_DIR gets B's config and is
written atomically.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def average(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    if a.keys() != b.keys():
        raise ValueError(f"the two models hold different tensors: {sorted(a.keys() ^ b.keys())[:3]}")
    return {k: torch.lerp(a[k].float(), b[k].float(), alpha).to(a[k].dtype) for k in a}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of B (0: A, 1: B)")
    args = parser.parse_args(argv)
    if not 0 <= args.alpha <= 1:
        parser.error(f"--alpha must be in [0, 1], got {args.alpha}")

    from magicvideo.models import VideoUNet

    try:
        a, b = VideoUNet.from_pretrained(args.a), VideoUNet.from_pretrained(args.b)
        if a.config != b.config:
            raise ValueError(f"{args.a} and {args.b}: different configs, not two trainings of one model")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    b.load_state_dict(average(a.state_dict(), b.state_dict(), args.alpha))
    b.save_pretrained(args.out)
    print(f"{args.out}: {1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
