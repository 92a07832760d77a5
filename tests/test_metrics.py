"""`magicvideo evaluate`: FID / FVD with TorchScript feature networks, the shapes fallbacks, CLIPSIM."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from magicvideo.data.synthetic import SEEN, make_caption, render_clip, spec_for
from magicvideo.frechet import frechet_distance_of_features
from magicvideo.metrics import clipsim, evaluate_videos, load_feature_net, network_features
from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.video_io import write_video


class ImageNet(torch.nn.Module):
    """Per-channel mean and std of a frame; logits (N, 1) unless asked for features."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        features = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return features if return_features else features[:, :1]


class VideoNet(torch.nn.Module):
    """Per-channel mean and mean |frame difference| of a clip, in [-1, 1] when rescale is set."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1
        motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        return torch.cat([x.mean(dim=(2, 3, 4)), motion], dim=1)


def clips(n, seed, direction=None, size=64):
    rng = np.random.default_rng(seed)
    out, prompts = [], []
    for i in range(n):
        color, shape, d = SEEN[(seed * 7 + i) % len(SEEN)]
        d = direction or d
        out.append(render_clip(spec_for(color, shape, d, rng), 8, 8.0, resolution=size))
        prompts.append(make_caption(color, shape, d, rng))
    return out, prompts


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets")
    torch.jit.script(ImageNet()).save(str(path / "image.pt"))
    torch.jit.script(VideoNet()).save(str(path / "video.pt"))
    return path / "image.pt", path / "video.pt"


@pytest.fixture(scope="module")
def encoder():
    return MagicVideoPipeline.from_pretrained().encoder  # the shipped LiT tower


def test_fid_and_fvd_are_frechet_distances_of_the_networks_features(nets, encoder):
    gen, prompts = clips(6, 0)
    ref, _ = clips(7, 1)
    report = evaluate_videos(gen, prompts, ref, encoder, load_feature_net(nets[0], "fid"),
                             load_feature_net(nets[1], "fvd"), analyze=False)

    def image_features(videos):
        x = torch.from_numpy(np.concatenate(videos)).permute(0, 3, 1, 2).double()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1).numpy()

    def video_features(videos):
        x = torch.from_numpy(np.stack(videos)).permute(0, 4, 1, 2, 3).double() / 127.5 - 1
        return torch.cat([x.mean(dim=(2, 3, 4)), (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))], 1).numpy()

    assert report["fid"] == pytest.approx(frechet_distance_of_features(image_features(gen), image_features(ref)),
                                          rel=1e-4)
    assert report["fvd"] == pytest.approx(frechet_distance_of_features(video_features(gen), video_features(ref)),
                                          rel=1e-4)
    assert report["fid"] > 0 and report["videos"] == 6 and report["reference_videos"] == 7


def test_fvd_shapes_sees_motion_that_fid_shapes_cannot(encoder):
    ref, _ = clips(12, 3)
    reversed_in_time = [v[::-1] for v in ref]  # the same frames, the motion backwards
    same = evaluate_videos(ref, [None] * 12, ref, encoder)
    back = evaluate_videos(reversed_in_time, [None] * 12, ref, encoder)
    assert same["fid_shapes"] < 1e-6 and same["fvd_shapes"] < 1e-6
    assert back["fid_shapes"] < 1e-6  # a set of frames does not know their order
    # far above the floor of identical sets (the shipped tower maps the frames of a clip close
    # together since its alignment term, so order costs ~0.03 on unit-vector features)
    assert back["fvd_shapes"] > 100 * max(same["fvd_shapes"], back["fid_shapes"], 1e-5)


def test_clipsim_prefers_the_right_prompts_and_the_analyzer_scores_them(encoder):
    videos, prompts = clips(8, 4)
    right = clipsim(encoder, videos, prompts)
    wrong = clipsim(encoder, videos, prompts[1:] + prompts[:1])
    assert right > wrong + 0.05
    report = evaluate_videos(videos, prompts, None, encoder)
    assert report["clipsim"] == pytest.approx(right) and "fid_shapes" not in report
    assert report["analyzer"]["color_acc"] == 1.0 and report["analyzer"]["direction_acc"] == 1.0


def test_torch_export_programs_load_too(tmp_path):
    class Features(torch.nn.Module):  # a .pt2 program is called as net(x)
        def forward(self, x):
            return VideoNet()(x, rescale=True)

    x = torch.rand(2, 3, 4, 8, 8) * 255
    program = torch.export.export(Features(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("n")}})
    torch.export.save(program, str(tmp_path / "video.pt2"))
    net = load_feature_net(tmp_path / "video.pt2", "--fvd-net")
    features = network_features(net, [x[:1], x[1:]], "--fvd-net")
    np.testing.assert_allclose(features, VideoNet()(x, rescale=True).double().numpy(), rtol=1e-5)


def test_bad_feature_networks_are_named(tmp_path, encoder):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt: not a TorchScript module"):
        load_feature_net(tmp_path / "junk.pt", "--fid-net")
    with pytest.raises(ValueError, match="not found"):
        load_feature_net(tmp_path / "missing.pt", "--fid-net")
    torch.jit.script(torch.nn.Identity()).save(str(tmp_path / "identity.pt"))  # returns frames, not (N, D)
    videos, _ = clips(2, 5)
    with pytest.raises(ValueError, match="--fid-net: must return features"):
        evaluate_videos(videos, [None, None], videos, encoder, fid_net=load_feature_net(tmp_path / "identity.pt", "x"))


def test_cli_evaluate(tmp_path, pipeline_dir, nets):
    for name, (videos, prompts) in (("gen", clips(3, 6, size=16)), ("ref", clips(3, 7, size=16))):
        (tmp_path / name).mkdir()
        for i, v in enumerate(videos):
            write_video(v, tmp_path / name / f"{i}.mp4", fps=8.0)
        (tmp_path / name / "captions.jsonl").write_text(
            "".join(json.dumps({"path": f"{i}.mp4", "caption": p}) + "\n" for i, p in enumerate(prompts)))
    base = [sys.executable, "-m", "magicvideo", "evaluate", "--pipeline", str(pipeline_dir)]
    run = subprocess.run([*base, "gen", "--reference", "ref", "--fvd-net", str(nets[1]), "--out", "r.json"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert {"fvd", "fid_shapes", "fvd_shapes", "clipsim", "analyzer"} <= set(report) and "fid" not in report
    # no feature networks: said on stderr; the default is a shapes benchmark of the pipeline
    run = subprocess.run([*base, "--num-videos", "2", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0 and "no feature networks given" in run.stderr
    assert json.loads(run.stdout)["videos"] == 2
    bad = subprocess.run([*base, "gen", "--fid-net", "gen/0.mp4", "--out", "bad.json"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not a TorchScript module" in bad.stderr
    assert not (tmp_path / "bad.json").exists()


def _unet(**kw):
    from magicvideo import VideoUNet, VideoUNetConfig

    torch.manual_seed(0)
    unet = VideoUNet(VideoUNetConfig(block_out_channels=(16, 32), attention_levels=(True, True),
                                     num_attention_heads=(2, 2), cross_attention_dim=24, max_frames=8, **kw)).eval()
    with torch.no_grad():  # the temporal layers start as the identity: give them something to do
        for name, p in unet.named_parameters():
            if "frame_op" in name or ("temporal_attn" in name and "to_out" in name):
                p.add_(torch.randn_like(p) * 0.2)
    return unet


def _clips(n=3, frames=8):
    g = torch.Generator().manual_seed(1)
    latents, cond = torch.randn(n, 4, frames, 8, 8, generator=g), torch.randn(n, 5, 24, generator=g)
    return latents, cond, torch.tensor([4.0, 8.0, 16.0])[:n]


def test_denoising_loss_is_the_training_loss_at_fixed_noise_levels():
    from magicvideo.diffusion import NoiseSchedule, add_noise, training_target
    from magicvideo.metrics import denoising_loss

    unet, schedule = _unet(), NoiseSchedule(frame_noise_correlation=0.2)
    latents, cond, fps = _clips()
    losses = denoising_loss(unet, latents, cond, fps, schedule, levels=2, seed=3, batch=2)
    assert losses.shape == (3, 2)
    abar = schedule.alphas_cumprod()
    for i in range(3):  # one clip at a time, by the training formulas
        noise = schedule.noise((1, 4, 8, 8, 8), generator=torch.Generator().manual_seed(3 * 100_003 + i))
        for k, step in enumerate((250, 750)):
            t = torch.tensor([step])
            x0 = latents[i : i + 1]
            with torch.no_grad():
                pred = unet(add_noise(x0, noise, t, abar), t, cond[i : i + 1], fps=fps[i : i + 1])
            target = training_target(x0, noise, t, abar, schedule.prediction_type)
            assert losses[i, k] == pytest.approx((pred - target).square().mean().item(), rel=1e-4)


def test_denoising_loss_reversed_sees_only_what_knows_frame_order():
    from magicvideo.diffusion import NoiseSchedule
    from magicvideo.metrics import denoising_loss

    latents, cond, fps = _clips()
    schedule = NoiseSchedule()

    def gap(unet):
        ahead = denoising_loss(unet, latents, cond, fps, schedule, levels=3)
        back = denoising_loss(unet, latents, cond, fps, schedule, levels=3, reverse=True)
        return np.abs(back - ahead).max() / ahead.mean()

    # frames independent, or mixed by attention that has no notion of order: the reversed clip is
    # the same problem played backwards, the same loss
    assert gap(_unet(temporal_conv_op="none", temporal_attention="none")) < 1e-5
    assert gap(_unet(temporal_conv_op="none", temporal_attention="bidirectional")) < 1e-5
    # causal attention, or per-frame adaptor scales, tell first from last
    assert gap(_unet(temporal_conv_op="none", temporal_attention="directed")) > 1e-3
    assert gap(_unet(temporal_conv_op="conv1d", temporal_attention="none")) > 1e-3
    assert gap(_unet(temporal_conv_op="adaptor", temporal_attention="bidirectional")) > 1e-3


def test_denoising_loss_rejects_mismatched_inputs():
    from magicvideo.diffusion import NoiseSchedule
    from magicvideo.metrics import denoising_loss

    latents, cond, fps = _clips()
    with pytest.raises(ValueError, match="need latents"):
        denoising_loss(_unet(), latents, cond[:2], fps, NoiseSchedule())
