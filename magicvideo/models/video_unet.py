"""VideoUNet: the MagicVideo keyframe (and interpolation) denoiser in latent space.

Layout: ``sample`` is ``(B, C, F, H, W)``; every 2D layer sees ``(B*F, C, H, W)`` (frames
folded into the batch, see ``layout.py``); attention sees tokens ``(B*F, H*W, C)``.

The image part mirrors SD's ``UNet2DConditionModel`` name for name, so SD weights load
directly. The video part is new and starts as identity, so at init the model *is* the image
model applied frame by frame:

* ``FrameAdaptor`` after every shared 2D conv of a resnet: z_i = S_i * conv(z_i) + B_i,
  per frame i and channel (S=1, B=0 at init). Paper §1.1: cheaper than a 1D temporal conv.
* ``TemporalAttention`` (directed: frame i sees frames <= i) computed from the same
  normalised tokens as spatial self-attention and *added in parallel* (paper §1.2).
  Output projection zero-init.
* ``fps_embedding``: Linear-SiLU-Linear on sinusoidal(fps), added to the timestep
  embedding (paper §1.3). Last layer zero-init.
* ``condition_embedding`` (``use_condition_embedding``): Linear-SiLU-Linear on the mean
  condition token, added to the timestep embedding like the fps, so that the prompt also
  modulates every resnet, including levels without cross-attention (SDXL/Imagen add pooled
  text the same way). Last layer zero-init. The tiny preset uses it: its condition is a single
  token, for which cross-attention can only add a per-channel bias.
* ``condition_channels``: extra input channels (interpolation: known latents + mask),
  their input-conv weights zero-init.

Per-frame ops and directed attention make the whole network causal in time.

Why ~600 lines in one file: the U-Net family is one module, as in nanoGPT's ``model.py`` — its
blocks, the backbone, SD weight loading by name, the interpolation variant and the opt-in step
cache all share the block classes and the parameter naming that SD checkpoints fix.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import VideoUNetConfig
from .attention import Attention, GEGLUFeedForward, TemporalAttention
from .io import ModelDirectoryMixin
from .layout import fold_frames, unfold_frames

# Names of parameters that the video model adds to the image model.
VIDEO_PARAMETER_MARKERS = ("frame_op", "temporal_attn", "norm_temporal", "fps_embedding", "condition_embedding")


def is_video_parameter(name: str) -> bool:
    return any(marker in name for marker in VIDEO_PARAMETER_MARKERS)


# -- per-frame operators after the shared 2D convolutions --------------------------------
class FrameAdaptor(nn.Module):
    """z_i = S_i * z_i + B_i for frame i, per channel; S=1, B=0 at init (identity)."""

    def __init__(self, channels: int, max_frames: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(max_frames, channels))
        self.bias = nn.Parameter(torch.zeros(max_frames, channels))

    def forward(self, h: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, height, width = h.shape
        h = h.view(bf // num_frames, num_frames, c, height * width)
        h = torch.addcmul(self.bias[:num_frames, :, None], self.scale[:num_frames, :, None], h)
        return h.view(bf, c, height, width)


class TemporalConv1d(nn.Module):
    """The "2D+1D" alternative (ablation): a causal kernel-3 conv over frames at every pixel,
    initialised to the identity (dirac), so it too starts as a no-op."""

    def __init__(self, channels: int, max_frames: int, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, -1].copy_(torch.eye(channels))  # tap on the current frame
            self.conv.bias.zero_()

    def forward(self, h: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, height, width = h.shape
        seq = rearrange(h, "(b f) c h w -> (b h w) c f", f=num_frames)
        seq = self.conv(F.pad(seq, (self.kernel_size - 1, 0)))  # left pad: causal in time
        return rearrange(seq, "(b h w) c f -> (b f) c h w", h=height, w=width)


class NoFrameOp(nn.Module):
    def forward(self, h: torch.Tensor, num_frames: int) -> torch.Tensor:
        return h


def make_frame_op(kind: str, channels: int, max_frames: int) -> nn.Module:
    if kind == "adaptor":
        return FrameAdaptor(channels, max_frames)
    if kind == "conv1d":
        return TemporalConv1d(channels, max_frames)
    return NoFrameOp()


# -- embeddings ---------------------------------------------------------------------------
class MLPEmbedding(nn.Module):
    """Linear -> SiLU -> Linear on sinusoidal features (SD's ``TimestepEmbedding``)."""

    def __init__(self, in_dim: int, dim: int, zero_init: bool = False):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)
        if zero_init:
            nn.init.zeros_(self.linear_2.weight)
            nn.init.zeros_(self.linear_2.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


def sinusoidal(values: torch.Tensor, dim: int) -> torch.Tensor:
    """SD's timestep features: diffusers' ``get_timestep_embedding(values, dim, flip_sin_to_cos=True,
    downscale_freq_shift=0)`` op for op (the same bits), for timesteps or fps; written out so
    that the U-Net does not import diffusers' model packages (about a third of a preview's start)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32, device=values.device)
    freqs = torch.exp(exponent / half)
    angles = values[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)  # cos first
    return F.pad(emb, (0, 1, 0, 0)) if dim % 2 else emb


# -- blocks -------------------------------------------------------------------------------
class VideoResBlock(nn.Module):
    """SD's ResnetBlock2D with a frame operator (adaptor by default) after each conv."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, cfg: VideoUNetConfig):
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.frame_op1 = make_frame_op(cfg.temporal_conv_op, out_ch, cfg.max_frames)
        self.time_emb_proj = nn.Linear(temb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.frame_op2 = make_frame_op(cfg.temporal_conv_op, out_ch, cfg.max_frames)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, num_frames: int) -> torch.Tensor:
        h = self.frame_op1(self.conv1(F.silu(self.norm1(x))), num_frames)
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.frame_op2(self.conv2(F.silu(self.norm2(h))), num_frames)
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class VideoTransformerBlock(nn.Module):
    """Spatial self-attention and directed temporal attention from the same LayerNorm'd
    tokens, summed into the residual (parallel); then text cross-attention; then GEGLU FF."""

    def __init__(self, dim: int, heads: int, cfg: VideoUNetConfig):
        super().__init__()
        self.parallel = cfg.attention_layout == "parallel"
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.temporal_attn = None
        if cfg.temporal_attention != "none":
            self.temporal_attn = TemporalAttention(dim, heads, directed=cfg.temporal_attention == "directed")
            if not self.parallel:
                self.norm_temporal = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim=cfg.cross_attention_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim)

    def temporal(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        seq = rearrange(tokens, "(b f) l c -> (b l) f c", f=num_frames)
        out, _ = self.temporal_attn(seq)
        return rearrange(out, "(b l) f c -> (b f) l c", l=tokens.shape[1])

    def cross(self, tokens: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        if context.shape[0] * num_frames == tokens.shape[0]:
            # one context per video: fold frames into the query length instead of copying
            # the context F times (cross-attention treats every query independently)
            q = rearrange(tokens, "(b f) l c -> b (f l) c", f=num_frames)
            return rearrange(self.attn2(q, context), "b (f l) c -> (b f) l c", f=num_frames)
        return self.attn2(tokens, context)  # per-frame context, already (B*F, L, D)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        n = self.norm1(x)
        if self.temporal_attn is None:
            x = x + self.attn1(n)
        elif self.parallel:
            x = x + self.attn1(n) + self.temporal(n, num_frames)
        else:
            x = x + self.attn1(n)
            x = x + self.temporal(self.norm_temporal(x), num_frames)
        x = x + self.cross(self.norm2(x), context, num_frames)
        return x + self.ff(self.norm3(x))


class VideoTransformer(nn.Module):
    """SD's Transformer2DModel around one VideoTransformerBlock (GroupNorm, proj in/out)."""

    def __init__(self, dim: int, heads: int, cfg: VideoUNetConfig):
        super().__init__()
        self.linear = cfg.use_linear_projection
        self.norm = nn.GroupNorm(cfg.norm_num_groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim) if self.linear else nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([VideoTransformerBlock(dim, heads, cfg)])
        self.proj_out = nn.Linear(dim, dim) if self.linear else nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        _, _, height, width = x.shape
        h = self.norm(x)
        if self.linear:
            h = self.proj_in(rearrange(h, "n c h w -> n (h w) c"))
        else:
            h = rearrange(self.proj_in(h), "n c h w -> n (h w) c")
        for block in self.transformer_blocks:
            h = block(h, context, num_frames)
        if self.linear:
            h = rearrange(self.proj_out(h), "n (h w) c -> n c h w", h=height, w=width)
        else:
            h = self.proj_out(rearrange(h, "n (h w) c -> n c h w", h=height, w=width))
        return h + x


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: resnets, optional attention after each, optional resampler.
    Serves the down path, the mid block (resnet, attention, resnet) and the up path."""

    def __init__(self, resnets: list[VideoResBlock], attentions: list[VideoTransformer] | None,
                 downsample: int | None = None, upsample: int | None = None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        self.downsamplers = nn.ModuleList([Downsample(downsample)]) if downsample else None
        self.upsamplers = nn.ModuleList([Upsample(upsample)]) if upsample else None


# -- step caching (opt-in, inexact) ----------------------------------------------------------
class StepCache:
    """Reuse of work between denoising steps, First-Block-Cache's test with DeepCache's reuse
    and TaylorSeer's forecast: every call runs the input conv and the first level's resnets (the
    "first block"); when their output differs from its forecast by less than ``threshold`` in
    relative L1 (mean |h - forecast| / mean |forecast|), the deep features (the input of the
    last up level, see ``VideoUNet._deep``) are forecast too and only the last up level and the
    output conv run. The forecast (``order``): 0, the last fully computed step's values
    (DeepCache); 1 (the default), the line in the timestep through the last two computed steps'
    values; 2, the parabola through three (it overshoots: worse than 1 on the shapes model). The
    shallow, full-resolution path is always computed from the current input, so skipped steps
    still follow x_t. Steps at timesteps above ``exact_above`` (the U-Net's timestep input; 700
    of 1000: the first ~30% of a trailing schedule, where the layout of the video is decided) are
    always computed: reusing there moved objects (benchmarks/step_cache.py, docs/benchmarks.md
    section 8).

    A new sampling run starts the cache afresh: a call whose timestep is not below the
    previous call's (timesteps fall within a run) or whose shapes differ recomputes
    everything, so the windows of a long video and successive requests never share features.
    Classifier-free guidance's batch (uncond and cond together) is cached as one.
    ``calls`` and ``skipped`` count the model calls and those that reused features."""

    def __init__(self, threshold: float, exact_above: float = 700.0, order: int = 1):
        for name, value in (("threshold", threshold), ("exact_above", exact_above)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"step cache {name} must be a finite number >= 0, got {value!r}")
        if not isinstance(order, int) or isinstance(order, bool) or order not in (0, 1, 2):
            raise ValueError(f"step cache order must be 0 (reuse), 1 or 2 (extrapolate), got {order!r}")
        self.threshold, self.exact_above, self.order = float(threshold), float(exact_above), order
        self.calls = self.skipped = 0
        self.reset()

    def reset(self) -> None:
        """Forget the stored steps (the next call computes everything)."""
        self._timestep: float | None = None
        # (first-block output, deep features, timestep) of the last order + 1 computed steps, newest last
        self._computed: list[tuple[torch.Tensor, torch.Tensor, float]] = []

    def reuse(self, first: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor | None:
        """Deep features for this call (first-block output ``first``) if it may skip computing
        them, else None."""
        t = float(torch.as_tensor(timestep).max())
        new_run = not self._computed or self._computed[-1][0].shape != first.shape or t >= self._timestep
        self._timestep = t
        self.calls += 1
        if new_run:
            self._computed = []
            return None
        if self.threshold == 0.0 or t > self.exact_above:
            return None
        expected = self._forecast(0, t)
        change = float((first.detach() - expected).abs().mean() / expected.abs().mean().clamp_min(1e-12))
        if change < self.threshold:
            self.skipped += 1
            return self._forecast(1, t)
        return None

    def _forecast(self, index: int, t: float) -> torch.Tensor:
        """Item ``index`` of the stored steps (0: first-block output, 1: deep features) at
        timestep ``t``: the last computed one (order 0), or the polynomial in the timestep
        through the last ``order + 1`` computed steps evaluated at ``t`` (order 1: the line
        through the last two; TaylorSeer's forecast by finite differences). Until that many steps
        are computed, the highest order they allow."""
        points = [(p[index], p[2]) for p in self._computed]
        if len(points) < 2:
            return points[-1][0]
        out = None
        for i, (value, ti) in enumerate(points):  # Lagrange form: sum_i value_i * prod_j (t - t_j) / (t_i - t_j)
            weight = math.prod((t - tj) / (ti - tj) for j, (_, tj) in enumerate(points) if j != i)
            out = value * weight if out is None else out.add_(value, alpha=weight)
        return out

    def store(self, first: torch.Tensor, deep: torch.Tensor) -> None:
        """Keep a fully computed step's first-block output and deep features."""
        kept = self._computed[max(0, len(self._computed) - self.order):]
        self._computed = [*kept, (first.detach(), deep.detach(), self._timestep)]


# -- the backbone -------------------------------------------------------------------------
class VideoUNet(ModelDirectoryMixin, nn.Module):
    """Latent video denoiser: ``unet(sample, timestep, encoder_hidden_states, fps=...)``."""

    config_class = VideoUNetConfig

    def __init__(self, config: VideoUNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or VideoUNetConfig()
        chs = cfg.block_out_channels
        temb_dim = chs[0] * 4
        self.gradient_checkpointing = False
        self._step_cache: StepCache | None = None  # set only inside ``step_cache``

        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.condition_channels, chs[0], 3, padding=1)
        if cfg.condition_channels:
            with torch.no_grad():  # new conditioning channels start silent
                self.conv_in.weight[:, cfg.in_channels:].zero_()
        self.time_embedding = MLPEmbedding(chs[0], temb_dim)
        self.fps_embedding = MLPEmbedding(chs[0], temb_dim, zero_init=True) if cfg.use_fps_embedding else None
        self.condition_embedding = (
            MLPEmbedding(cfg.cross_attention_dim, temb_dim, zero_init=True) if cfg.use_condition_embedding else None
        )

        def attn(ch: int, level: int) -> VideoTransformer:
            return VideoTransformer(ch, cfg.num_attention_heads[level], cfg)

        self.down_blocks = nn.ModuleList()
        ch_in = chs[0]
        for i, ch in enumerate(chs):
            last = i == len(chs) - 1
            resnets = [VideoResBlock(ch_in if j == 0 else ch, ch, temb_dim, cfg) for j in range(cfg.layers_per_block)]
            attns = [attn(ch, i) for _ in resnets] if cfg.attention_levels[i] else None
            self.down_blocks.append(Level(resnets, attns, downsample=None if last else ch))
            ch_in = ch

        top = len(chs) - 1
        self.mid_block = Level(
            [VideoResBlock(chs[-1], chs[-1], temb_dim, cfg), VideoResBlock(chs[-1], chs[-1], temb_dim, cfg)],
            [attn(chs[-1], top)],
        )

        # up path: mirror of the down path, each resnet also eats one skip connection
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(chs))
        prev = rev[0]
        for i, ch in enumerate(rev):
            skip_in = rev[min(i + 1, top)]
            n = cfg.layers_per_block + 1
            resnets = [
                VideoResBlock((prev if j == 0 else ch) + (skip_in if j == n - 1 else ch), ch, temb_dim, cfg)
                for j in range(n)
            ]
            level = top - i
            attns = [attn(ch, level) for _ in resnets] if cfg.attention_levels[level] else None
            self.up_blocks.append(Level(resnets, attns, upsample=ch if i < top else None))
            prev = ch

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, chs[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(chs[0], cfg.out_channels, 3, padding=1)

    # -- inputs ---------------------------------------------------------------------------
    def _check_inputs(self, sample, timestep, context, fps, conditioning) -> None:
        cfg = self.config
        if not isinstance(sample, torch.Tensor) or sample.ndim != 5:
            shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ValueError(f"sample must be a 5D tensor (B, C, F, H, W), got {shape}")
        b, c, f, h, w = sample.shape
        if c != cfg.in_channels:
            raise ValueError(f"sample has {c} channels, the model expects {cfg.in_channels}")
        if f > cfg.max_frames:
            raise ValueError(f"sample has {f} frames, above the configured maximum max_frames={cfg.max_frames}")
        if h % cfg.downsample_factor or w % cfg.downsample_factor:
            raise ValueError(f"latent size {h}x{w} must be divisible by {cfg.downsample_factor}")
        if not isinstance(context, torch.Tensor) or context.ndim not in (3, 4):
            raise ValueError("encoder_hidden_states must be (B, L, D) or per-frame (B, F, L, D)")
        if context.shape[-1] != cfg.cross_attention_dim:
            raise ValueError(
                f"encoder_hidden_states width {context.shape[-1]} does not match "
                f"cross_attention_dim={cfg.cross_attention_dim}"
            )
        if context.shape[0] != b or (context.ndim == 4 and context.shape[1] != f):
            raise ValueError(f"encoder_hidden_states shape {tuple(context.shape)} does not match batch {b}, frames {f}")
        t = torch.as_tensor(timestep)
        if t.ndim > 2 or (t.ndim >= 1 and t.shape[0] not in (1, b)) or (t.ndim == 2 and t.shape[1] != f):
            raise ValueError(f"timestep must be a scalar, (B,) or per-frame (B, F); got shape {tuple(t.shape)}")
        if fps is not None and bool((torch.as_tensor(fps) <= 0).any()):
            raise ValueError(f"fps must be > 0, got {fps}")
        if cfg.condition_channels:
            if conditioning is None or conditioning.shape != (b, cfg.condition_channels, f, h, w):
                got = None if conditioning is None else tuple(conditioning.shape)
                raise ValueError(
                    f"this model needs conditioning of shape {(b, cfg.condition_channels, f, h, w)}, got {got}"
                )
        elif conditioning is not None:
            raise ValueError("conditioning given, but the model has condition_channels=0")

    def _per_frame(self, values: Any, batch: int, num_frames: int, device: torch.device) -> torch.Tensor:
        """Scalar, (B,) or (B, F) -> (B*F,), frame-major like the folded batch."""
        v = torch.as_tensor(values, device=device, dtype=torch.float32)
        if v.ndim == 0:
            v = v.expand(batch)
        if v.ndim == 1:
            v = v.expand(batch) if v.shape[0] == 1 else v
            v = v[:, None].expand(batch, num_frames)
        return v.reshape(batch * num_frames)

    # -- forward --------------------------------------------------------------------------
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        fps: torch.Tensor | float | None = None,
        conditioning: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample (B, C, F, H, W); timestep scalar, (B,) or (B, F); encoder_hidden_states
        (B, L, D) or per-frame (B, F, L, D); fps scalar or (B,) (default: config.default_fps);
        conditioning (B, condition_channels, F, H, W) for interpolation models.
        Returns the prediction, shape (B, out_channels, F, H, W)."""
        self._check_inputs(sample, timestep, encoder_hidden_states, fps, conditioning)
        b, _, f, _, _ = sample.shape
        cfg = self.config
        x = sample if conditioning is None else torch.cat([sample, conditioning.to(sample.dtype)], dim=1)
        x = fold_frames(x)
        context = encoder_hidden_states.to(x.dtype)
        if context.ndim == 4:
            context = rearrange(context, "b f l d -> (b f) l d")

        dim0 = cfg.block_out_channels[0]
        t = self._per_frame(timestep, b, f, x.device)
        temb = self.time_embedding(sinusoidal(t, dim0).to(x.dtype))
        if self.fps_embedding is not None:
            rate = self._per_frame(cfg.default_fps if fps is None else fps, b, f, x.device)
            temb = temb + self.fps_embedding(sinusoidal(rate, dim0).to(x.dtype))
        if self.condition_embedding is not None:
            pooled = context.mean(dim=1)  # (B*F, D) for per-frame context, else (B, D)
            if pooled.shape[0] != temb.shape[0]:
                pooled = pooled.repeat_interleave(f, dim=0)  # frame-major, like the folded batch
            temb = temb + self.condition_embedding(pooled)

        h = self.conv_in(x)
        skips = [h]
        h = self._down(self.down_blocks[0], h, temb, context, f, skips, resample=False)
        cache = self._step_cache
        deep = None if cache is None else cache.reuse(h, timestep)
        if deep is None:
            deep = self._deep(h, temb, context, f, skips)
            if cache is not None:
                cache.store(h, deep)
        h = self._up(self.up_blocks[-1], deep, temb, context, f, skips)
        h = self.conv_out(F.silu(self.conv_norm_out(h)))
        return unfold_frames(h, f)

    def _down(self, level: Level, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, f: int,
              skips: list[torch.Tensor], resample: bool = True) -> torch.Tensor:
        for j, resnet in enumerate(level.resnets):
            h = self._run(resnet, h, temb, f)
            if level.attentions is not None:
                h = self._run(level.attentions[j], h, context, f)
            skips.append(h)
        if resample and level.downsamplers is not None:
            h = level.downsamplers[0](h)
            skips.append(h)
        return h

    def _up(self, level: Level, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, f: int,
            skips: list[torch.Tensor]) -> torch.Tensor:
        for j, resnet in enumerate(level.resnets):
            h = self._run(resnet, torch.cat([h, skips.pop()], dim=1), temb, f)
            if level.attentions is not None:
                h = self._run(level.attentions[j], h, context, f)
        if level.upsamplers is not None:
            h = level.upsamplers[0](h)
        return h

    def _deep(self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, f: int,
              skips: list[torch.Tensor]) -> torch.Tensor:
        """Everything between the first level's resnets and the last up level: the first
        level's downsampler, the lower levels, the mid block and the up path but its last
        level (what ``StepCache`` reuses). Pushes and pops only its own skips."""
        first = self.down_blocks[0]
        if first.downsamplers is not None:
            h = first.downsamplers[0](h)
            skips.append(h)
        for level in self.down_blocks[1:]:
            h = self._down(level, h, temb, context, f, skips)
        h = self._run(self.mid_block.resnets[0], h, temb, f)
        h = self._run(self.mid_block.attentions[0], h, context, f)
        h = self._run(self.mid_block.resnets[1], h, temb, f)
        for level in self.up_blocks[:-1]:
            h = self._up(level, h, temb, context, f, skips)
        return h

    @contextmanager
    def step_cache(self, threshold: float, exact_above: float = 700.0, order: int = 1) -> Iterator["StepCache"]:
        """Within the block, calls of this model forecast the deep features from the last fully
        computed steps instead of computing them while the first level's output stays close to
        its own forecast (``StepCache``; ``order`` 0 reuses the last step's, 1 extrapolates
        linearly): faster, no longer exact. Off outside the block; threshold 0 never reuses;
        steps at timesteps above ``exact_above`` are always computed."""
        if self._step_cache is not None:
            raise RuntimeError("step_cache: this model is already caching steps (nested step_cache blocks)")
        cache = StepCache(threshold, exact_above, order)
        self._step_cache = cache
        try:
            yield cache
        finally:
            self._step_cache = None

    def _run(self, module: nn.Module, *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def enable_gradient_checkpointing(self, enabled: bool = True) -> "VideoUNet":
        self.gradient_checkpointing = enabled
        return self

    # -- bookkeeping ----------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the image part (what SD has) and of the new video part."""
        image = video = 0
        for name, p in self.named_parameters():
            if is_video_parameter(name):
                video += p.numel()
            elif name == "conv_in.weight" and self.config.condition_channels:
                kept = p.shape[0] * self.config.in_channels * p.shape[2] * p.shape[3]
                image, video = image + kept, video + p.numel() - kept
            else:
                image += p.numel()
        return {"image": image, "video": video, "total": image + video}

    def with_condition_channels(self, condition_channels: int) -> "VideoUNet":
        """A copy with ``condition_channels`` extra input channels, zero-initialised: the copy
        computes exactly what this model does until they are trained (interpolation init)."""
        import dataclasses

        model = type(self)(dataclasses.replace(self.config, condition_channels=condition_channels))
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        padded = torch.zeros_like(model.conv_in.weight)
        padded[:, : self.config.in_channels] = state["conv_in.weight"][:, : self.config.in_channels]
        state["conv_in.weight"] = padded
        model.load_state_dict(state)
        return model.train(self.training)

    def with_condition_embedding(self) -> "VideoUNet":
        """A copy with the (zero-initialised) condition embedding: it computes exactly what
        this model does until the embedding is trained (upgrading a model of an older preset)."""
        import dataclasses

        if self.config.use_condition_embedding:
            raise ValueError("the model already has a condition embedding")
        model = type(self)(dataclasses.replace(self.config, use_condition_embedding=True))
        missing, unexpected = model.load_state_dict(self.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("condition_embedding.") for k in missing), (missing, unexpected)
        return model.to(next(self.parameters()).device).train(self.training)

    def load_image_part(self, path: str | Path) -> "VideoUNet":
        """Take the image part (every parameter but the video ones, ``is_video_parameter``)
        from another VideoUNet's directory, in place; this model's video parameters are kept
        (fresh: identity/zero). What ``from_pretrained_2d`` does with Stable Diffusion, for a
        model of our own, e.g. one trained without temporal layers as a text-to-image model;
        its own video parameters, if any, are not used. Every image parameter must be there,
        with this model's shapes."""
        from .io import WEIGHTS_NAME, load_safetensors

        weights = Path(path) / WEIGHTS_NAME
        state = {k: v for k, v in load_safetensors(weights).items() if not is_video_parameter(k)}
        return self.load_image_state(state, f"{weights} (image part)")

    def load_image_state(self, state: dict[str, torch.Tensor], source: str) -> "VideoUNet":
        """Load an image model's state dict (no video parameters) in place: every image
        parameter must be there with this model's shapes; the video parameters are kept.
        ``source`` names the file in errors."""
        from .io import load_state_dict_checked

        video = {k for k in self.state_dict() if is_video_parameter(k)}
        load_state_dict_checked(self, state, source, allowed_missing=video)
        return self

    # -- files (save_pretrained / from_pretrained: ModelDirectoryMixin) ---------------------
    @classmethod
    def from_pretrained_2d(cls, path: str | Path, **video_options: Any) -> "VideoUNet":
        """Build a VideoUNet around Stable Diffusion weights (diffusers folder, its ``unet/``
        folder, or an original single-file ``.safetensors`` checkpoint). The video parameters
        start as identity/zero, so the result equals the image model frame by frame."""
        from ..convert import load_unet_2d

        return load_unet_2d(cls, path, **video_options)


def count_flops(module: nn.Module, *args: Any, backward: bool = False, **kwargs: Any) -> int:
    """FLOPs of one call (optionally forward + backward), counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = module(*args, **kwargs)
        if backward:
            out.float().sum().backward()
    return counter.get_total_flops()


__all__ = ["VideoUNet", "StepCache", "FrameAdaptor", "TemporalConv1d", "count_flops", "is_video_parameter"]
