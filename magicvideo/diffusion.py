"""Diffusion maths around the VideoUNet: noise schedule, targets, the loss, CFG, sampling.

The U-Net knows nothing of noise schedules; this module owns them. Schedulers for sampling
come from diffusers (DDIM, DPM-Solver++); the training-side formulas are the closed forms
of the same variance-preserving process, written for per-video ``(B,)`` or per-frame
``(B, F)`` timesteps on latents ``(B, C, F, H, W)``:

* ``add_noise``: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (q(x_t | x_0))
* ``training_target``: eps, v or x_0, by the schedule's prediction type; ``predict_x0`` inverts it
* ``denoising_loss``: draw t and eps, noise x_0, regress the target (DiT's ``training_losses``):
  the one loss of the keyframe, interpolation and SR stages and of ``metrics.denoising_loss``
* ``guided`` (classifier-free guidance) and ``sample`` (a diffusers scheduler's loop)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import SCHEDULERS, Scheduler

PredictionType = Literal["epsilon", "v_prediction", "sample"]  # "sample": the network predicts x_0 (diffusers' name)
PREDICTION_TYPES: tuple[PredictionType, ...] = get_args(PredictionType)


@dataclass(frozen=True)
class NoiseSchedule:
    """The training process: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085  # SD's scaled-linear schedule
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: PredictionType = "v_prediction"  # v is the default for video (stable at high noise)
    rescale_betas_zero_snr: bool = False
    # Fraction of the noise variance shared by all frames of a video ("mixed" video noise, as
    # in PYoCo): 0 = independent frames (SD's prior). Training and sampling must agree.
    frame_noise_correlation: float = 0.0

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if not 0.0 <= self.frame_noise_correlation < 1.0:
            raise ValueError(f"frame_noise_correlation must be in [0, 1), got {self.frame_noise_correlation}")

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Unit-variance noise for latents (B, C, F, H, W); frames are correlated with
        coefficient ``frame_noise_correlation`` (every element stays N(0, 1))."""
        rho = self.frame_noise_correlation
        if rho == 0.0:
            return torch.randn(shape, generator=generator)
        b, c, _, h, w = shape
        shared = torch.randn((b, c, 1, h, w), generator=generator)
        return rho ** 0.5 * shared + (1.0 - rho) ** 0.5 * torch.randn(shape, generator=generator)

    def scheduler(self, name: Scheduler = "ddim"):
        """A diffusers sampling scheduler for this process."""
        kwargs = dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type,
            rescale_betas_zero_snr=self.rescale_betas_zero_snr,
            timestep_spacing="trailing",  # reaches t = T-1 at the first step (no SNR leak)
        )
        # each scheduler from its own module: ``from diffusers import ...`` pays for both, and the
        # DPM-Solver module alone costs about a second of a preview's start on 2 cores
        if name == "ddim":
            from diffusers.schedulers.scheduling_ddim import DDIMScheduler

            return DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=False)
        if name == "dpm":
            from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

            return DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", final_sigmas_type="zero")
        raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")

    def alphas_cumprod(self) -> torch.Tensor:
        """abar_t for t = 0..T-1, a fresh copy."""
        return _alphas_cumprod(self).clone()


@functools.lru_cache(maxsize=32)
def _alphas_cumprod(schedule: NoiseSchedule) -> torch.Tensor:
    """abar_t of a schedule, computed once (through diffusers, so that training and sampling
    agree to the bit); callers must not write to it."""
    return schedule.scheduler("ddim").alphas_cumprod.clone()


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, F) per-sample values -> broadcastable against (B, C, F, H, W)."""
    if values.ndim == 1:
        return values.view(-1, 1, 1, 1, 1).to(like.dtype)
    return values[:, None, :, None, None].to(like.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    abar = _broadcast(alphas_cumprod.to(x0.device)[t], x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: PredictionType
) -> torch.Tensor:
    """What the network regresses: eps, v = sqrt(abar) eps - sqrt(1 - abar) x_0, or x_0."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    abar = _broadcast(alphas_cumprod.to(x0.device)[t], x0)
    return abar.sqrt() * noise - (1 - abar).sqrt() * x0


def predict_x0(
    xt: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: PredictionType
) -> torch.Tensor:
    """Invert the parameterisation: the clean latents the network's output implies."""
    if prediction_type == "sample":
        return prediction
    abar = _broadcast(alphas_cumprod.to(xt.device)[t], xt)
    if prediction_type == "epsilon":
        return (xt - (1 - abar).sqrt() * prediction) / abar.sqrt()
    return abar.sqrt() * xt - (1 - abar).sqrt() * prediction


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def denoising_loss(
    predict: Denoiser,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    frames: slice | None = None,
    per_item: bool = False,
) -> torch.Tensor:
    """The denoising loss every diffusion stage trains on (DiT's ``training_losses``)::

        t ~ U{0, ..., T-1},  eps ~ schedule.noise,  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
        loss = mean (predict(x_t, t) - target(x_0, eps, t))^2      target: eps, v or x_0

    ``predict(x_t, t)`` is the model with its conditions bound. ``x0`` is clean latents
    ``(B, C, F, H, W)`` or frames ``(B, C, H, W)`` (noised as one-frame videos; ``predict``
    gets them back as frames). Random draws, on the CPU from ``generator`` and then moved to
    ``x0``'s device, in this order: ``t`` (per video, ``(B,)``) unless given, then ``noise``
    unless given; a stage that draws more (condition dropout, SR's augmentation level) draws
    it before calling, so a (seed, step) gives the same numbers on every machine.

    ``weights`` (broadcastable against ``x0``) make it the weighted
    mean sum(w err^2) / sum(w). ``frames``: the frames the loss covers (interpolation: the
    unknown middle of the window). Returns the mean over the batch, or with ``per_item`` one
    mean per item ``(B,)``."""
    images = x0.ndim == 4
    if images:  # frames as one-frame videos: the formulas broadcast over (B, C, F, H, W)
        if frames is not None:
            raise ValueError("frames: a slice of frames needs videos (B, C, F, H, W), got frames (B, C, H, W)")
        x0 = x0[:, :, None]
        noise = None if noise is None else noise[:, :, None]
        weights = None if weights is None else weights[:, :, None]
    if x0.ndim != 5:
        raise ValueError(f"x0 must be (B, C, F, H, W) or (B, C, H, W), got {tuple(x0.shape)}")
    b, device = x0.shape[0], x0.device
    if t is None:
        t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=generator)
    if noise is None:
        noise = schedule.noise(tuple(x0.shape), generator=generator)
    t, noise = t.to(device), noise.to(device)
    alphas_cumprod = _alphas_cumprod(schedule)
    xt = add_noise(x0, noise, t, alphas_cumprod)
    target = training_target(x0, noise, t, alphas_cumprod, schedule.prediction_type)
    pred = predict(xt[:, :, 0], t)[:, :, None] if images else predict(xt, t)
    if frames is not None:
        pred, target = pred[:, :, frames], target[:, :, frames]
        if weights is not None and weights.shape[2] == x0.shape[2]:  # per-frame weights
            weights = weights[:, :, frames]
    if per_item:
        err = (pred - target).square()
        if weights is None:
            return err.flatten(1).mean(1)
        return (err * weights).flatten(1).mean(1) / weights.expand(b, *weights.shape[1:]).flatten(1).mean(1)
    if weights is None:
        return F.mse_loss(pred, target)
    return ((pred - target).square() * weights).mean() / weights.mean()


