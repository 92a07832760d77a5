"""The text-to-video cascade: prompt -> condition tokens -> 16 keyframe latents ->
(interpolation) 61 latents -> VideoVAE decode -> (super-resolution) frames.

A pipeline directory holds one subdirectory per stage and ``pipeline.json`` naming them,
plus the noise schedules the diffusion stages were trained with::

    pipeline.json   {"stages": {"keyframe": "keyframe", "vae": "vae", "encoder": "encoder",
                                "interpolation": "interpolation", "sr": "sr"}, ...}
    keyframe/       VideoUNet       (config.json + model.safetensors)
    vae/            VideoVAE
    encoder/        MiniLM + LiT image tower (or a CLIP directory)
    interpolation/  VideoUNet with 2C+1 condition channels   (optional)
    sr/             SRUNet                                    (optional)

Optional stages run by default when present; ``interpolate=False`` / ``upscale=False``
(CLI: ``--no-interpolate`` / ``--no-upscale``) skip them.

``MagicVideoPipeline.from_pretrained()`` with no path loads the embedded default that ships
inside the package (tiny models trained by ``scripts/train_default.sh``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .diffusion import SCHEDULERS, NoiseSchedule, guided, sample
from .interpolate import FPS_FACTOR, check_interpolation_model, interpolate_latents
from .models import VideoUNet, VideoVAE
from .models.sr_unet import SR_SCHEDULE, SRUNet, upscale_video

DEFAULT_PIPELINE = Path(__file__).parent / "weights" / "default"
PIPELINE_FILE = "pipeline.json"
REQUIRED_STAGES = ("keyframe", "vae", "encoder")
OPTIONAL_STAGES = ("interpolation", "sr")
DEFAULTS: dict[str, Any] = {"fps": 8.0, "steps": 25, "guidance": 5.0, "scheduler": "dpm",
                            "interpolation_steps": 10, "interpolation_guidance": 1.0,
                            "sr_steps": 6, "sr_noise_level": 20, "sr_batch_frames": 8}


@dataclass
class VideoOutput:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float


class MagicVideoPipeline:
    def __init__(self, unet: VideoUNet, vae: VideoVAE, encoder, schedule: NoiseSchedule | None = None,
                 defaults: dict[str, Any] | None = None, interpolation: VideoUNet | None = None,
                 sr: SRUNet | None = None, sr_schedule: NoiseSchedule | None = None):
        self.unet, self.vae, self.encoder = unet.eval(), vae.eval(), encoder.eval()
        self.interpolation = interpolation.eval() if interpolation is not None else None
        self.sr = sr.eval() if sr is not None else None
        self.schedule = schedule or NoiseSchedule()
        self.sr_schedule = sr_schedule or SR_SCHEDULE
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self._check_stages()

    def _check_stages(self) -> None:
        """Stages that do not fit together are named before any compute."""
        unet, vae = self.unet, self.vae
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(f"keyframe U-Net expects {unet.config.in_channels} latent channels, "
                             f"the VAE makes {vae.config.latent_channels}")
        if unet.config.cross_attention_dim != self.encoder.dim:
            raise ValueError(f"keyframe U-Net expects {unet.config.cross_attention_dim}-d condition tokens, "
                             f"the encoder gives {self.encoder.dim}")
        if self.interpolation is not None:
            check_interpolation_model(self.interpolation, vae.config.latent_channels, "interpolation stage")
            if self.interpolation.config.cross_attention_dim != self.encoder.dim:
                raise ValueError(f"interpolation stage expects {self.interpolation.config.cross_attention_dim}-d "
                                 f"tokens, the encoder gives {self.encoder.dim}")
            if self.interpolation.config.sample_size != unet.config.sample_size:
                raise ValueError(f"interpolation stage works on {self.interpolation.config.sample_size}px latents, "
                                 f"the keyframe stage makes {unet.config.sample_size}px")
        if self.sr is not None:
            side = unet.config.sample_size * vae.config.downsample_factor
            multiple = self.sr.config.patch * 2 ** (len(self.sr.config.block_out_channels) - 1)
            if (side * self.sr.config.scale) % multiple:
                raise ValueError(f"sr stage cannot upscale {side}px frames: {side * self.sr.config.scale}px is not "
                                 f"a multiple of {multiple}")

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
            schedules = {k: NoiseSchedule(**spec[k]) for k in ("schedule", "sr_schedule") if k in spec}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{spec_file}: malformed ({err})") from None
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

        optional = {}
        if "interpolation" in stages:
            optional["interpolation"] = load("interpolation", lambda d: VideoUNet.from_pretrained(d, device=device))
        if "sr" in stages:
            optional["sr"] = load("sr", lambda d: SRUNet.from_pretrained(d, device=device))
        return cls(load("keyframe", lambda d: VideoUNet.from_pretrained(d, device=device)),
                   load("vae", lambda d: VideoVAE.from_pretrained(d, device=device)),
                   load("encoder", load_encoder), schedules.get("schedule"), spec.get("defaults"),
                   sr_schedule=schedules.get("sr_schedule"), **optional)

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
                "sr_schedule": dataclasses.asdict(self.sr_schedule), "defaults": self.defaults}
        (path / PIPELINE_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        return path

    # -- generation -----------------------------------------------------------------------
    def check_options(self, prompt: str, num_frames: int, fps: float, steps: int, guidance: float,
                      scheduler: str, interpolate: bool = False, upscale: bool = False) -> None:
        """Everything that can be wrong with a request, before any compute."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt is empty")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if not 1 <= num_frames <= self.unet.config.max_frames:
            raise ValueError(f"num_frames must be between 1 and the model's maximum "
                             f"{self.unet.config.max_frames}, got {num_frames}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        if interpolate and self.interpolation is None:
            raise ValueError("this pipeline has no 'interpolation' stage (skip it with interpolate=False)")
        if interpolate and num_frames < 2:
            raise ValueError("interpolation needs at least 2 keyframes")
        if upscale and self.sr is None:
            raise ValueError("this pipeline has no 'sr' stage (skip it with upscale=False)")

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        num_frames: int = 16,
        fps: float | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        scheduler: str | None = None,
        progress: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        interpolate: bool | None = None,
        upscale: bool | None = None,
    ) -> VideoOutput:
        """``num_frames`` keyframes at ``fps``; with interpolation the output has
        ``num_frames + 3 * (num_frames - 1)`` frames at 4x the fps, with super-resolution 4x
        the side. ``interpolate`` / ``upscale``: None = run the stage when the pipeline has it."""
        d = self.defaults
        fps = float(d["fps"] if fps is None else fps)
        steps = int(d["steps"] if steps is None else steps)
        guidance = float(d["guidance"] if guidance is None else guidance)
        scheduler = d["scheduler"] if scheduler is None else scheduler
        interpolate = self.interpolation is not None and num_frames >= 2 if interpolate is None else interpolate
        upscale = self.sr is not None if upscale is None else upscale
        self.check_options(prompt, num_frames, fps, steps, guidance, scheduler, interpolate, upscale)

        cond = self.encoder.encode_text([prompt])
        latents = self.generate_latents(cond, num_frames, fps, steps, guidance, seed, scheduler, progress, callback)
        video = self.vae.decode(latents)
        out_fps = fps
        if interpolate:
            latents = interpolate_latents(self.interpolation, latents, video, self.encoder, fps, self.schedule,
                                          steps=int(d["interpolation_steps"]),
                                          guidance=float(d["interpolation_guidance"]), seed=seed,
                                          scheduler=scheduler, progress=progress)
            video = self.vae.decode(latents)
            out_fps = fps * FPS_FACTOR
        frames = video[0].transpose(0, 1)  # (T, 3, H, W)
        if upscale:
            frames = upscale_video(self.sr, frames, self.sr_schedule, steps=int(d["sr_steps"]),
                                   noise_level=int(d["sr_noise_level"]), seed=seed,
                                   batch_frames=int(d["sr_batch_frames"]), progress=progress)
        pixels = ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return VideoOutput(frames=pixels, fps=out_fps)

    def generate_latents(self, cond: torch.Tensor, num_frames: int, fps: float, steps: int, guidance: float,
                         seed: int, scheduler: str, progress: bool = False, callback=None) -> torch.Tensor:
        """Keyframe latents (B, C, F, h, w) for condition tokens ``cond`` (B, L, D)."""
        cfg = self.unet.config
        gen = torch.Generator().manual_seed(seed)
        size = cfg.sample_size
        # noise drawn on the CPU: the same seed gives the same video on any device
        latents = self.schedule.noise((cond.shape[0], cfg.in_channels, num_frames, size, size), generator=gen)
        latents = latents.to(cond.device)
        sched = self.schedule.scheduler(scheduler)
        latents = latents * sched.init_noise_sigma
        fps_t = torch.full((cond.shape[0],), fps, device=cond.device)
        denoise = guided(self.unet, cond, torch.zeros_like(cond), guidance, fps=fps_t)
        return sample(denoise, latents, sched, steps, generator=gen, callback=callback, progress=progress)
