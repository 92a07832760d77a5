"""The sprites analyzer: reads a video of the sprites domain back and says what it shows.

Per video it

1. finds the background: a flat colour (the border of the median frame is uniform), one of
   the domain's photographs (correlation of contrast-normalised images against each photo at
   the frame scale, then a sub-pixel window offset per frame, blurred as much as the video
   is), or else the temporal median of the frames aligned by phase correlation;
2. finds the object in every frame: pixels that differ from the background, largest
   connected blob; its centroid, size (square root of its area) and box;
3. names the sprite by analysis by synthesis: every vocabulary sprite is drawn over the
   background, fitted to the object's box, and compared with the frame (mean absolute
   error over the box, in the frames where the object is largest); the best few are fitted
   closer (half-pixel moves, size, the blur of a soft generated frame) before the ranking;
4. reads the object's motion from its track: left/right/up/down from a line fitted to the
   centroid path, zoom in/out from the trend of its size; "none" below MIN_TRAVEL_PX, and
   "erratic" when the line explains less than MIN_FIT of the track (frames out of order);
5. reads the camera pan from the photo window's path (the window moving right is "pan
   right"); for an unknown background, from the global shift between frames;
6. measures jitter (mean |second difference| of the centroid track, pixels / frame^2) and
   flicker (mean frame-to-frame change of the object's mean colour, in [0, 1]).

Frames are (T, H, W, 3), uint8 or float in [0, 1]; square frames, as the domain renders.

Why ~500 lines in one file: the six steps share one background model and one rendering of the
vocabulary; the last ~100 lines are its self-check on rendered and corrupted clips
(``python -m magicvideo.analyzers.sprites``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..data import sprites as domain
from .reconstruction import as_float_frames

MASK_THRESHOLD = 0.1  # max-channel |frame - background| that counts as object, in [0, 1]
FLAT_BORDER = 0.06  # 90th percentile of |border - its median| below which the background is flat
FLAT_NAME_DISTANCE = 0.15  # max-channel distance to a named flat colour (or black) to take its name
PHOTO_MATCH = 0.33  # correlation (contrast-normalised) above which a frame shows one of the photos
PHOTO_BLURS = (0.0, 0.5, 1.0, 1.5, 2.0)  # Gaussian sigmas (pixels) tried to match a soft video's photo
MIN_TRAVEL_PX = 1.0  # less centroid travel (or window travel) over the clip than this is "none"
MIN_ZOOM = 0.08  # relative change of the object's size over the clip that counts as zoom
MIN_FIT = 0.5  # R^2 of the fitted line below which a track is "erratic"
IDENTITY_FRAMES = 3  # frames (largest object first) whose errors are averaged to name the sprite


@dataclass
class SpriteAnalysis:
    sprite: str | None  # top-1 vocabulary sprite (None: no object found)
    top5: list[str]  # best five, best first
    motion: str  # left / right / up / down / zoom in / zoom out / none / erratic
    pan: str  # pan left / pan right / pan up / pan down / none / erratic
    background: str  # black, a FLAT_COLORS name, "flat", a PHOTOS key, or "unknown"
    displacement: float  # mean per-frame centroid displacement, pixels
    zoom: float  # relative size change over the clip (+ growing, - shrinking)
    pan_speed: float  # mean per-frame window displacement, pixels
    jitter: float  # mean |second difference| of the centroid track, pixels / frame^2
    flicker: float  # mean |frame-to-frame change| of the object's mean colour, [0, 1]
    object_found: float  # fraction of frames with an object
    errors: list[float] = field(default_factory=list)  # identity errors of top5 (mean |diff| per pixel)
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (T, 2) x, y; NaN: no object
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T,) sqrt(area), pixels
    window: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (T, 2) photo window x, y, pixels


@dataclass
class Background:
    kind: str  # flat | photo | median
    name: str
    frames: np.ndarray  # (T, H, W, 3) float32 in [0, 1]
    window: np.ndarray  # (T, 2) the view's offset (photo window, or minus the content's shift), pixels


def _as_float_frames(frames: np.ndarray) -> np.ndarray:
    frames = as_float_frames(frames, np.float32)
    if frames.shape[1] != frames.shape[2]:
        raise ValueError(f"frames must be square, got {frames.shape[1]}x{frames.shape[2]}")
    return frames


def _gray(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], np.float32)


def _parabolic(c_minus: float, c0: float, c_plus: float) -> float:
    """Sub-pixel offset of a peak from three samples around it."""
    denom = c_minus - 2 * c0 + c_plus
    return 0.0 if denom >= 0 else float(np.clip(0.5 * (c_minus - c_plus) / denom, -0.5, 0.5))


def _peak(surface: np.ndarray) -> tuple[float, float, float]:
    """(y, x, value) of the maximum with parabolic sub-pixel refinement (wrapping indices)."""
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    h, w = surface.shape
    dy = _parabolic(surface[(iy - 1) % h, ix], surface[iy, ix], surface[(iy + 1) % h, ix])
    dx = _parabolic(surface[iy, (ix - 1) % w], surface[iy, ix], surface[iy, (ix + 1) % w])
    return iy + dy, ix + dx, float(surface[iy, ix])


def phase_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dx, dy) such that image b is image a moved by (dx, dy) pixels (phase correlation,
    Hann window, sub-pixel peak)."""
    h, w = a.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fa, fb = np.fft.rfft2((a - a.mean()) * window), np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    surface = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-9), s=(h, w))
    y, x, _ = _peak(surface)
    return float((x + w / 2) % w - w / 2), float((y + h / 2) % h - h / 2)


