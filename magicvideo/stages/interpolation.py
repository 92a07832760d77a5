"""``interpolation``: the VideoUNet that puts 3 frames between two keyframes (paper §3).

Model: the keyframe VideoUNet (``--init-from``) with ``2 C + 1`` extra input channels, zero
at init (``VideoUNet.with_condition_channels``): both keyframe latents and a mask, given to
every frame of the window (see ``interpolate.py``). Batches: 5-frame windows of clips
rendered at 4x the keyframe fps, VAE-encoded, with the image embeddings of the two keyframes
as condition tokens. Loss: ``diffusion.denoising_loss`` on the 3 unknown middle frames, the
tokens dropped with probability ``cond_drop`` (classifier-free guidance).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..config import get_preset
from ..diffusion import denoising_loss
from ..train import Stage
from .data import batch_items, domain_dataset, load_vae
from .keyframe import load_unet
from .options import StageOptions


def interpolation_stage(options: StageOptions) -> Stage:
    from ..interpolate import FPS_FACTOR, GAP, WINDOW, interpolation_channels, keyframe_tokens, window_conditioning
    from ..models.encoders import load_encoder

    if options.vae is None or options.init_from is None:
        raise ValueError("the interpolation stage needs --vae DIR and --init-from KEYFRAME_MODEL_DIR")
    device = torch.device(options.device)
    vae = load_vae(options.vae).requires_grad_(False).to(device)
    encoder = load_encoder(options.encoder).requires_grad_(False).eval().to(device)
    keyframe = load_unet(options)
    if keyframe.config.condition_channels:
        raise ValueError(f"{options.init_from}: --init-from must be a keyframe model (it has condition channels)")
    unet = keyframe.with_condition_channels(interpolation_channels(vae.config.latent_channels)).to(device)
    unet.enable_gradient_checkpointing(options.gradient_checkpointing)
    schedule = options.schedule
    data = domain_dataset(options.domain, WINDOW, get_preset(options.preset).resolution,
                          tuple(FPS_FACTOR * f for f in options.fps_choices), options.seed)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> dict[str, Any]:
        items = batch_items(data, step, batch_size, positions)
        video = torch.stack([it["video"] for it in items]).to(device)
        with torch.no_grad():
            latents = vae.encode(video)
        return {"latents": latents, "fps": torch.tensor([it["fps"] for it in items], device=device),
                "tokens": keyframe_tokens(encoder, video[:, :, 0], video[:, :, -1])}

    def loss(batch, gen: torch.Generator):
        x0, tokens = batch["latents"], batch["tokens"]
        b = x0.shape[0]
        keep = (torch.rand(b, generator=gen) >= options.cond_drop).to(device, tokens.dtype).view(b, 1, 1)
        known = window_conditioning(x0[:, :, 0], x0[:, :, -1])  # the keyframes, as input channels
        return denoising_loss(lambda xt, t: unet(xt, t, tokens * keep, fps=batch["fps"], conditioning=known),
                              x0, schedule, gen, frames=slice(1, 1 + GAP)), {}

    def save(trained, directory: Path) -> None:
        trained.save_pretrained(directory)

    describe = {"preset": options.preset, "domain": options.domain, "init_from": options.init_from,
                "schedule": dataclasses.asdict(schedule), "fps_choices": [FPS_FACTOR * f for f in options.fps_choices]}
    return Stage("interpolation", unet, loss, make_batch, save, describe=describe)
