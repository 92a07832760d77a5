"""The text-to-video cascade: prompt -> condition tokens -> 16 keyframe latents ->
(interpolation) 61 latents -> VideoVAE decode -> (super-resolution) frames.

A pipeline directory holds one subdirectory per stage and ``pipeline.json`` naming them,
plus the noise schedules the diffusion stages were trained with::

    pipeline.json   {"stages": {"keyframe": "keyframe", "vae": "vae", "encoder": "encoder",
                                "interpolation": "interpolation", "sr": "sr"},
                     "schedule": {...}, "sr_schedule": {...}, "defaults": {...}}
    keyframe/       VideoUNet       (config.json + model.safetensors)
    vae/            VideoVAE
    encoder/        MiniLM + LiT image tower (or a CLIP directory)
    interpolation/  VideoUNet with 2C+1 condition channels   (optional)
    sr/             SRUNet                                    (optional)

``"defaults"`` are the pipeline's ``SamplingOptions`` (magicvideo/sampling.py): what a request
runs with where it leaves an option out. Optional stages run by default when present;
``interpolate=False`` / ``upscale=False`` (CLI: ``--no-interpolate`` / ``--no-upscale``) skip
them. ``from_pretrained`` reads the optional stages' config.json files (their fit with the others
is checked at load) and loads their weights on first use, so a request that skips them does
not wait for them. Every generating entry point takes ``on_progress(stage, step, total)`` (see ``__call__``).

``MagicVideoPipeline.from_pretrained()`` with no path loads the embedded default that ships
inside the package (tiny models made by ``scripts/recipe_shapes.sh``).

One class of ~550 lines: files, request checks, the keyframe windows and the three applications
(animate, vary, edit) share the stages and the checks, and read best together; the cascade after
the keyframes, window by window, is magicvideo/cascade.py.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from .cascade import VideoOutput, VideoStream, cascade_stream, keyframe_plan
from .config import SCHEDULERS, Scheduler, SRUNetConfig, VideoUNetConfig, config_from_dict
from .diffusion import NoiseSchedule, add_noise, guided, sample
from .files import check_json_numbers
from .models import VideoUNet, VideoVAE
from .models.encoders import image_condition
from .sampling import (MAX_GUIDANCE, SEED_LIMIT, OnProgress, RequestSettings, SamplingOptions, check_schedule_length,
                       count_steps)
from .video_io import MAX_FPS, MIN_FPS

if TYPE_CHECKING:  # imported where used: a pipeline without an SR stage, or skipping it, never loads it
    from .models.sr_unet import SRUNet

DEFAULT_PIPELINE = Path(__file__).parent / "weights" / "default"
PIPELINE_FILE = "pipeline.json"
REQUIRED_STAGES = ("keyframe", "vae", "encoder")
OPTIONAL_STAGES = ("interpolation", "sr")
MAX_KEYFRAMES = 1024  # long videos: windows of the model's max_frames, each continuing the last


def _start_step(steps: int, strength: float) -> int:
    """SDEdit: the sampler step a start from latents noised to ``strength`` (0-1) begins at."""
    return steps - int(round(strength * steps))


def _read_stage_config(config_class: type, directory: Path):
    """A model directory's checked config, and that its weights file is a readable safetensors
    file (its header only: the weights are read, and matched to the model, on first use)."""
    from safetensors import SafetensorError, safe_open

    from .models.io import CONFIG_NAME, WEIGHTS_NAME, read_model_config

    config = read_model_config(config_class, directory / CONFIG_NAME)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"{weights}: weights file not found")
    try:
        with safe_open(str(weights), framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{weights}: not a readable safetensors file ({err})") from None
    return config


class MagicVideoPipeline:
    def __init__(self, unet: VideoUNet, vae: VideoVAE, encoder, schedule: NoiseSchedule | None = None,
                 defaults: SamplingOptions | None = None, interpolation: VideoUNet | None = None,
                 sr: SRUNet | None = None, sr_schedule: NoiseSchedule | None = None):
        if defaults is not None and not isinstance(defaults, SamplingOptions):
            raise TypeError(f"defaults must be a SamplingOptions, e.g. SamplingOptions(steps=3), "
                            f"got {type(defaults).__name__}")
        self.unet, self.vae, self.encoder = unet.eval(), vae.eval(), encoder.eval()
        # optional stages: a model, or (from_pretrained) its config and a loader run on first use
        self._optional: dict[str, Any] = {"interpolation": None, "sr": None}
        self._loaders: dict[str, tuple[Any, Callable[[], Any]]] = {}
        self._load_lock = threading.Lock()
        self.interpolation, self.sr = interpolation, sr
        self.schedule = schedule or NoiseSchedule()
        if sr_schedule is None:
            from .models.sr_unet import SR_SCHEDULE
            sr_schedule = SR_SCHEDULE
        self.sr_schedule = sr_schedule
        self.defaults = SamplingOptions() if defaults is None else defaults
        self._check_stages()

    def _stage(self, name: str):
        """Optional stage ``name``'s model, loaded now if from_pretrained deferred it; None if absent."""
        if name in self._loaders:
            with self._load_lock:
                if name in self._loaders:
                    self._optional[name] = self._loaders[name][1]().eval()
                    del self._loaders[name]
        return self._optional[name]

    def _set_stage(self, name: str, model) -> None:
        self._loaders.pop(name, None)
        self._optional[name] = model.eval() if model is not None else None

    @property
    def interpolation(self) -> VideoUNet | None:
        """The interpolation stage or None (from_pretrained loads it on first use)."""
        return self._stage("interpolation")

    @interpolation.setter
    def interpolation(self, model: VideoUNet | None) -> None:
        self._set_stage("interpolation", model)

    @property
    def sr(self) -> SRUNet | None:
        """The super-resolution stage or None (from_pretrained loads it on first use)."""
        return self._stage("sr")

    @sr.setter
    def sr(self, model: SRUNet | None) -> None:
        self._set_stage("sr", model)

    def has_stage(self, name: str) -> bool:
        """Whether the pipeline has optional stage ``name`` ("interpolation", "sr"), loaded or not."""
        return name in self._loaders or self._optional[name] is not None

    def _stage_config(self, name: str):
        """Optional stage ``name``'s config, without loading its weights; None if absent."""
        return self._loaders[name][0] if name in self._loaders else getattr(self._optional[name], "config", None)

    def sr_settings(self) -> dict[str, int]:
        """``upscale_video``'s sampling arguments from the pipeline's defaults."""
        d = self.defaults
        return {"steps": d.sr_steps, "noise_level": d.sr_noise_level, "batch_frames": d.sr_batch_frames,
                "consistency_steps": d.sr_consistency_steps}

    @property
    def frame_size(self) -> int:
        """Side in pixels of the keyframes (before super-resolution)."""
        return self.unet.config.sample_size * self.vae.config.downsample_factor

    def _check_stages(self) -> None:
        """Stages that do not fit together are named before any compute."""
        unet, vae = self.unet, self.vae
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(f"keyframe U-Net expects {unet.config.in_channels} latent channels, "
                             f"the VAE makes {vae.config.latent_channels}")
        if unet.config.cross_attention_dim != self.encoder.dim:
            raise ValueError(f"keyframe U-Net expects {unet.config.cross_attention_dim}-d condition tokens, "
                             f"the encoder gives {self.encoder.dim}")
        interpolation, sr = self._stage_config("interpolation"), self._stage_config("sr")
        if interpolation is not None:
            from .interpolate import check_interpolation_model

            check_interpolation_model(SimpleNamespace(config=interpolation), vae.config.latent_channels,
                                      "interpolation stage")
            if interpolation.cross_attention_dim != self.encoder.dim:
                raise ValueError(f"interpolation stage expects {interpolation.cross_attention_dim}-d "
                                 f"tokens, the encoder gives {self.encoder.dim}")
            if interpolation.sample_size != unet.config.sample_size:
                raise ValueError(f"interpolation stage works on {interpolation.sample_size}px latents, "
                                 f"the keyframe stage makes {unet.config.sample_size}px")
        if sr is not None:
            side = self.frame_size
            multiple = sr.patch * 2 ** (len(sr.block_out_channels) - 1)
            if (side * sr.scale) % multiple:
                raise ValueError(f"sr stage cannot upscale {side}px frames: {side * sr.scale}px is not "
                                 f"a multiple of {multiple}")
            if self.defaults.sr_noise_level >= self.sr_schedule.num_train_timesteps:
                raise ValueError(f"defaults: sr_noise_level {self.defaults.sr_noise_level} is past the sr schedule's "
                                 f"{self.sr_schedule.num_train_timesteps} timesteps")

    # -- files ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "cpu") -> "MagicVideoPipeline":
        from .models.encoders import load_encoder

        path = Path(path) if path is not None else DEFAULT_PIPELINE
        spec_file = path / PIPELINE_FILE
        if not spec_file.is_file():
            hint = " (the shipped default is missing: reinstall, or run scripts/train_default.sh)" \
                if path == DEFAULT_PIPELINE else ""
            raise ValueError(f"{path}: not a pipeline directory, {PIPELINE_FILE} missing{hint}")
        try:
            spec = json.loads(spec_file.read_text())
            stages = spec["stages"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{spec_file}: malformed ({err})") from None
        check_json_numbers(spec, str(spec_file))
        for key in ("schedule", "sr_schedule"):  # before a schedule of that many steps is built
            check_schedule_length(spec, key, str(spec_file))
        try:
            schedules = {k: NoiseSchedule(**spec[k]) for k in ("schedule", "sr_schedule") if k in spec}
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{spec_file}: malformed ({err})") from None
        # fields left out take SamplingOptions' defaults; unknown ones are refused by name
        defaults = config_from_dict(SamplingOptions, spec.get("defaults") or {}, source=f"{spec_file}: defaults")
        for stage in (*REQUIRED_STAGES, *OPTIONAL_STAGES):
            if (stage in REQUIRED_STAGES or stage in stages) and not (path / str(stages.get(stage))).is_dir():
                raise ValueError(f"{path}: pipeline stage {stage!r} is missing")
        unknown = sorted(set(stages) - set(REQUIRED_STAGES) - set(OPTIONAL_STAGES))
        if unknown:
            raise ValueError(f"{spec_file}: unknown stages {unknown}")

        def load(stage: str, loader):
            try:
                return loader(path / stages[stage])
            except ValueError as err:
                raise ValueError(f"pipeline stage {stage!r}: {err}") from None

        def load_sr(directory: Path):
            from .models.sr_unet import SRUNet

            return SRUNet.from_pretrained(directory, device=device)

        # optional stages: config.json read and checked now (compatibility is named at load time),
        # weights loaded on first use, so a request that skips a stage never pays for it
        deferred = {}
        for stage, config_class, loader in (
                ("interpolation", VideoUNetConfig, lambda d: VideoUNet.from_pretrained(d, device=device)),
                ("sr", SRUNetConfig, load_sr)):
            if stage in stages:
                config = load(stage, lambda d: _read_stage_config(config_class, d))
                deferred[stage] = (config, lambda stage=stage, loader=loader: load(stage, loader))
        pipe = cls(load("keyframe", lambda d: VideoUNet.from_pretrained(d, device=device)),
                   load("vae", lambda d: VideoVAE.from_pretrained(d, device=device)),
                   load("encoder", load_encoder), schedules.get("schedule"), defaults,
                   sr_schedule=schedules.get("sr_schedule"))
        pipe._loaders.update(deferred)
        pipe._check_stages()
        return pipe

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "keyframe")
        self.vae.save_pretrained(path / "vae")
        self.encoder.save_pretrained(path / "encoder")
        stages = {name: name for name in REQUIRED_STAGES}
        for name, model in (("interpolation", self.interpolation), ("sr", self.sr)):
            if model is not None:
                model.save_pretrained(path / name)
                stages[name] = name
        spec = {"stages": stages, "schedule": dataclasses.asdict(self.schedule),
                "sr_schedule": dataclasses.asdict(self.sr_schedule), "defaults": dataclasses.asdict(self.defaults)}
        (path / PIPELINE_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        return path

    # -- generation -----------------------------------------------------------------------
    def check_options(self, prompt: str, num_frames: int, fps: float, steps: int, guidance: float,
                      scheduler: str, interpolate: bool = False, upscale: bool = False,
                      context_frames: int | None = None, seed: int = 0, variations: int = 1) -> None:
        """Everything that can be wrong with a request, before any compute. ``seed``: the
        request's; windows of a long video and ``variations`` (vary's n) add their offsets to it."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt is empty")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a finite number > 0, got {fps}")
        window = self.unet.config.max_frames
        if not 1 <= num_frames <= MAX_KEYFRAMES:
            raise ValueError(f"num_frames must be between 1 and {MAX_KEYFRAMES} (the model makes {window} at a time, "
                             f"longer videos in windows), got {num_frames}")
        if context_frames is not None and not 1 <= context_frames < window:
            raise ValueError(f"context_frames must be between 1 and {window - 1}, got {context_frames}")
        timesteps = self.schedule.num_train_timesteps
        if not 1 <= steps <= timesteps:
            raise ValueError(f"steps must be between 1 and {timesteps} (the noise schedule's length), got {steps}")
        if not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
            raise ValueError(f"guidance must be a finite number from 0 to {MAX_GUIDANCE:g}, got {guidance}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        last = seed + (variations - 1) + (num_frames - 1)  # vary adds its index, a window its first frame
        if last >= SEED_LIMIT:
            raise ValueError(f"seed must be below 2**64 - {last - seed + 1} here (windows and variations add "
                             f"up to {last - seed} to it), got {seed}")
        if interpolate and not self.has_stage("interpolation"):
            raise ValueError("this pipeline has no 'interpolation' stage (skip it with interpolate=False)")
        if interpolate and num_frames < 2:
            raise ValueError("interpolation needs at least 2 keyframes")
        if upscale and not self.has_stage("sr"):
            raise ValueError("this pipeline has no 'sr' stage (skip it with upscale=False)")
        from .interpolate import FPS_FACTOR

        out = fps * FPS_FACTOR if interpolate else fps
        if not MIN_FPS <= out <= MAX_FPS:
            how = f" ({fps:g} fps x {FPS_FACTOR} by the interpolation stage)" if interpolate else ""
            raise ValueError(f"fps: the output would play at {out:g} fps{how}; a video plays {MIN_FPS:g} to "
                             f"{MAX_FPS:g} fps{' (or skip interpolation)' if interpolate else ''}")

    def resolve(self, prompt: str, num_frames: int, fps: float | None, steps: int | None, guidance: float | None,
                 scheduler: Scheduler | None, interpolate: bool | None, upscale: bool | None,
                 context_frames: int | None = None, default_guidance: float | None = None, seed: int = 0,
                 variations: int = 1) -> RequestSettings:
        """A request's options with the pipeline's defaults filled in, checked before any compute
        (what ``__call__``, ``animate``, ``vary`` and ``edit`` run with; a server checks a job so).
        ``default_guidance``: this kind of request's (None: ``defaults.guidance``, the text's;
        animate and vary use ``defaults.image_guidance``). ``seed``, ``variations``: as in ``check_options``."""
        d = self.defaults
        settings = RequestSettings(
            fps=float(d.fps if fps is None else fps),
            steps=int(d.steps if steps is None else steps),
            guidance=float((d.guidance if default_guidance is None else default_guidance) if guidance is None
                           else guidance),
            scheduler=d.scheduler if scheduler is None else scheduler,
            interpolate=self.has_stage("interpolation") and num_frames >= 2 if interpolate is None else interpolate,
            upscale=self.has_stage("sr") if upscale is None else upscale)
        self.check_options(prompt, num_frames, settings.fps, settings.steps, settings.guidance, settings.scheduler,
                           settings.interpolate, settings.upscale, context_frames, seed, variations)
        return settings

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        num_frames: int = 16,
        fps: float | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        scheduler: Scheduler | None = None,
        progress: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        interpolate: bool | None = None,
        upscale: bool | None = None,
        context_frames: int | None = None,
        on_progress: OnProgress | None = None,
        stream: bool = False,
    ) -> VideoOutput | VideoStream:
        """``num_frames`` keyframes at ``fps``; with interpolation the output has
        ``num_frames + 3 * (num_frames - 1)`` frames at 4x the fps, with super-resolution 4x
        the side. ``fps``, ``steps``, ``guidance``, ``scheduler``: None = the pipeline's
        ``defaults`` (a ``SamplingOptions``). ``interpolate`` / ``upscale``: None = run the stage
        when the pipeline has it. More keyframes than the model's ``max_frames`` make a long
        video: windows of ``max_frames``, each continuing from the last ``context_frames``
        (default half a window) of the one before; each window goes through the whole cascade
        before the next is sampled (magicvideo/cascade.py), so besides the finished frames (not
        kept either with ``stream=True``) memory stays flat in the length.

        ``stream=True`` returns a ``VideoStream`` at once (the request checked and the prompt
        encoded, no frame computed; the stages' settings in ``defaults`` are read then):
        iterating its ``frames`` computes the video, yielding each window's frames (uint8 (n, H,
        W, 3)) as they are done; ``write_video`` writes them as they come. Its frames, put
        together, are what ``stream=False`` returns.

        ``callback(i, t, latents)``: after each keyframe denoising step. ``on_progress(stage,
        step, total)``: after step ``step`` (1-based) of the ``total`` of each stage, in order
        "keyframes" (every denoising step, all windows counted together), "decoding" (the
        VideoVAE: 1 of 1, or with interpolation 1 of 2 for the keyframes, whose pixels
        condition it, then 2 of 2 for every frame), "interpolation" (every denoising step) and
        "super-resolution" (every denoising step of every batch of frames). A long video runs
        these stages once a window, in that order; each stage's steps are numbered on across
        windows, against the whole video's total (decoding: 1 or 2 a window). An exception
        raised by it stops the generation there and propagates (a server cancels a job so)."""
        r = self.resolve(prompt, num_frames, fps, steps, guidance, scheduler, interpolate, upscale, context_frames,
                         seed=seed)
        cond = self.encoder.encode_text([prompt])
        return self._video(cond, num_frames, r, seed, progress, stream, on_progress, callback,
                           context_frames=context_frames)

    def render(self, latents: torch.Tensor, fps: float, seed: int = 0, scheduler: Scheduler = "dpm",
               interpolate: bool = False, upscale: bool = False, progress: bool = False,
               on_progress: OnProgress | None = None) -> VideoOutput:
        """Keyframe latents (1, C, F, h, w) -> frames: VideoVAE decode, then the optional
        interpolation (4x the frames and the fps) and super-resolution stages, all keyframes in
        one pass (the cascade of magicvideo/cascade.py with a single window). ``on_progress``:
        its "decoding", "interpolation" and "super-resolution" stages, as in ``__call__``."""
        return cascade_stream(self, [(0, latents)], [latents.shape[2]], fps, seed, scheduler, interpolate, upscale,
                              progress, on_progress).collect()

    def _video(self, cond: torch.Tensor, num_frames: int, r: RequestSettings, seed: int, progress: bool,
               stream: bool, on_progress: OnProgress | None,
               callback: Callable[[int, int, torch.Tensor], None] | None = None, known: torch.Tensor | None = None,
               context_frames: int | None = None) -> VideoOutput | VideoStream:
        """A checked request's keyframe windows through the cascade: the stream, or (``stream``
        False) the whole video (``__call__`` and ``animate``)."""
        plan = keyframe_plan(num_frames, self.unet.config.max_frames, self._context(context_frames))
        windows = self.generate_latents(cond, num_frames, r.fps, r.steps, r.guidance, seed, r.scheduler, progress,
                                        callback, known=known, context_frames=context_frames,
                                        on_progress=on_progress, by_window=True)
        video = cascade_stream(self, windows, plan, r.fps, seed, r.scheduler, r.interpolate, r.upscale, progress,
                               on_progress)
        return video if stream else video.collect()

    def _context(self, context_frames: int | None) -> int:
        """Keyframes a window of a long video continues from (None: half a window)."""
        return self.unet.config.max_frames // 2 if context_frames is None else context_frames

    def generate_latents(self, cond: torch.Tensor, num_frames: int, fps: float, steps: int, guidance: float,
                         seed: int, scheduler: Scheduler, progress: bool = False,
                         callback: Callable[[int, int, torch.Tensor], None] | None = None,
                         init: torch.Tensor | None = None, strength: float = 1.0,
                         known: torch.Tensor | None = None, context_frames: int | None = None,
                         on_progress: OnProgress | None = None,
                         by_window: bool = False) -> torch.Tensor | Iterator[tuple[int, torch.Tensor]]:
        """Keyframe latents (B, C, F, h, w) for condition tokens ``cond`` (B, L, D).

        ``init`` (B, C, F, h, w) with ``strength`` in [0, 1]: SDEdit, start from ``init`` noised
        to that fraction of the schedule with one noise image shared by every frame (0 returns
        ``init``, 1 ignores it). ``known`` (B, C, K, h, w): clean latents the first K frames are
        held to. Above ``max_frames``: a long video in windows (see ``__call__``); with ``init``
        each window edits its own frames of it, continuing from the edited frames before.
        ``callback(i, t, latents)`` after every denoising step of every window;
        ``on_progress("keyframes", step, total)`` likewise, counting the windows' steps together.

        ``by_window=True``: the same keyframes a window at a time, each sampled as the iterator
        returned is advanced: ``(first, latents)``, the index of the window's first new keyframe
        and its new keyframe latents (B, C, n, h, w) (what the cascade of a long video takes)."""
        windows = self._keyframe_windows(cond, num_frames, fps, steps, guidance, seed, scheduler, progress, callback,
                                         init, strength, known, context_frames, on_progress)
        return windows if by_window else torch.cat([new for _, new in windows], dim=2)

    def _keyframe_windows(self, cond: torch.Tensor, num_frames: int, fps: float, steps: int, guidance: float,
                          seed: int, scheduler: Scheduler, progress: bool,
                          callback: Callable[[int, int, torch.Tensor], None] | None, init: torch.Tensor | None,
                          strength: float, known: torch.Tensor | None, context_frames: int | None,
                          on_progress: OnProgress | None) -> Iterator[tuple[int, torch.Tensor]]:
        """``generate_latents(by_window=True)``. A window after the first continues from the last
        ``context_frames`` keyframes (all it keeps of the ones before) and draws its noise from
        ``seed + first``."""
        context = self._context(context_frames)
        plan = keyframe_plan(num_frames, self.unet.config.max_frames, context)
        steps_per_window = steps if init is None else steps - min(_start_step(steps, strength), steps)
        callback = count_steps(on_progress, "keyframes", len(plan) * steps_per_window, callback)

        def part(start: int, stop: int) -> torch.Tensor | None:
            return None if init is None else init[:, :, start:stop]

        first, tail = 0, None  # tail: the last `context` keyframes made so far
        for new in plan:
            if tail is None:
                out = self._denoise_window(cond, new, fps, steps, guidance, seed, scheduler, progress, callback,
                                           part(0, new), strength, known)
            else:
                out = self._denoise_window(cond, context + new, fps, steps, guidance, seed + first, scheduler,
                                           progress, callback, part(first - context, first + new), strength,
                                           tail)[:, :, context:]
            yield first, out
            tail = out if tail is None else torch.cat([tail, out], dim=2)
            tail = tail[:, :, -context:]
            first += new

    def _denoise_window(self, cond: torch.Tensor, num_frames: int, fps: float, steps: int, guidance: float,
                        seed: int, scheduler: Scheduler, progress: bool,
                        callback: Callable[[int, int, torch.Tensor], None] | None, init: torch.Tensor | None,
                        strength: float, known: torch.Tensor | None) -> torch.Tensor:
        """One window of at most ``max_frames`` keyframe latents (see ``generate_latents``)."""
        cfg = self.unet.config
        gen = torch.Generator().manual_seed(seed)
        size = cfg.sample_size
        shape = (cond.shape[0], cfg.in_channels, num_frames, size, size)
        # noise drawn on the CPU: the same seed gives the same video on any device
        noise = self.schedule.noise(shape, generator=gen).to(cond.device)
        sched = self.schedule.scheduler(scheduler)
        start_step = 0
        if init is None:
            latents = noise * sched.init_noise_sigma
        else:
            start_step = _start_step(steps, strength)
            if start_step >= steps:
                return init
            shared = self.schedule.noise((*shape[:2], 1, size, size), generator=gen).to(cond.device).expand(shape)
            sched.set_timesteps(steps, device=cond.device)
            t0 = sched.timesteps[start_step].reshape(1).expand(shape[0]).long()
            latents = add_noise(init, shared, t0, sched.alphas_cumprod)
        fps_t = torch.full((cond.shape[0],), fps, device=cond.device)
        denoise = guided(self.unet, cond, torch.zeros_like(cond), guidance, fps=fps_t)
        held = None if known is None else (known, noise[:, :, : known.shape[2]])
        return sample(denoise, latents, sched, steps, generator=gen, callback=callback, progress=progress,
                      start_step=start_step, known=held)

    # -- applications: image-to-video, variations, editing ---------------------------------
    def pixels(self, frames: np.ndarray, source: str = "input") -> torch.Tensor:
        """uint8 (T, H, W, 3) -> (1, 3, T, S, S) in [-1, 1] at the model's frame size S
        (centre crop, resize), on the pipeline's device."""
        from .video_io import fit_frames

        frames = fit_frames(frames, self.frame_size, source)
        x = torch.tensor(frames, dtype=torch.float32) / 127.5 - 1.0  # a copy: read-only arrays (an image file's) too
        return x.permute(3, 0, 1, 2)[None].to(next(self.unet.parameters()).device)

    def _source_pixels(self, video: np.ndarray, strength: float | None, source: str,
                       default_strength: float) -> tuple[torch.Tensor, float]:
        """The source video of vary / edit, checked, as ``pixels``, and the strength (None:
        ``default_strength``, the pipeline's for this kind of request), checked."""
        strength = float(default_strength if strength is None else strength)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if np.asarray(video).ndim != 4:
            raise ValueError(f"{source}: expected frames (T, H, W, 3), got shape {np.asarray(video).shape}")
        return self.pixels(video, source), strength

    @torch.no_grad()
    def animate(self, image: np.ndarray, prompt: str | None = None, num_frames: int = 16, fps: float | None = None,
                steps: int | None = None, guidance: float | None = None, seed: int = 0,
                scheduler: Scheduler | None = None, anchor: bool = True, progress: bool = True,
                interpolate: bool | None = None, upscale: bool | None = None, source: str = "image",
                on_progress: OnProgress | None = None, stream: bool = False) -> VideoOutput | VideoStream:
        """Image-to-video: the image's embedding is the condition (what unsupervised
        pretraining taught), with the prompt's tokens appended when one is given; ``anchor``
        holds the first frame to the image's latent. image: uint8 (H, W, 3). ``guidance``
        None: the pipeline's ``image_guidance``. ``on_progress``, ``stream``: as in ``__call__``."""
        r = self.resolve("image" if prompt is None else prompt, num_frames, fps, steps, guidance, scheduler,
                          interpolate, upscale, default_guidance=self.defaults.image_guidance, seed=seed)
        if np.asarray(image).ndim != 3:
            raise ValueError(f"{source}: expected an image (H, W, 3), got shape {np.asarray(image).shape}")
        pixels = self.pixels(np.asarray(image)[None], source)
        cond = self.encoder.encode_image(pixels[:, :, 0])
        if prompt is not None:
            cond = torch.cat([cond, self.encoder.encode_text([prompt]).to(cond.dtype)], dim=1)
        known = self.vae.encode(pixels) if anchor else None
        return self._video(cond, num_frames, r, seed, progress, stream, on_progress, known=known)

    @torch.no_grad()
    def vary(self, video: np.ndarray, n: int = 4, strength: float | None = None, fps: float | None = None,
             steps: int | None = None, guidance: float | None = None, seed: int = 0, scheduler: Scheduler | None = None,
             progress: bool = True, interpolate: bool | None = None, upscale: bool | None = None,
             source: str = "video", on_progress: OnProgress | None = None) -> list[VideoOutput]:
        """Video variations: ``n`` videos of the same content. The condition is the mean
        embedding of the source's frames; each variation starts from the source's latents
        noised to ``strength`` (None: the pipeline's ``vary_strength``) with its own seed.
        ``guidance`` None: the pipeline's ``image_guidance``. ``on_progress``: as in
        ``__call__``, each variation's stages in turn."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        r = self.resolve("video", len(np.asarray(video)), fps, steps, guidance, scheduler, interpolate, upscale,
                          default_guidance=self.defaults.image_guidance, seed=seed, variations=n)
        pixels, strength = self._source_pixels(video, strength, source, self.defaults.vary_strength)
        cond, init = image_condition(self.encoder, pixels), self.vae.encode(pixels)
        return [self.render(self.generate_latents(cond, len(video), r.fps, r.steps, r.guidance, seed + i, r.scheduler,
                                                  progress, init=init, strength=strength, on_progress=on_progress),
                            r.fps, seed + i, r.scheduler, r.interpolate, r.upscale, progress, on_progress)
                for i in range(n)]

    @torch.no_grad()
    def edit(self, video: np.ndarray, prompt: str, strength: float | None = None, fps: float | None = None,
             steps: int | None = None, guidance: float | None = None, seed: int = 0, scheduler: Scheduler | None = None,
             progress: bool = True, interpolate: bool | None = None, upscale: bool | None = None,
             source: str = "video", on_progress: OnProgress | None = None) -> VideoOutput:
        """Video editing (SDEdit): the source's latents, noised to ``strength`` with the same
        noise in every frame, denoised under the new prompt. Low strength keeps more of the
        source (layout, motion), high strength follows the prompt more (None: the pipeline's
        ``edit_strength``). ``on_progress``: as in ``__call__``."""
        r = self.resolve(prompt, len(np.asarray(video)), fps, steps, guidance, scheduler, interpolate, upscale,
                         seed=seed)
        pixels, strength = self._source_pixels(video, strength, source, self.defaults.edit_strength)
        latents = self.generate_latents(self.encoder.encode_text([prompt]), len(video), r.fps, r.steps, r.guidance,
                                        seed, r.scheduler, progress, init=self.vae.encode(pixels), strength=strength,
                                        on_progress=on_progress)
        return self.render(latents, r.fps, seed, r.scheduler, r.interpolate, r.upscale, progress, on_progress)