def guided(model: Callable, cond: torch.Tensor, uncond: torch.Tensor | None, guidance: float, **kwargs) -> Denoiser:
    """Classifier-free guidance: out = uncond + g * (cond - uncond), both in one batch."""

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if uncond is None or guidance == 1.0:
            return model(x, t, cond, **kwargs)
        out_u, out_c = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]), **_doubled(kwargs)).chunk(2)
        return out_u + guidance * (out_c - out_u)

    return denoise


def _doubled(kwargs: dict) -> dict:
    out = {}
    for k, v in kwargs.items():
        out[k] = torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.ndim >= 1 else v
    return out


@torch.no_grad()
def sample(
    denoise: Denoiser,
    latents: torch.Tensor,
    scheduler,
    num_steps: int,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    progress: bool = True,
    start_step: int = 0,
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``scheduler`` from ``latents`` (pure noise, or noised latents when
    ``start_step > 0``, SDEdit-style). ``callback(i, t, latents)`` after every step.

    ``known = (x0, noise)``, both (B, C, K, H, W): the first K frames are held to the known
    clean latents ``x0``, noised with ``noise`` to the level of every step (replacement, as in
    inpainting). With directed temporal attention the later frames follow them: image-to-video
    anchors frame 0, long videos continue from the last frames of the previous window."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    scheduler.set_timesteps(num_steps, device=latents.device)
    timesteps = scheduler.timesteps[start_step:]
    if known is not None:
        latents = hold_known(latents, known, timesteps[0], scheduler.alphas_cumprod)
    for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
        t_batch = t.expand(latents.shape[0]).to(latents.device)
        prediction = denoise(scheduler.scale_model_input(latents, t), t_batch)
        latents = scheduler.step(prediction, t, latents, generator=generator).prev_sample
        if known is not None:
            latents = hold_known(latents, known, timesteps[i + 1] if i + 1 < len(timesteps) else None,
                                 scheduler.alphas_cumprod)
        if callback is not None:
            callback(i, int(t), latents)
    return latents


def hold_known(latents: torch.Tensor, known: tuple[torch.Tensor, torch.Tensor], t: torch.Tensor | None,
               alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Replace the first K frames by the known latents noised to timestep ``t`` (None: clean)."""
    x0, noise = known
    k = x0.shape[2]
    if t is None:
        held = x0
    else:
        held = add_noise(x0, noise, t.reshape(1).expand(x0.shape[0]).long().to(x0.device), alphas_cumprod)
    return torch.cat([held.to(latents.dtype), latents[:, :, k:]], dim=2)
