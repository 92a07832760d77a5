"""VideoUNet.step_cache: off it is exact, on it reuses the deep features by its rule, runs never share."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import randomize_
from test_video_unet import small_config

from magicvideo import VideoUNet
from magicvideo.diffusion import NoiseSchedule, guided, sample
from magicvideo.models.video_unet import StepCache

STEPS = 6


def model() -> VideoUNet:
    torch.manual_seed(0)
    unet = VideoUNet(small_config(max_frames=4)).eval()
    randomize_(unet)  # the video layers too, so that they are not the identity
    return unet


def run(unet: VideoUNet, seed: int = 0, frames: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(1, 7, 24, generator=g)
    latents = torch.randn(1, 4, frames, 8, 8, generator=g)
    denoise = guided(unet, cond, torch.zeros_like(cond), 5.0, fps=torch.full((1,), 8.0))
    return sample(denoise, latents, NoiseSchedule().scheduler("ddim"), STEPS, progress=False)


def test_threshold_zero_is_the_uncached_sampler_bit_for_bit():
    unet = model()
    exact = run(unet)
    with unet.step_cache(0.0) as cache:
        cached = run(unet)
    assert torch.equal(cached, exact)
    assert (cache.calls, cache.skipped) == (STEPS, 0)
    assert unet._step_cache is None and torch.equal(run(unet), exact)  # off again after the block


def test_huge_threshold_reuses_the_first_steps_deep_features():
    unet = model()
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(2, 2, 4, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 7, 24, generator=g)
    t1, t2 = torch.tensor([900, 900]), torch.tensor([700, 700])
    with unet.step_cache(1e9, exact_above=1e9) as cache:
        unet(x1, t1, ctx)
        out = unet(x2, t2, ctx)
    assert (cache.calls, cache.skipped) == (2, 1)

    # the rule by hand, with a hook: the input of the last up level (the output of the level
    # before's upsampler) of step 1 stands in for step 2's; everything else is step 2's own
    upsampler = unet.up_blocks[-2].upsamplers[0]
    kept = {}
    handle = upsampler.register_forward_hook(lambda m, i, o: kept.setdefault("deep", o))
    unet(x1, t1, ctx)
    handle.remove()
    handle = upsampler.register_forward_hook(lambda m, i, o: kept["deep"])
    expected = unet(x2, t2, ctx)
    handle.remove()
    assert torch.equal(out, expected)
    assert not torch.allclose(out, unet(x2, t2, ctx), atol=1e-4)  # and it is not the exact output


def test_every_step_after_the_first_is_skipped_and_runs_do_not_share():
    unet = model()
    with unet.step_cache(1e9, exact_above=1e9) as cache:
        first = run(unet, seed=0)
        second = run(unet, seed=1)  # a new run (the timestep rises again): computed afresh
        again = run(unet, seed=0)
        longer = run(unet, seed=0, frames=3)  # another shape: afresh too
    assert cache.calls == 4 * STEPS and cache.skipped == 4 * (STEPS - 1)
    assert torch.equal(first, again)
    with unet.step_cache(1e9, exact_above=1e9):
        assert torch.equal(run(unet, seed=1), second)
        assert torch.equal(run(unet, seed=0, frames=3), longer)
    assert not torch.allclose(first, run(unet, seed=0), atol=1e-4)


def test_more_skipping_with_a_higher_threshold_and_further_from_exact():
    unet = model()
    exact = run(unet)
    skipped, errors = [], []
    for threshold in (0.0, 0.05, 0.2, 1e9):
        with unet.step_cache(threshold, exact_above=1e9) as cache:
            errors.append(float((run(unet) - exact).abs().mean()))
        skipped.append(cache.skipped)
    assert skipped == sorted(skipped) and skipped[0] == 0 and skipped[-1] == STEPS - 1
    assert 0 < skipped[1] < STEPS - 1 or 0 < skipped[2] < STEPS - 1  # some thresholds between skip some steps
    assert errors[0] == 0.0 and errors == sorted(errors)


@pytest.mark.parametrize("threshold", [-0.1, float("inf"), float("nan"), True, "0.1"])
def test_bad_threshold_is_refused(threshold):
    with pytest.raises(ValueError, match="step cache threshold"):
        StepCache(threshold)
    with pytest.raises(ValueError, match="step cache exact_above"):
        StepCache(0.1, exact_above=threshold)


def test_steps_above_exact_above_are_always_computed():
    unet = model()
    exact = run(unet)
    with unet.step_cache(1e9, exact_above=1000.0) as cache:  # every timestep is <= 999
        skip_all = run(unet)
    assert cache.skipped == STEPS - 1
    with unet.step_cache(1e9, exact_above=0.0) as cache:  # every timestep is above 0: all exact
        assert torch.equal(run(unet), exact)
    assert cache.skipped == 0
    with unet.step_cache(1e9, exact_above=500.0) as cache:  # DDIM trailing, 6 steps: 999, 832, 666, 499, ...
        partly = run(unet)
    assert cache.skipped == 3 and not torch.equal(partly, skip_all)


def test_nested_blocks_are_refused():
    unet = model()
    with unet.step_cache(0.1):
        with pytest.raises(RuntimeError, match="already caching"):
            with unet.step_cache(0.1):
                pass


def test_cli_step_cache_flag(tmp_path):
    from magicvideo.cli import main
    from magicvideo.video_io import read_video

    def generate(name: str, *flags: str):
        out = tmp_path / name
        assert main(["generate", "a red circle moving left", "-o", str(out), "--num-frames", "4", "--steps", "4",
                     "--no-interpolate", "--no-upscale", "-q", *flags]) == 0
        return read_video(out)[0]

    exact = generate("exact.gif")
    assert np.array_equal(generate("zero.gif", "--step-cache", "0"), exact)
    assert not np.array_equal(generate("cached.gif", "--step-cache", "1e9"), exact)
    for bad in ("-0.1", "nan", "x"):
        with pytest.raises(SystemExit):
            main(["generate", "a red circle moving left", "-o", str(tmp_path / "bad.gif"), "--step-cache", bad])
