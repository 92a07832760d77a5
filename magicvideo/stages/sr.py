"""``sr``: the 4x pixel-space super-resolution U-Net (paper §3, Imagen-style).

Model: ``SRUNet`` (fresh from the preset, or a trained one with ``--init-from``), fully
convolutional, so it trains on crops. Batches: ``crop`` x ``crop`` low-res crops of single
frames of the procedural domain (``--domain``; the sprites' ``images`` split) and the matching
high-res crops (``sr_frame_pair``). Loss: noise-conditioning augmentation (the low-res input
noised to a random level ``s``, which the model is told), then ``diffusion.denoising_loss`` on
the high-res frame, or its residual over bicubic, under ``SR_SCHEDULE`` (x0-prediction).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import get_preset
from ..diffusion import denoising_loss
from ..train import Stage
from .data import domain_module, image_split
from .options import StageOptions


def sr_frame_pair(index: int, seed: int, low_res: int, scale: int, split: str = "train",
                  domain: str = "shapes") -> tuple[torch.Tensor, torch.Tensor]:
    """One random frame of the procedural ``domain`` rendered at ``low_res * scale`` and its
    ``scale`` x ``scale`` area average (the degradation SR inverts; it matches a direct
    ``low_res`` render up to the renderer's antialiasing). Returns (low (3, h, w), high
    (3, H, W)) in [-1, 1]."""
    module = domain_module(domain)
    rng = np.random.default_rng([seed, index, 7])
    spec = module.sample_spec(rng, split)
    t = rng.uniform(0, module.MAX_DURATION_S)
    high = torch.from_numpy(module.render_at(spec, t, low_res * scale)[0]).permute(2, 0, 1).float() / 127.5 - 1.0
    return F.avg_pool2d(high[None], scale)[0], high


def object_crop(low: torch.Tensor, high: torch.Tensor, scale: int, crop: int, background_crops: float,
                rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``crop`` x ``crop`` window of ``low`` (3, h, w) and the same window of ``high``
    (``scale`` times larger): centred on the object (anything brighter than black) give or
    take ``crop // 4``, or, for a ``background_crops`` fraction, anywhere."""
    size = low.shape[-1]
    ys, xs = np.nonzero((low > -0.9).any(dim=0).numpy())
    cy, cx = (int(ys.mean()), int(xs.mean())) if len(ys) else (size // 2,) * 2
    if rng.random() < background_crops:
        cy, cx = rng.integers(crop // 2, size - crop // 2 + 1, size=2)
    top = int(np.clip(cy - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, size - crop))
    left = int(np.clip(cx - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, size - crop))
    return (low[:, top : top + crop, left : left + crop],
            high[:, top * scale : (top + crop) * scale, left * scale : (left + crop) * scale])


def sr_stage(options: StageOptions, crop: int = 32, background_crops: float = 0.25) -> Stage:
    """The SR U-Net on ``crop`` x ``crop`` low-res crops, centred on the object, except a
    ``background_crops`` fraction placed anywhere: whole frames are mostly black, and noise
    left on a flat background costs SSIM. ``--init-from``: go on training a trained SR model."""
    from ..models.sr_unet import SR_SCHEDULE, SRUNet, augment_low_res

    device = torch.device(options.device)
    if options.init_from is not None:
        model = SRUNet.from_pretrained(options.init_from).to(device)
    else:
        model = SRUNet(get_preset(options.preset).sr).to(device)
    cfg = model.config
    schedule = SR_SCHEDULE
    alphas_cumprod = schedule.alphas_cumprod()

    def frame_pair(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return sr_frame_pair(index, options.seed, cfg.low_res_size, cfg.scale, image_split(options.domain),
                             options.domain)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [object_crop(*frame_pair(step * batch_size + i),
                             cfg.scale, crop, background_crops, np.random.default_rng([options.seed, step, i, 11]))
                 for i in positions or range(batch_size)]
        lows, highs = zip(*pairs)
        return torch.stack(lows).to(device), torch.stack(highs).to(device)

    def loss(batch, gen: torch.Generator):
        low, high = batch
        x0 = high - model.base(low)  # the HR frame itself, or its residual over bicubic
        b = x0.shape[0]
        level = torch.randint(0, cfg.max_noise_level, (b,), generator=gen).to(device)
        low = augment_low_res(low, level, alphas_cumprod, torch.randn(low.shape, generator=gen).to(device))
        return denoising_loss(lambda xt, t: model(xt, t, low, level), x0, schedule, gen), {}

    def save(trained, directory: Path) -> None:
        trained.save_pretrained(directory)

    def sample(trained, stem: Path) -> None:
        from PIL import Image

        from ..models.sr_unet import upscale_video

        low, high = zip(*(frame_pair(90_000 + i) for i in range(2)))
        up = upscale_video(trained, torch.stack(low).to(device), schedule, steps=6).cpu()
        bicubic = F.interpolate(torch.stack(low), scale_factor=cfg.scale, mode="bicubic", align_corners=False)
        grid = torch.cat([torch.cat([bicubic[i], up[i], high[i]], dim=-1) for i in range(2)], dim=-2)
        image = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        stem.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(stem.with_suffix(".png"))

    return Stage("sr", model, loss, make_batch, save, sample,
                 describe={"preset": options.preset, "domain": options.domain, "crop": crop,
                           "background_crops": background_crops, "init_from": options.init_from,
                           "schedule": dataclasses.asdict(schedule)})
