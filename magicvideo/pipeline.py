"""The text-to-video pipeline: prompt -> condition tokens -> keyframe latents -> frames.

A pipeline directory holds one subdirectory per stage and ``pipeline.json`` naming them,
plus the noise schedule the keyframe model was trained with::

    pipeline.json   {"stages": {"keyframe": "keyframe", "vae": "vae", "encoder": "encoder"}, ...}
    keyframe/       VideoUNet       (config.json + model.safetensors)
    vae/            VideoVAE
    encoder/        MiniLM + LiT image tower (or a CLIP directory)

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
from .models import VideoUNet, VideoVAE

DEFAULT_PIPELINE = Path(__file__).parent / "weights" / "default"
PIPELINE_FILE = "pipeline.json"


@dataclass
class VideoOutput:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float


class MagicVideoPipeline:
    def __init__(self, unet: VideoUNet, vae: VideoVAE, encoder, schedule: NoiseSchedule | None = None,
                 defaults: dict[str, Any] | None = None):
        self.unet, self.vae, self.encoder = unet.eval(), vae.eval(), encoder.eval()
        self.schedule = schedule or NoiseSchedule()
        self.defaults = {"fps": 8.0, "steps": 25, "guidance": 5.0, "scheduler": "dpm", **(defaults or {})}
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(f"keyframe U-Net expects {unet.config.in_channels} latent channels, "
                             f"the VAE makes {vae.config.latent_channels}")
        if unet.config.cross_attention_dim != encoder.dim:
            raise ValueError(f"keyframe U-Net expects {unet.config.cross_attention_dim}-d condition tokens, "
                             f"the encoder gives {encoder.dim}")

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
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{spec_file}: malformed ({err})") from None
        for stage in ("keyframe", "vae", "encoder"):
            if stage not in stages or not (path / stages[stage]).is_dir():
                raise ValueError(f"{path}: pipeline stage {stage!r} is missing")
        schedule = NoiseSchedule(**spec.get("schedule", {}))
        unet = VideoUNet.from_pretrained(path / stages["keyframe"], device=device)
        vae = VideoVAE.from_pretrained(path / stages["vae"], device=device)
        encoder = load_encoder(path / stages["encoder"])
        return cls(unet, vae, encoder, schedule, spec.get("defaults"))

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "keyframe")
        self.vae.save_pretrained(path / "vae")
        self.encoder.save_pretrained(path / "encoder")
        spec = {"stages": {"keyframe": "keyframe", "vae": "vae", "encoder": "encoder"},
                "schedule": dataclasses.asdict(self.schedule), "defaults": self.defaults}
        (path / PIPELINE_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        return path

    # -- generation -----------------------------------------------------------------------
    def check_options(self, prompt: str, num_frames: int, fps: float, steps: int, guidance: float,
                      scheduler: str) -> None:
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
    ) -> VideoOutput:
        d = self.defaults
        fps = float(d["fps"] if fps is None else fps)
        steps = int(d["steps"] if steps is None else steps)
        guidance = float(d["guidance"] if guidance is None else guidance)
        scheduler = d["scheduler"] if scheduler is None else scheduler
        self.check_options(prompt, num_frames, fps, steps, guidance, scheduler)

        cond = self.encoder.encode_text([prompt])
        latents = self.generate_latents(cond, num_frames, fps, steps, guidance, seed, scheduler, progress, callback)
        video = self.vae.decode(latents)[0]
        frames = ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
        return VideoOutput(frames=frames, fps=fps)

    def generate_latents(self, cond: torch.Tensor, num_frames: int, fps: float, steps: int, guidance: float,
                         seed: int, scheduler: str, progress: bool = False, callback=None) -> torch.Tensor:
        """Keyframe latents (B, C, F, h, w) for condition tokens ``cond`` (B, L, D)."""
        cfg = self.unet.config
        gen = torch.Generator().manual_seed(seed)
        size = cfg.sample_size
        latents = self.schedule.noise((cond.shape[0], cfg.in_channels, num_frames, size, size), generator=gen)
        sched = self.schedule.scheduler(scheduler)
        latents = latents * sched.init_noise_sigma
        fps_t = torch.full((cond.shape[0],), fps)
        denoise = guided(self.unet, cond, torch.zeros_like(cond), guidance, fps=fps_t)
        return sample(denoise, latents, sched, steps, generator=gen, callback=callback, progress=progress)
