"""Every training stage runs end to end through the CLI and leaves loadable models."""
from __future__ import annotations

import json

import pytest
import torch

from magicvideo import VideoUNet, VideoVAE
from magicvideo.cli import main
from magicvideo.models.encoders import load_encoder
from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.stages import StageOptions, clip_condition


def test_vae_lit_keyframe_chain(tmp_path):
    common = ["--steps", "2", "--batch-size", "2", "-q", "--checkpoint-every", "1"]
    assert main(["train", "--stage", "vae", "-o", str(tmp_path / "vae"), *common]) == 0
    assert main(["train", "--stage", "lit", "-o", str(tmp_path / "lit"), *common]) == 0
    vae = VideoVAE.from_pretrained(tmp_path / "vae" / "model")
    assert vae.config.scaling_factor != 0.18215  # set from the data: unit-variance latents
    kf = ["--vae", str(tmp_path / "vae" / "model"), "--encoder", str(tmp_path / "lit" / "model")]
    assert main(["train", "--stage", "keyframe", "--condition", "image", "-o", str(tmp_path / "kf0"), *kf,
                 "--pool-clips", "3", *common]) == 0
    assert main(["train", "--stage", "keyframe", "--condition", "text", "-o", str(tmp_path / "kf"), *kf,
                 "--init-from", str(tmp_path / "kf0" / "model"), *common]) == 0
    start = json.loads((tmp_path / "kf" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["condition"] == "text" and start["init_from"].endswith("model")
    unet = VideoUNet.from_pretrained(tmp_path / "kf" / "model")
    pipe = MagicVideoPipeline(unet, vae, load_encoder(tmp_path / "lit" / "model"), defaults={"steps": 2})
    assert pipe("a red circle moving right", num_frames=4, progress=False).frames.shape == (4, 64, 64, 3)
    assert (tmp_path / "kf" / "samples" / "final.gif").is_file()


def test_keyframe_stage_needs_a_vae(tmp_path, capsys):
    assert main(["train", "--stage", "keyframe", "-o", str(tmp_path), "--steps", "1"]) == 2
    assert "--vae" in capsys.readouterr().err


def test_clip_condition_averages_frame_embeddings():
    class Probe:
        def encode_image(self, images):  # one token = mean pixel value of each image
            return images.mean(dim=(1, 2, 3)).view(-1, 1, 1)

    video = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 16, 1, 1).expand(2, 3, 16, 2, 2)
    tokens = clip_condition(Probe(), video, frames_used=4)
    # frames 0, 5, 10, 15 of each clip
    assert torch.allclose(tokens.view(2), torch.tensor([7.5, 23.5]))


def test_stage_options_are_validated():
    with pytest.raises(ValueError, match="condition"):
        StageOptions(condition="audio")
