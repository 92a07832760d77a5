"""The shapes analyzer: reads a video of the shapes domain back and scores it against its prompt.

Where FVD needs feature networks we cannot download, this is our quality metric on the
shapes domain (FID, FVD and CLIPSIM, for any videos, are in ``magicvideo/metrics.py``). Per video it finds the object (pixels brighter than the black background,
largest connected blob), then reads off

* color: the nearest palette color to the chromaticity of the object's bright core,
* shape: the fill ratio of its bounding box (square ~1, circle ~pi/4, triangle ~1/2), read
  from coverage sums so that it does not depend on where the shape falls between pixels,
* direction: the dominant axis and sign of a least-squares fit of the centroid track,
* displacement: mean per-frame centroid motion in pixels,
* jitter: mean |second difference| of the centroid track (0 for uniform motion), and
  flicker: mean relative frame-to-frame change of the object's total brightness.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..data.synthetic import COLORS
from .reconstruction import as_float_frames

OBJECT_THRESHOLD = 0.35  # max-channel brightness that counts as object, in [0, 1]
CORE_THRESHOLD = 0.7  # brightness of the pixels used to read the color
SQUARE_FILL, TRIANGLE_FILL = 0.9, 0.7  # fill ratio above: square; below: triangle; else circle
MIN_TRAVEL_PX = 0.5  # less total motion than this along the fit is "none"

_PALETTE_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[n] for n in _PALETTE_NAMES], dtype=np.float64) / 255.0


@dataclass
class VideoAnalysis:
    color: str | None
    shape: str | None
    direction: str | None  # left / right / up / down / none
    displacement: float  # mean per-frame centroid displacement, pixels
    jitter: float  # mean |second difference| of the centroid track, pixels / frame^2
    flicker: float  # mean |relative change| of the object's total brightness per frame
    fill_ratio: float
    object_found: float  # fraction of frames with an object
    centroids: np.ndarray  # (T, 2) x, y in pixels; NaN where no object


def _object_mask(brightness: np.ndarray) -> np.ndarray:
    """Largest connected blob above the threshold (noise specks are dropped)."""
    mask = brightness > OBJECT_THRESHOLD
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def nearest_color(rgb: np.ndarray) -> str:
    """Palette color nearest in chromaticity (the RGB divided by its max channel), so that
    a darker red is still red."""
    chroma = rgb / max(rgb.max(), 1e-6)
    return _PALETTE_NAMES[int(np.argmin(((_PALETTE - chroma) ** 2).sum(axis=1)))]


def analyze_video(frames: np.ndarray) -> VideoAnalysis:
    video = as_float_frames(frames)
    t = video.shape[0]
    centroids = np.full((t, 2), np.nan)
    fills, cores, totals = [], [], np.zeros(t)
    ys, xs = np.mgrid[0 : video.shape[1], 0 : video.shape[2]]
    for i, frame in enumerate(video):
        brightness = frame.max(axis=-1)
        mask = _object_mask(brightness)
        if mask.sum() < 3:
            continue
        # weights: brightness in the blob grown by one pixel, to keep anti-aliased edges
        region = ndimage.binary_dilation(mask)
        w = brightness * region
        totals[i] = w.sum()
        centroids[i] = ((w * (xs + 0.5)).sum() / totals[i], (w * (ys + 0.5)).sum() / totals[i])
        # fill ratio of the bounding box, free of pixel quantisation: with coverage c = w / peak,
        # area / (tallest column * widest row) is 1 for a square, pi/4 for a circle, 1/2 for
        # an upright triangle, wherever the shape sits between pixels
        c = w / max(np.percentile(brightness[mask], 90), 1e-6)
        fills.append(min(c.sum() / max(c.sum(axis=0).max() * c.sum(axis=1).max(), 1e-6), 1.5))
        core = mask & (brightness > CORE_THRESHOLD * brightness[mask].max())
        cores.append(frame[core].mean(axis=0))

    found = ~np.isnan(centroids[:, 0])
    if not found.any():
        return VideoAnalysis(None, None, None, 0.0, 0.0, 0.0, 0.0, 0.0, centroids)
    color = nearest_color(np.mean(cores, axis=0))
    fill = float(np.median(fills))
    shape = "square" if fill > SQUARE_FILL else "triangle" if fill < TRIANGLE_FILL else "circle"

    direction, displacement, jitter = "none", 0.0, 0.0
    idx = np.nonzero(found)[0]
    if len(idx) >= 2:
        sx = np.polyfit(idx, centroids[idx, 0], 1)[0]
        sy = np.polyfit(idx, centroids[idx, 1], 1)[0]
        displacement = float(np.hypot(sx, sy))
        span = idx[-1] - idx[0]
        if max(abs(sx), abs(sy)) * span >= MIN_TRAVEL_PX:
            direction = ("right" if sx > 0 else "left") if abs(sx) >= abs(sy) else ("down" if sy > 0 else "up")
    if len(idx) >= 3:
        track = centroids[idx]
        jitter = float(np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=1).mean())
    flicker = 0.0
    if len(idx) >= 2:
        flicker = float(np.abs(np.diff(totals[idx])).mean() / max(totals[idx].mean(), 1e-9))
    return VideoAnalysis(color, shape, direction, displacement, jitter, flicker, fill, float(found.mean()), centroids)


def score(analyses: Sequence[VideoAnalysis], expected: Sequence) -> dict[str, float]:
    """Accuracies over the items where each attribute is expected (not None)."""
    if len(analyses) != len(expected):
        raise ValueError(f"{len(analyses)} analyses but {len(expected)} expectations")
    out: dict[str, float] = {"n": float(len(analyses))}
    for attr in ("color", "shape", "direction"):
        pairs = [(getattr(a, attr), getattr(e, attr)) for a, e in zip(analyses, expected) if getattr(e, attr)]
        out[f"{attr}_acc"] = float(np.mean([got == want for got, want in pairs])) if pairs else float("nan")
    out["mean_jitter"] = float(np.mean([a.jitter for a in analyses])) if analyses else float("nan")
    out["mean_displacement"] = float(np.mean([a.displacement for a in analyses])) if analyses else float("nan")
    return out
