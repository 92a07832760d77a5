"""VideoVAE: equals the image VAE at init, causal decoder, exact chunked decoding."""
from __future__ import annotations

import pytest
import torch
from conftest import per_frame, per_video, randomize_

from magicvideo import VideoVAE, VideoVAEConfig


@pytest.fixture(scope="module")
def video():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 16, 16, 16, generator=g) * 2 - 1


def trained_like(vae: VideoVAE, seed: int = 3) -> VideoVAE:
    """Non-zero temporal layers, as after VideoVAE training."""
    randomize_(vae.temporal_layers, seed=seed, scale=0.3)
    return vae.eval()


def all_levels(path) -> int:
    """temporal_levels that puts a temporal layer after the mid block and every up block."""
    return 1 + len(VideoVAE.from_pretrained_2d(path).config.block_out_channels)


@pytest.mark.parametrize("levels", [2, None])
def test_vae_encode_decode_match_diffusers(diffusers_vae, video, levels):
    ref, path = diffusers_vae
    vae = VideoVAE.from_pretrained_2d(path, temporal_levels=levels or all_levels(path))
    sf = ref.config.scaling_factor
    with torch.no_grad():
        ours_z = vae.encode(video, chunk_frames=5)
        ref_z = ref.encode(per_frame(video)).latent_dist.mode() * sf
        assert (ours_z - per_video(ref_z, 16)).abs().max() <= 1e-5
        ours = vae.decode(ours_z, chunk_frames=6)
        theirs = ref.decode(ref_z / sf).sample
        assert (ours - per_video(theirs, 16)).abs().max() <= 1e-5
        assert (vae.decode(ours_z, temporal=False) - per_video(theirs, 16)).abs().max() <= 1e-5


@pytest.mark.parametrize("levels", [1, 2, None])
def test_videovae_decoder_is_causal(diffusers_vae, video, levels):
    _, path = diffusers_vae
    vae = trained_like(VideoVAE.from_pretrained_2d(path, temporal_levels=levels or all_levels(path)))
    assert len(vae.temporal_layers) == (levels or all_levels(path))
    with torch.no_grad():
        z = vae.encode(video)
        z2 = z.clone()
        k = 5
        z2[:, :, k] += 1.0
        diff = (vae.decode(z, chunk_frames=16) - vae.decode(z2, chunk_frames=16)).abs().amax(dim=(0, 1, 3, 4))
    assert diff[:k].max() == 0.0, diff
    assert (diff[k + 1:] > 1e-4).all(), diff  # carried forward by the temporal layers only


@pytest.mark.parametrize("levels", [2, None])
def test_chunked_decoding_equals_full_decoding(diffusers_vae, video, levels):
    _, path = diffusers_vae
    vae = trained_like(VideoVAE.from_pretrained_2d(path, temporal_levels=levels or all_levels(path)))
    with torch.no_grad():
        z = vae.encode(video)
        full = vae.decode(z, chunk_frames=16)
        for chunk in (1, 3, 7):
            # float32 sums over other batch sizes differ by ~1e-5; a lost cache is off by ~1
            assert (vae.decode(z, chunk_frames=chunk) - full).abs().max() <= 5e-5


def test_temporal_window_bounds_the_look_back(diffusers_vae, video):
    _, path = diffusers_vae
    vae = trained_like(VideoVAE.from_pretrained_2d(path, temporal_window=4))
    with torch.no_grad():
        z = vae.encode(video)
        z2 = z.clone()
        z2[:, :, 2] += 1.0
        a, b = vae.decode(z, chunk_frames=3), vae.decode(z2, chunk_frames=3)
        diff = (a - b).abs().amax(dim=(0, 1, 3, 4))
        # two stacked layers, each looking back 3 frames: frame 2 reaches frames 2..8 at most
        assert diff[:2].max() == 0.0 and diff[3] > 1e-4
        assert diff[9:].max() == 0.0, diff
        assert (vae.decode(z, chunk_frames=16) - a).abs().max() <= 5e-5  # chunking stays exact


def test_bad_inputs_name_the_problem():
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(16, 32), norm_num_groups=8))
    with pytest.raises(ValueError, match="video must be"):
        vae.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        vae.encode(torch.zeros(1, 3, 2, 15, 16))
    with pytest.raises(ValueError, match="latents must be"):
        vae.decode(torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="temporal_window"):
        VideoVAEConfig(temporal_window=0)
    with pytest.raises(ValueError, match=r"temporal_levels must be in \[1, 3\]"):
        VideoVAEConfig(block_out_channels=(16, 32), norm_num_groups=8, temporal_levels=4)


def test_save_and_load_round_trip(tmp_path, video):
    vae = trained_like(VideoVAE(VideoVAEConfig(block_out_channels=(16, 32), norm_num_groups=8)))
    vae.save_pretrained(tmp_path / "vae")
    again = VideoVAE.from_pretrained(tmp_path / "vae")
    with torch.no_grad():
        assert (again(video[:, :, :4]) - vae(video[:, :, :4])).abs().max() == 0.0
