"""``StageOptions``: what ``magicvideo train`` tells a stage, one frozen dataclass for all six.

Each field says which stage reads it; a stage ignores the rest. ``cli.cmd_train`` maps the
flags onto it; ``build_stage`` (``stages/__init__.py``) turns it into a ``train.Stage``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import CONDITIONS, DOMAINS
from ..diffusion import NoiseSchedule


SAMPLE_PROMPTS = {  # the keyframe stage's preview prompts per domain
    "shapes": ("a red circle moving right", "a blue square moving up"),
    "sprites": ("a cat moving right", "a car as the camera pans left over a photo of coffee"),
}


@dataclass(frozen=True)
class StageOptions:
    preset: str = "tiny"
    seed: int = 0
    condition: str = "text"  # keyframe: image (unsupervised pretraining) | text (finetuning)
    vae: str | None = None  # model directory of a trained VAE (keyframe stage)
    encoder: str | None = None  # directory of a trained LiT encoder, or a CLIP directory
    init_from: str | None = None  # start weights: our model dir, or an SD folder / file
    init_image_from: str | None = None  # keyframe: a fresh model whose image part comes from this VideoUNet dir
    num_frames: int = 16
    fps_choices: tuple[float, ...] = (4.0, 8.0, 16.0)
    cond_drop: float = 0.1  # probability of the null condition (classifier-free guidance)
    object_weight: float = 0.0  # keyframe: extra loss weight on latent pixels off the frame's background
    align_weight: float = 1.0  # lit: weight of the image-to-caption alignment term (see lit_loss)
    pool_clips: int = 0  # keyframe: encode this many clips once and train on them (0: encode every batch)
    pool_cache: str | None = None  # keyframe: latent-cache directory that keeps the encoded pool between stages
    domain: str = "shapes"  # the procedural training data: shapes | sprites (config.DOMAINS)
    data: str | None = None  # a video folder (see data/video_folder.py) instead of the procedural domain
    latent_cache: str | None = None  # keyframe: train from a `magicvideo cache-latents` directory
    gradient_checkpointing: bool = False  # U-Net stages: trade compute for activation memory
    strides: tuple[int, ...] = (1, 2, 4)  # video folders: frame strides (clip fps = native fps / stride)
    schedule: NoiseSchedule = NoiseSchedule()
    sample_prompts: tuple[str, ...] = ()  # keyframe previews (--sample-every); () = SAMPLE_PROMPTS[domain]
    device: str = "cpu"  # where the models run: cpu, cuda, cuda:N (under torchrun "cuda" = cuda:LOCAL_RANK)
    unet_overrides: tuple[tuple[str, Any], ...] = ()  # (field, value) of the preset's VideoUNetConfig, fresh models

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")
        if self.data is not None and self.domain != "shapes":
            raise ValueError(f"--data {self.data} and --domain {self.domain}: a video folder replaces the procedural "
                             "domain; give one of them")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if not 0 <= self.cond_drop < 1:
            raise ValueError(f"cond_drop must be in [0, 1), got {self.cond_drop}")
        if not self.object_weight >= 0:
            raise ValueError(f"object_weight must be >= 0, got {self.object_weight}")
        if not self.align_weight >= 0:
            raise ValueError(f"align_weight must be >= 0, got {self.align_weight}")
