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


def deep_features(unet: VideoUNet, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """The input of the last up level (what StepCache stores) of an uncached call."""
    kept = []
    handle = unet.up_blocks[-2].upsamplers[0].register_forward_hook(lambda m, i, o: kept.append(o))
    unet(x, t, ctx)
    handle.remove()
    return kept[0]


@pytest.mark.parametrize("order, computed, weights", [
    (1, (900, 800), (-1.0, 2.0)),  # the line through the last two, at 700
    (2, (900, 800, 750), (1 / 3, -2.0, 8 / 3)),  # the parabola through the last three (Lagrange weights by hand)
])
def test_order_extrapolates_the_deep_features_in_the_timestep(order, computed, weights):
    unet = model()
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(len(computed) + 1, 1, 4, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 7, 24, generator=g)
    steps = [torch.tensor([t]) for t in (*computed, 700)]
    with unet.step_cache(1e9, exact_above=min(computed) - 1, order=order) as cache:
        outs = [unet(x, t, ctx) for x, t in zip(xs, steps)]
    assert (cache.calls, cache.skipped) == (len(steps), 1)
    for out, x, t in zip(outs, xs, steps):  # the computed steps are exact
        if int(t) != 700:
            assert torch.equal(out, unet(x, t, ctx))
    deep = sum(w * deep_features(unet, x, t, ctx) for w, x, t in zip(weights, xs, steps))
    handle = unet.up_blocks[-2].upsamplers[0].register_forward_hook(lambda m, i, o: deep)
    expected = unet(xs[-1], steps[-1], ctx)
    handle.remove()
    torch.testing.assert_close(outs[-1], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outs[-1], unet(xs[-1], steps[-1], ctx), atol=1e-4)


def test_order_one_skips_a_step_whose_first_block_output_follows_the_line():
    """The rule compares the first block's output with its forecast: a steady drift is skipped at
    order 1 and computed at order 0, where the same change counts against the last computed step."""
    g = torch.Generator().manual_seed(3)
    base, drift, deep = torch.randn(3, 2, 8, 4, 4, generator=g)
    for order, skips in ((0, False), (1, True)):
        cache = StepCache(0.01, exact_above=1e9, order=order)
        for k, t in enumerate((900, 800)):
            assert cache.reuse(base + k * drift, t) is None  # a new run, then a change of |drift| / |base|
            cache.store(base + k * drift, deep + k)
        got = cache.reuse(base + 2 * drift, 700)
        assert (got is not None) == skips
        if skips:
            torch.testing.assert_close(got, deep + 2)


@pytest.mark.parametrize("order", [-1, 3, 1.0, True, "1"])
def test_bad_order_is_refused(order):
    with pytest.raises(ValueError, match="step cache order"):
        StepCache(0.1, order=order)
