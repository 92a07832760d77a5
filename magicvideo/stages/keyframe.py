"""``keyframe``: the VideoUNet that makes the 16 keyframes (paper §1, the keyframe model).

Model: ``VideoUNet`` (fresh from the preset, from our model directory, or from SD 1.x
weights; see ``load_unet``), with the VAE and the encoder frozen beside it. Batches: latent
clips of ``num_frames`` at a random fps (paper §3, frame sampling), conditioned on

* ``image``: the image tower's mean embedding of a few of the clip's frames, the proxy text
  of unsupervised pretraining (``encoders.image_condition``), or
* ``text``: the caption's tokens (finetuning on text-video pairs).

Loss: ``diffusion.denoising_loss`` (v-prediction by default) with the condition replaced by
the null condition with probability ``cond_drop`` (classifier-free guidance), optionally
weighted towards the object (``latent_object_weights``). Clips are VAE-encoded every batch,
once into a pool (``--pool-clips``, kept with ``--pool-cache``), or read from a latent cache
(``--latent-cache``); see ``latent_cache.py``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import VideoUNetConfig, get_preset
from ..diffusion import denoising_loss
from ..latent_cache import clip_pool, encode_clips, pool_key, read_latent_cache
from ..models import VideoUNet, VideoVAE
from ..train import Stage, to_device
from .data import batch_items, load_vae, training_dataset
from .options import SAMPLE_PROMPTS, StageOptions


def latent_object_weights(latents: torch.Tensor, weight: float, relative: float = 0.25) -> torch.Tensor:
    """Per-latent-pixel loss weights (B, 1, F, h, w) for latents (B, C, F, h, w): ``1 + weight``
    where a latent differs from its frame's background (the per-channel median of the frame)
    by more than ``relative`` of the frame's largest difference, and one latent pixel around;
    1 elsewhere. On the shapes domain that is the object: a few latent pixels that decide
    square or circle, against hundreds of background ones that dominate a plain MSE."""
    background = latents.flatten(3).median(dim=3).values[..., None, None]
    dist = (latents - background).norm(dim=1, keepdim=True)
    mask = (dist > relative * dist.amax(dim=(3, 4), keepdim=True).clamp(min=1e-6)).float()
    mask = F.max_pool3d(mask, (1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1.0 + weight * mask


def keyframe_stage(options: StageOptions) -> Stage:
    from ..models.encoders import load_encoder

    if options.vae is None:
        raise ValueError("the keyframe stage needs --vae DIR (a trained VAE model directory)")
    device = torch.device(options.device)
    vae = load_vae(options.vae).requires_grad_(False).to(device)
    encoder = load_encoder(options.encoder).requires_grad_(False).eval().to(device)
    unet = load_unet(options).to(device)
    if unet.config.cross_attention_dim != encoder.dim:
        raise ValueError(f"U-Net cross_attention_dim {unet.config.cross_attention_dim} does not match the "
                         f"encoder width {encoder.dim}")
    schedule = options.schedule

    pool = data = None
    if options.latent_cache is not None:  # encoded once by `magicvideo cache-latents`
        pool = read_latent_cache(options.latent_cache)
        check_cache(options, pool, unet, vae, encoder)
    else:
        data = training_dataset(options, num_frames=options.num_frames, labeled=options.condition == "text",
                                resolution=unet.config.sample_size * vae.config.downsample_factor)
        if options.pool_clips:
            # The VAE encoder costs as much as a U-Net step on CPU: encode a fixed pool once
            # (and, with --pool-cache, once for both keyframe stages).
            pool = clip_pool(data, options.pool_clips, vae, encoder, cache=options.pool_cache,
                             source={"pool": pool_key(options, data)})
    pool_size = 0 if pool is None else len(pool["caption"])

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> dict[str, Any]:
        if pool is None:
            items = batch_items(data, step, batch_size, positions)
            return to_device(encode_clips(items, vae, encoder, with_image_cond=options.condition == "image"), device)
        g = torch.Generator().manual_seed(options.seed * 7919 + step)
        idx = torch.randint(0, pool_size, (batch_size,), generator=g)[list(positions or range(batch_size))]
        return to_device({"latents": pool["latents"][idx], "fps": pool["fps"][idx],
                          "caption": [pool["caption"][i] for i in idx.tolist()],
                          "image_cond": None if pool["image_cond"] is None else pool["image_cond"][idx]}, device)

    def loss(batch, gen: torch.Generator):
        x0 = batch["latents"]
        with torch.no_grad():
            cond = encoder.encode_text(batch["caption"]) if options.condition == "text" else batch["image_cond"]
        b = x0.shape[0]
        keep = (torch.rand(b, generator=gen) >= options.cond_drop).to(device, cond.dtype).view(b, 1, 1)
        cond = cond * keep  # dropped condition = all-zero tokens, the null condition at sampling
        weights = latent_object_weights(x0, options.object_weight) if options.object_weight else None
        return denoising_loss(lambda xt, t: unet(xt, t, cond, fps=batch["fps"]), x0, schedule, gen,
                              weights=weights), {}

    def save(trained: VideoUNet, directory: Path) -> None:
        trained.save_pretrained(directory)

    def sample(trained: VideoUNet, stem: Path) -> None:
        from ..pipeline import MagicVideoPipeline
        from ..video_io import write_video

        pipe = MagicVideoPipeline(unet=trained, vae=vae, encoder=encoder, schedule=schedule)
        videos = [pipe(p, num_frames=options.num_frames, fps=8.0, steps=20, seed=0, progress=False).frames
                  for p in options.sample_prompts or SAMPLE_PROMPTS[options.domain]]
        write_video(np.concatenate(videos, axis=2), stem.with_suffix(".gif"), fps=8)

    describe = {"preset": options.preset, "domain": options.domain, "condition": options.condition,
                "init_from": options.init_from, "init_image_from": options.init_image_from,
                "unet_overrides": dict(options.unet_overrides),
                "schedule": dataclasses.asdict(schedule), "fps_choices": list(options.fps_choices),
                "pool_clips": pool_size, "latent_cache": options.latent_cache,
                "object_weight": options.object_weight}
    return Stage("keyframe", unet, loss, make_batch, save, sample, describe=describe)


def unet_config_with(config: VideoUNetConfig, overrides: Sequence[tuple[str, Any]]) -> VideoUNetConfig:
    """``config`` with some fields replaced (``train --unet KEY=VALUE``: ablations, variants).
    Values arrive as JSON or plain strings; lists become tuples. Errors name the field."""
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in overrides:
        if key not in fields:
            raise ValueError(f"--unet {key}: not a VideoUNetConfig field (choose from {', '.join(sorted(fields))})")
        changes[key] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--unet: {err}") from None


def load_unet(options: StageOptions) -> VideoUNet:
    """The U-Net a keyframe (or, from a keyframe model, interpolation) run starts from: a fresh
    one of the preset (``--unet`` overrides; ``--init-image-from``: its image part from a
    trained VideoUNet), our model directory, or SD 1.x weights (``--init-from``)."""
    preset = get_preset(options.preset)
    path = Path(options.init_from) if options.init_from is not None else None
    if path is not None and options.unet_overrides:
        raise ValueError("--unet changes the architecture of a fresh model; it cannot be combined with --init-from")
    if path is not None and options.init_image_from is not None:
        raise ValueError("--init-image-from starts a fresh model; it cannot be combined with --init-from")
    if path is None:
        config = dataclasses.replace(preset.unet, max_frames=max(options.num_frames, preset.unet.max_frames))
        unet = VideoUNet(unet_config_with(config, options.unet_overrides))
        if options.init_image_from is not None:
            unet.load_image_part(options.init_image_from)
    elif (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        unet = VideoUNet.from_pretrained(path)
        if preset.unet.use_condition_embedding and not unet.config.use_condition_embedding:
            unet = unet.with_condition_embedding()  # a model of the older preset: add the (zero) embedding
    else:
        unet = VideoUNet.from_pretrained_2d(path, max_frames=options.num_frames)
    return unet.enable_gradient_checkpointing(options.gradient_checkpointing)


def check_cache(options: StageOptions, pool: dict[str, Any], unet: VideoUNet, vae: VideoVAE, encoder) -> None:
    """A latent cache must fit the models it trains, named before any step runs."""
    where = f"latent cache {options.latent_cache}"
    _, c, f, h, w = pool["latents"].shape
    if c != unet.config.in_channels or h != unet.config.sample_size or w != unet.config.sample_size:
        raise ValueError(f"{where}: latents are {c}x{h}x{w}, the U-Net takes "
                         f"{unet.config.in_channels}x{unet.config.sample_size}x{unet.config.sample_size}")
    if f > unet.config.max_frames:
        raise ValueError(f"{where}: clips of {f} frames, the U-Net takes at most {unet.config.max_frames}")
    if pool["image_cond"].shape[-1] != encoder.dim:
        raise ValueError(f"{where}: image conditions are {pool['image_cond'].shape[-1]}-d, the encoder gives {encoder.dim}")
    if options.condition == "text" and not all(pool["caption"]):
        raise ValueError(f"{where}: has clips without captions; the text condition needs a captioned dataset")
    if vae.config.latent_channels != c:
        raise ValueError(f"{where}: made with a {c}-channel VAE, --vae has {vae.config.latent_channels}")
