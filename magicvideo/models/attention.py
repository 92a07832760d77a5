"""Attention building blocks: spatial (self + cross) and directed temporal attention.

Layouts: spatial attention sees tokens ``(B*F, H*W, C)`` (frames folded into the batch);
temporal attention sees ``(B*H*W, F, C)`` (every pixel position is its own sequence over
frames). Both run through ``F.scaled_dot_product_attention`` so that PyTorch picks the
fastest kernel. Parameter names follow diffusers (``to_q``, ``to_k``, ``to_v``,
``to_out.0``) so that Stable Diffusion weights load by name.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


# PyTorch's CPU attention kernel runs heads of fewer than 16 channels about 1.4x slower than
# heads of 16 (2.13, fp32, 1,024 tokens, forward and backward: 0.95 s at 4 or 8 channels, 0.67 s
# padded to 16); from 16 up, padding only adds work. docs/benchmarks.md section 7
CPU_MIN_HEAD_DIM = 16


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (q, k, v: (N, heads, L, d)); on the CPU, heads narrower
    than ``CPU_MIN_HEAD_DIM`` are zero-padded to it: the scores and the output's d channels are
    unchanged up to float rounding (the scale stays d^-0.5, the padded channels of the output
    are exactly 0). Training keeps only the unpadded tensors for the backward pass, so memory is
    that of the plain call."""
    d = q.shape[-1]
    if q.device.type != "cpu" or d >= CPU_MIN_HEAD_DIM:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    if attn_mask is None and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        if not hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):  # an older torch
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        return _PaddedFlashAttention.apply(q, k, v, is_causal)
    out = F.scaled_dot_product_attention(*_padded(q, k, v), attn_mask=attn_mask, is_causal=is_causal, scale=d ** -0.5)
    return out[..., :d]


def _padded(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor's last dim zero-padded to ``CPU_MIN_HEAD_DIM``."""
    return [F.pad(t, (0, CPU_MIN_HEAD_DIM - t.shape[-1])) for t in tensors]


class _PaddedFlashAttention(torch.autograd.Function):
    """PyTorch's CPU flash attention (the kernel ``F.scaled_dot_product_attention`` picks there)
    on heads zero-padded to ``CPU_MIN_HEAD_DIM``, saving the unpadded q, k, v and output (and
    the log-sum-exp) for the backward pass, which pads them again: the padded copies live only
    within each pass."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool) -> torch.Tensor:
        d = q.shape[-1]
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            *_padded(q, k, v), 0.0, is_causal, scale=d ** -0.5)
        out = out[..., :d].contiguous()
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.is_causal = is_causal
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        d = q.shape[-1]
        grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            *_padded(grad_out, q, k, v, out), lse, 0.0, ctx.is_causal, scale=d ** -0.5)
        return (*(g[..., :d] for g in grads), None)


class Attention(nn.Module):
    """Multi-head attention; ``context=None`` makes it self-attention."""

    def __init__(self, query_dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if query_dim % heads:
            raise ValueError(f"query_dim {query_dim} is not divisible by {heads} heads")
        self.heads = heads
        context_dim = context_dim or query_dim
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(query_dim, query_dim), nn.Dropout(0.0)])

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = rearrange(self.to_k(context), "n l (h d) -> n h l d", h=self.heads)
        v = rearrange(self.to_v(context), "n l (h d) -> n h l d", h=self.heads)
        return k, v

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        q = rearrange(self.to_q(x), "n l (h d) -> n h l d", h=self.heads)
        out = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.to_out[0](rearrange(out, "n h l d -> n l (h d)"))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        k, v = self.project_kv(x if context is None else context)
        return self.attend(x, k, v, is_causal=is_causal)


class GEGLU(nn.Module):
    """Gated GELU: Linear to twice the width, one half gates the other."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class GEGLUFeedForward(nn.Module):
    """SD's feed-forward: GEGLU -> Linear (names ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def sliding_causal_mask(
    num_queries: int, num_past: int, window: int | None, device: torch.device, group: int = 1
) -> torch.Tensor | None:
    """Boolean mask (queries, (past + queries) * group): query i (at absolute frame num_past + i)
    may see the keys of frame j iff j <= num_past + i and j > num_past + i - window; each frame
    has ``group`` consecutive keys (e.g. a spatial neighbourhood)."""
    if num_past == 0 and group == 1 and (window is None or window >= num_queries):
        return None  # plain lower-triangular: use is_causal
    q_pos = torch.arange(num_queries, device=device)[:, None] + num_past
    k_pos = torch.arange((num_past + num_queries) * group, device=device)[None, :] // group
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask


class TemporalAttention(nn.Module):
    """Self-attention over the frame axis at every spatial position.

    ``directed=True`` is the paper's directed temporal attention: a lower-triangular mask
    lets frame i attend only to frames <= i, so the past is never changed by the future.
    The output projection starts at zero (new branch = identity of the residual stream,
    so a video model built around an image model initially equals that image model).
    """

    def __init__(self, dim: int, heads: int, directed: bool = True):
        super().__init__()
        self.directed = directed
        self.attn = Attention(dim, heads)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(
        self,
        tokens: torch.Tensor,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        window: int | None = None,
        context: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens: (N, F, C), N = batch * pixels. ``past_kv`` holds keys/values of earlier
        frames (chunked decoding); the returned cache keeps at most ``window - 1`` frames.
        ``context`` (N, F * G, C): the keys' source when each frame offers G tokens to attend
        to (frame-major, e.g. a pixel's spatial neighbourhood); default the tokens (G = 1)."""
        group = 1 if context is None else context.shape[1] // tokens.shape[1]
        if context is not None and context.shape[1] != group * tokens.shape[1]:
            raise ValueError(f"context has {context.shape[1]} tokens, not a multiple of {tokens.shape[1]} frames")
        k, v = self.attn.project_kv(tokens if context is None else context)
        num_past = 0
        if past_kv is not None:
            num_past = past_kv[0].shape[2] // group
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        if not self.directed:
            if past_kv is not None:
                raise ValueError("bidirectional temporal attention cannot decode in chunks")
            return self.attn.attend(tokens, k, v), (k, v)
        mask = sliding_causal_mask(tokens.shape[1], num_past, window, tokens.device, group)
        out = self.attn.attend(tokens, k, v, attn_mask=mask, is_causal=mask is None)
        start = 0 if window is None else max(k.shape[2] - (window - 1) * group, 0)
        cache = (k[:, :, start:], v[:, :, start:])
        return out, cache
