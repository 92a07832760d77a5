"""VideoVAE: equals the image VAE at init, causal decoder, exact chunked decoding."""
from __future__ import annotations

import pytest
import torch
from conftest import per_frame, per_video, randomize_

from magicvideo import VideoVAE, VideoVAEConfig
from magicvideo.models.video_vae import DecoderTemporalLayer


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


@pytest.mark.parametrize("levels, neighbourhood", [(1, 1), (2, 1), (None, 1), (None, 3)])
def test_videovae_decoder_is_causal(diffusers_vae, video, levels, neighbourhood):
    _, path = diffusers_vae
    vae = trained_like(VideoVAE.from_pretrained_2d(path, temporal_levels=levels or all_levels(path),
                                                   temporal_neighbourhood=neighbourhood))
    assert len(vae.temporal_layers) == (levels or all_levels(path))
    with torch.no_grad():
        z = vae.encode(video)
        z2 = z.clone()
        k = 5
        z2[:, :, k] += 1.0
        diff = (vae.decode(z, chunk_frames=16) - vae.decode(z2, chunk_frames=16)).abs().amax(dim=(0, 1, 3, 4))
    assert diff[:k].max() == 0.0, diff
    assert (diff[k + 1:] > 1e-4).all(), diff  # carried forward by the temporal layers only


@pytest.mark.parametrize("levels, neighbourhood", [(2, 1), (None, 1), (2, 3)])
def test_chunked_decoding_equals_full_decoding(diffusers_vae, video, levels, neighbourhood):
    _, path = diffusers_vae
    vae = trained_like(VideoVAE.from_pretrained_2d(path, temporal_levels=levels or all_levels(path),
                                                   temporal_neighbourhood=neighbourhood))
    with torch.no_grad():
        z = vae.encode(video)
        full = vae.decode(z, chunk_frames=16)
        for chunk in (1, 3, 7):
            # float32 sums over other batch sizes differ by ~1e-5; a lost cache is off by ~1
            assert (vae.decode(z, chunk_frames=chunk) - full).abs().max() <= 5e-5


@pytest.mark.parametrize("neighbourhood", [1, 3])
def test_temporal_window_bounds_the_look_back(diffusers_vae, video, neighbourhood):
    _, path = diffusers_vae
    vae = trained_like(VideoVAE.from_pretrained_2d(path, temporal_window=4, temporal_neighbourhood=neighbourhood))
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


@pytest.mark.parametrize("heads", [1, 2])
def test_neighbourhood_attention_matches_a_loop_over_pixels(heads):
    """Each pixel of frame t attends to the 3 x 3 pixels around it (edges replicated) in
    frames 0..t: the layer against attention written out pixel by pixel."""
    torch.manual_seed(0)
    frames, ch, size = 4, 8, 5
    layer = DecoderTemporalLayer(ch, heads, groups=4, neighbourhood=3)
    randomize_(layer, seed=1, scale=0.3)
    h = torch.randn(2 * frames, ch, size, size)
    with torch.no_grad():
        out, _ = layer(h, frames)
        normed = layer.norm(h).unflatten(0, (2, frames))  # (b, f, c, h, w)
        attn = layer.temporal_attn.attn
        d = ch // heads
        ref = torch.empty_like(normed)
        for b in range(2):
            for y in range(size):
                for x in range(size):
                    around = [(min(max(y + dy, 0), size - 1), min(max(x + dx, 0), size - 1))
                              for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                    for t in range(frames):
                        keys = torch.stack([normed[b, s, :, yy, xx] for s in range(t + 1) for yy, xx in around])
                        q, k, v = attn.to_q(normed[b, t, :, y, x]), attn.to_k(keys), attn.to_v(keys)
                        heads_out = [torch.softmax(k[:, i * d:(i + 1) * d] @ q[i * d:(i + 1) * d] / d ** 0.5, 0)
                                     @ v[:, i * d:(i + 1) * d] for i in range(heads)]
                        ref[b, t, :, y, x] = attn.to_out[0](torch.cat(heads_out))
    assert (out - (h + ref.flatten(0, 1))).abs().max() <= 1e-5


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
    with pytest.raises(ValueError, match="temporal_neighbourhood must be an odd number"):
        VideoVAEConfig(temporal_neighbourhood=2)


def test_save_and_load_round_trip(tmp_path, video):
    vae = trained_like(VideoVAE(VideoVAEConfig(block_out_channels=(16, 32), norm_num_groups=8)))
    vae.save_pretrained(tmp_path / "vae")
    again = VideoVAE.from_pretrained(tmp_path / "vae")
    with torch.no_grad():
        assert (again(video[:, :, :4]) - vae(video[:, :, :4])).abs().max() == 0.0
