"""Diffusion maths: closed forms against diffusers, oracle sampling, guidance."""
from __future__ import annotations

import pytest
import torch

from magicvideo.diffusion import NoiseSchedule, add_noise, guided, predict_x0, sample, training_target


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
