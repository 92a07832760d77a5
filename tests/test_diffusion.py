"""Diffusion maths: closed forms against diffusers, oracle sampling, guidance."""
from __future__ import annotations

import pytest
import torch

from magicvideo.diffusion import (NoiseSchedule, add_noise, denoising_loss, guided, predict_x0, sample,
                                  training_target)


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule()


def test_noising_and_velocity_match_diffusers(schedule):
    ac = schedule.alphas_cumprod()
    ref = schedule.scheduler("ddim")
    x0, noise = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8)
    t = torch.tensor([10, 900])
    torch.testing.assert_close(add_noise(x0, noise, t, ac), ref.add_noise(x0, noise, t))
    torch.testing.assert_close(training_target(x0, noise, t, ac, "v_prediction"), ref.get_velocity(x0, noise, t))
    assert torch.equal(training_target(x0, noise, t, ac, "epsilon"), noise)


def test_per_frame_timesteps_noise_each_frame_at_its_own_level(schedule):
    ac = schedule.alphas_cumprod()
    x0, noise = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8)
    t = torch.tensor([[0, 500, 999], [20, 20, 20]])
    xt = add_noise(x0, noise, t, ac)
    for b in range(2):
        for f in range(3):
            single = add_noise(x0[b : b + 1, :, f : f + 1], noise[b : b + 1, :, f : f + 1], t[b, f : f + 1], ac)
            torch.testing.assert_close(xt[b : b + 1, :, f : f + 1], single)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predict_x0_inverts_the_target(schedule, prediction_type):
    ac = schedule.alphas_cumprod()
    x0, noise = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4)
    t = torch.tensor([1, 400, 800])
    xt = add_noise(x0, noise, t, ac)
    target = training_target(x0, noise, t, ac, prediction_type)
    torch.testing.assert_close(predict_x0(xt, target, t, ac, prediction_type), x0, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name, tol", [("dpm", 1e-4), ("ddim", 0.15)])
def test_sampling_with_an_oracle_denoiser_recovers_the_data(schedule, name, tol):
    ac = schedule.alphas_cumprod()
    target = torch.randn(1, 4, 2, 8, 8)

    def oracle(x, t):  # the exact v for the one-point data distribution {target}
        abar = ac[t].view(-1, 1, 1, 1, 1)
        eps = (x - abar.sqrt() * target) / (1 - abar).sqrt()
        return abar.sqrt() * eps - (1 - abar).sqrt() * target

    seen = []
    out = sample(oracle, torch.randn(1, 4, 2, 8, 8), schedule.scheduler(name), 12, progress=False,
                 callback=lambda i, t, x: seen.append(t))
    # DDIM's last step lands on abar_0 < 1 (SD's set_alpha_to_one=False), so a trace of noise stays
    assert (out - target).abs().max() < tol
    assert len(seen) == 12 and seen[0] == 999 and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize("name", ["dpm", "ddim"])
def test_x0_prediction_schedules_sample_through_diffusers(name):
    schedule = NoiseSchedule(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, prediction_type="sample")
    target = torch.randn(1, 3, 1, 8, 8)
    out = sample(lambda x, t: target.expand_as(x), torch.randn(1, 3, 1, 8, 8), schedule.scheduler(name), 4,
                 progress=False)
    assert (out - target).abs().max() < 0.05  # an exact x0 oracle lands on the data in a few steps
    wrong = sample(lambda x, t: target.expand_as(x), torch.randn(1, 3, 1, 8, 8),
                   NoiseSchedule(prediction_type="epsilon").scheduler(name), 4, progress=False)
    assert (wrong - target).abs().max() > 0.5  # the same outputs read as eps do not


def _by_hand(schedule, x0, seed):
    """The draws denoising_loss makes from a generator seeded ``seed`` (t, then noise), and the
    closed forms: x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps; target eps, x_0 or
    v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, schedule.num_train_timesteps, (x0.shape[0],), generator=g)
    noise = schedule.noise(tuple(x0.shape), generator=g)
    abar = schedule.scheduler("ddim").alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    target = {"epsilon": noise, "sample": x0, "v_prediction": abar.sqrt() * noise - (1 - abar).sqrt() * x0}
    return t, xt, target[schedule.prediction_type]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_denoising_loss_is_the_mean_square_error_to_the_closed_form_target(prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type, frame_noise_correlation=0.3)
    x0 = torch.randn(3, 4, 5, 6, 6, generator=torch.Generator().manual_seed(1))
    t, xt, target = _by_hand(schedule, x0, seed=7)
    seen = []

    def zeros(x, t_in):
        seen.append((x, t_in))
        return torch.zeros_like(x)

    loss = denoising_loss(zeros, x0, schedule, torch.Generator().manual_seed(7))
    # the predictor saw x_t at the drawn t, and predicting zero costs mean(target^2)
    assert torch.equal(seen[0][1], t)
    torch.testing.assert_close(seen[0][0], xt, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, target.square().mean(), rtol=1e-5, atol=1e-6)
    per_item = denoising_loss(zeros, x0, schedule, torch.Generator().manual_seed(7), per_item=True)
    torch.testing.assert_close(per_item, target.square().mean(dim=(1, 2, 3, 4)), rtol=1e-5, atol=1e-6)
    # predicting the target exactly costs nothing
    exact = denoising_loss(lambda x, t_in: target, x0, schedule, torch.Generator().manual_seed(7))
    assert exact.item() == 0.0
    # given t and noise, nothing is drawn
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    denoising_loss(zeros, x0, schedule, g, t=t, noise=torch.zeros_like(x0))
    assert torch.equal(g.get_state(), state)


def test_denoising_loss_weights_and_frames():
    schedule = NoiseSchedule()
    x0 = torch.randn(2, 4, 5, 6, 6, generator=torch.Generator().manual_seed(1))
    _, _, target = _by_hand(schedule, x0, seed=2)
    w = torch.rand(2, 1, 5, 6, 6, generator=torch.Generator().manual_seed(3)) + 0.5

    def zeros(x, t):
        return torch.zeros_like(x)

    def loss(**kwargs):
        return denoising_loss(zeros, x0, schedule, torch.Generator().manual_seed(2), **kwargs)

    middle = slice(1, 4)
    err, wide = target.square(), w.expand_as(target)
    torch.testing.assert_close(loss(weights=w), (err * wide).sum() / wide.sum())
    torch.testing.assert_close(loss(frames=middle), err[:, :, middle].mean())
    torch.testing.assert_close(loss(weights=w, frames=middle),
                               (err * wide)[:, :, middle].sum() / wide[:, :, middle].sum())
    torch.testing.assert_close(loss(weights=w, per_item=True),
                               (err * wide).sum(dim=(1, 2, 3, 4)) / wide.sum(dim=(1, 2, 3, 4)))


def test_denoising_loss_treats_frames_as_one_frame_videos():
    schedule = NoiseSchedule(prediction_type="sample")
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    shapes = []

    def half(x, t):  # any predictor of frames (B, C, H, W)
        shapes.append(tuple(x.shape))
        return 0.5 * x

    as_images = denoising_loss(half, images, schedule, torch.Generator().manual_seed(4))
    as_videos = denoising_loss(lambda x, t: 0.5 * x, images[:, :, None], schedule, torch.Generator().manual_seed(4))
    assert shapes == [(3, 3, 8, 8)] and torch.equal(as_images, as_videos)
    with pytest.raises(ValueError, match="frames"):
        denoising_loss(half, images, schedule, frames=slice(0, 1))
    with pytest.raises(ValueError, match="x0 must be"):
        denoising_loss(half, images[0], schedule)


def test_classifier_free_guidance_formula():
    def model(x, t, cond, fps=None):
        return x * cond.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1) + fps.view(-1, 1, 1, 1, 1)

    x, t = torch.ones(2, 1, 1, 1, 1), torch.tensor([5, 5])
    cond, uncond = torch.full((2, 1, 3), 3.0), torch.zeros(2, 1, 3)
    fps = torch.tensor([1.0, 2.0])
    out = guided(model, cond, uncond, 7.5, fps=fps)(x, t)
    expected = fps.view(-1, 1, 1, 1, 1) + 7.5 * 3.0  # uncond + g * (cond - uncond)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(guided(model, cond, uncond, 1.0, fps=fps)(x, t), model(x, t, cond, fps=fps))


def test_bad_options_are_value_errors(schedule):
    with pytest.raises(ValueError, match="scheduler"):
        schedule.scheduler("euler_a")
    with pytest.raises(ValueError, match="prediction_type"):
        NoiseSchedule(prediction_type="x0")
    with pytest.raises(ValueError, match="num_steps"):
        sample(lambda x, t: x, torch.zeros(1, 4, 1, 8, 8), schedule.scheduler("ddim"), 0, progress=False)


def test_frame_correlated_noise_has_the_asked_correlation():
    shape = (64, 4, 3, 8, 8)
    independent = NoiseSchedule().noise(shape, torch.Generator().manual_seed(0))
    # rho = 0 is SD's prior and draws exactly what torch.randn draws
    assert torch.equal(independent, torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    mixed = NoiseSchedule(frame_noise_correlation=0.5).noise(shape, torch.Generator().manual_seed(0))
    a, b = mixed[:, :, 0].flatten(), mixed[:, :, 2].flatten()
    assert abs(mixed.var().item() - 1.0) < 0.03 and abs(mixed.mean().item()) < 0.02
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item() - 0.5) < 0.03
    c = independent[:, :, 0].flatten(), independent[:, :, 2].flatten()
    assert abs(torch.corrcoef(torch.stack(c))[0, 1].item()) < 0.03


@pytest.mark.parametrize("rho", [-0.1, 1.0])
def test_frame_noise_correlation_is_validated(rho):
    with pytest.raises(ValueError, match="frame_noise_correlation"):
        NoiseSchedule(frame_noise_correlation=rho)
