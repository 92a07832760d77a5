"""The cascade after the keyframes: interpolation (16 -> 61), super-resolution, the pipeline."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from magicvideo import VideoUNet, VideoUNetConfig, VideoVAE, VideoVAEConfig
from magicvideo.cli import main
from magicvideo.config import SRUNetConfig, get_preset
from magicvideo.diffusion import NoiseSchedule
from magicvideo.interpolate import (GAP, WINDOW, assemble, interpolate_latents, interpolation_channels, output_frames,
                                    window_conditioning)
from magicvideo.models.encoders import MiniLMLiTEncoder
from magicvideo.models.sr_unet import SR_SCHEDULE, SRUNet, augment_low_res, project_to_low_res, upscale_video
from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.sampling import SamplingOptions

TINY_UNET = VideoUNetConfig(block_out_channels=(16, 32), attention_levels=(False, True), num_attention_heads=(2, 2),
                            sample_size=8, max_frames=8)
TINY_SR = SRUNetConfig(block_out_channels=(16, 32), norm_num_groups=8, low_res_size=32)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    unet = VideoUNet(TINY_UNET)
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(16, 32, 32), norm_num_groups=8))  # 8px latents -> 32px
    interp = unet.with_condition_channels(interpolation_channels(4))
    sr = SRUNet(TINY_SR)
    with torch.no_grad():  # make the new channels matter; let the SR model add more than bicubic
        interp.conv_in.weight.normal_(0, 0.1)
        sr.unet.conv_out.weight.normal_(0, 0.1)
    return unet, vae, MiniLMLiTEncoder(), interp, sr


# -- interpolation --------------------------------------------------------------------------
def test_with_condition_channels_starts_as_the_keyframe_model():
    torch.manual_seed(0)
    unet = VideoUNet(TINY_UNET).eval()
    with torch.no_grad():  # non-trivial video parameters
        for name, p in unet.named_parameters():
            if "temporal_attn.attn.to_out" in name or "fps_embedding" in name:
                p.normal_(0, 0.1)
    interp = unet.with_condition_channels(9).eval()
    x, ctx = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 2, 384)
    cond = torch.randn(2, 9, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(interp(x, 10, ctx, fps=32.0, conditioning=cond), unet(x, 10, ctx, fps=32.0),
                                   atol=1e-6, rtol=0)
    assert interp.config.condition_channels == 9 and unet.config.condition_channels == 0


def test_window_conditioning_and_assembly_layout():
    first, last = torch.full((2, 4, 3, 3), 1.0), torch.full((2, 4, 3, 3), 2.0)
    cond = window_conditioning(first, last)
    assert cond.shape == (2, 9, WINDOW, 3, 3)
    assert torch.all(cond[:, :4] == 1.0) and torch.all(cond[:, 4:8] == 2.0)
    assert cond[0, 8, :, 0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    keys = torch.arange(4.0).view(1, 1, 4, 1, 1)
    windows = 10 + torch.arange(3.0 * WINDOW).view(3, 1, WINDOW, 1, 1)
    out = assemble(keys, windows)
    assert out.shape[2] == output_frames(4) == 13
    assert out.flatten().tolist() == [0, 11, 12, 13, 1, 16, 17, 18, 2, 21, 22, 23, 3]
    assert output_frames(16) == 61 and GAP == 3


def test_interpolate_latents_keeps_the_keyframes(parts):
    unet, vae, encoder, interp, _ = parts
    keys = torch.randn(1, 4, 4, 8, 8)
    pixels = vae.decode(keys)
    out = interpolate_latents(interp, keys, pixels, encoder, 8.0, NoiseSchedule(), steps=2)
    assert out.shape == (1, 4, 13, 8, 8)
    assert torch.equal(out[:, :, ::4], keys)
    assert not torch.equal(out[:, :, 1], out[:, :, 2])
    with pytest.raises(ValueError, match="condition channels"):
        interpolate_latents(unet, keys, pixels, encoder, 8.0, NoiseSchedule(), steps=1)


# -- super-resolution -----------------------------------------------------------------------
def test_sr_unet_shapes_round_trip_and_errors(tmp_path, parts):
    sr = parts[4]
    low, noisy = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out = sr(noisy, torch.tensor([5, 500]), low, torch.tensor([0, 100]))
    assert out.shape == (2, 3, 128, 128)
    sr.save_pretrained(tmp_path / "sr")
    again = SRUNet.from_pretrained(tmp_path / "sr")
    with torch.no_grad():
        torch.testing.assert_close(again(noisy, torch.tensor([5, 500]), low, torch.tensor([0, 100])), out)
    with pytest.raises(ValueError, match="not 4x"):
        sr(torch.randn(2, 3, 64, 64), torch.tensor([1, 1]), low, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="multiple of 8"):
        sr(torch.randn(1, 3, 36, 36), torch.tensor([1]), torch.randn(1, 3, 9, 9), torch.tensor([0]))


def test_noise_augmentation_is_the_forward_process():
    x, noise = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    level = torch.tensor([0, 20, 349])
    ref = SR_SCHEDULE.scheduler("ddim").add_noise(x, noise, level)
    torch.testing.assert_close(augment_low_res(x, level, SR_SCHEDULE.alphas_cumprod(), noise), ref)


def test_upscale_video_chunks_and_shared_noise(parts):
    sr = parts[4]
    frame = torch.rand(1, 3, 32, 32) * 2 - 1
    frames = torch.cat([frame, frame, frame, torch.rand(1, 3, 32, 32) * 2 - 1])
    whole = upscale_video(sr, frames, SR_SCHEDULE, steps=2, batch_frames=8)
    chunked = upscale_video(sr, frames, SR_SCHEDULE, steps=2, batch_frames=3)
    assert whole.shape == (4, 3, 128, 128)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)  # chunking changes nothing
    assert torch.allclose(whole[0], whole[2], atol=1e-5)  # same input + shared noise = same output
    independent = upscale_video(sr, frames, SR_SCHEDULE, steps=2, shared_noise=False)
    assert not torch.allclose(independent[0], independent[2], atol=1e-3)


def test_residual_sr_starts_as_bicubic_and_plain_sr_does_not():
    torch.manual_seed(0)
    frames = torch.rand(3, 3, 32, 32) * 2 - 1
    bicubic = F.interpolate(frames, scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
    residual = SRUNet(TINY_SR)
    torch.testing.assert_close(upscale_video(residual, frames, SR_SCHEDULE, steps=3, consistency_steps=0), bicubic)
    plain = SRUNet(dataclasses.replace(TINY_SR, residual=False))
    assert (upscale_video(plain, frames, SR_SCHEDULE, steps=3) - bicubic).abs().mean() > 0.1
    assert SR_SCHEDULE.prediction_type == "sample"


def test_projection_to_low_res_agrees_with_the_input_and_never_moves_away_from_a_consistent_frame():
    gen = torch.Generator().manual_seed(0)
    truth = (torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1).clamp(-0.9, 1)  # any frame in range
    truth[:, :, :8] = -1.0  # a black band: its low-res pixels are exactly -1
    low = F.avg_pool2d(truth, 4)
    start = (truth + 0.3 * torch.randn(truth.shape, generator=gen)).clamp(-1, 1)
    distances = [(project_to_low_res(start, low, 4, steps=k) - truth).norm().item() for k in range(8)]
    assert all(b <= a + 1e-5 for a, b in zip(distances, distances[1:]))  # POCS: never farther from truth
    out = project_to_low_res(start, low, 4, steps=100)
    assert out.min() >= -1 and out.max() <= 1
    torch.testing.assert_close(F.avg_pool2d(out, 4), low, atol=1e-3, rtol=0)
    # block mean -1 and no pixel below -1: the only consistent block is black (within half a level)
    assert (out[:, :, :8] + 1).abs().max() < 1 / 255 and (start[:, :, :8] + 1).abs().max() > 0.3
    torch.testing.assert_close(project_to_low_res(truth, low, 4, steps=5), truth)  # consistent: kept
    torch.testing.assert_close(project_to_low_res(start * 2, low, 4, steps=0), (start * 2).clamp(-1, 1))
    with pytest.raises(ValueError, match="not 4x"):
        project_to_low_res(start, low[..., :4], 4)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        project_to_low_res(start, low, 4, steps=-1)


def test_upscale_video_output_is_consistent_with_its_input(parts):
    sr = parts[4]
    frames = (torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).clamp(-0.9, 0.9)
    raw = upscale_video(sr, frames, SR_SCHEDULE, steps=2, consistency_steps=0)
    out = upscale_video(sr, frames, SR_SCHEDULE, steps=2)
    scale = sr.config.scale
    assert (F.avg_pool2d(raw, scale) - frames).abs().mean() > 10 * (F.avg_pool2d(out, scale) - frames).abs().mean()
    torch.testing.assert_close(out, project_to_low_res(raw, frames, scale, steps=10))


def test_sr_stage_regresses_the_residual_over_bicubic():
    from magicvideo.stages import StageOptions, sr_stage

    stage = sr_stage(StageOptions(preset="tiny"))
    low, high = stage.make_batch(0, 2)
    with torch.no_grad():
        stage.model.unet.conv_out.bias.fill_(0.0)
        stage.model.unet.conv_out.weight.zero_()  # predicts x0 = 0: the loss is the residual's energy
        loss, _ = stage.loss((low, high), torch.Generator().manual_seed(0))
    residual = high - F.interpolate(low, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(loss, (residual**2).mean())
    assert loss < ((high**2).mean()) / 10  # much less than predicting the frame itself


def test_sr_stage_goes_on_from_a_trained_model_and_sees_the_background(tmp_path, parts):
    from magicvideo.stages import StageOptions, sr_stage

    parts[4].save_pretrained(tmp_path / "sr")
    stage = sr_stage(StageOptions(init_from=str(tmp_path / "sr")), crop=16)  # 16 of the model's 32 px
    for k, v in parts[4].state_dict().items():
        assert torch.equal(stage.model.state_dict()[k], v)
    low, _ = stage.make_batch(0, 64)
    has_object = (low > -0.9).flatten(1).any(dim=1)
    assert 0 < (~has_object).sum() < 32  # mostly object-centred crops, some of the empty background
    only_object = sr_stage(StageOptions(init_from=str(tmp_path / "sr")), crop=16, background_crops=0.0)
    assert (only_object.make_batch(0, 64)[0] > -0.9).flatten(1).any(dim=1).all()


def test_sr_training_pairs_are_the_same_scene():
    from magicvideo.stages import sr_frame_pair

    low, high = sr_frame_pair(3, seed=0, low_res=32, scale=4)
    assert low.shape == (3, 32, 32) and high.shape == (3, 128, 128)
    torch.testing.assert_close(low, F.avg_pool2d(high[None], 4)[0])  # the area average of the HR render
    assert (low > -0.9).any()  # an object is in view
    again_low, again_high = sr_frame_pair(3, seed=0, low_res=32, scale=4)
    assert torch.equal(again_high, high)  # deterministic
    assert not torch.equal(sr_frame_pair(4, seed=0, low_res=32, scale=4)[1], high)


# -- the cascade ----------------------------------------------------------------------------
def test_cascade_pipeline_round_trip_and_shapes(tmp_path, parts):
    unet, vae, encoder, interp, sr = parts
    pipe = MagicVideoPipeline(unet, vae, encoder, defaults=SamplingOptions(steps=2, interpolation_steps=1, sr_steps=1),
                              interpolation=interp, sr=sr)
    pipe.save_pretrained(tmp_path / "p")
    spec = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    assert set(spec["stages"]) == {"keyframe", "vae", "encoder", "interpolation", "sr"}
    loaded = MagicVideoPipeline.from_pretrained(tmp_path / "p")
    full = loaded("a red circle moving right", num_frames=3, fps=4.0, progress=False)
    assert full.frames.shape == (9, 128, 128, 3) and full.fps == 16.0
    keys = loaded("a red circle moving right", num_frames=3, fps=4.0, progress=False, interpolate=False,
                  upscale=False)
    assert keys.frames.shape == (3, 32, 32, 3) and keys.fps == 4.0
    again = pipe("a red circle moving right", num_frames=3, fps=4.0, progress=False)
    assert np.array_equal(full.frames, again.frames)



def test_progress_reports_every_step_of_every_stage_and_raising_from_it_stops_the_cascade(parts):
    unet, vae, encoder, interp, sr = parts
    pipe = MagicVideoPipeline(unet, vae, encoder, interpolation=interp, sr=sr,
                              defaults=SamplingOptions(steps=3, interpolation_steps=2, sr_steps=2, sr_batch_frames=4))
    calls, steps = [], {"keyframe": 0, "interpolation": 0, "sr": 0}
    # one forward per denoising step (CFG doubles the batch, not the calls)
    hooks = [model.register_forward_hook(lambda *_, name=name: steps.__setitem__(name, steps[name] + 1))
             for name, model in (("keyframe", unet), ("interpolation", interp), ("sr", sr))]
    try:
        pipe("a red circle moving right", num_frames=3, progress=False, on_progress=lambda *c: calls.append(c))
        # 3 keyframes -> 9 frames, upscaled in batches of 4, 4 and 1
        assert calls == [*[("keyframes", i, 3) for i in (1, 2, 3)], ("decoding", 1, 2),
                         *[("interpolation", i, 2) for i in (1, 2)], ("decoding", 2, 2),
                         *[("super-resolution", i, 6) for i in range(1, 7)]]
        assert steps == {"keyframe": 3, "interpolation": 2, "sr": 6}

        class Cancelled(Exception):
            pass

        for stage, stop_at, ran in (("keyframes", 2, {"keyframe": 2, "interpolation": 0, "sr": 0}),
                                    ("interpolation", 1, {"keyframe": 3, "interpolation": 1, "sr": 0}),
                                    ("super-resolution", 3, {"keyframe": 3, "interpolation": 2, "sr": 3})):
            def cancel(s: str, step: int, total: int, at: tuple = (stage, stop_at)) -> None:
                if (s, step) == at:
                    raise Cancelled

            steps.update(keyframe=0, interpolation=0, sr=0)
            with pytest.raises(Cancelled):
                pipe("a red circle moving right", num_frames=3, progress=False, on_progress=cancel)
            assert steps == ran  # nothing ran past the step that raised
    finally:
        for hook in hooks:
            hook.remove()


def test_cascade_problems_are_named_before_compute(tmp_path, parts):
    unet, vae, encoder, interp, sr = parts
    plain = MagicVideoPipeline(unet, vae, encoder)
    with pytest.raises(ValueError, match="no 'interpolation' stage"):
        plain("a red circle", num_frames=4, interpolate=True)
    with pytest.raises(ValueError, match="no 'sr' stage"):
        plain("a red circle", num_frames=4, upscale=True)
    with pytest.raises(ValueError, match="interpolation stage: expects 4 latent \\+ 0 condition channels"):
        MagicVideoPipeline(unet, vae, encoder, interpolation=unet)
    odd = SRUNet(SRUNetConfig(block_out_channels=(16, *[32] * 6), norm_num_groups=8))  # needs 256px multiples
    with pytest.raises(ValueError, match="sr stage cannot upscale 32px frames"):
        MagicVideoPipeline(unet, vae, encoder, sr=odd)
    MagicVideoPipeline(unet, vae, encoder, interpolation=interp, sr=sr).save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "sr" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="pipeline stage 'sr'.*not a readable safetensors file"):
        MagicVideoPipeline.from_pretrained(tmp_path / "p")


def test_cli_skips_stages_on_request(tmp_path, parts, capsys):
    from magicvideo.video_io import read_video

    unet, vae, encoder, interp, sr = parts
    MagicVideoPipeline(unet, vae, encoder, defaults=SamplingOptions(steps=1, interpolation_steps=1, sr_steps=1),
                       interpolation=interp, sr=sr).save_pretrained(tmp_path / "p")
    out = tmp_path / "keys.gif"
    assert main(["generate", "a blue square moving up", "-o", str(out), "--pipeline", str(tmp_path / "p"),
                 "--num-frames", "3", "--no-interpolate", "--no-upscale", "-q"]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (3, 32, 32, 3)



def test_cli_sr_steps_flag_sets_the_sr_stage_steps(tmp_path, parts):
    """--sr-steps N makes what the pipeline makes with sr_steps=N in its defaults (1 here, 2 in pipeline.json)."""
    import dataclasses

    from PIL import Image

    def frames(stem: str) -> np.ndarray:  # a .png output: lossless frames stem_0000.png ...
        return np.stack([np.asarray(Image.open(f)) for f in sorted(tmp_path.glob(f"{stem}_*.png"))])

    unet, vae, encoder, interp, sr = parts
    pipe = MagicVideoPipeline(unet, vae, encoder, defaults=SamplingOptions(steps=1, sr_steps=1), sr=sr)
    pipe.save_pretrained(tmp_path / "p")
    generate = ["generate", "a blue square moving up", "--pipeline", str(tmp_path / "p"), "--num-frames", "2", "-q"]
    assert main([*generate, "-o", str(tmp_path / "two.png"), "--sr-steps", "2"]) == 0
    assert main([*generate, "-o", str(tmp_path / "one.png")]) == 0
    pipe.defaults = dataclasses.replace(pipe.defaults, sr_steps=2)
    expected = pipe("a blue square moving up", num_frames=2, progress=False).frames
    assert np.array_equal(frames("two"), expected)
    assert not np.array_equal(frames("one"), expected)
    with pytest.raises(SystemExit):
        main([*generate, "-o", str(tmp_path / "bad.gif"), "--sr-steps", "0"])

# -- stages ---------------------------------------------------------------------------------
def test_interpolation_and_sr_stages_train_through_the_cli(tmp_path):
    from magicvideo.stages import StageOptions, interpolation_stage

    torch.manual_seed(0)
    VideoVAE(VideoVAEConfig()).save_pretrained(tmp_path / "vae")
    MiniLMLiTEncoder().save_pretrained(tmp_path / "enc")
    VideoUNet(get_preset("tiny").unet).save_pretrained(tmp_path / "kf")  # a keyframe model of the preset
    common = ["--steps", "2", "--batch-size", "2", "-q"]
    assert main(["train", "--stage", "interpolation", "-o", str(tmp_path / "interp"), "--vae", str(tmp_path / "vae"),
                 "--encoder", str(tmp_path / "enc"), "--init-from", str(tmp_path / "kf"), *common]) == 0
    model = VideoUNet.from_pretrained(tmp_path / "interp" / "model")
    assert model.config.condition_channels == 9
    stage = interpolation_stage(StageOptions(vae=str(tmp_path / "vae"), encoder=str(tmp_path / "enc"),
                                             init_from=str(tmp_path / "kf")))
    kf = VideoUNet.from_pretrained(tmp_path / "kf").state_dict()
    for name, value in stage.model.state_dict().items():
        if name == "conv_in.weight":
            assert torch.equal(value[:, :4], kf[name]) and not value[:, 4:].any()
        else:
            assert torch.equal(value, kf[name])
    assert main(["train", "--stage", "sr", "-o", str(tmp_path / "sr"), *common]) == 0
    assert SRUNet.from_pretrained(tmp_path / "sr" / "model").config.scale == 4
    assert (tmp_path / "sr" / "samples" / "final.png").is_file()
