"""VideoVAE: an SD-compatible KL autoencoder whose decoder looks back in time.

Layout: videos are ``(B, 3, F, H, W)`` in [-1, 1]; latents ``(B, C, F, h, w)``, already
multiplied by the scaling factor (what the diffusion model sees). Frames are encoded one by
one (diffusers' ``AutoencoderKL``, unchanged). The decoder gets two directed temporal
attention layers (paper §3): one after the mid block, one after the first up block
(``config.temporal_levels`` puts more after the following up blocks, up to full resolution). Each is
a residual attention over the frame axis at every pixel, causal (``config.temporal_neighbourhood``
widens each pixel's view to a k x k neighbourhood in every earlier frame), with a zero-initialised
output projection, so at init the VideoVAE decodes exactly like the image VAE.

Decoding runs in chunks of frames. Because the temporal layers are directed, a chunk only
needs keys/values of earlier frames, which each layer keeps in a cache of at most
``temporal_window - 1`` frames: memory stays flat in the number of frames, and for videos
no longer than the window the result equals decoding all frames at once. ``VideoDecoder``
holds that cache between calls, so a video whose latents arrive window by window (a long
video streamed) decodes as one video; ``VideoVAE.decode`` is one such decoder used once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from einops import rearrange
from torch import nn

from ..config import VideoVAEConfig
from .attention import TemporalAttention
from .io import ModelDirectoryMixin
from .layout import fold_frames, unfold_frames


class DecoderTemporalLayer(nn.Module):
    """GroupNorm -> directed attention over frames -> residual. With ``neighbourhood`` k > 1 a
    pixel attends to the k x k pixels around it in its own and every earlier frame (edges
    replicated), so it can follow an edge that moved by up to (k - 1) / 2 pixels a frame; k = 1
    is the paper's attention over the same pixel in every frame."""

    def __init__(self, channels: int, heads: int, groups: int, neighbourhood: int = 1):
        super().__init__()
        self.neighbourhood = neighbourhood
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.temporal_attn = TemporalAttention(channels, heads, directed=True)

    def forward(self, h: torch.Tensor, num_frames: int, past_kv=None, window: int | None = None):
        # diffusers' mid block hands over a channels-last tensor; GroupNorm's CPU backward on
        # channels-last input with trainable affine weights segfaults in torch 2.13.
        h = h.contiguous()
        _, _, height, width = h.shape
        normed = self.norm(h)
        seq = rearrange(normed, "(b f) c h w -> (b h w) f c", f=num_frames)
        context = None
        if self.neighbourhood > 1:
            k = self.neighbourhood
            padded = F.pad(normed, (k // 2,) * 4, mode="replicate")
            patches = F.unfold(padded, k)  # (b f, c k k, h w)
            context = rearrange(patches, "(b f) (c n) (h w) -> (b h w) (f n) c", f=num_frames, n=k * k, h=height)
        out, cache = self.temporal_attn(seq, past_kv=past_kv, window=window, context=context)
        out = rearrange(out, "(b h w) f c -> (b f) c h w", h=height, w=width)
        return h + out, cache


class VideoDecoder:
    """Decodes a video whose latents arrive in pieces (the windows of a long video), keeping each
    temporal layer's key/value cache (at most ``temporal_window - 1`` frames) from one piece to
    the next: memory stays flat however many pieces come. Pieces are decoded in chunks of
    ``chunk_frames`` from their first frame; pieces of a multiple of ``chunk_frames`` frames give
    exactly what one ``decode`` of all the latents gives, other pieces the same up to float
    rounding (each frame sees the same earlier frames, in differently sized matrix products)."""

    def __init__(self, vae: "VideoVAE", chunk_frames: int = 8, temporal: bool = True):
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.vae, self.chunk_frames, self.temporal = vae, chunk_frames, temporal
        self.caches: list[Any] = [None] * len(vae.temporal_layers)
        self._layout: tuple[int, ...] | None = None  # (B, C, h, w) of the first piece: later ones must match

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The next scaled latents (B, C, F, h, w) of the video -> their frames (B, 3, F, H, W)."""
        vae = self.vae
        vae._check_latents(latents)
        layout = (latents.shape[0], latents.shape[1], *latents.shape[3:])
        if self._layout is not None and layout != self._layout:
            raise ValueError(f"latents (B, C, h, w) {layout} do not continue the video's {self._layout}")
        self._layout = layout
        cfg = vae.config
        z = latents / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        out = []
        for start in range(0, z.shape[2], self.chunk_frames):
            chunk = z[:, :, start : start + self.chunk_frames]
            frames, self.caches = vae._decode_chunk(fold_frames(chunk), chunk.shape[2], self.caches, self.temporal)
            out.append(unfold_frames(frames, chunk.shape[2]))
        return torch.cat(out, dim=2)


class VideoVAE(ModelDirectoryMixin, nn.Module):
    config_class = VideoVAEConfig

    def __init__(self, config: VideoVAEConfig | None = None):
        super().__init__()
        cfg = self.config = config or VideoVAEConfig()
        self.vae = AutoencoderKL(**cfg.to_diffusers())
        self.temporal_layers = nn.ModuleList(
            [DecoderTemporalLayer(width, cfg.temporal_attention_heads, cfg.norm_num_groups, cfg.temporal_neighbourhood)
             for width in cfg.temporal_widths()]
        )

    # -- checks ---------------------------------------------------------------------------
    def _check_video(self, video: torch.Tensor) -> None:
        cfg = self.config
        if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[1] != cfg.in_channels:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"video must be (B, {cfg.in_channels}, F, H, W), got {shape}")
        h, w = video.shape[-2:]
        if h % cfg.downsample_factor or w % cfg.downsample_factor:
            raise ValueError(f"frame size {h}x{w} must be divisible by {cfg.downsample_factor}")

    def _check_latents(self, latents: torch.Tensor) -> None:
        c = self.config.latent_channels
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != c:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be (B, {c}, F, h, w), got {shape}")

    # -- encode ---------------------------------------------------------------------------
    def encode(
        self,
        video: torch.Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunk_frames: int = 16,
    ) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> scaled latents (B, C, F, h, w); frame by frame."""
        self._check_video(video)
        f = video.shape[2]
        out = []
        for start in range(0, f, chunk_frames):
            frames = fold_frames(video[:, :, start : start + chunk_frames])
            dist = self.vae.encode(frames).latent_dist
            z = dist.sample(generator) if sample else dist.mode()
            out.append(unfold_frames(z, frames.shape[0] // video.shape[0]))
        z = torch.cat(out, dim=2)
        shift = self.config.shift_factor or 0.0
        return (z - shift) * self.config.scaling_factor

    # -- decode ---------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor, chunk_frames: int = 8, temporal: bool = True) -> torch.Tensor:
        """Scaled latents (B, C, F, h, w) -> video (B, 3, F, H, W), about [-1, 1].
        ``temporal=False`` decodes frame by frame, exactly like the image VAE."""
        return self.incremental_decoder(chunk_frames, temporal).decode(latents)

    def incremental_decoder(self, chunk_frames: int = 8, temporal: bool = True) -> "VideoDecoder":
        """An incremental decoder: latents handed to it piece by piece decode as one video."""
        return VideoDecoder(self, chunk_frames, temporal)

    def _decode_chunk(self, z: torch.Tensor, num_frames: int, caches: list[Any], temporal: bool):
        """Diffusers' Decoder.forward with the temporal layers spliced in: layer 0 after the
        mid block, layer i after up block i - 1."""
        dec = self.vae.decoder
        window = self.config.temporal_window
        new_caches = list(caches)

        def temporal_layer(i: int, h: torch.Tensor) -> torch.Tensor:
            if temporal and i < len(self.temporal_layers):
                h, new_caches[i] = self.temporal_layers[i](h, num_frames, caches[i], window)
            return h

        h = temporal_layer(0, dec.mid_block(dec.conv_in(self.vae.post_quant_conv(z)), None))
        for i, up_block in enumerate(dec.up_blocks):
            h = temporal_layer(i + 1, up_block(h, None))
        h = dec.conv_out(dec.conv_act(dec.conv_norm_out(h)))
        return h, new_caches

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Reconstruction: encode (posterior mode) then decode."""
        return self.decode(self.encode(video))

    # -- bookkeeping ----------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        video = sum(p.numel() for p in self.temporal_layers.parameters())
        image = sum(p.numel() for p in self.vae.parameters())
        return {"image": image, "video": video, "total": image + video}

    @classmethod
    def from_pretrained_2d(cls, path: str | Path, **video_options: Any) -> "VideoVAE":
        """Wrap SD VAE weights (diffusers folder, its ``vae/`` folder, or an original
        single-file ``.safetensors`` checkpoint); the temporal layers start as identity."""
        from ..convert import load_vae_2d

        return load_vae_2d(cls, path, **video_options)