# -- photo backgrounds ------------------------------------------------------------------------
def _local_contrast(g: np.ndarray, size: int = 7, eps: float = 0.03) -> np.ndarray:
    """Each pixel minus its neighbourhood's mean, over its standard deviation: a large, flat
    object then weighs only by its outline, and faint texture (stars, the moon) counts."""
    mean = ndimage.uniform_filter(g, size, mode="reflect")
    var = ndimage.uniform_filter(g * g, size, mode="reflect") - mean * mean
    return (g - mean) / np.sqrt(np.maximum(var, 0.0) + eps * eps)


@functools.lru_cache(maxsize=64)
def _photo_template(name: str, resolution: int):
    """The photo at the frame scale (a frame's window = resolution pixels), contrast-
    normalised: the image, its FFT and the norm of every window, for correlation."""
    from PIL import Image

    big = domain._photo_at(name, resolution)  # what the generator samples, at 2x
    w, h = big.width // 2, big.height // 2  # exactly half of the region kept: offsets map by 2
    photo = np.asarray(big.resize((w, h), Image.BILINEAR, box=(0, 0, 2 * w, 2 * h)), np.float32) / 255.0
    g = _local_contrast(_gray(photo).astype(np.float64))
    n = resolution
    c = np.pad((g * g).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    norms = np.sqrt(np.maximum(c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n], 1e-12))
    return g, np.fft.rfft2(g), norms


def _match(name: str, gray_frame: np.ndarray) -> tuple[float, float, float]:
    """(x, y, score): where the frame's window lies in the photo (frame-scale pixels, sub-
    pixel) and the normalised correlation of the contrast-normalised images there."""
    g, g_fft, norms = _photo_template(name, gray_frame.shape[0])
    f = _local_contrast(gray_frame.astype(np.float64))
    f -= f.mean()
    norm = np.sqrt((f * f).sum())
    if norm < 1e-6:
        return 0.0, 0.0, 0.0
    corr = np.fft.irfft2(g_fft * np.conj(np.fft.rfft2(f, s=g.shape)), s=g.shape)
    valid = corr[: norms.shape[0], : norms.shape[1]] / (norms * norm)
    iy, ix = np.unravel_index(int(np.argmax(valid)), valid.shape)
    h, w = valid.shape
    dy = _parabolic(valid[iy - 1, ix], valid[iy, ix], valid[iy + 1, ix]) if 0 < iy < h - 1 else 0.0
    dx = _parabolic(valid[iy, ix - 1], valid[iy, ix], valid[iy, ix + 1]) if 0 < ix < w - 1 else 0.0
    return ix + dx, iy + dy, float(valid[iy, ix])


