"""Where the super-resolution stage loses SSIM against bicubic upsampling: held-out shapes frames
(64 -> 256, the frames of magicvideo.evaluation.cascade), the SSIM map and the absolute error split
by distance to the object (black background) and into the object's rim and inside.

    python experiments/sr_error_regions.py [--pipeline DIR] [--frames 16] [--sr-steps N] [--noise-level S]
                                           [--scheduler dpm|ddim] [--consistency-steps N]

Prints, per region: its share of the pixels, mean SSIM of SR and of bicubic (means of the SSIM
maps, frame borders included, so a little above the cascade evaluation's cropped SSIM), SR's mean
absolute error (0-255, max over channels) and the region's share of the SSIM deficit.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_erosion, distance_transform_edt
from skimage.metrics import structural_similarity

from magicvideo.evaluation.cascade import heldout_sr_frames
from magicvideo.evaluation.common import frames_u8 as to_u8


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default=None)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sr-steps", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--noise-level", type=int, default=None, help="augmentation level; default: the pipeline's")
    parser.add_argument("--scheduler", default="dpm")
    parser.add_argument("--consistency-steps", type=int, default=None,
                        help="projection onto the input (project_to_low_res); 0: the model's sample alone; "
                             "default: the pipeline's")
    args = parser.parse_args()

    from magicvideo.models.sr_unet import upscale_video
    from magicvideo.pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    scale, d = pipe.sr.config.scale, pipe.defaults
    low, high = heldout_sr_frames(pipe, args.frames)
    hr = to_u8(high)
    steps = d.sr_steps if args.sr_steps is None else args.sr_steps
    level = d.sr_noise_level if args.noise_level is None else args.noise_level
    project = d.sr_consistency_steps if args.consistency_steps is None else args.consistency_steps
    outputs = {"sr": to_u8(upscale_video(pipe.sr, low, pipe.sr_schedule, steps=steps, noise_level=level,
                                         scheduler=args.scheduler, consistency_steps=project)),
               "bicubic": to_u8(F.interpolate(low, scale_factor=scale, mode="bicubic", align_corners=False))}
    ssim = {k: np.stack([structural_similarity(x, y, channel_axis=-1, data_range=255, full=True)[1].mean(-1)
                         for x, y in zip(v, hr)]) for k, v in outputs.items()}
    error = np.abs(outputs["sr"].astype(float) - hr).max(-1)
    obj = hr.max(-1) > 0
    dist = np.stack([distance_transform_edt(~o) for o in obj])
    inner = np.stack([binary_erosion(o, iterations=4) for o in obj])
    regions = {"object, inside (>4 px in)": inner, "object, rim (4 px)": obj & ~inner}
    for lo, hi in ((0, 4), (4, 8), (8, 16), (16, 32), (32, 10**6)):
        regions[f"background {lo}-{hi if hi < 10**6 else 'inf'} px away"] = ~obj & (dist > lo) & (dist <= hi)
    deficit = (ssim["bicubic"] - ssim["sr"]).mean()
    print(f"SSIM sr {ssim['sr'].mean():.4f} bicubic {ssim['bicubic'].mean():.4f} (deficit {deficit:.4f}), "
          f"{args.frames} frames, {args.scheduler} {steps} steps, augmentation level {level}, "
          f"{project} projection steps")
    print(f"{'region':32s} {'pixels':>7s} {'SSIM sr':>8s} {'bicubic':>8s} {'|err| sr':>9s} {'deficit':>8s}")
    for name, m in regions.items():
        if m.any():
            share = ((ssim["bicubic"] - ssim["sr"]) * m).sum() / m.size / deficit if deficit else float("nan")
            print(f"{name:32s} {m.mean():7.1%} {ssim['sr'][m].mean():8.4f} {ssim['bicubic'][m].mean():8.4f} "
                  f"{error[m].mean():9.2f} {share:8.0%}")
    background = ~obj & (dist > 32)
    print(f"background > 32 px away: {np.mean(error[background] >= 1):.1%} of pixels off by >= 1 level, "
          f"{np.mean(error[background] >= 3):.1%} by >= 3")


if __name__ == "__main__":
    main()
