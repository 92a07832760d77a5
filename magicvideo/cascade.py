"""The cascade after the keyframes, window by window: keyframe latents -> VideoVAE decode ->
(interpolation, 4x the frames) -> decode -> (super-resolution, 4x the side) -> uint8 frames.

A long video's keyframes come in windows of the keyframe model's ``max_frames``
(``MagicVideoPipeline.generate_latents(by_window=True)``). Each window runs the whole cascade
as soon as it is sampled and its frames are handed on (a writer encodes them before the next
window is sampled), so the time per window and the memory stay flat in the video's length:

* the VideoVAE decodes keyframes and frames with two ``VideoDecoder``s whose key/value caches
  go on from window to window (a frame looks back ``temporal_window`` frames, across windows too);
* interpolation fills the gap before each of the window's new keyframes, the first gap bridging
  from the last keyframe of the window before (its latents and pixels are all that is kept);
* super-resolution upscales the window's new frames.

Seeds: a window's interpolation noise comes from ``seed + first``, ``first`` being the index of
its first new keyframe (the offset its keyframe noise has); super-resolution's from ``seed`` in
every window, so with its shared noise every frame of the video starts from the same noise.
A video of one window is computed exactly as a single pass over all its keyframes. A longer one
differs from such a pass (which ``render`` still makes of latents handed to it whole) in the
interpolation noise after the first window, and, by float rounding only, where decode chunks
and super-resolution batches start (docs/benchmarks.md, "Long videos that stream").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import torch

from .config import ProgressStage, Scheduler
from .sampling import OnProgress
from .video_io import frames_u8

if TYPE_CHECKING:
    from .models.video_vae import VideoDecoder
    from .pipeline import MagicVideoPipeline


@dataclass
class VideoOutput:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float


class FrameChunks:
    """A video's uint8 frames (T, H, W, 3), computed as they are iterated: iterating (once) yields
    chunks (n, H, W, 3), one per keyframe window, as each finishes the cascade. ``shape`` is the
    whole video's, known before any compute (``video_io.write_video`` takes these as they come)."""

    def __init__(self, chunks: Iterator[np.ndarray], shape: tuple[int, int, int, int]):
        self._chunks: Iterator[np.ndarray] | None = chunks
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._chunks is None:
            raise RuntimeError("these frames were already iterated: a stream is computed once")
        chunks, self._chunks = self._chunks, None
        return chunks


@dataclass
class VideoStream:
    """What ``MagicVideoPipeline(..., stream=True)`` returns: frames made window by window."""

    frames: FrameChunks
    fps: float

    def collect(self) -> VideoOutput:
        """Run the stream to its end: every frame in one array (what ``stream=False`` returns)."""
        out = np.empty(self.frames.shape, dtype=np.uint8)  # filled in place: no second copy of the video
        done = 0
        for chunk in self.frames:
            out[done : done + len(chunk)] = chunk
            done += len(chunk)
        assert done == len(out), f"the cascade made {done} frames, {len(out)} were planned"
        return VideoOutput(frames=out, fps=self.fps)


def keyframe_plan(num_frames: int, window: int, context: int) -> list[int]:
    """How many new keyframes each window makes: a first window of up to ``window``, then up to
    ``window - context`` more each, every later window continuing from ``context`` before it."""
    if num_frames > window and not 1 <= context < window:  # else no window would add a keyframe
        raise ValueError(f"context_frames must be between 1 and {window - 1} for a video of more than {window} "
                         f"keyframes, got {context}")
    plan = [min(num_frames, window)]
    while sum(plan) < num_frames:
        plan.append(min(window - context, num_frames - sum(plan)))
    return plan


def window_frames(new_keyframes: int, first_window: bool, interpolate: bool) -> int:
    """Frames a window adds to the output: its keyframes, and with interpolation GAP new frames
    before each of them (the first window's first keyframe has none before it)."""
    from .interpolate import FPS_FACTOR, output_frames

    if not interpolate:
        return new_keyframes
    return output_frames(new_keyframes) if first_window else FPS_FACTOR * new_keyframes


class _StageSteps:
    """``on_progress`` for a stage run once a window, each run counting its steps from 1: the
    steps are numbered on across windows, against the whole video's ``total``."""

    def __init__(self, on_progress: OnProgress | None, stage: ProgressStage, total: int):
        self.on_progress, self.stage, self.total, self.done = on_progress, stage, total, 0

    def relay(self) -> OnProgress | None:
        """The hook to hand the next run of the stage."""
        if self.on_progress is None:
            return None
        start = self.done

        def report(stage: ProgressStage, step: int, total: int) -> None:
            self.done = start + step
            self.on_progress(self.stage, self.done, self.total)

        return report

    def step(self) -> None:
        """One more step of a stage that reports itself (decoding)."""
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.stage, self.done, self.total)