def _photo_frames(name: str, window: np.ndarray, resolution: int) -> np.ndarray:
    """The photo's windows at the given offsets (frame-scale pixels), drawn as the generator does."""
    from PIL import Image

    big, side = domain._photo_at(name, resolution), 2 * resolution
    out = np.empty((len(window), resolution, resolution, 3), np.float32)
    for i, (x, y) in enumerate(window):
        box = (2 * x, 2 * y, 2 * x + side, 2 * y + side)
        out[i] = np.asarray(big.resize((resolution, resolution), Image.BILINEAR, box=box), np.float32) / 255.0
    return out


def _soften_like(video: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """The rendered photo blurred as much as the video is (a generated or re-encoded frame is
    softer than the photo): the Gaussian sigma of PHOTO_BLURS that best explains the frames,
    by the median absolute difference (the object does not move the median)."""
    probes = sorted({0, len(video) - 1})

    def misfit(sigma: float) -> float:
        soft = ndimage.gaussian_filter(photo[probes], (0, sigma, sigma, 0), mode="nearest") if sigma else photo[probes]
        return float(np.median(np.abs(video[probes] - soft)))

    sigma = min(PHOTO_BLURS, key=misfit)
    return ndimage.gaussian_filter(photo, (0, sigma, sigma, 0), mode="nearest") if sigma else photo


def _nearest_flat_name(color: np.ndarray) -> str:
    named = {"black": (0, 0, 0), **domain.FLAT_COLORS}
    dist = {k: float(np.abs(color - np.asarray(v) / 255.0).max()) for k, v in named.items()}
    best = min(dist, key=dist.get)
    return best if dist[best] <= FLAT_NAME_DISTANCE else "flat"


def _flat(color: np.ndarray, shape: tuple[int, ...]) -> Background:
    frames = np.broadcast_to(color.astype(np.float32), shape).copy()
    return Background("flat", _nearest_flat_name(color), frames, np.zeros((shape[0], 2)))


def estimate_background(video: np.ndarray) -> Background:
    """The background of every frame (see the module docstring, step 1)."""
    t, n = video.shape[0], video.shape[1]
    median = np.median(video, axis=0)
    border = np.concatenate([median[:2].reshape(-1, 3), median[-2:].reshape(-1, 3),
                             median[:, :2].reshape(-1, 3), median[:, -2:].reshape(-1, 3)])
    color = np.median(border, axis=0)
    deviation = np.abs(border - color).max(axis=1)
    if deviation.max() < FLAT_BORDER / 2:  # plainly flat (a photo of deep space has stars on its border)
        return _flat(color, video.shape)
    gray = _gray(video)
    # the object hides part of the photo: the best of a few views (the median frame hides it least
    # when it moves, the first or last when it zooms)
    probes = [_gray(median), *(gray[i] for i in sorted({0, t - 1}))]
    best_name, best_ncc = None, -1.0
    for name in domain.PHOTOS:
        ncc = max(_match(name, g)[2] for g in probes)
        if ncc > best_ncc:
            best_name, best_ncc = name, ncc
    if best_ncc >= PHOTO_MATCH:
        window = np.array([_match(best_name, g)[:2] for g in gray])
        return Background("photo", best_name, _soften_like(video, _photo_frames(best_name, window, n)), window)
    if np.percentile(deviation, 90) < FLAT_BORDER:
        return _flat(color, video.shape)
    # unknown texture: align frames by their global shift, median, shift back
    shifts = np.zeros((t, 2))
    for i in range(1, t):
        shifts[i] = shifts[i - 1] + np.array(phase_shift(gray[i - 1], gray[i]))
    aligned = np.stack([ndimage.shift(video[i], (-shifts[i, 1], -shifts[i, 0], 0), order=1, mode="nearest")
                        for i in range(t)])
    still = np.median(aligned, axis=0)
    frames = np.stack([ndimage.shift(still, (shifts[i, 1], shifts[i, 0], 0), order=1, mode="nearest")
                       for i in range(t)])
    return Background("median", "unknown", frames.astype(np.float32), -shifts)


# -- the object -------------------------------------------------------------------------------
def _object_mask(difference: np.ndarray) -> np.ndarray:
    """Largest blob above MASK_THRESHOLD; parts a pixel apart count as one blob."""
    mask = difference > MASK_THRESHOLD
    labels, n = ndimage.label(ndimage.binary_dilation(mask), structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return mask & (labels == 1 + int(np.argmax(sizes)))


@functools.lru_cache(maxsize=None)
def _alpha_box(name: str) -> tuple[float, float, float, float]:
    """The glyph's alpha box as fractions of the sprite's square side: x0, y0, x1, y1."""
    image, side, margin = domain.sprite_image(name, 0)
    alpha = np.asarray(image)[..., 3] > 96
    ys, xs = np.nonzero(alpha)
    return ((xs.min() - margin) / side, (ys.min() - margin) / side,
            (xs.max() + 1 - margin) / side, (ys.max() + 1 - margin) / side)


def _fit_error(frame: np.ndarray, background: np.ndarray, name: str, box: tuple[int, int, int, int],
               nudge: tuple[float, float, float] = (0.0, 0.0, 1.0), blur: float = 0.0) -> float:
    """Mean |frame - sprite drawn over the background| over the object's box (grown by 2
    pixels), the sprite fitted to the box (its own alpha box on the object's), moved by
    ``nudge`` (dx, dy pixels, size factor) and blurred by a Gaussian of ``blur`` pixels (a
    generated frame is softer than a rendered one)."""
    x0, y0, x1, y1 = box  # pixel extent, end exclusive
    fx0, fy0, fx1, fy1 = _alpha_box(name)
    side = 0.5 * ((x1 - x0) / (fx1 - fx0) + (y1 - y0) / (fy1 - fy0)) * nudge[2]
    cx = 0.5 * (x0 + x1) - side * (0.5 * (fx0 + fx1) - 0.5) + nudge[0]
    cy = 0.5 * (y0 + y1) - side * (0.5 * (fy0 + fy1) - 0.5) + nudge[1]
    n, pad = frame.shape[0], 2 + int(np.ceil(2 * blur))  # drawn wider than compared: the blur reads past the box
    ya, yb, xa, xb = max(y0 - pad, 0), min(y1 + pad, n), max(x0 - pad, 0), min(x1 + pad, n)
    drawn = background[ya:yb, xa:xb].copy()
    domain.composite(drawn, name, cx - xa, cy - ya, side)
    if blur > 0:
        drawn = ndimage.gaussian_filter(drawn, (blur, blur, 0), mode="nearest")
    inner = (slice(max(y0 - 2, 0) - ya, min(y1 + 2, n) - ya), slice(max(x0 - 2, 0) - xa, min(x1 + 2, n) - xa))
    return float(np.abs(drawn[inner] - frame[ya:yb, xa:xb][inner]).mean())


# the search around a box fit: half-pixel moves, sizes (a soft frame's object box is too big)
_NUDGES = ((0.0, 0.0, 1.0), (-0.5, 0.0, 1.0), (0.5, 0.0, 1.0), (0.0, -0.5, 1.0), (0.0, 0.5, 1.0),
           (0.0, 0.0, 0.94), (0.0, 0.0, 1.06), (0.0, 0.0, 0.88))
_BLURS = (0.0, 0.6, 1.2, 1.8)  # Gaussian sigmas tried on the best candidates, pixels
_REFINED = 10  # candidates refined (nudges and blurs) after the first ranking


def identify(video: np.ndarray, background: Background, masks: np.ndarray,
             candidates: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """Vocabulary sprites ranked by how well each, drawn over the background, fitted to the
    object's box and blurred, reproduces the frame where the object is largest (sharp and
    softened, the better of the two); the best ``_REFINED`` then get their best nudge and
    blur on that frame, and are judged with it on up to IDENTITY_FRAMES frames. Returns
    (name, mean error) best first."""
    names = list(candidates or domain.SPRITES)
    n = video.shape[1]
    areas = masks.sum(axis=(1, 2)).astype(float)
    views: list[tuple[int, tuple[int, int, int, int]]] = []
    for i in np.argsort(-areas, kind="stable"):
        if areas[i] < 4:
            break
        ys, xs = np.nonzero(masks[i])
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        if min(box[:2]) > 0 and max(box[2:]) < n:  # prefer an object not cut by the frame's edge
            views.append((int(i), box))
        if len(views) == IDENTITY_FRAMES:
            break
    if not views:
        return []

    def error(name: str, view: tuple[int, tuple[int, int, int, int]], nudge=(0.0, 0.0, 1.0), blur=0.0) -> float:
        i, box = view
        return _fit_error(video[i], background.frames[i], name, box, nudge, blur)

    errors = {name: min(error(name, views[0]), error(name, views[0], (0.0, 0.0, 0.94), 1.0)) for name in names}
    ranked = sorted(errors, key=errors.get)
    for name in ranked[:_REFINED]:  # the blur first (at two sizes), then the nudges at that blur
        _, size, blur = min((error(name, views[0], (0.0, 0.0, size), blur), size, blur)
                            for blur in _BLURS for size in (1.0, 0.94))
        first, nudge = min((error(name, views[0], (dx, dy, size * s), blur), (dx, dy, size * s))
                           for dx, dy, s in _NUDGES)
        errors[name] = float(np.mean([first, *(error(name, v, (0.0, 0.0, nudge[2]), blur) for v in views[1:])]))
    top = sorted(ranked[:_REFINED], key=errors.get)
    return [(k, errors[k]) for k in top] + [(k, errors[k]) for k in ranked[_REFINED:]]


# -- motion -----------------------------------------------------------------------------------
def _line(values: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    """Slope of a least-squares line and its R^2 (1 for a constant track)."""
    slope, intercept = np.polyfit(idx, values, 1)
    residual = values - (slope * idx + intercept)
    total = ((values - values.mean()) ** 2).sum()
    return float(slope), float(1.0 - (residual ** 2).sum() / total) if total > 1e-12 else 1.0


def classify_motion(centroids: np.ndarray, sizes: np.ndarray) -> tuple[str, float, float]:
    """(motion, mean displacement px/frame, relative size change) from the object's track."""
    idx = np.nonzero(~np.isnan(centroids[:, 0]))[0]
    if len(idx) < 2:
        return "none", 0.0, 0.0
    span = idx[-1] - idx[0]
    sx, rx = _line(centroids[idx, 0], idx.astype(float))
    sy, ry = _line(centroids[idx, 1], idx.astype(float))
    ss, rs = _line(sizes[idx], idx.astype(float))
    travel, growth = np.hypot(sx, sy) * span, ss * span
    zoom = float(growth / max(sizes[idx].mean(), 1e-6))
    displacement = float(np.hypot(sx, sy))
    if abs(zoom) >= MIN_ZOOM and abs(growth) > 0.5 * travel:
        return ("erratic" if rs < MIN_FIT else "zoom in" if zoom > 0 else "zoom out"), displacement, zoom
    if travel < MIN_TRAVEL_PX:
        return "none", displacement, zoom
    horizontal = abs(sx) >= abs(sy)
    if (rx if horizontal else ry) < MIN_FIT:
        return "erratic", displacement, zoom
    return (("right" if sx > 0 else "left") if horizontal else ("down" if sy > 0 else "up")), displacement, zoom


def classify_pan(window: np.ndarray) -> tuple[str, float]:
    """(pan, mean window displacement px/frame) from the view's path over the background."""
    t = len(window)
    if t < 2:
        return "none", 0.0
    idx = np.arange(t, dtype=float)
    sx, rx = _line(window[:, 0], idx)
    sy, ry = _line(window[:, 1], idx)
    speed = float(np.hypot(sx, sy))
    if speed * (t - 1) < MIN_TRAVEL_PX:
        return "none", speed
    horizontal = abs(sx) >= abs(sy)
    if (rx if horizontal else ry) < MIN_FIT:
        return "erratic", speed
    return ("pan " + (("right" if sx > 0 else "left") if horizontal else ("down" if sy > 0 else "up"))), speed


def analyze_video(frames: np.ndarray, identify_sprite: bool = True) -> SpriteAnalysis:
    """What a video shows (the module docstring's steps); ``identify_sprite=False`` skips
    naming the sprite (motion and pan only, about three times faster)."""
    video = _as_float_frames(frames)
    t, n = video.shape[:2]
    background = estimate_background(video)
    difference = np.abs(video - background.frames).max(axis=-1)
    masks = np.stack([_object_mask(d) for d in difference])
    centroids, sizes, colors = np.full((t, 2), np.nan), np.full(t, np.nan), np.full((t, 3), np.nan)
    ys, xs = np.mgrid[0:n, 0:n] + 0.5
    for i in range(t):
        if masks[i].sum() < 3:
            continue
        w = difference[i] * ndimage.binary_dilation(masks[i])
        centroids[i] = ((w * xs).sum() / w.sum(), (w * ys).sum() / w.sum())
        sizes[i] = np.sqrt(masks[i].sum())
        colors[i] = video[i][masks[i]].mean(axis=0)
    found = ~np.isnan(sizes)
    motion, displacement, zoom = classify_motion(centroids, sizes)
    pan, pan_speed = ("none", 0.0) if background.kind == "flat" else classify_pan(background.window)
    ranked = identify(video, background, masks) if identify_sprite and found.any() else []
    jitter = flicker = 0.0
    idx = np.nonzero(found)[0]
    if len(idx) >= 3:
        track = centroids[idx]
        jitter = float(np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=1).mean())
    if len(idx) >= 2:
        flicker = float(np.abs(np.diff(colors[idx], axis=0)).mean())
    return SpriteAnalysis(sprite=ranked[0][0] if ranked else None, top5=[k for k, _ in ranked[:5]], motion=motion,
                          pan=pan, background=background.name, displacement=displacement, zoom=zoom,
                          pan_speed=pan_speed, jitter=jitter, flicker=flicker, object_found=float(found.mean()),
                          errors=[e for _, e in ranked[:5]], centroids=centroids, sizes=sizes,
                          window=background.window)


def agrees(analysis: SpriteAnalysis, expected: domain.SpritePrompt) -> dict[str, bool | None]:
    """Per attribute, whether the analysis shows what was asked (``expected``: the domain's
    ``parse_prompt`` of the prompt; None: not asked). A pan
    prompt asks for the pan (the object holds still in the frame); any other motion for the
    object's motion."""
    out: dict[str, bool | None] = {"sprite": None, "top5": None, "motion": None, "pan": None}
    if expected.sprite:
        out["sprite"] = analysis.sprite == expected.sprite
        out["top5"] = expected.sprite in analysis.top5
    if expected.motion in domain.PANS:
        out["pan"] = analysis.pan == expected.motion
    elif expected.motion:
        out["motion"] = analysis.motion == expected.motion
    return out


def score(analyses: Sequence[SpriteAnalysis], expected: Sequence[domain.SpritePrompt]) -> dict[str, float]:
    """Accuracies over the items where each attribute is asked: sprite (top-1), top5, motion
    (object motions), pan (camera pans); mean jitter, flicker and displacement."""
    if len(analyses) != len(expected):
        raise ValueError(f"{len(analyses)} analyses but {len(expected)} expectations")
    checks = [agrees(a, e) for a, e in zip(analyses, expected)]
    out: dict[str, float] = {"n": float(len(analyses))}
    for key in ("sprite", "top5", "motion", "pan"):
        values = [c[key] for c in checks if c[key] is not None]
        out[f"{key}_acc"] = float(np.mean(values)) if values else float("nan")
        out[f"{key}_n"] = float(len(values))
    for key in ("jitter", "flicker", "displacement"):
        out[f"mean_{key}"] = float(np.mean([getattr(a, key) for a in analyses])) if analyses else float("nan")
    return out


def check_on_rendered_clips(clips: int = 200, seed: int = 0, blur: float = 0.0, noise: float = 0.0,
                            resolution: int = 64) -> dict[str, float]:
    """The analyzer on the domain's own clips (all splits, fps 4/8/16 in turn), optionally
    blurred and noised as a generated clip would be, and on three corruptions of the same
    clips: frames out of order, another sprite in the object's place, a still clip. Returns
    accuracies (sprite, top5, motion, pan, background) and the share of corrupted clips the
    analysis disagrees with (``*_disagree``)."""
    import dataclasses

    rng = np.random.default_rng(seed)
    names = list(domain.SPRITES)
    hits: dict[str, list[bool]] = {k: [] for k in ("sprite", "top5", "motion", "pan", "background", "shuffled_disagree",
                                                    "replaced_disagree", "still_disagree")}
    for i in range(clips):
        spec = domain.sample_spec(rng, "all")
        fps = (4.0, 8.0, 16.0)[i % 3]

        def render(s: domain.SpriteClipSpec) -> np.ndarray:
            clip = domain.render_clip(s, 16, fps, resolution).astype(np.float32) / 255.0
            if blur:
                clip = ndimage.gaussian_filter(clip, (0, blur, blur, 0))
            return np.clip(clip + rng.normal(0.0, noise, clip.shape), 0, 1) if noise else clip

        clip, wanted = render(spec), domain.parse_prompt(spec.caption)
        key = "pan" if spec.motion in domain.PANS else "motion"
        analysis = analyze_video(clip)
        for attr, ok in agrees(analysis, wanted).items():
            if ok is not None:
                hits[attr].append(ok)
        hits["background"].append(analysis.background == spec.background)
        order = rng.permutation(len(clip))
        hits["shuffled_disagree"].append(not agrees(analyze_video(clip[order], identify_sprite=False), wanted)[key])
        other = names[(names.index(spec.sprite) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        hits["replaced_disagree"].append(not agrees(analyze_video(render(dataclasses.replace(spec, sprite=other))),
                                                    wanted)["sprite"])
        still = np.repeat(clip[:1], len(clip), axis=0)
        hits["still_disagree"].append(not agrees(analyze_video(still, identify_sprite=False), wanted)[key])
    return {**{k: float(np.mean(v)) for k, v in hits.items()}, **{f"{k}_n": len(v) for k, v in hits.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m magicvideo.analyzers.sprites``: the analyzer checked on rendered clips."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m magicvideo.analyzers.sprites", description=main.__doc__)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blur", type=float, default=0.0, help="Gaussian sigma in pixels applied to every frame")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma, in [0, 1] units")
    parser.add_argument("--out", default=None, help="also write the figures and the settings to this .json file")
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(".json"):
        parser.error(f"--out {args.out}: must be a .json file")
    start = time.perf_counter()
    report = check_on_rendered_clips(args.clips, args.seed, args.blur, args.noise)
    seconds = time.perf_counter() - start
    for key in ("sprite", "top5", "motion", "pan", "background", "shuffled_disagree", "replaced_disagree",
                "still_disagree"):
        print(f"{key:<20} {report[key]:6.1%}  of {report[key + '_n']}")
    print(f"{seconds / args.clips:.2f} s per clip: 4 analyses of 16 frames at 64x64, 2 of them naming the sprite")
    if args.out is not None:
        import json

        from ..models.io import atomic_file

        settings = {"clips": args.clips, "seed": args.seed, "blur": args.blur, "noise": args.noise}
        with atomic_file(args.out) as tmp:
            tmp.write_text(json.dumps({"settings": settings, **report}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
