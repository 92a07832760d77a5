"""The two reshapes around the frame axis, written once.

Outside the models a video is ``(B, C, F, H, W)``; inside, 2D layers see frames folded
into the batch, ``(B*F, C, H, W)``, frame-major within each video.
"""
from __future__ import annotations

import torch
from einops import rearrange


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B*F, C, H, W)."""
    return rearrange(video, "b c f h w -> (b f) c h w")


def unfold_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*F, C, H, W) -> (B, C, F, H, W)."""
    return rearrange(frames, "(b f) c h w -> b c f h w", f=num_frames)
