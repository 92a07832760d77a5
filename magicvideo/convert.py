"""Load Stable Diffusion (image) weights into the video models.

Accepted sources, all read with safetensors only:
* a diffusers pipeline folder (``unet/`` and ``vae/`` subfolders),
* a diffusers model folder (``config.json`` + ``diffusion_pytorch_model.safetensors``),
* an original single-file SD 1.x/2.x checkpoint (``.safetensors``), converted to diffusers
  names with diffusers' own single-file converters.

Keys must match the image part exactly: a missing or unknown key is an error that lists
them. Only the new video parameters (adaptors, temporal attention, fps embedding, extra
input channels) are allowed to be absent; they keep their identity/zero initialisation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .config import VideoUNetConfig, VideoVAEConfig
from .models.io import load_safetensors, load_state_dict_checked

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _resolve_component(path: Path, component: str) -> tuple[Path, dict[str, Any] | None]:
    """Return (weights file, diffusers config or None for single-file checkpoints)."""
    if not path.exists():
        raise ValueError(f"{path}: not found")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: only .safetensors checkpoints are loaded, not {path.suffix or 'this file'}")
        return path, None
    folder = path / component if (path / component).is_dir() else path
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path}: neither a diffusers {component} folder nor a pipeline folder with {component}/")
    try:
        dcfg = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    weights = folder / DIFFUSERS_WEIGHTS
    if not weights.is_file():
        others = sorted(p.name for p in folder.glob("*.safetensors"))
        if len(others) == 1:
            weights = folder / others[0]
        else:
            pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.ckpt"))
            hint = f" (found only pickle files {pickled}, which are refused)" if pickled else ""
            raise ValueError(f"{folder}: no {DIFFUSERS_WEIGHTS}{hint}")
    return weights, dcfg


def _single_file_unet_config(checkpoint: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """SD 1.x / 2.x UNet config read off the checkpoint's key layout and tensor shapes."""
    p = "model.diffusion_model."
    try:
        conv_in = checkpoint[p + "input_blocks.0.0.weight"]
        to_k = next(v for k, v in checkpoint.items() if k.startswith(p) and k.endswith("attn2.to_k.weight"))
        proj_in = next(v for k, v in checkpoint.items() if k.startswith(p) and k.endswith(".proj_in.weight"))
    except (KeyError, StopIteration):
        raise ValueError(f"{source}: not an SD 1.x/2.x checkpoint (no model.diffusion_model. UNet weights)") from None
    blocks = {int(k.split(".")[3]) for k in checkpoint if k.startswith(p + "input_blocks.")}
    downsamplers = [n for n in blocks if p + f"input_blocks.{n}.0.op.weight" in checkpoint]
    levels = len(downsamplers) + 1
    layers = (len(blocks) - 1 - len(downsamplers)) // levels
    channels, attention = [], []
    for i in range(levels):
        n = (layers + 1) * i + 1
        key = p + f"input_blocks.{n}.0.out_layers.3.weight"
        if key not in checkpoint:
            raise ValueError(f"{source}: unexpected UNet layout (no {key})")
        channels.append(checkpoint[key].shape[0])
        attention.append(p + f"input_blocks.{n}.1.proj_in.weight" in checkpoint)
    linear = proj_in.ndim == 2  # SD 2.x: linear projections and 64-d heads
    return dict(
        in_channels=conv_in.shape[1],
        out_channels=checkpoint[p + "out.2.weight"].shape[0],
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        attention_head_dim=[c // 64 for c in channels] if linear else 8,
        cross_attention_dim=to_k.shape[1],
        use_linear_projection=linear,
        norm_num_groups=32,
        num_class_embeds=None,
    )


def load_unet_2d(cls: type, path: str | Path, **video_options: Any):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    path = Path(path)
    weights, dcfg = _resolve_component(path, "unet")
    state = load_safetensors(weights)
    if dcfg is None:
        dcfg = _single_file_unet_config(state, weights)
        state = convert_ldm_unet_checkpoint(state, dcfg)
    config = VideoUNetConfig.from_diffusers(dcfg, **video_options)
    model = cls(config)
    own = model.state_dict()
    conv_in = state.get("conv_in.weight")
    if config.condition_channels and conv_in is not None and conv_in.shape[1] == config.in_channels:
        padded = torch.zeros_like(own["conv_in.weight"])  # extra input channels start at zero
        padded[:, : config.in_channels] = conv_in
        state = {**state, "conv_in.weight": padded}
    return model.load_image_state(state, str(weights)).eval()


def _single_file_vae_config(checkpoint: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """SD VAE config read off an original checkpoint (keys under ``first_stage_model.``)."""
    prefix = next((p for p in ("first_stage_model.", "vae.") if p + "encoder.conv_in.weight" in checkpoint), None)
    if prefix is None:
        raise ValueError(f"{source}: no VAE weights (first_stage_model.encoder.*) in this checkpoint")
    e = prefix + "encoder."
    levels = len({k[len(e):].split(".")[1] for k in checkpoint if k.startswith(e + "down.")})
    layers = len({k[len(e):].split(".")[3] for k in checkpoint if k.startswith(e + "down.0.block.")})
    channels = [checkpoint[e + f"down.{i}.block.0.conv2.weight"].shape[0] for i in range(levels)]
    return dict(
        in_channels=checkpoint[e + "conv_in.weight"].shape[1],
        out_channels=checkpoint[e + "conv_in.weight"].shape[1],
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        block_out_channels=channels,
        layers_per_block=layers,
        latent_channels=checkpoint[prefix + "decoder.conv_in.weight"].shape[1],
        norm_num_groups=32,
        scaling_factor=0.18215,
        sample_size=256,
    )


def load_vae_2d(cls: type, path: str | Path, **video_options: Any):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    path = Path(path)
    weights, dcfg = _resolve_component(path, "vae")
    state = load_safetensors(weights)
    if dcfg is None:
        dcfg = _single_file_vae_config(state, weights)
        state = convert_ldm_vae_checkpoint(state, dcfg)
    config = VideoVAEConfig.from_diffusers(dcfg, **video_options)
    model = cls(config)
    load_state_dict_checked(model.vae, state, str(weights))
    return model.eval()
