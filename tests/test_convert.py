"""Loading Stable Diffusion weights: folders, single files, and what is refused."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import TINY_UNET_2D, TINY_VAE_2D, per_frame, per_video
from diffusers import UNet2DConditionModel
from ldm_format import unet_to_ldm, vae_to_ldm
from safetensors.torch import load_file, save_file

from magicvideo import PRESETS, VideoUNet, VideoVAE


def test_sd15_preset_image_part_matches_diffusers_sd15_unet():
    cfg = PRESETS["sd15"].unet
    with torch.device("meta"):
        ours = VideoUNet(cfg).parameter_counts()
        # SD 1.5's published unet/config.json, in the fields that set its size
        ref = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
            attention_head_dim=8, sample_size=64,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
    ref_count = sum(p.numel() for p in ref.parameters())
    assert abs(ours["image"] - ref_count) / ref_count <= 0.01
    assert ours["video"] > 0 and ours["video"] < 0.1 * ours["image"]


def test_pipeline_folder_loads_unet_and_vae(tmp_path, diffusers_unet, diffusers_vae):
    unet2d, _ = diffusers_unet
    vae2d, _ = diffusers_vae
    unet2d.save_pretrained(tmp_path / "unet")
    vae2d.save_pretrained(tmp_path / "vae")
    unet = VideoUNet.from_pretrained_2d(tmp_path)
    vae = VideoVAE.from_pretrained_2d(tmp_path)
    assert unet.config.block_out_channels == (32, 64) and vae.config.block_out_channels == (16, 32)


def test_single_file_checkpoint_matches_diffusers_folder(tmp_path, diffusers_unet, diffusers_vae):
    unet2d, _ = diffusers_unet
    vae2d, _ = diffusers_vae
    # the original layout stores attention GroupNorms with 32 groups; build models that way
    torch.manual_seed(7)
    unet2d = UNet2DConditionModel(**{**TINY_UNET_2D, "norm_num_groups": 32, "attention_head_dim": 8}).eval()
    from diffusers import AutoencoderKL

    vae2d = AutoencoderKL(**{**TINY_VAE_2D, "block_out_channels": (32, 64), "norm_num_groups": 32}).eval()
    ckpt = {**unet_to_ldm(unet2d.state_dict(), 2, [True, False]), **vae_to_ldm(vae2d.state_dict(), 2)}
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(tmp_path / "sd.safetensors"))

    unet = VideoUNet.from_pretrained_2d(tmp_path / "sd.safetensors")
    x = torch.randn(1, 4, 3, 8, 8)
    t, ctx = torch.tensor([250]), torch.randn(1, 5, 32)
    with torch.no_grad():
        ref = unet2d(per_frame(x), t.repeat(3), ctx.repeat(3, 1, 1)).sample
        assert (unet(x, t, ctx) - per_video(ref, 3)).abs().max() <= 1e-5

    vae = VideoVAE.from_pretrained_2d(tmp_path / "sd.safetensors")
    video = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        ref = vae2d.decode(vae2d.encode(per_frame(video)).latent_dist.mode()).sample
        assert (vae(video) - per_video(ref, 2)).abs().max() <= 1e-5


def test_missing_and_unknown_keys_are_listed(tmp_path, diffusers_unet):
    _, path = diffusers_unet
    state = load_file(str(path / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text((path / "config.json").read_text())
    broken = dict(state)
    del broken["mid_block.resnets.0.conv1.weight"]
    broken["extra.layer.weight"] = torch.zeros(2)
    save_file(broken, str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError) as err:
        VideoUNet.from_pretrained_2d(tmp_path / "unet")
    assert "mid_block.resnets.0.conv1.weight" in str(err.value) and "extra.layer.weight" in str(err.value)


def test_shape_mismatch_is_named(tmp_path, diffusers_unet):
    _, path = diffusers_unet
    state = load_file(str(path / "diffusion_pytorch_model.safetensors"))
    state["conv_out.bias"] = torch.zeros(7)
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match="conv_out.bias"):
        VideoUNet.from_pretrained_2d(tmp_path)


def test_pickle_and_garbage_files_are_refused(tmp_path, diffusers_unet):
    _, path = diffusers_unet
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ValueError, match="safetensors"):
        VideoUNet.from_pretrained_2d(ckpt)
    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="model.safetensors"):
        VideoUNet.from_pretrained_2d(garbage)
    folder = tmp_path / "bin_only"
    folder.mkdir()
    (folder / "config.json").write_text((path / "config.json").read_text())
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="pickle"):
        VideoUNet.from_pretrained_2d(folder)
    with pytest.raises(ValueError, match="not found"):
        VideoUNet.from_pretrained_2d(tmp_path / "nowhere")


def test_own_model_dir_validates_config_and_weights(tmp_path):
    from magicvideo import VideoUNetConfig

    cfg = VideoUNetConfig(block_out_channels=(16, 32), attention_levels=(True, True), num_attention_heads=(2, 2))
    VideoUNet(cfg).save_pretrained(tmp_path / "m")
    mask = os.umask(0)
    os.umask(mask)  # written atomically, yet with the permissions of a plain mkdir / open
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    (tmp_path / "m" / "config.json").write_text('{"block_out_channels": [16, 32], "bogus": 1}')
    with pytest.raises(ValueError, match="bogus"):
        VideoUNet.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        VideoUNet.from_pretrained(tmp_path / "m")
