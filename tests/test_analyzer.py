"""The analyzer reads rendered ground truth right and disagrees with corrupted clips."""
from __future__ import annotations

import numpy as np
import pytest

from magicvideo.data import ALL_COMBOS, PromptAttributes, object_center, render_clip, spec_for
from magicvideo.analyzers.shapes import analyze_video, score


@pytest.fixture(scope="module")
def rendered():
    rng = np.random.default_rng(0)
    clips = []
    for seed in range(2):
        for fps in (4.0, 8.0):
            for combo in ALL_COMBOS:
                spec = spec_for(*combo, rng)
                clips.append((spec, fps, render_clip(spec, 16, fps, 64)))
    return clips


def test_ground_truth_clips_are_read_correctly(rendered):
    analyses = [analyze_video(frames) for _, _, frames in rendered]
    expected = [PromptAttributes(s.color, s.shape, s.direction) for s, _, _ in rendered]
    result = score(analyses, expected)
    assert result["n"] == 384
    assert result["color_acc"] >= 0.99 and result["shape_acc"] >= 0.99 and result["direction_acc"] >= 0.99
    for (spec, fps, _), a in zip(rendered[::17], analyses[::17]):
        truth = object_center(spec, np.arange(16) / fps, 64)
        assert np.abs(a.centroids - truth).max() < 0.5
    # uniform motion: what jitter there is comes from 4x4 supersampled anti-aliasing
    assert result["mean_jitter"] < 0.1 and max(a.jitter for a in analyses) < 0.3
    assert max(a.flicker for a in analyses) < 0.05


def test_displacement_follows_fps(rendered):
    spec = rendered[0][0]
    slow = analyze_video(render_clip(spec, 16, 16.0, 64)).displacement
    fast = analyze_video(render_clip(spec, 16, 4.0, 64)).displacement
    assert fast / slow == pytest.approx(4.0, rel=0.05)


def test_time_shuffled_clip_has_large_jitter(rendered):
    spec, fps, frames = rendered[1]
    shuffled = frames[np.random.default_rng(1).permutation(16)]
    assert analyze_video(shuffled).jitter > 20 * max(analyze_video(frames).jitter, 0.01)


def test_recolored_clip_reads_as_the_new_color():
    spec = spec_for("red", "circle", "left", np.random.default_rng(2))
    frames = render_clip(spec, 16, 8.0, 64)
    assert analyze_video(frames).color == "red"
    assert analyze_video(frames[..., [2, 1, 0]]).color == "blue"
    assert analyze_video((frames * 0.6).astype(np.uint8)).color == "red"  # darker red is still red


def test_noise_is_not_scored_as_the_prompt():
    rng = np.random.default_rng(3)
    hits = 0
    for combo in ALL_COMBOS[::8]:
        noise = rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
        a = analyze_video(noise)
        hits += (a.color, a.shape, a.direction) == combo
    assert hits == 0


def test_static_clip_has_no_direction():
    spec = spec_for("green", "square", "down", np.random.default_rng(4))
    frames = np.repeat(render_clip(spec, 1, 8.0, 64), 16, axis=0)
    a = analyze_video(frames)
    assert a.direction == "none" and a.displacement < 1e-6 and a.shape == "square"


def test_empty_video_and_bad_arrays():
    a = analyze_video(np.zeros((4, 32, 32, 3), np.uint8))
    assert a.color is None and a.object_found == 0
    with pytest.raises(ValueError, match="T, H, W, 3"):
        analyze_video(np.zeros((32, 32, 3), np.uint8))


def test_score_counts_only_expected_attributes():
    a = analyze_video(render_clip(spec_for("red", "square", "up", np.random.default_rng(5)), 8, 8.0, 64))
    result = score([a, a], [PromptAttributes("red", None, "down"), PromptAttributes("blue", "square", None)])
    assert result["color_acc"] == 0.5 and result["shape_acc"] == 1.0 and result["direction_acc"] == 0.0
    with pytest.raises(ValueError):
        score([a], [])


def test_dithering_and_psnr_closed_forms():
    from magicvideo.analyzers.reconstruction import dithering, psnr

    ref = np.zeros((4, 8, 8, 3))
    ref[:, :, :, 0] = np.arange(4)[:, None, None] / 4  # brightness ramp over time
    assert dithering(ref, ref) == 0.0
    steady = ref + 0.1  # a constant offset does not dither
    assert dithering(steady, ref) == pytest.approx(0.0, abs=1e-12)
    flicker = ref.copy()
    flicker[1::2] += 0.1  # alternate frames brighter: every difference is off by 0.1
    assert dithering(flicker, ref) == pytest.approx(0.1)
    assert psnr(steady, ref) == pytest.approx(20.0)  # mse 0.01
    with pytest.raises(ValueError, match="same shape"):
        dithering(ref, ref[:2])
