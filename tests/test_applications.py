"""Applications on the pipeline: image-to-video, variations, editing, long videos; their CLIs."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import randomize_
from PIL import Image

from magicvideo.cli import main
from magicvideo.data.synthetic import render_clip, spec_for
from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.video_io import fit_frames, read_video, write_video

FAST = dict(steps=4, progress=False, interpolate=False, upscale=False)


@pytest.fixture(scope="module")
def pipe(pipeline_dir):
    """The tiny random pipeline with non-trivial temporal layers (frames really interact)."""
    p = MagicVideoPipeline.from_pretrained(pipeline_dir)
    randomize_(p.unet, seed=5)
    return p


@pytest.fixture(scope="module")
def clip():
    return render_clip(spec_for("red", "square", "right", np.random.default_rng(0)), 8, 8.0, resolution=32)


def test_fit_frames_centre_crops_and_resizes():
    frames = np.full((2, 20, 40, 3), 100, np.uint8)
    frames[:, :, :8] = 255  # a band that the centre crop removes
    out = fit_frames(frames, 10)
    assert out.shape == (2, 10, 10, 3) and (out == 100).all()
    assert fit_frames(frames[:, :, 10:30], 20).tobytes() == frames[:, :, 10:30].tobytes()  # already fits
    with pytest.raises(ValueError, match="tiny.png: 4x4 is too small"):
        fit_frames(np.zeros((1, 4, 4, 3), np.uint8), 16, "tiny.png")


def test_known_frames_are_held_exactly_and_steer_the_rest(pipe):
    cond = pipe.encoder.encode_text(["a red circle"])
    args = dict(num_frames=6, fps=8.0, steps=4, guidance=3.0, seed=1, scheduler="ddim")
    free = pipe.generate_latents(cond, **args)
    known = torch.randn(1, 4, 2, 8, 8)
    held = pipe.generate_latents(cond, **args, known=known)
    assert torch.equal(held[:, :, :2], known)
    assert (held[:, :, 2:] - free[:, :, 2:]).abs().max() > 1e-3  # later frames see the held ones


def test_long_video_continues_window_by_window(pipe):
    cond = pipe.encoder.encode_text(["a red circle"])
    args = dict(fps=8.0, steps=3, guidance=3.0, seed=2, scheduler="ddim")
    long = pipe.generate_latents(cond, num_frames=19, context_frames=3, **args)
    first = pipe.generate_latents(cond, num_frames=8, **args)
    assert long.shape == (1, 4, 19, 8, 8)
    torch.testing.assert_close(long[:, :, :8], first, atol=0, rtol=0)  # the first window is the 8-frame video
    # the second window (seed + 8) held frames 5..7 and made 5 new frames, 8..12
    second = pipe.generate_latents(cond, num_frames=8, known=first[:, :, 5:], **{**args, "seed": 2 + 8})
    torch.testing.assert_close(long[:, :, 8:13], second[:, :, 3:], atol=0, rtol=0)
    video = pipe("a red circle", num_frames=19, context_frames=3, seed=2, steps=3, progress=False)
    assert video.frames.shape[0] == 19


def test_long_sources_are_edited_window_by_window(pipe, clip):
    cond = pipe.encoder.encode_text(["a blue circle"])
    init = torch.randn(1, 4, 13, 8, 8)
    args = dict(fps=8.0, steps=4, guidance=3.0, seed=3, scheduler="ddim", strength=0.5)
    long = pipe.generate_latents(cond, 13, init=init, context_frames=3, **args)
    first = pipe.generate_latents(cond, 8, init=init[:, :, :8], **args)
    torch.testing.assert_close(long[:, :, :8], first, atol=0, rtol=0)  # the first window is an 8-frame edit
    # the second window (seed + 8) edits source frames 5..12, holding the edited frames 5..7
    second = pipe.generate_latents(cond, 8, init=init[:, :, 5:], known=first[:, :, 5:], **{**args, "seed": 3 + 8})
    torch.testing.assert_close(long[:, :, 8:], second[:, :, 3:], atol=0, rtol=0)
    assert (long[:, :, 8:] - init[:, :, 8:]).abs().max() > 1e-2  # really edited, not copied
    kept = pipe.generate_latents(cond, 13, init=init, context_frames=3, **{**args, "strength": 0.0})
    assert torch.equal(kept, init)
    edited = pipe.edit(np.concatenate([clip, clip[:5]]), "a blue square moving right", strength=0.5, **FAST)
    assert edited.frames.shape == (13, 16, 16, 3)


def test_sdedit_strength_zero_keeps_the_source_and_noise_is_shared_by_frames(pipe, clip):
    source = pipe.render(pipe.vae.encode(pipe.pixels(clip)), fps=8.0)
    kept = pipe.edit(clip, "a blue square moving right", strength=0.0, **FAST)
    assert np.array_equal(kept.frames, source.frames)

    first = {}
    real = pipe.unet

    class Probe(torch.nn.Module):  # records the first input of the sampler
        def __init__(self):
            super().__init__()
            self.real, self.config = real, real.config

        def forward(self, x, t, cond, fps=None):
            first.setdefault("x", x.clone())
            return self.real(x, t, cond, fps=fps)

    pipe.unet = Probe()
    try:
        black = np.zeros_like(clip)
        pipe.edit(black, "a blue square", strength=0.5, **FAST)
    finally:
        pipe.unet = real
    x = first["x"][0]  # (C, F, h, w): noised latents of a constant video with one shared noise
    assert (x - x[:, :1]).abs().max() < 1e-5 and x.abs().max() > 0.1


@pytest.mark.parametrize("strength, calls", [(0.3, 3), (0.75, 8), (1.0, 10)])
def test_sdedit_runs_the_last_strength_fraction_of_the_schedule(pipe, clip, strength, calls):
    seen = []
    cond = pipe.encoder.encode_text(["a blue square"])
    init = pipe.vae.encode(pipe.pixels(clip))
    pipe.generate_latents(cond, 8, 8.0, 10, 1.0, 0, "ddim", callback=lambda i, t, x: seen.append(t),
                          init=init, strength=strength)
    timesteps = pipe.schedule.scheduler("ddim")
    timesteps.set_timesteps(10)
    assert seen == [int(t) for t in timesteps.timesteps[10 - calls:]]


def test_vary_makes_n_different_deterministic_videos(pipe, clip):
    videos = pipe.vary(clip, n=3, strength=0.6, seed=4, **FAST)
    assert len(videos) == 3 and all(v.frames.shape == (8, 16, 16, 3) for v in videos)
    assert all(not np.array_equal(videos[i].frames, videos[j].frames) for i in range(3) for j in range(i))
    again = pipe.vary(clip, n=1, strength=0.6, seed=5, **FAST)[0]
    assert np.array_equal(again.frames, videos[1].frames)  # variation i uses seed + i


def test_application_defaults_come_from_the_pipeline(pipe, clip, monkeypatch):
    monkeypatch.setattr(pipe, "defaults", dataclasses.replace(pipe.defaults, image_guidance=1.5, vary_strength=0.4,
                                                              edit_strength=0.8))
    used = []
    real = pipe.generate_latents
    monkeypatch.setattr(pipe, "generate_latents", lambda cond, frames, fps, steps, guidance, *a, **k:
                        used.append((guidance, k.get("strength"))) or real(cond, frames, fps, steps, guidance, *a, **k))
    pipe.animate(clip[0], num_frames=3, **FAST)
    pipe.vary(clip, n=1, **FAST)
    pipe.edit(clip, "a blue square moving right", **FAST)
    pipe.edit(clip, "a blue square moving right", strength=0.3, guidance=2.0, **FAST)
    pipe("a red square", num_frames=3, **FAST)
    text = pipe.defaults.guidance
    assert used == [(1.5, None), (1.5, 0.4), (text, 0.8), (2.0, 0.3), (text, None)]



def test_every_entry_point_reports_its_steps_to_on_progress(pipe, clip):
    def run(call, **kwargs):
        calls = []
        call(**kwargs, on_progress=lambda *c: calls.append(c))
        return calls

    def keyframes(total, times=1):
        return [*[("keyframes", i, total) for i in range(1, total + 1)], ("decoding", 1, 1)] * times

    assert run(pipe.animate, image=clip[0], num_frames=4, **FAST) == keyframes(4)
    assert run(pipe.vary, video=clip, n=2, strength=0.5, **FAST) == keyframes(2, times=2)  # half of 4 steps each
    assert run(pipe.edit, video=clip, prompt="a blue square", strength=0.75, **FAST) == keyframes(3)
    assert run(pipe.edit, video=clip, prompt="a blue square", strength=0.0, **FAST) == [("decoding", 1, 1)]
    # a long video: windows of 8 frames continuing from 3 -> 8 + 5 + 5 + 1 = 19 frames, 4 windows of 4 steps,
    # each decoded as soon as it is sampled (the cascade runs window by window), the steps numbered on
    sampler_steps = []
    assert run(pipe, prompt="a red circle", num_frames=19, context_frames=3,
               callback=lambda i, t, x: sampler_steps.append(i), **FAST) == \
        [c for w in range(4) for c in [*[("keyframes", 4 * w + i, 16) for i in range(1, 5)], ("decoding", w + 1, 4)]]
    assert sampler_steps == [0, 1, 2, 3] * 4
    latents = pipe.vae.encode(pipe.pixels(clip))
    assert run(pipe.render, latents=latents, fps=8.0) == [("decoding", 1, 1)]

def test_animate_anchors_the_first_frame_to_the_image(pipe, clip):
    image = clip[0]
    image_only = pipe.render(pipe.vae.encode(pipe.pixels(image[None])), fps=8.0).frames[0]
    anchored = pipe.animate(image, num_frames=5, **FAST)
    free = pipe.animate(image, num_frames=5, anchor=False, **FAST)
    # the VideoVAE decoder is causal in time, so frame 0 decodes from the image's latent alone
    assert np.abs(anchored.frames[0].astype(int) - image_only).max() <= 1
    assert np.abs(free.frames[0].astype(int) - image_only).max() > 10
    with_prompt = pipe.animate(image, prompt="a red square moving right", num_frames=5, **FAST)
    assert not np.array_equal(with_prompt.frames, anchored.frames)


@pytest.mark.parametrize("call, message", [
    (lambda p, c: p.vary(c, n=0, **FAST), "n must be"),
    (lambda p, c: p.vary(c, strength=1.5, **FAST), "strength"),
    (lambda p, c: p.edit(c, "a cat", strength=-0.1, **FAST), "strength"),
    (lambda p, c: p.edit(np.zeros((1025, 16, 16, 3), np.uint8), "a cat", **FAST), "between 1 and 1024"),
    (lambda p, c: p.edit(c, " ", **FAST), "prompt is empty"),
    (lambda p, c: p.animate(c, **FAST), "expected an image"),
])
def test_bad_application_requests(pipe, clip, call, message):
    with pytest.raises(ValueError, match=message):
        call(pipe, clip)


def test_cli_applications_write_their_videos(tmp_path, pipeline_dir, clip):
    src = write_video(clip, tmp_path / "src.mp4", fps=8.0)
    Image.fromarray(clip[0]).save(tmp_path / "img.png")
    common = ["--pipeline", str(pipeline_dir), "--steps", "2", "-q"]
    assert main(["animate", str(tmp_path / "img.png"), "-o", str(tmp_path / "a.gif"), "--num-frames", "4",
                 *common]) == 0
    assert main(["vary", str(src), "-n", "2", "-o", str(tmp_path / "v.mp4"), *common]) == 0
    assert main(["edit", str(src), "a blue square moving right", "--strength", "0.5", "-o", str(tmp_path / "e.mp4"),
                 *common]) == 0
    assert read_video(tmp_path / "a.gif")[0].shape[0] == 4
    for name in ("v_0.mp4", "v_1.mp4", "e.mp4"):
        frames, fps = read_video(tmp_path / name)
        assert frames.shape[0] == 8 and fps == pytest.approx(8.0)  # the source's frame rate


@pytest.mark.parametrize("args, message", [
    (["animate", "missing.png", "-o", "x.mp4"], "image file not found"),
    (["animate", "bad.png", "-o", "x.mp4"], "not a readable image"),
    (["vary", "src.mp4", "-n", "0", "-o", "x.mp4"], "-n"),
    (["edit", "src.mp4", "a cat", "--strength", "1.5", "-o", "x.mp4"], "--strength"),
    (["edit", "bad.png", "a cat", "-o", "x.mp4"], "not a readable video"),
])
def test_cli_application_bad_input_is_one_line_exit_2_and_no_file(tmp_path, pipeline_dir, clip, args, message):
    write_video(clip, tmp_path / "src.mp4", fps=8.0)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    before = set(tmp_path.iterdir())
    result = subprocess.run([sys.executable, "-m", "magicvideo", *args, "--pipeline", str(pipeline_dir)],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert set(tmp_path.iterdir()) == before
