"""FLOPs to generate one 61-frame video: our latent cascade vs the same cascade in pixel space.

    python benchmarks/flops.py [--preset sd15] [--steps 50] [--sr-steps 50] [--pixel-model both]

Counted with ``torch.utils.flop_counter`` on the meta device (shapes only: nothing is
allocated, any size runs on a laptop). One "FLOP" is one multiply or one add, as the
counter counts them (a multiply-add is 2); elementwise ops are not counted by the counter.

Ours, at the paper's settings (``sd15`` preset): 16 keyframes at 256x256 denoised as 4x32x32
latents (``--steps`` steps, classifier-free guidance doubles the batch), 15 interpolation
windows of 5 latent frames (same steps, guided), the VideoVAE decoding 61 latent frames to
256x256, and the pixel SR model 256 -> 1024 on every frame (``--sr-steps``).

The pixel-space comparison keeps the SR stage and replaces the two latent stages by models
that produce the same 256x256 frames without a VAE:

* ``same``: our VideoUNet itself run on 3x256x256 pixels (the paper's argument: an 8x
  smaller side should cost ~64x less per frame);
* ``vdm``: a VDM-style 3D U-Net, diffusers ``UNet3DConditionModel`` at the same widths with
  factorised space-time attention only at the two lowest resolutions (32x32, 64x64 at the
  levels shared with ours), as VDM restricts attention to coarse levels.
"""
from __future__ import annotations

import argparse
import dataclasses

import torch

from magicvideo.config import get_preset
from magicvideo.interpolate import WINDOW, interpolation_channels, output_frames
from magicvideo.models import VideoUNet, VideoVAE, count_flops
from magicvideo.models.sr_unet import SRUNet


def unet_call(unet: VideoUNet, batch: int, frames: int, side: int, channels: int, tokens: int, cond: int = 0) -> int:
    x = torch.empty(batch, channels, frames, side, side)
    ctx = torch.empty(batch, tokens, unet.config.cross_attention_dim)
    conditioning = torch.empty(batch, cond, frames, side, side) if cond else None
    return count_flops(unet, x, torch.full((batch,), 500), ctx, conditioning=conditioning)


