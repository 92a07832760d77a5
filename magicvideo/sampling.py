"""What a generation runs with, in dataclasses the CLI can read without importing torch:

* ``SamplingOptions``: a pipeline's sampling defaults (``pipeline.json``'s ``"defaults"``);
* ``RequestSettings``: one request's options with those defaults filled in;
* ``OnProgress``: the progress hook of every generating entry point, ``on_progress(stage,
  step, total)``, and ``count_steps``, which turns it into a sampler's per-step callback.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable

from .config import SCHEDULERS, ProgressStage, Scheduler

MAX_GUIDANCE = 50.0  # far past any useful scale (5 text, 2.5 image); inf or 1e9 turn the video black
MAX_SCHEDULE_STEPS = 100_000  # a noise schedule's num_train_timesteps (1000 is usual)
SEED_LIMIT = 2**64  # torch seeds are 64-bit: a seed plus its window and variation offsets stays below

# on_progress(stage, step, total): called after step `step` (1-based) of the `total` of a stage;
# an exception raised by it stops the generation there and propagates.
OnProgress = Callable[[ProgressStage, int, int], None]
SamplerCallback = Callable[[int, int, Any], None]  # diffusion.sample's callback(i, t, latents)


def check_schedule_length(spec: dict, key: str, source: str) -> int:
    """``spec[key]["num_train_timesteps"]`` (a pipeline.json schedule; 1000 when left out) is an
    integer from 1 to MAX_SCHEDULE_STEPS; the error names the file and the key."""
    schedule = spec.get(key)
    timesteps = schedule.get("num_train_timesteps", 1000) if isinstance(schedule, dict) else 1000
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= MAX_SCHEDULE_STEPS:
        raise ValueError(f"{source}: {key}.num_train_timesteps must be an integer from 1 to {MAX_SCHEDULE_STEPS}, "
                         f"got {timesteps!r}")
    return timesteps


@dataclass(frozen=True)
class SamplingOptions:
    """A pipeline's sampling defaults (``pipeline.json``'s ``"defaults"``): what a request
    runs with where it leaves an option out. The CLI's help quotes these defaults; the
    shipped pipeline's file holds exactly them (a test checks it).

    image_guidance: animate and vary, whose condition is an image embedding (weaker and farther
    from the text tokens the keyframe model was finetuned on than a caption; at the text
    guidance, 5, the extrapolation turns objects into other shapes). Both it and the strengths
    were chosen on rendered sources apart from those of ``magicvideo.evaluation.applications``
    (docs/applications.md)."""

    fps: float = 8.0  # keyframe rate the motion is generated at (the fps embedding's input)
    steps: int = 25  # keyframe denoising steps
    guidance: float = 5.0  # classifier-free guidance scale of a text condition
    scheduler: Scheduler = "dpm"
    interpolation_steps: int = 10  # denoising steps of the interpolation stage
    interpolation_guidance: float = 1.0  # its guidance scale (1: the conditional prediction alone)
    # denoising steps of the super-resolution stage: 2, not the 6 shipped before 2026-12-02, halves the
    # full cascade's time at the same held-out PSNR/SSIM (docs/benchmarks.md, "The cascade")
    sr_steps: int = 2
    sr_noise_level: int = 20  # noise-conditioning augmentation level s of its low-res input
    sr_batch_frames: int = 8  # frames it upscales at a time (memory stays flat in the length)
    sr_consistency_steps: int = 10  # projections making each SR frame agree with its input (0: none)
    image_guidance: float = 2.5  # guidance scale of an image condition (animate, vary)
    vary_strength: float = 0.7  # how far a variation departs from its source, 0-1
    edit_strength: float = 0.7  # noise level an edit restarts from, 0 (the source) - 1 (the prompt alone)

    def __post_init__(self) -> None:
        from .video_io import MAX_FPS, MIN_FPS  # here: the CLI reads this module before numpy is needed

        for name, low in (("steps", 1), ("interpolation_steps", 1), ("sr_steps", 1), ("sr_noise_level", 0),
                          ("sr_batch_frames", 1), ("sr_consistency_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, low, high in (("fps", MIN_FPS, MAX_FPS), ("guidance", 0.0, MAX_GUIDANCE),
                                ("interpolation_guidance", 0.0, MAX_GUIDANCE), ("image_guidance", 0.0, MAX_GUIDANCE),
                                ("vary_strength", 0.0, 1.0), ("edit_strength", 0.0, 1.0)):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if not number or not low <= value <= high:
                raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")
            object.__setattr__(self, name, float(value))  # 8 in a JSON file is 8.0
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")


@dataclass(frozen=True)
class RequestSettings:
    """What one generation request runs with: the caller's options, the pipeline's
    ``SamplingOptions`` where it gave None (``MagicVideoPipeline`` checks them before any compute)."""

    fps: float  # keyframe rate (the output's, unless interpolation multiplies it)
    steps: int  # keyframe denoising steps
    guidance: float
    scheduler: Scheduler
    interpolate: bool  # run the interpolation stage
    upscale: bool  # run the super-resolution stage


def count_steps(on_progress: OnProgress | None, stage: ProgressStage, total: int,
                callback: SamplerCallback | None = None) -> SamplerCallback | None:
    """A sampler callback that calls ``callback(i, t, latents)`` (if given), then
    ``on_progress(stage, n, total)``, n counting the steps of every sampler run it is handed
    to (a long video's windows, SR's batches of frames)."""
    if on_progress is None:
        return callback
    done = itertools.count(1)

    def step(i: int, t: int, latents: Any) -> None:
        if callback is not None:
            callback(i, t, latents)
        on_progress(stage, next(done), total)

    return step
