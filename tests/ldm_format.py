"""Write diffusers-named SD weights in the original (LDM) single-file layout, for tests.

This is the inverse of diffusers' single-file converters, written out from the original
SD repository's module tree, so that the single-file loading path can be tested on tiny
random models instead of a multi-GB download.
"""
from __future__ import annotations

import re

import torch

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(state: dict[str, torch.Tensor], layers: int, attention_levels: list[bool]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = key
        for a, b in [("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
                     ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2")]:
            if key.startswith(a + "."):
                new = b + key[len(a):]
        m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = f"input_blocks.{(layers + 1) * i + j + 1}.{0 if kind == 'resnets' else 1}.{rest}"
        m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
        if m:
            new = f"input_blocks.{(layers + 1) * (int(m[1]) + 1)}.0.op.{m[2]}"
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            new = f"middle_block.{2 * int(m[2]) if m[1] == 'resnets' else 1}.{m[3]}"
        m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = f"output_blocks.{(layers + 1) * i + j}.{0 if kind == 'resnets' else 1}.{rest}"
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
        if m:
            i = int(m[1])
            has_attention = list(reversed(attention_levels))[i]
            new = f"output_blocks.{(layers + 1) * i + layers}.{2 if has_attention else 1}.conv.{m[2]}"
        if ".0." in new or "middle_block" in new:
            for a, b in RESNET:
                new = re.sub(rf"^((?:input|output)_blocks\.\d+\.0|middle_block\.[02])\.{a}\.", rf"\1.{b}.", new)
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, b in [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]:
                new = new.replace(f"attn_1.{a}.", f"attn_1.{b}.")
            if value.ndim == 2:
                value = value[:, :, None, None]  # the original stores these as 1x1 convs
        out["first_stage_model." + new] = value
    return out
