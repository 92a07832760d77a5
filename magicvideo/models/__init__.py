"""The MagicVideo models: VideoUNet (keyframes, interpolation) and VideoVAE.

Imported on first use (PEP 562): ``magicvideo.models.io`` and the other submodules load
without pulling in diffusers.
"""
import importlib

_EXPORTS = {
    "VideoUNet": "video_unet", "FrameAdaptor": "video_unet", "TemporalConv1d": "video_unet",
    "count_flops": "video_unet", "is_video_parameter": "video_unet", "VideoVAE": "video_vae",
}
__all__ = ["VideoUNet", "VideoVAE", "FrameAdaptor", "TemporalConv1d", "count_flops", "is_video_parameter"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
