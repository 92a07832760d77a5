"""The "shapes" domain: procedural text-video clips that train and measure the default.

One filled, anti-aliased object (8 colors x 3 shapes) moves left/right/up/down on black, at
a speed in *frame widths per second*, so a clip sampled at a lower fps moves further per
frame: exactly what the FPS embedding must learn. Every clip is a pure function of a seed.

Layout: ``render_clip`` returns uint8 ``(T, H, W, 3)``; ``ShapesDataset`` items hold
``video`` as float ``(3, F, H, W)`` in [-1, 1] (the models' layout).

``HELD_OUT`` lists (color, shape, direction) combinations that no training split ever
shows; prompts for them measure compositional generalisation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
    "orange": (255, 128, 0),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
VELOCITY = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}  # y grows downward

# Never trained on; each color once, each shape and direction at least twice.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "triangle", "up"),
    ("green", "circle", "left"),
    ("blue", "square", "down"),
    ("yellow", "triangle", "right"),
    ("magenta", "circle", "down"),
    ("cyan", "square", "up"),
    ("white", "triangle", "left"),
    ("orange", "circle", "right"),
)
ALL_COMBOS = tuple((c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS)
SEEN = tuple(combo for combo in ALL_COMBOS if combo not in HELD_OUT)

SIZE_RANGE = (0.12, 0.20)  # bounding-box side, fraction of the frame side
SPEED_RANGE = (0.08, 0.16)  # frame widths per second
MAX_DURATION_S = 4.0  # longest clip that keeps the object inside the frame (16 frames at 4 fps)
SUPERSAMPLE = 4  # anti-aliasing: subsamples per pixel side

_DIRECTION_PHRASES = {
    "moving": {"left": "left", "right": "right", "up": "up", "down": "down"},
    "adverb": {"left": "leftward", "right": "rightward", "up": "upward", "down": "downward"},
    "drift": {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward"},
}
TEMPLATES = (
    ("a {color} {shape} moving {moving}", "moving"),
    ("a {shape}, {color}, sliding {adverb}", "adverb"),
    ("a {color} {shape} drifting {drift}", "drift"),
    ("{color} {shape} going {moving}", "moving"),
    ("a {color} {shape} travels {moving}", "moving"),
)


@dataclass(frozen=True)
class ClipSpec:
    color: str
    shape: str
    direction: str
    size: float  # bounding-box side, fraction of the frame side
    speed: float  # frame widths per second
    start: tuple[float, float]  # object center at t=0, fractions of the frame (x, y)
    caption: str


@dataclass(frozen=True)
class PromptAttributes:
    color: str | None
    shape: str | None
    direction: str | None


def _check_combo(color: str, shape: str, direction: str) -> None:
    if color not in COLORS:
        raise ValueError(f"unknown color {color!r}; choose one of {list(COLORS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose one of {list(DIRECTIONS)}")


def make_caption(color: str, shape: str, direction: str, rng: np.random.Generator, template: int | None = None) -> str:
    _check_combo(color, shape, direction)
    text, _ = TEMPLATES[rng.integers(len(TEMPLATES)) if template is None else template]
    phrases = {k: v[direction] for k, v in _DIRECTION_PHRASES.items()}
    return text.format(color=color, shape=shape, **phrases)


_SHAPE_WORDS = {"circle": "circle", "disk": "circle", "disc": "circle", "ball": "circle", "dot": "circle",
                "square": "square", "box": "square", "triangle": "triangle"}
_DIRECTION_WORDS = [
    (r"to the left|leftwards?|left", "left"), (r"to the right|rightwards?|right", "right"),
    (r"upwards?|up|rising", "up"), (r"downwards?|down|falling", "down"),
]


def parse_prompt(text: str) -> PromptAttributes:
    """Recover (color, shape, direction) from a caption or simple free text."""
    low = text.lower()
    color = next((c for c in COLORS if re.search(rf"\b{c}\b", low)), None)
    shape = next((s for w, s in _SHAPE_WORDS.items() if re.search(rf"\b{w}s?\b", low)), None)
    direction = next((d for pattern, d in _DIRECTION_WORDS if re.search(rf"\b(?:{pattern})\b", low)), None)
    return PromptAttributes(color, shape, direction)


def spec_for(color: str, shape: str, direction: str, rng: np.random.Generator, template: int | None = None) -> ClipSpec:
    """A random size, speed and start position for a given combination; the start leaves
    room for MAX_DURATION_S seconds of motion inside the frame."""
    _check_combo(color, shape, direction)
    size = float(rng.uniform(*SIZE_RANGE))
    speed = float(rng.uniform(*SPEED_RANGE))
    half, margin, travel = size / 2, 0.02, speed * MAX_DURATION_S
    vx, vy = VELOCITY[direction]
    lo, hi = half + margin, 1 - half - margin

    def along(v: float) -> float:  # start so that start + v * travel stays in [lo, hi]
        return float(rng.uniform(lo, hi - travel)) if v > 0 else float(rng.uniform(lo + travel, hi))

    x = along(vx) if vx else float(rng.uniform(lo, hi))
    y = along(vy) if vy else float(rng.uniform(lo, hi))
    return ClipSpec(color, shape, direction, size, speed, (x, y), make_caption(color, shape, direction, rng, template))


def sample_spec(rng: np.random.Generator, split: str = "train") -> ClipSpec:
    combos = {"train": SEEN, "heldout": HELD_OUT, "all": ALL_COMBOS}.get(split)
    if combos is None:
        raise ValueError(f"unknown split {split!r}; choose train, heldout or all")
    return spec_for(*combos[rng.integers(len(combos))], rng)


def object_center(spec: ClipSpec, t_seconds: float | np.ndarray, resolution: int) -> np.ndarray:
    """Ground-truth centroid (pixels, x then y) of the object's area at time t. For the
    triangle that is a third of the way up from its base, not the bounding-box center."""
    t = np.asarray(t_seconds, dtype=np.float64)
    vx, vy = VELOCITY[spec.direction]
    cx = (spec.start[0] + vx * spec.speed * t) * resolution
    cy = (spec.start[1] + vy * spec.speed * t) * resolution
    if spec.shape == "triangle":
        cy = cy + spec.size * resolution / 6  # centroid: 2/3 of the height below the apex
    return np.stack([cx, cy], axis=-1)


def _coverage(shape: str, cx: np.ndarray, cy: np.ndarray, half: float, resolution: int) -> np.ndarray:
    """Fraction of each pixel the shape covers, (T, H, W), by supersampling."""
    s = SUPERSAMPLE
    grid = (np.arange(resolution * s) + 0.5) / s  # subsample centres in pixel units
    x = grid[None, None, :] - cx[:, None, None]
    y = grid[None, :, None] - cy[:, None, None]
    if shape == "circle":
        inside = x * x + y * y <= half * half
    elif shape == "square":
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    else:  # upward triangle in its bounding square: apex (0, -half), base y = +half
        inside = (y <= half) & (np.abs(x) <= (y + half) / 2)
    t = inside.shape[0]
    return inside.reshape(t, resolution, s, resolution, s).mean(axis=(2, 4))


def render_clip(spec: ClipSpec, num_frames: int, fps: float, resolution: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3): frame i shows the object at time i / fps."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if resolution < 16:
        raise ValueError(f"resolution must be >= 16, got {resolution}")
    if (num_frames - 1) / fps > MAX_DURATION_S + 1e-9:
        raise ValueError(f"{num_frames} frames at {fps} fps last longer than {MAX_DURATION_S} s: "
                         "the object would leave the frame")
    return render_at(spec, np.arange(num_frames) / fps, resolution)


def render_at(spec: ClipSpec, t_seconds: np.ndarray, resolution: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3): the scene at the given times (seconds from the clip's start)."""
    t = np.atleast_1d(np.asarray(t_seconds, dtype=np.float64))
    vx, vy = VELOCITY[spec.direction]
    cx = (spec.start[0] + vx * spec.speed * t) * resolution
    cy = (spec.start[1] + vy * spec.speed * t) * resolution
    cover = _coverage(spec.shape, cx, cy, spec.size * resolution / 2, resolution)
    color = np.asarray(COLORS[spec.color], dtype=np.float64)
    return np.round(cover[..., None] * color).astype(np.uint8)


