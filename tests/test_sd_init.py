"""Stable Diffusion initialisation end to end: a diffusers SD folder and a local CLIP, trained
unsupervised then on captions through the CLI."""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from conftest import TINY_UNET_2D, TINY_VAE_2D, randomize_
from magicvideo import VideoUNet
from magicvideo.cli import main
from magicvideo.pipeline import MagicVideoPipeline


def test_sd_folder_and_clip_train_unsupervised_then_on_captions(tmp_path, tiny_clip):
    torch.manual_seed(0)
    sd = tmp_path / "stable-diffusion"
    unet_2d = randomize_(UNet2DConditionModel(**TINY_UNET_2D), seed=1, scale=0.02)
    unet_2d.save_pretrained(sd / "unet")
    AutoencoderKL(**TINY_VAE_2D).save_pretrained(sd / "vae")
    _, _, clip = tiny_clip
    common = ["--vae", str(sd), "--encoder", str(clip), "--steps", "2", "--batch-size", "2", "--num-frames", "4", "-q"]
    assert main(["train", "--stage", "keyframe", "--condition", "image", "-o", str(tmp_path / "unsup"),
                 "--init-from", str(sd), *common]) == 0
    assert main(["train", "--stage", "keyframe", "--condition", "text", "-o", str(tmp_path / "text"),
                 "--init-from", str(tmp_path / "unsup" / "model"), *common]) == 0

    unsup = VideoUNet.from_pretrained(tmp_path / "unsup" / "model")
    text = VideoUNet.from_pretrained(tmp_path / "text" / "model")
    assert text.config.cross_attention_dim == 32 and text.config.sample_size == TINY_UNET_2D["sample_size"]
    # both stages trained: the SD image weights moved, and the text stage started from the unsupervised one
    before = unet_2d.state_dict()["conv_in.weight"]
    assert not torch.equal(unsup.state_dict()["conv_in.weight"], before)
    assert not torch.equal(text.state_dict()["conv_in.weight"], unsup.state_dict()["conv_in.weight"])
    from magicvideo.stages import load_vae
    from magicvideo.models.encoders import load_encoder

    pipe = MagicVideoPipeline(text, load_vae(str(sd)), load_encoder(clip))
    video = pipe("a red circle moving right", num_frames=4, steps=2, progress=False)
    assert video.frames.shape == (4, 16, 16, 3)
