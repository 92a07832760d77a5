"""Model sizes and compute, counted on the meta device (no memory, no weights needed); a
pipeline's vocabulary (`magicvideo info --pipeline DIR`)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from .config import Preset
from .models import VideoUNet, VideoVAE, count_flops
from .models.video_unet import FrameAdaptor, TemporalConv1d


def frame_op_flops(model: VideoUNet, *args: Any, **kwargs: Any) -> int:
    """FLOPs spent in the per-frame operators after the 2D convs during one forward.

    Adaptor: one multiply and one add per element. Temporal conv1d: 2 * C_in * k per output
    element. (``torch.utils.flop_counter`` counts the conv but not elementwise ops, so both
    are counted here from the shapes the hooks see.)"""
    total = 0

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, FrameAdaptor):
            total += 2 * output.numel()
        elif isinstance(module, TemporalConv1d):
            total += 2 * output.numel() * module.conv.in_channels * module.kernel_size

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (FrameAdaptor, TemporalConv1d))]
    try:
        model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return total


def describe(preset: Preset, frames: int = 16, resolution: int | None = None, tokens: int = 77) -> dict[str, Any]:
    """Parameter counts and FLOPs of one denoising step for ``frames`` frames."""
    resolution = resolution or preset.resolution
    factor = preset.vae.downsample_factor
    if resolution % (factor * preset.unet.downsample_factor):
        raise ValueError(f"resolution {resolution} must be divisible by {factor * preset.unet.downsample_factor}")
    latent = resolution // factor
    unet_cfg = dataclasses.replace(preset.unet, max_frames=max(frames, preset.unet.max_frames))
    report: dict[str, Any] = {"preset": preset.name, "frames": frames, "resolution": resolution, "latent": latent}
    with torch.device("meta"):
        x = torch.empty(1, unet_cfg.in_channels, frames, latent, latent)
        ctx = torch.empty(1, tokens, unet_cfg.cross_attention_dim)
        t = torch.tensor([500])
        for op in ("adaptor", "conv1d"):
            unet = VideoUNet(dataclasses.replace(unet_cfg, temporal_conv_op=op))
            report[f"unet_{op}"] = {
                "params": unet.parameter_counts(),
                "step_flops": count_flops(unet, x, t, ctx),
                "frame_op_flops": frame_op_flops(unet, x, t, ctx),
            }
        vae = VideoVAE(preset.vae)
        report["vae"] = {
            "params": vae.parameter_counts(),
            "decode_flops": count_flops(vae.decode, torch.empty(1, preset.vae.latent_channels, frames, latent, latent)),
        }
    return report


def format_report(r: dict[str, Any]) -> str:
    def m(n: int) -> str:
        return f"{n / 1e6:,.2f} M"

    def g(n: int) -> str:
        return f"{n / 1e9:,.2f} GFLOP" if n >= 1e8 else f"{n / 1e6:,.2f} MFLOP"

    ua, uc, vae = r["unet_adaptor"], r["unet_conv1d"], r["vae"]
    lines = [
        f"preset {r['preset']}: {r['frames']} frames at {r['resolution']}x{r['resolution']} "
        f"(latent {r['latent']}x{r['latent']})",
        "",
        f"{'component':<28}{'image part':>14}{'video part':>14}{'total':>14}",
        f"{'VideoUNet (adaptor)':<28}{m(ua['params']['image']):>14}{m(ua['params']['video']):>14}"
        f"{m(ua['params']['total']):>14}",
        f"{'VideoVAE':<28}{m(vae['params']['image']):>14}{m(vae['params']['video']):>14}"
        f"{m(vae['params']['total']):>14}",
        "",
        f"VideoUNet forward, one denoising step: {g(ua['step_flops'])}",
        f"VideoVAE decode of all frames:         {g(vae['decode_flops'])}",
        "",
        "per-frame operators after the shared 2D convs (one step):",
        f"  frame adaptor (S_i * z + B_i):       {g(ua['frame_op_flops'])}",
        f"  1D temporal conv (k=3) instead:      {g(uc['frame_op_flops'])}"
        f"  ({uc['frame_op_flops'] / max(ua['frame_op_flops'], 1):,.0f}x the adaptor;"
        f" +{uc['params']['video'] - ua['params']['video']:,} params)",
    ]
    return "\n".join(lines)


def read_vocabulary(pipeline: str) -> dict[str, Any]:
    """A pipeline directory's ``vocabulary.json`` (what its prompts can name; sprites
    pipelines have one, see ``magicvideo.data.sprites.write_vocabulary``)."""
    from pathlib import Path

    path = Path(pipeline) / "vocabulary.json"
    if not Path(pipeline).is_dir():
        raise ValueError(f"{pipeline}: pipeline directory not found")
    if not path.is_file():
        raise ValueError(f"{pipeline}: no vocabulary.json (only a pipeline trained on the sprites domain has one)")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(vocab, dict) or not isinstance(vocab.get("sprites"), list):
        raise ValueError(f"{path}: expected an object with a 'sprites' list")
    return vocab


def format_vocabulary(vocab: dict[str, Any]) -> str:
    """The vocabulary as text: sprites by category (main name, other caption names, the split
    when not plain training), then backgrounds and motions."""
    sprites = vocab["sprites"]
    lines = [f"vocabulary: {len(sprites)} sprites ({vocab.get('font', 'emoji')})"]
    for category in dict.fromkeys(s.get("category", "?") for s in sprites):
        members = [s for s in sprites if s.get("category", "?") == category]
        lines += ["", f"{category} ({len(members)}):"]
        for s in members:
            names = s.get("names", [])
            notes = [f"also: {', '.join(names[1:])}"] if len(names) > 1 else []
            if s.get("paraphrases"):
                notes.append(f"paraphrases: {', '.join(s['paraphrases'])}")
            if s.get("split") not in (None, "train"):
                notes.append(s["split"])
            if s.get("heldout_motions"):
                notes.append(f"never trained: {', '.join(s['heldout_motions'])}")
            lines.append(f"  {s.get('char', '?')}  {names[0] if names else '?':<20} {'; '.join(notes)}".rstrip())
    if vocab.get("backgrounds"):
        lines += ["", f"backgrounds ({len(vocab['backgrounds'])}):"]
        lines += [f"  {name:<18} {phrase}" for name, phrase in vocab["backgrounds"].items()]
    if vocab.get("motions"):
        lines += ["", f"motions ({len(vocab['motions'])}):"]
        lines += [f"  {name:<10} {', '.join(phrases)}" for name, phrases in vocab["motions"].items()]
    return "\n".join(lines)
