"""Long videos that stream: the cascade runs window by window (magicvideo/cascade.py), the
VideoVAE decodes incrementally, and write_video writes frames as they come, atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_
from PIL import Image

from magicvideo import VideoUNet, VideoUNetConfig, VideoVAE, VideoVAEConfig
from magicvideo.cascade import keyframe_plan, window_frames
from magicvideo.cli import main
from magicvideo.config import SRUNetConfig
from magicvideo.interpolate import interpolation_channels, output_frames
from magicvideo.models.encoders import MiniLMLiTEncoder
from magicvideo.models.sr_unet import SRUNet
from magicvideo.pipeline import MagicVideoPipeline, VideoOutput
from magicvideo.sampling import SamplingOptions
from magicvideo.video_io import write_video

PROMPT = "a red circle moving right"
LONG = dict(num_frames=11, context_frames=4)  # windows of 6 keyframes: 6, then 2 + 2 + 1 more


@pytest.fixture(scope="module")
def pipe():
    """Windows of 6 keyframes (8 px latents, 32 px frames), interpolation and a 4x SR stage."""
    torch.manual_seed(0)
    unet = VideoUNet(VideoUNetConfig(block_out_channels=(16, 32), attention_levels=(False, True),
                                     num_attention_heads=(2, 2), sample_size=8, max_frames=6))
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(16, 32, 32), norm_num_groups=8, temporal_window=4))
    interp = unet.with_condition_channels(interpolation_channels(4))
    sr = SRUNet(SRUNetConfig(block_out_channels=(16, 32), norm_num_groups=8, low_res_size=32))
    for i, model in enumerate((unet, vae.temporal_layers, interp, sr)):  # every layer counts, across windows too
        randomize_(model, seed=i, scale=0.05)
    return MagicVideoPipeline(unet, vae, MiniLMLiTEncoder(), interpolation=interp, sr=sr,
                              defaults=SamplingOptions(steps=2, interpolation_steps=1, sr_steps=1, sr_batch_frames=5,
                                                       sr_consistency_steps=1))


def test_windows_plan_and_frames_per_window():
    assert keyframe_plan(16, 16, 8) == [16]
    assert keyframe_plan(256, 16, 8) == [16] + [8] * 30
    assert keyframe_plan(11, 6, 4) == [6, 2, 2, 1]
    for context in (0, 6):  # no window after the first would add a keyframe: refused, not an endless plan
        with pytest.raises(ValueError, match="context_frames must be between 1 and 5"):
            keyframe_plan(11, 6, context)
    assert keyframe_plan(6, 6, 6) == [6]  # one window: the context is never used
    # interpolation: the first window's keyframes and gaps, then 3 new frames before each new keyframe
    frames = [window_frames(n, i == 0, True) for i, n in enumerate(keyframe_plan(11, 6, 4))]
    assert frames == [21, 8, 8, 4] and sum(frames) == output_frames(11)


def test_streamed_windows_put_together_are_the_video_and_the_first_is_the_short_video(pipe):
    stream = pipe(PROMPT, progress=False, stream=True, **LONG)
    chunks = list(stream.frames)
    assert [len(c) for c in chunks] == [21, 8, 8, 4] and stream.fps == 32.0
    whole = pipe(PROMPT, progress=False, **LONG)
    assert isinstance(whole, VideoOutput) and whole.frames.shape == stream.frames.shape == (41, 128, 128, 3)
    assert np.array_equal(np.concatenate(chunks), whole.frames)
    # a window never changes what came before it: the first is the video of one window's keyframes
    short = pipe(PROMPT, num_frames=6, progress=False)
    assert np.array_equal(chunks[0], short.frames)
    assert not np.array_equal(chunks[1], chunks[2])  # later windows are new frames, not repeats
    with pytest.raises(RuntimeError, match="already iterated"):
        list(stream.frames)


def test_one_window_streams_as_one_chunk_equal_to_the_video(pipe):
    stream = pipe.animate(np.full((32, 32, 3), 90, np.uint8), prompt="a ball", num_frames=5, progress=False,
                          stream=True)
    chunks = list(stream.frames)
    assert len(chunks) == 1
    assert np.array_equal(chunks[0], pipe.animate(np.full((32, 32, 3), 90, np.uint8), prompt="a ball",
                                                   num_frames=5, progress=False).frames)


def test_one_window_is_the_all_at_once_cascade(pipe):
    """One window through the streamed cascade is, bit for bit, the cascade as one pass over the
    keyframes: decode, interpolate (noise from ``seed``), decode, super-resolve (noise from ``seed``)."""
    from magicvideo.interpolate import interpolate_latents
    from magicvideo.models.sr_unet import upscale_video

    frames = pipe(PROMPT, num_frames=6, seed=5, progress=False).frames
    d, cond = pipe.defaults, pipe.encoder.encode_text([PROMPT])
    with torch.no_grad():
        keys = pipe.generate_latents(cond, 6, d.fps, d.steps, d.guidance, 5, d.scheduler)
        latents = interpolate_latents(pipe.interpolation, keys, pipe.vae.decode(keys), pipe.encoder, d.fps,
                                      pipe.schedule, steps=d.interpolation_steps, guidance=d.interpolation_guidance,
                                      seed=5, scheduler=d.scheduler)
        video = upscale_video(pipe.sr, pipe.vae.decode(latents)[0].transpose(0, 1), pipe.sr_schedule, seed=5,
                              **pipe.sr_settings())
    expected = ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert frames.shape == (21, 128, 128, 3) and np.array_equal(frames, expected)


def test_the_stages_settings_are_read_when_the_stream_is_made(pipe):
    """Every window runs with the settings its progress totals count, whatever happens to the
    pipeline's defaults while the frames are computed."""
    import dataclasses

    calls, defaults = [], pipe.defaults
    stream = pipe(PROMPT, progress=False, upscale=False, stream=True, on_progress=lambda *c: calls.append(c), **LONG)
    try:
        pipe.defaults = dataclasses.replace(defaults, interpolation_steps=2)
        list(stream.frames)
    finally:
        pipe.defaults = defaults
    assert [c[1:] for c in calls if c[0] == "interpolation"] == [(i, 4) for i in range(1, 5)]


