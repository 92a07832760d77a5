"""magicvideo: text-to-video latent diffusion after MagicVideo (Zhou et al., 2022).

The model classes are imported on first use (PEP 562), so ``import magicvideo`` and the CLI's
``--help`` and input checks do not pay for torch and diffusers.
"""
from .config import PRESETS, Preset, VideoUNetConfig, VideoVAEConfig, get_preset

__version__ = "0.1.0"
__all__ = ["VideoUNet", "VideoVAE", "VideoUNetConfig", "VideoVAEConfig", "Preset", "PRESETS", "get_preset"]


def __getattr__(name: str):
    if name in ("VideoUNet", "VideoVAE"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
