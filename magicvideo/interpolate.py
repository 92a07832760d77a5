"""Latent frame interpolation (paper §3): 3 new frames between each pair of keyframes.

The interpolation model is a ``VideoUNet`` with ``condition_channels = 2 * C + 1`` (a config,
initialised from the keyframe model by ``VideoUNet.with_condition_channels``). It denoises a
window of ``WINDOW = 5`` latent frames [k0, x1, x2, x3, k1]; every frame of the window also
sees, as extra input channels, the two known keyframe latents and a mask that marks the known
positions. Because the model's temporal attention is directed (frame i sees frames <= i),
handing both keyframes to every frame is what lets x1..x3 know where the motion is going.
The cross-attention condition is the image embedding of the two keyframes (two tokens).

16 keyframes -> 15 windows, denoised as one batch -> 16 + 15 * 3 = 61 frames.
"""
from __future__ import annotations

import torch

from .config import Scheduler
from .diffusion import NoiseSchedule, guided, sample
from .sampling import OnProgress, count_steps

GAP = 3  # new frames between two keyframes
WINDOW = GAP + 2
FPS_FACTOR = GAP + 1  # output fps / keyframe fps


def interpolation_channels(latent_channels: int) -> int:
    return 2 * latent_channels + 1


def output_frames(num_keyframes: int) -> int:
    return num_keyframes + GAP * (num_keyframes - 1)


def window_conditioning(first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Known keyframe latents (B, C, h, w) each -> conditioning (B, 2C+1, WINDOW, h, w)."""
    b, _, h, w = first.shape
    mask = torch.zeros(b, 1, WINDOW, h, w, dtype=first.dtype, device=first.device)
    mask[:, :, [0, WINDOW - 1]] = 1.0
    both = torch.cat([first, last], dim=1)[:, :, None].expand(-1, -1, WINDOW, -1, -1)
    return torch.cat([both, mask], dim=1)


def keyframe_tokens(encoder, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Image embeddings of the two keyframes (B, 3, H, W) in [-1, 1] -> tokens (B, 2L, D)."""
    with torch.no_grad():
        return torch.cat([encoder.encode_image(first), encoder.encode_image(last)], dim=1)


def check_interpolation_model(unet, latent_channels: int, source: str = "interpolation") -> None:
    cfg = unet.config
    want = interpolation_channels(latent_channels)
    if cfg.in_channels != latent_channels or cfg.condition_channels != want:
        raise ValueError(f"{source}: expects {cfg.in_channels} latent + {cfg.condition_channels} condition channels; "
                         f"interpolating {latent_channels}-channel latents needs {latent_channels} + {want}")
    if cfg.max_frames < WINDOW:
        raise ValueError(f"{source}: max_frames {cfg.max_frames} < window of {WINDOW} frames")


@torch.no_grad()
def interpolate_latents(
    unet,
    keyframes: torch.Tensor,
    keyframe_pixels: torch.Tensor,
    encoder,
    fps: float,
    schedule: NoiseSchedule,
    steps: int = 10,
    guidance: float = 1.0,
    seed: int = 0,
    scheduler: Scheduler = "dpm",
    progress: bool = False,
    on_progress: OnProgress | None = None,
) -> torch.Tensor:
    """keyframes (1, C, K, h, w) latents and their decoded pixels (1, 3, K, H, W) in [-1, 1]
    -> (1, C, K + GAP*(K-1), h, w); the keyframes are kept exactly. ``fps`` is the keyframe
    rate; the model generates at ``FPS_FACTOR * fps``. ``on_progress("interpolation", step,
    steps)`` after every denoising step (all windows are one batch)."""
    if keyframes.ndim != 5 or keyframes.shape[0] != 1 or keyframes.shape[2] < 2:
        raise ValueError(f"keyframes must be (1, C, K>=2, h, w), got {tuple(keyframes.shape)}")
    check_interpolation_model(unet, keyframes.shape[1])
    k = keyframes.shape[2]
    first, last = keyframes[0, :, :-1].transpose(0, 1), keyframes[0, :, 1:].transpose(0, 1)  # (K-1, C, h, w)
    cond = window_conditioning(first, last)
    pix = keyframe_pixels[0].transpose(0, 1)  # (K, 3, H, W)
    tokens = keyframe_tokens(encoder, pix[:-1], pix[1:])
    gen = torch.Generator().manual_seed(seed)
    noise = schedule.noise((k - 1, keyframes.shape[1], WINDOW, *keyframes.shape[-2:]), generator=gen)
    noise = noise.to(keyframes.device)
    sched = schedule.scheduler(scheduler)
    fps_t = torch.full((k - 1,), FPS_FACTOR * fps, device=keyframes.device)
    denoise = guided(unet, tokens, torch.zeros_like(tokens), guidance, fps=fps_t, conditioning=cond)
    windows = sample(denoise, noise * sched.init_noise_sigma, sched, steps, generator=gen, progress=progress,
                     callback=count_steps(on_progress, "interpolation", steps))
    return assemble(keyframes, windows)


def assemble(keyframes: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """keyframes (1, C, K, h, w) + windows (K-1, C, WINDOW, h, w) -> (1, C, K+GAP*(K-1), h, w):
    k0, window0 middle frames, k1, window1 middle frames, ..., k_{K-1}."""
    parts = []
    for i in range(keyframes.shape[2] - 1):
        parts += [keyframes[:, :, i : i + 1], windows[i : i + 1, :, 1 : 1 + GAP]]
    parts.append(keyframes[:, :, -1:])
    return torch.cat(parts, dim=2)
