"""The MagicVideo models: VideoUNet (keyframes, interpolation) and VideoVAE."""
from .video_unet import FrameAdaptor, TemporalConv1d, VideoUNet, count_flops, is_video_parameter
from .video_vae import VideoVAE

__all__ = ["VideoUNet", "VideoVAE", "FrameAdaptor", "TemporalConv1d", "count_flops", "is_video_parameter"]