def test_long_keyframes_stream_as_one_decode_of_all_keyframes(pipe):
    """Without interpolation the frames are the keyframes decoded with the cache carried across
    windows: one VideoVAE decode of generate_latents' keyframes (up to float rounding where the
    decode chunks start)."""
    frames = pipe(PROMPT, progress=False, interpolate=False, upscale=False, seed=3, **LONG).frames
    cond = pipe.encoder.encode_text([PROMPT])
    with torch.no_grad():
        keys = pipe.generate_latents(cond, 11, 8.0, 2, pipe.defaults.guidance, 3, "dpm", context_frames=4)
        video = pipe.vae.decode(keys)
    expected = ((video[0].transpose(0, 1).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert frames.shape == expected.shape == (11, 32, 32, 3)
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 1


def test_progress_over_windows_counts_each_stage_on_to_its_whole_total(pipe):
    calls = []
    pipe(PROMPT, progress=False, on_progress=lambda *c: calls.append(c), **LONG)
    sr_batches = sum(-(-n // 5) for n in (21, 8, 8, 4))
    totals = {"keyframes": 4 * 2, "decoding": 4 * 2, "interpolation": 4 * 1, "super-resolution": sr_batches}
    for stage, total in totals.items():
        assert [c[1:] for c in calls if c[0] == stage] == [(i, total) for i in range(1, total + 1)], stage
    order = [c[0] for i, c in enumerate(calls) if i == 0 or calls[i - 1][0] != c[0]]
    window = ["keyframes", "decoding", "interpolation", "decoding", "super-resolution"]
    assert order == window * 4  # each window goes through the whole cascade before the next is sampled


def test_incremental_decode_equals_one_decode():
    torch.manual_seed(0)
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(16, 32), norm_num_groups=8, temporal_window=5))
    randomize_(vae.temporal_layers, seed=1, scale=0.1)
    latents = torch.randn(1, 4, 19, 8, 8)
    with torch.no_grad():
        whole = vae.decode(latents, chunk_frames=4)
        decoder = vae.incremental_decoder(chunk_frames=4)
        aligned = torch.cat([decoder.decode(latents[:, :, a:b]) for a, b in ((0, 8), (8, 12), (12, 19))], dim=2)
        assert torch.equal(aligned, whole)  # pieces of whole chunks: the same products, the same bits
        decoder = vae.incremental_decoder(chunk_frames=4)
        ragged = torch.cat([decoder.decode(latents[:, :, a:b]) for a, b in ((0, 3), (3, 10), (10, 19))], dim=2)
        torch.testing.assert_close(ragged, whole, atol=1e-5, rtol=0)
        cut = vae.incremental_decoder(chunk_frames=4)  # without the cache a later piece decodes otherwise
        assert not torch.allclose(cut.decode(latents[:, :, 12:19]), whole[:, :, 12:19], atol=1e-3)
        with pytest.raises(ValueError, match="do not continue"):
            decoder.decode(torch.randn(1, 4, 2, 4, 4))


def _frames(t: int = 14, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.zeros((t, size, size, 3), np.uint8)
    for i in range(t):
        frames[i, :, 3 * i : 3 * i + 10] = 255
    return np.clip(frames + rng.integers(0, 40, frames.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["a.mp4", "a.gif", "a.png"])
def test_chunks_write_the_same_file_as_the_whole_array(tmp_path, name):
    frames = _frames()
    for folder in ("whole", "chunks", "tensor"):
        (tmp_path / folder).mkdir()
    write_video(frames, tmp_path / "whole" / name, fps=8)
    write_video(iter([frames[:5], frames[5:13], frames[13:]]), tmp_path / "chunks" / name, fps=8)
    write_video(torch.from_numpy(frames), tmp_path / "tensor" / name, fps=8)  # a uint8 tensor is the whole video
    whole, chunked, tensor = (sorted((tmp_path / folder).iterdir()) for folder in ("whole", "chunks", "tensor"))
    assert [p.name for p in whole] == [p.name for p in chunked] and len(whole) == (14 if name == "a.png" else 1)
    for a, b, c in zip(whole, chunked, tensor, strict=True):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes(), a.name


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("name", ["a.mp4", "a.gif", "a.png"])
def test_frames_are_written_as_they_come_and_a_failure_midway_leaves_nothing(tmp_path, name):
    frames, seen = _frames(), []

    def chunks():
        yield frames[:6]
        yield frames[6:9]
        seen.append(sorted(p.name for p in tmp_path.iterdir()))  # after two chunks were handed over
        if name == "a.png":
            seen.append(len(list((tmp_path / f".a.png.tmp-{os.getpid()}").iterdir())))
        raise KeyboardInterrupt  # Ctrl-C while the next window is computed

    with pytest.raises(KeyboardInterrupt):
        write_video(chunks(), tmp_path / name, fps=8)
    # being written under its temporary name only; a GIF is kept in memory until its last frame
    assert seen[0] == ([] if name == "a.gif" else [f".{name}.tmp-{os.getpid()}"])
    if name == "a.png":
        assert seen[1] == 9  # frames saved as they came
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary


def test_bad_chunks_are_named_and_leave_nothing(tmp_path):
    frames = _frames()
    with pytest.raises(ValueError, match="frames must all be 64x64, a chunk has 32x32"):
        write_video(iter([frames[:3], frames[:2, :32, :32]]), tmp_path / "a.mp4", fps=8)
    with pytest.raises(ValueError, match="uint8 chunks"):
        write_video(iter([frames[:3].astype(np.float32)]), tmp_path / "a.png", fps=8)
    with pytest.raises(ValueError, match="got no frames"):
        write_video(iter([]), tmp_path / "a.mp4", fps=8)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a.mp4", "a.gif", "a.png"])
def test_a_write_that_fails_midway_closes_the_stream_it_was_given(tmp_path, name):
    """The source of the chunks (a pipeline's stream, holding its decoders' caches) is closed
    when the write stops, not left half-run until the exception's traceback is dropped."""
    frames, state = _frames(), []

    def chunks():
        try:
            yield frames[:4]
            yield frames[:2, :32, :32]  # a chunk of another size: the write stops here
            yield frames[4:]
        finally:
            state.append("closed")

    try:
        write_video(chunks(), tmp_path / name, fps=8)
    except ValueError as err:  # the traceback, which holds the write's frames, is alive here
        assert "a chunk has 32x32" in str(err) and state == ["closed"]
    else:
        pytest.fail("a chunk of another size was written")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_long_video_as_its_windows_finish(tmp_path, pipe, monkeypatch):
    pipe.save_pretrained(tmp_path / "p")
    args = ["generate", PROMPT, "--pipeline", str(tmp_path / "p"), "--num-frames", "11", "--context-frames", "4",
            "--seed", "2", "-q"]
    assert main([*args, "-o", str(tmp_path / "long.png")]) == 0
    frames = np.stack([np.asarray(Image.open(tmp_path / f"long_{i:04d}.png")) for i in range(41)])
    expected = MagicVideoPipeline.from_pretrained(tmp_path / "p")(PROMPT, seed=2, progress=False, **LONG).frames
    assert np.array_equal(frames, expected) and not (tmp_path / "long_0041.png").exists()
    # a Ctrl-C while the second window is interpolated: exit 130, no output and no temporary
    from magicvideo import interpolate

    calls, original = [], interpolate.interpolate_latents

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(interpolate, "interpolate_latents", interrupt_second)
    assert main([*args, "-o", str(tmp_path / "cut.mp4")]) == 130
    assert len(calls) == 2 and not (tmp_path / "cut.mp4").exists() and _temporaries(tmp_path) == []
