"""Pixel-space diffusion super-resolution (paper §3, Imagen-style noise conditioning).

``SRUNet`` predicts the clean high-resolution frame (x0-prediction: in pixel space the
denoised frame is what we want sharp) from a noisy one, given the low-resolution frame. With
``config.residual`` the diffused variable is the residual ``HR - base(LR)``, where ``base`` is
the bicubic upsampling, and ``upscale_video`` adds the base back. The low-res input is itself
noised to a level ``s`` during training (noise-conditioning augmentation), and ``s`` is
embedded like a timestep, so that at sampling a small fixed ``s`` makes the model robust to
the artifacts of the stages before it.

The U-Net is diffusers' ``UNet2DModel`` (time + class embedding, resnet blocks); what is ours
is the conditioning and the space-to-depth folding (see ``SRUNetConfig``). Frames are
``(N, 3, H, W)`` in [-1, 1]; a video is upscaled frame by frame with ``upscale_video``, all
frames sharing one initial noise and one augmentation noise (less flicker).

The degradation the model inverts is known: a low-res pixel is the mean of its ``scale`` x
``scale`` block (``stages.sr_frame_pair``). ``project_to_low_res`` makes a sample agree with
its input exactly, by alternating projections (POCS) onto the frames whose block means are
the input and onto the pixel range: the sample's detail stays, the small offsets it leaves
where the input is flat go (on a black background, any level off zero costs most of SSIM).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn
from tqdm.auto import tqdm

from ..config import Scheduler, SRUNetConfig
from ..diffusion import NoiseSchedule
from ..sampling import OnProgress, count_steps
from .io import ModelDirectoryMixin

# pixel space: DDPM's betas; the network predicts x0 ("sample" in diffusers' terms)
SR_SCHEDULE = NoiseSchedule(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, prediction_type="sample")


class SRUNet(ModelDirectoryMixin, nn.Module):
    config_class = SRUNetConfig

    def __init__(self, config: SRUNetConfig | None = None):
        super().__init__()
        self.config = config or SRUNetConfig()
        self.unet = UNet2DModel(**self.config.to_diffusers())
        if self.config.residual:  # start as bicubic upsampling: predict a zero residual
            nn.init.zeros_(self.unet.conv_out.weight)
            nn.init.zeros_(self.unet.conv_out.bias)

    def base(self, low_res: torch.Tensor) -> torch.Tensor:
        """What the diffused variable is relative to: bicubic(low_res) with ``residual``, else 0."""
        if not self.config.residual:
            return torch.zeros(*low_res.shape[:2], *(s * self.config.scale for s in low_res.shape[-2:]),
                               dtype=low_res.dtype, device=low_res.device)
        return F.interpolate(low_res, scale_factor=self.config.scale, mode="bicubic", align_corners=False)

    def _check(self, noisy: torch.Tensor, low_res: torch.Tensor) -> None:
        cfg = self.config
        if noisy.ndim != 4 or noisy.shape[1] != 3 or low_res.ndim != 4 or low_res.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) frames, got {tuple(noisy.shape)} and {tuple(low_res.shape)}")
        h, w = low_res.shape[-2:]
        if noisy.shape[0] != low_res.shape[0] or noisy.shape[-2:] != (h * cfg.scale, w * cfg.scale):
            raise ValueError(f"high-res input {tuple(noisy.shape)} is not {cfg.scale}x the low-res "
                             f"input {tuple(low_res.shape)}")
        multiple = cfg.patch * 2 ** (len(cfg.block_out_channels) - 1)
        if (h * cfg.scale) % multiple or (w * cfg.scale) % multiple:
            raise ValueError(f"high-res size {h * cfg.scale}x{w * cfg.scale} must be a multiple of {multiple}")

    def forward(self, noisy: torch.Tensor, timestep: torch.Tensor, low_res: torch.Tensor,
                noise_level: torch.Tensor) -> torch.Tensor:
        """noisy (N, 3, H, W), timestep (N,), low_res (N, 3, H/scale, W/scale) already
        noise-augmented to ``noise_level`` (N,) -> prediction (N, 3, H, W)."""
        self._check(noisy, low_res)
        p = self.config.patch
        up = F.interpolate(low_res, size=noisy.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([F.pixel_unshuffle(noisy, p), F.pixel_unshuffle(up.to(noisy.dtype), p)], dim=1)
        out = self.unet(x, timestep, class_labels=noise_level.to(x.device)).sample
        return F.pixel_shuffle(out, p)


def augment_low_res(low_res: torch.Tensor, noise_level: torch.Tensor, alphas_cumprod: torch.Tensor,
                    noise: torch.Tensor) -> torch.Tensor:
    """Noise-conditioning augmentation: q(x_s | x_0) of the same process, per frame."""
    abar = alphas_cumprod.to(low_res.device)[noise_level].view(-1, 1, 1, 1).to(low_res.dtype)
    return abar.sqrt() * low_res + (1 - abar).sqrt() * noise


def project_to_low_res(high: torch.Tensor, low: torch.Tensor, scale: int, steps: int = 10) -> torch.Tensor:
    """Alternating projections of ``high`` (N, 3, H, W) onto the frames whose ``scale`` x ``scale``
    block means equal ``low`` (N, 3, H/scale, W/scale) (the orthogonal projection takes each
    block's mismatch off all its pixels) and onto [-1, 1] (``low`` is clamped to it too). Both
    sets are convex and hold every frame that ``low`` is the block means of, so no step moves
    the result away from any such frame; ``steps`` = 0 only clamps."""
    if high.shape[:2] != low.shape[:2] or high.shape[-2:] != tuple(scale * s for s in low.shape[-2:]):
        raise ValueError(f"high-res frames {tuple(high.shape)} are not {scale}x the low-res frames {tuple(low.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    high, low = high.clamp(-1, 1), low.to(high.dtype).clamp(-1, 1)
    for _ in range(steps):
        mismatch = F.avg_pool2d(high, scale) - low
        high = (high - F.interpolate(mismatch, scale_factor=scale, mode="nearest")).clamp(-1, 1)
    return high


@torch.no_grad()
def upscale_video(
    model: SRUNet,
    frames: torch.Tensor,
    schedule,
    steps: int = 6,
    noise_level: int = 20,
    seed: int = 0,
    scheduler: Scheduler = "dpm",
    batch_frames: int = 8,
    shared_noise: bool = True,
    consistency_steps: int = 10,
    progress: bool = False,
    on_progress: OnProgress | None = None,
) -> torch.Tensor:
    """Upscale frames (T, 3, h, w) in [-1, 1] -> (T, 3, h*scale, w*scale). Frames run in
    batches of ``batch_frames`` (memory stays flat in T); with ``shared_noise`` every frame
    starts from the same noise and gets the same augmentation noise. Each sample is then made
    consistent with its (clean) input frame by ``consistency_steps`` of ``project_to_low_res``
    (0: the model's sample as it is, clamped). ``on_progress("super-resolution", step, total)``
    after every denoising step of every batch, ``total = steps * number of batches``."""
    from ..diffusion import sample

    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, h, w), got {tuple(frames.shape)}")
    if not 0 <= noise_level < schedule.num_train_timesteps:
        raise ValueError(f"noise_level must be in [0, {schedule.num_train_timesteps}), got {noise_level}")
    cfg = model.config
    t, _, h, w = frames.shape
    gen = torch.Generator().manual_seed(seed)
    shape = (1 if shared_noise else t, 3, h * cfg.scale, w * cfg.scale)
    init = torch.randn(shape, generator=gen).to(frames.device)
    aug = torch.randn((shape[0], 3, h, w), generator=gen).to(frames.device)
    alphas_cumprod = schedule.alphas_cumprod()
    out = []
    batches = range(0, t, batch_frames)
    report = count_steps(on_progress, "super-resolution", steps * len(batches))
    for start in tqdm(batches, desc="super-resolution", disable=not progress, leave=False):
        chunk = frames[start : start + batch_frames]
        n = chunk.shape[0]
        pick = slice(None) if shared_noise else slice(start, start + n)
        level = torch.full((n,), noise_level, dtype=torch.long, device=frames.device)
        low = augment_low_res(chunk, level, alphas_cumprod, aug[pick].expand(n, -1, -1, -1))
        sched = schedule.scheduler(scheduler)
        latents = init[pick].expand(n, -1, -1, -1).clone() * sched.init_noise_sigma

        def denoise(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            return model(x, timestep, low, level)

        detail = sample(denoise, latents, sched, steps, generator=gen, progress=False, callback=report)
        out.append(project_to_low_res(model.base(chunk) + detail, chunk, cfg.scale, consistency_steps))
    return torch.cat(out)


__all__ = ["SR_SCHEDULE", "SRUNet", "augment_low_res", "project_to_low_res", "upscale_video"]