def vdm_call(widths: tuple[int, ...], layers: int, ctx_dim: int, frames: int, side: int, tokens: int) -> int:
    from diffusers import UNet3DConditionModel

    levels = len(widths)
    # attention only at the two coarsest levels (VDM: attention at low resolutions only)
    down = tuple("CrossAttnDownBlock3D" if i >= levels - 2 else "DownBlock3D" for i in range(levels))
    model = UNet3DConditionModel(sample_size=side, in_channels=3, out_channels=3, block_out_channels=widths,
                                 layers_per_block=layers, down_block_types=down,
                                 up_block_types=tuple(s.replace("Down", "Up") for s in reversed(down)),
                                 cross_attention_dim=ctx_dim, attention_head_dim=64, norm_num_groups=32)
    x = torch.empty(1, 3, frames, side, side)
    return count_flops(lambda: model(x, torch.tensor([500]), torch.empty(1, tokens, ctx_dim)).sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--keyframes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="keyframe and interpolation sampling steps")
    parser.add_argument("--sr-steps", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=77)
    parser.add_argument("--pixel-model", choices=["same", "vdm", "both"], default="both")
    args = parser.parse_args()

    preset = get_preset(args.preset)
    latent, side = preset.unet.sample_size, preset.resolution
    k, frames = args.keyframes, output_frames(args.keyframes)
    windows, guided = k - 1, 2  # classifier-free guidance: conditional + unconditional batch
    c = preset.vae.latent_channels
    rows: list[tuple[str, int, int]] = []  # (stage, ours, pixel-space "same")
    with torch.device("meta"):
        base_cfg = dataclasses.replace(preset.unet, max_frames=max(k, preset.unet.max_frames))
        key = VideoUNet(base_cfg)
        interp = VideoUNet(dataclasses.replace(base_cfg, condition_channels=interpolation_channels(c)))
        key_px = VideoUNet(dataclasses.replace(base_cfg, in_channels=3, out_channels=3))
        interp_px = VideoUNet(dataclasses.replace(base_cfg, in_channels=3, out_channels=3,
                                                  condition_channels=interpolation_channels(3)))
        ours_key = args.steps * unet_call(key, guided, k, latent, c, args.tokens)
        px_key = args.steps * unet_call(key_px, guided, k, side, 3, args.tokens)
        rows.append(("keyframes (16)", ours_key, px_key))
        ours_int = args.steps * unet_call(interp, guided * windows, WINDOW, latent, c, 2,
                                          cond=interpolation_channels(c))
        px_int = args.steps * unet_call(interp_px, guided * windows, WINDOW, side, 3, 2, cond=interpolation_channels(3))
        rows.append((f"interpolation ({windows} windows)", ours_int, px_int))
        vae = VideoVAE(preset.vae)
        ours_dec = count_flops(vae.decode, torch.empty(1, c, frames, latent, latent))
        rows.append((f"VideoVAE decode ({frames} frames)", ours_dec, 0))
        sr = SRUNet(preset.sr)
        low = torch.empty(1, 3, side, side)
        hr = torch.empty(1, 3, side * preset.sr.scale, side * preset.sr.scale)
        sr_flops = frames * args.sr_steps * count_flops(sr, hr, torch.tensor([500]), low, torch.tensor([20]))
        rows.append((f"SR {side} -> {side * preset.sr.scale} ({frames} frames)", sr_flops, sr_flops))
        vdm_key = vdm_int = None
        if args.pixel_model in ("vdm", "both"):
            cfg = preset.unet
            vdm_key = args.steps * guided * vdm_call(cfg.block_out_channels, cfg.layers_per_block,
                                                     cfg.cross_attention_dim, k, side, args.tokens)
            # the VDM-style interpolation: the same 3D U-Net on 5-frame windows
            vdm_int = args.steps * guided * windows * vdm_call(cfg.block_out_channels, cfg.layers_per_block,
                                                               cfg.cross_attention_dim, WINDOW, side, 2)

    def t(n: int) -> str:
        return f"{n / 1e12:12.1f}"

    print(f"preset {args.preset}: {k} keyframes at {side}x{side} (latent {latent}x{latent}) -> {frames} frames at "
          f"{side * preset.sr.scale}x{side * preset.sr.scale}; {args.steps} steps (x2 guidance) for keyframes and "
          f"interpolation, {args.sr_steps} SR steps; TFLOP (forward passes, meta-device count)")
    show_same = args.pixel_model in ("same", "both")
    header = f"{'stage':<34}{'ours (latent)':>14}"
    header += f"{'same U-Net, pixels':>20}{'ratio':>8}" if show_same else ""
    header += f"{'VDM-style 3D, pixels':>22}{'ratio':>8}" if vdm_key is not None else ""
    print(header)
    vdm_col = {"keyframes (16)": vdm_key, f"interpolation ({windows} windows)": vdm_int}
    for name, ours, px in rows:
        line = f"{name:<34}{t(ours):>14}"
        if show_same:
            line += f"{t(px):>20}{(px / ours if ours and px else 0):8.1f}x" if px else f"{'-':>20}{'':>9}"
        if vdm_key is not None:
            other = vdm_col.get(name, px if name.startswith("SR") else 0)
            line += f"{t(other):>22}{(other / ours):8.1f}x" if other else f"{'-':>22}"
        print(line)
    total = sum(r[1] for r in rows)
    line = f"{'whole cascade':<34}{t(total):>14}"
    if show_same:
        px_total = sum(r[2] for r in rows)
        line += f"{t(px_total):>20}{px_total / total:8.1f}x"
    if vdm_key is not None:
        vdm_total = vdm_key + vdm_int + sr_flops
        line += f"{t(vdm_total):>22}{vdm_total / total:8.1f}x"
    print(line)
    lat = ours_key + ours_int + ours_dec
    print(f"keyframes + interpolation + decode only (SR excluded): ours {lat / 1e12:.1f} TFLOP; pixel-space same U-Net "
          f"{(px_key + px_int) / lat:.0f}x" + (f", VDM-style {(vdm_key + vdm_int) / lat:.0f}x" if vdm_key else "")
          + "; the paper's claim is ~64x per frame")


if __name__ == "__main__":
    main()
