"""The training stages: each is a trainable model, a loss, and a batch maker.

``build_stage(name, options)`` returns a ``train.Stage`` for the one training loop
(``train.py``). Batches are a pure function of (seed, step), drawn on the CPU, so runs resume
exactly and give the same data on any device; frozen helpers (VAE, encoders) are loaded from
model directories. The stages, in the order the cascade is trained:

========================  ==============================================  ==================
stage                     what it trains (paper)                          file
========================  ==============================================  ==================
``vae``                   the image KL autoencoder: the latent space      ``autoencoder.py``
``videovae``              directed temporal layers in the decoder (§3)    ``autoencoder.py``
``lit``                   an image tower in MiniLM's text space, for      ``lit.py``
                          proxy-text pretraining (DESIGN.md §2)
``keyframe``              the VideoUNet, image (proxy text) or text       ``keyframe.py``
                          condition (§1, §3 frame sampling)
``interpolation``         3 frames between two keyframes (§3)             ``interpolation.py``
``sr``                    4x pixel-space SR with noise-conditioning       ``sr.py``
                          augmentation (§3)
========================  ==============================================  ==================

The three diffusion stages share one loss, ``diffusion.denoising_loss``; ``options.py`` holds
``StageOptions`` and ``data.py`` the training stream. Clip encoding and the clip pool live
with the latent cache (``latent_cache.py``), device helpers with the loop (``train.py``).
"""
from __future__ import annotations

import dataclasses

import torch

from ..config import STAGES
from ..train import Stage, resolve_device, to_device
from .autoencoder import object_weights, reconstruction_loss, vae_stage, videovae_stage
from .data import batch_items, load_vae, preview_frames, training_dataset
from .interpolation import interpolation_stage
from .keyframe import keyframe_stage, latent_object_weights, load_unet, unet_config_with
from .lit import lit_stage
from .options import StageOptions
from .sr import object_crop, sr_frame_pair, sr_stage

BUILDERS = {"vae": vae_stage, "videovae": videovae_stage, "lit": lit_stage, "keyframe": keyframe_stage,
            "interpolation": interpolation_stage, "sr": sr_stage}  # keys: config.STAGES, the CLI's choices


def build_stage(name: str, options: StageOptions) -> Stage:
    """The stage ``name``; its models live on ``options.device``. Batches and all random
    draws are made on the CPU (a function of seed and step, whatever the device) and then
    moved, so a run gives the same data on any machine."""
    options = dataclasses.replace(options, device=str(resolve_device(options.device)))
    torch.manual_seed(options.seed)  # fresh weights are a function of the seed (every process agrees)
    if options.data is not None and name in ("interpolation", "sr"):
        raise ValueError(f"--data: the {name} stage trains on the shapes domain only for now "
                         "(it needs clips at 4x the frame rate or frames at 4x the resolution)")
    if options.init_image_from is not None and name != "keyframe":
        raise ValueError(f"--init-image-from: only the keyframe stage starts a fresh VideoUNet, not the {name} stage")
    if name not in BUILDERS:
        raise ValueError(f"unknown stage {name!r}; choose one of {STAGES}")
    return BUILDERS[name](options)


__all__ = ["BUILDERS", "StageOptions", "batch_items", "build_stage", "interpolation_stage", "keyframe_stage",
           "latent_object_weights", "lit_stage", "load_unet", "load_vae", "object_crop", "object_weights",
           "preview_frames", "reconstruction_loss", "resolve_device", "sr_frame_pair", "sr_stage", "to_device",
           "training_dataset", "unet_config_with", "vae_stage", "videovae_stage"]
