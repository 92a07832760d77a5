"""A decoded (or generated) video against its reference, frame for frame: PSNR and temporal
dithering. Any domain; videos are (T, H, W, 3), uint8 or float in [0, 1]."""
from __future__ import annotations

import numpy as np


def as_float_frames(frames: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(T, H, W, 3) uint8 or float frames -> ``dtype`` in [0, 1]; errors name the shape."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty")
    if frames.dtype == np.uint8:
        return frames.astype(dtype) / 255.0
    return np.clip(frames.astype(dtype), 0.0, 1.0)


def dithering(decoded: np.ndarray, reference: np.ndarray) -> float:
    """Temporal dithering of a reconstruction: mean |decoded frame-to-frame difference -
    reference frame-to-frame difference|, frames (T, H, W, 3) uint8 or float in [0, 1].
    0 when the decoded video changes between frames exactly as the reference does."""
    a, b = as_float_frames(np.asarray(decoded)), as_float_frames(np.asarray(reference))
    if a.shape != b.shape or a.ndim < 4 or a.shape[-4] < 2:
        raise ValueError(f"need two videos of the same shape (T>=2, H, W, 3), got {a.shape} and {b.shape}")
    return float(np.abs(np.diff(a, axis=-4) - np.diff(b, axis=-4)).mean())


def psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over whole arrays (uint8 or float in [0, 1])."""
    a, b = as_float_frames(np.asarray(decoded)), as_float_frames(np.asarray(reference))
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