def cascade_stream(pipe: MagicVideoPipeline, windows: Iterable[tuple[int, torch.Tensor]], plan: list[int],
                   fps: float, seed: int, scheduler: Scheduler, interpolate: bool, upscale: bool,
                   progress: bool = False, on_progress: OnProgress | None = None) -> VideoStream:
    """Keyframe latents, window by window -> a ``VideoStream`` of their frames. ``windows``
    yields ``(first, latents)``: the index of the window's first new keyframe and its new
    keyframe latents (1, C, n, h, w), ``n`` as ``plan`` says. Nothing runs until the frames are
    iterated; the stages' settings (``pipe.defaults``) are read now. ``on_progress``:
    "decoding", "interpolation" and "super-resolution" as in ``MagicVideoPipeline.__call__``;
    over several windows they repeat a window at a time, each numbering its steps on from the
    window before, against the whole video's total."""
    from .interpolate import FPS_FACTOR

    frames = [window_frames(n, i == 0, interpolate) for i, n in enumerate(plan)]
    side = pipe.frame_size * (pipe._stage_config("sr").scale if upscale else 1)
    # the stages' settings as they are now: every window runs with these, and the totals count them
    d, sr = pipe.defaults, pipe.sr_settings()
    state = _CascadeState(
        keyframe_decoder=pipe.vae.incremental_decoder(), frame_decoder=pipe.vae.incremental_decoder(),
        interpolation_steps=d.interpolation_steps, interpolation_guidance=d.interpolation_guidance, sr=sr,
        decoding=_StageSteps(on_progress, "decoding", (2 if interpolate else 1) * len(plan)),
        interpolation=_StageSteps(on_progress, "interpolation", d.interpolation_steps * len(plan)),
        super_resolution=_StageSteps(on_progress, "super-resolution",
                                     sr["steps"] * sum(math.ceil(n / sr["batch_frames"]) for n in frames)))
    chunks = _cascade(pipe, state, windows, fps, seed, scheduler, interpolate, upscale, progress)
    return VideoStream(FrameChunks(chunks, (sum(frames), side, side, 3)), fps * FPS_FACTOR if interpolate else fps)


@torch.no_grad()  # on a generator: around every resumption, whoever iterates it
def _cascade(pipe: MagicVideoPipeline, state: _CascadeState, windows: Iterable[tuple[int, torch.Tensor]],
             fps: float, seed: int, scheduler: Scheduler, interpolate: bool, upscale: bool,
             progress: bool) -> Iterator[np.ndarray]:
    for first, keys in windows:
        # a function per window: its float tensors are freed before the frames are handed on
        yield _window(pipe, state, first, keys, fps, seed, scheduler, interpolate, upscale, progress)


@dataclass
class _CascadeState:
    """What one window hands the next (the decoders' caches, the last keyframe, the step counts)
    and the stages' settings, read once when the stream is made, so every window runs with the
    settings its progress totals count."""

    keyframe_decoder: VideoDecoder
    frame_decoder: VideoDecoder
    interpolation_steps: int
    interpolation_guidance: float
    sr: dict[str, int]  # upscale_video's settings (MagicVideoPipeline.sr_settings)
    decoding: _StageSteps
    interpolation: _StageSteps
    super_resolution: _StageSteps
    last: tuple[torch.Tensor, torch.Tensor] | None = None  # last keyframe: latents (1, C, 1, h, w), pixels


def _window(pipe: MagicVideoPipeline, state: _CascadeState, first: int, keys: torch.Tensor, fps: float, seed: int,
            scheduler: Scheduler, interpolate: bool, upscale: bool, progress: bool) -> np.ndarray:
    """One window's new keyframe latents (1, C, n, h, w) -> its new frames, uint8 (m, H, W, 3)."""
    pixels = state.keyframe_decoder.decode(keys)
    state.decoding.step()
    if interpolate:
        from .interpolate import interpolate_latents

        last = state.last
        gaps_keys, gaps_pixels = (keys, pixels) if last is None else \
            (torch.cat([last[0], keys], dim=2), torch.cat([last[1], pixels], dim=2))
        latents = interpolate_latents(pipe.interpolation, gaps_keys, gaps_pixels, pipe.encoder, fps, pipe.schedule,
                                      steps=state.interpolation_steps, guidance=state.interpolation_guidance,
                                      seed=seed + first, scheduler=scheduler, progress=progress,
                                      on_progress=state.interpolation.relay())
        if last is not None:
            latents = latents[:, :, 1:]  # the bridging keyframe went out with the window before
        state.last = keys[:, :, -1:].clone(), pixels[:, :, -1:].clone()
        video = state.frame_decoder.decode(latents)
        state.decoding.step()
    else:
        video = pixels
    out = video[0].transpose(0, 1)  # (T, 3, H, W)
    if upscale:
        from .models.sr_unet import upscale_video

        out = upscale_video(pipe.sr, out, pipe.sr_schedule, seed=seed, progress=progress,
                            on_progress=state.super_resolution.relay(), **state.sr)
    return frames_u8(out)
