"""magicvideo: text-to-video latent diffusion after MagicVideo (Zhou et al., 2022)."""
from .config import PRESETS, Preset, VideoUNetConfig, VideoVAEConfig, get_preset
from .models import VideoUNet, VideoVAE

__version__ = "0.1.0"
__all__ = ["VideoUNet", "VideoVAE", "VideoUNetConfig", "VideoVAEConfig", "Preset", "PRESETS", "get_preset"]