class ShapesDataset(torch.utils.data.Dataset):
    """Map-style, deterministic: item i is the same clip for the same seed.

    Frame sampling follows the paper: think of a native 16 fps video and a stride from
    {1, 2, 4}; the clip's fps is native / stride. We render directly at that fps."""

    def __init__(self, num_frames: int = 16, resolution: int = 64, fps_choices: tuple[float, ...] = (4.0, 8.0, 16.0),
                 split: str = "train", seed: int = 0, length: int = 10_000):
        if split not in ("train", "heldout", "all"):
            raise ValueError(f"unknown split {split!r}; choose train, heldout or all")
        if not fps_choices or min(fps_choices) <= 0:
            raise ValueError(f"fps_choices must be positive, got {fps_choices}")
        if (num_frames - 1) / min(fps_choices) > MAX_DURATION_S:
            raise ValueError(f"{num_frames} frames at {min(fps_choices)} fps exceed {MAX_DURATION_S} s")
        self.num_frames, self.resolution, self.fps_choices = num_frames, resolution, tuple(fps_choices)
        self.split, self.seed, self.length = split, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        spec = sample_spec(rng, self.split)
        fps = float(self.fps_choices[rng.integers(len(self.fps_choices))])
        frames = render_clip(spec, self.num_frames, fps, self.resolution)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return {"video": video, "caption": spec.caption, "fps": fps,
                "color": spec.color, "shape": spec.shape, "direction": spec.direction}
