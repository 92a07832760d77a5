"""The latent space: the image VAE, then the VideoVAE's directed temporal layers.

* ``vae``: the SD-style KL autoencoder on single frames (the latent space the diffusion
  models run in). Model: ``VideoVAE`` with its temporal layers frozen. Loss: L2 + L1
  reconstruction, weighted by ``object_weights``, plus a tiny KL. Batches: one frame of each
  clip. Its scaling factor is then set so that latents have unit variance, as SD does.
* ``videovae`` (paper §3, VideoVAE): the image decoder applied per frame makes pixels dither
  between frames; two directed temporal attention layers in the decoder fix that. Model: a
  trained VAE with only ``temporal_layers`` trainable. Loss: the frame-wise reconstruction
  loss plus a dithering term. Batches: clips of ``num_frames``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import get_preset
from ..models import VideoVAE
from ..models.layout import fold_frames, unfold_frames
from ..train import Stage
from .data import batch_items, load_vae, preview_frames, training_dataset
from .options import StageOptions


def object_weights(frames: torch.Tensor, weight: float, threshold: float = 0.1, margin: int = 2) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, H, W): 1 on the background, ``1 + weight`` on the object
    and ``margin`` pixels around it. Frames (B, 3, H, W) in [-1, 1], object = any channel
    brighter than ``threshold`` on black. Shapes are a few percent of a frame: unweighted,
    the loss is mostly "black stays black" and corners (square vs circle) come last."""
    mask = ((frames + 1) / 2).amax(dim=1, keepdim=True).gt(threshold).float()
    mask = F.max_pool2d(mask, 2 * margin + 1, stride=1, padding=margin)
    return 1.0 + weight * mask


def reconstruction_loss(err: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted L2 + L1 of the reconstruction error: sum(w (err^2 + |err|)) / sum(w). The L1
    part keeps pulling at small errors, where L2 alone lets faint edges blur."""
    return ((err.square() + err.abs()) * weights).mean() / weights.mean()


def vae_stage(options: StageOptions, kl_weight: float = 1e-6, object_weight: float = 9.0) -> Stage:
    """The image VAE on single frames. With ``--init-from`` a trained VAE's decoder is
    finetuned and its encoder, latent scaling and temporal layers are kept: the latent space
    does not move, so diffusion models trained on it stay valid (as SD's finetuned decoders)."""
    device = torch.device(options.device)
    finetune = options.init_from is not None
    model = (load_vae(options.init_from) if finetune else VideoVAE(get_preset(options.preset).vae)).to(device)
    model.temporal_layers.requires_grad_(False)  # trained later, in the videovae stage
    if finetune:
        for frozen in (model.vae.encoder, model.vae.quant_conv):
            frozen.requires_grad_(False)
    data = training_dataset(options, num_frames=2, stills=True)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> torch.Tensor:
        # one random frame of each clip: (B, 3, H, W)
        items = batch_items(data, step, batch_size, positions)
        return torch.stack([item["video"][:, step % 2] for item in items]).to(device)

    def loss(frames: torch.Tensor, gen: torch.Generator):
        with torch.set_grad_enabled(not finetune):
            posterior = model.vae.encode(frames).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen).to(device)
        recon = model.vae.decode(z).sample
        err = recon - frames
        w = object_weights(frames, object_weight)
        weighted = reconstruction_loss(err, w)
        kl = posterior.kl().mean()
        return weighted + kl_weight * kl, {"mse": err.square().mean().item(), "kl": kl.item()}

    def save(trained: VideoVAE, directory: Path) -> None:
        if finetune:  # same encoder, same scaling: the latents of the initial VAE
            trained.save_pretrained(directory)
            return
        # SD's convention: scale latents to unit variance for the diffusion model
        with torch.no_grad():
            frames = torch.cat([make_batch(10_000 + i, 16) for i in range(4)])
            std = trained.vae.encode(frames).latent_dist.mode().std().item()
        final = VideoVAE(dataclasses.replace(trained.config, scaling_factor=round(1.0 / std, 5)))
        final.load_state_dict(trained.state_dict())
        final.save_pretrained(directory)

    def sample(trained: VideoVAE, stem: Path) -> None:
        from ..video_io import write_video

        video = torch.stack([data[50_000 + i]["video"] for i in range(2)])
        with torch.no_grad():
            recon = trained.decode(trained.encode(video.to(device)), temporal=False).cpu()
        grid = torch.cat([torch.cat([video[i], recon[i]], dim=-1) for i in range(2)], dim=-2)
        write_video(preview_frames(grid), stem.with_suffix(".gif"), fps=4)

    return Stage("vae", model, loss, make_batch, save, sample,
                 describe={"preset": options.preset, "domain": options.domain, "init_from": options.init_from})


def videovae_stage(options: StageOptions, object_weight: float = 9.0, dithering_weight: float = 1.0) -> Stage:
    """Train only the decoder's directed temporal layers of a trained VAE (``--vae``) on
    clips, with the frame-wise reconstruction loss plus a dithering term (the L1 error of the
    frame-to-frame differences, what the temporal layers are there to fix); encoder and image
    decoder stay frozen."""
    if options.vae is None:
        raise ValueError("the videovae stage needs --vae DIR (a trained VAE model directory)")
    device = torch.device(options.device)
    model = load_vae(options.vae).to(device)
    model.vae.requires_grad_(False)
    model.temporal_layers.requires_grad_(True)
    data = training_dataset(options, num_frames=options.num_frames)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> torch.Tensor:
        items = batch_items(data, step, batch_size, positions)
        return torch.stack([item["video"] for item in items]).to(device)  # (B, 3, F, H, W)

    def loss(video: torch.Tensor, gen: torch.Generator):
        with torch.no_grad():
            latents = model.encode(video)
        err = model.decode(latents) - video
        w = unfold_frames(object_weights(fold_frames(video), object_weight), video.shape[2])
        weighted = reconstruction_loss(err, w)
        # decoded minus true frame-to-frame change = change of the error; weighted where
        # either frame has the object
        w_pair = torch.maximum(w[:, :, 1:], w[:, :, :-1])
        dither = ((err[:, :, 1:] - err[:, :, :-1]).abs() * w_pair).mean() / w_pair.mean()
        return weighted + dithering_weight * dither, {"mse": err.square().mean().item(), "dithering": dither.item()}

    def save(trained: VideoVAE, directory: Path) -> None:
        trained.save_pretrained(directory)

    def sample(trained: VideoVAE, stem: Path) -> None:
        from ..video_io import write_video

        video = torch.stack([data[50_000 + i]["video"] for i in range(2)])
        with torch.no_grad():
            latents = trained.encode(video.to(device))
            plain, temporal = trained.decode(latents, temporal=False).cpu(), trained.decode(latents).cpu()
            rows = [torch.cat([video[i], plain[i], temporal[i]], -1) for i in range(2)]
        write_video(preview_frames(torch.cat(rows, dim=-2)), stem.with_suffix(".gif"), fps=8)

    return Stage("videovae", model, loss, make_batch, save, sample,
                 describe={"preset": options.preset, "domain": options.domain, "vae": options.vae,
                           "num_frames": options.num_frames})
