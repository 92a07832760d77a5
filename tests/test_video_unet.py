"""VideoUNet: function preservation against diffusers, causality, adaptor, fps, inputs."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import TINY_UNET_2D, per_frame, per_video, randomize_
from diffusers import UNet2DConditionModel

from magicvideo import VideoUNet, VideoUNetConfig
from magicvideo.models import FrameAdaptor, TemporalConv1d

F = 16


def small_config(**kw) -> VideoUNetConfig:
    base = dict(block_out_channels=(16, 32), layers_per_block=1, attention_levels=(True, True),
                num_attention_heads=(2, 2), cross_attention_dim=24, norm_num_groups=8, max_frames=16)
    return VideoUNetConfig(**{**base, **kw})


def inputs(batch=2, frames=F, size=8, width=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, size, size, generator=g)
    ctx = torch.randn(batch, 7, width, generator=g)
    t = torch.tensor([10, 700])[:batch]
    return x, t, ctx


@pytest.mark.parametrize("temporal_conv_op", ["adaptor", "conv1d", "none"])
def test_video_unet_matches_diffusers_unet_per_frame(diffusers_unet, temporal_conv_op):
    ref, path = diffusers_unet
    video = VideoUNet.from_pretrained_2d(path, temporal_conv_op=temporal_conv_op)
    x, t, ctx = inputs(width=32)
    with torch.no_grad():
        ours = video(x, t, ctx, fps=4.0)
        theirs = ref(per_frame(x), t.repeat_interleave(F), ctx.repeat_interleave(F, dim=0)).sample
    err = (ours - per_video(theirs, F)).abs().max().item()
    assert err <= 1e-5, err
    assert theirs.abs().mean() > 1e-2  # the reference is not trivially zero


def test_sd2_style_linear_projection_matches_diffusers(tmp_path):
    torch.manual_seed(3)
    ref = randomize_(UNet2DConditionModel(**{**TINY_UNET_2D, "use_linear_projection": True}), 2, 0.02).eval()
    ref.save_pretrained(tmp_path / "unet")
    video = VideoUNet.from_pretrained_2d(tmp_path)  # pipeline-style folder with unet/
    assert video.config.use_linear_projection
    x, t, ctx = inputs(frames=3, width=32)
    with torch.no_grad():
        theirs = ref(per_frame(x), t.repeat_interleave(3), ctx.repeat_interleave(3, dim=0)).sample
        assert (video(x, t, ctx) - per_video(theirs, 3)).abs().max() <= 1e-5


def test_single_frame_is_the_image_model(diffusers_unet):
    ref, path = diffusers_unet
    video = VideoUNet.from_pretrained_2d(path)
    x, t, ctx = inputs(frames=1, width=32)
    with torch.no_grad():
        theirs = ref(per_frame(x), t, ctx).sample
        assert (video(x, t, ctx) - per_video(theirs, 1)).abs().max() <= 1e-5


def causality_check(model: VideoUNet, k: int, frames: int = 8):
    x, t, ctx = inputs(frames=frames)
    x2 = x.clone()
    x2[:, :, k] += torch.randn_like(x2[:, :, k])
    with torch.no_grad():
        a, b = model(x, t, ctx), model(x2, t, ctx)
    diff = (a - b).abs().amax(dim=(0, 1, 3, 4))  # per frame
    return diff


@pytest.mark.parametrize("temporal_conv_op", ["adaptor", "conv1d"])
def test_unet_is_causal_in_time(temporal_conv_op):
    torch.manual_seed(0)
    model = randomize_(VideoUNet(small_config(temporal_conv_op=temporal_conv_op)), seed=1).eval()
    k = 3
    diff = causality_check(model, k)
    assert diff[:k].max() == 0.0, diff
    # frames after k change too: only the temporal layers can carry that information
    assert (diff[k + 1:] > 1e-4).all(), diff


def test_unet_without_temporal_layers_keeps_frames_independent():
    model = randomize_(VideoUNet(small_config(temporal_attention="none", temporal_conv_op="adaptor")), 1).eval()
    diff = causality_check(model, 3)
    assert diff[3] > 0 and diff[4:].max() == 0.0 and diff[:3].max() == 0.0


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_bidirectional_attention_lets_the_future_change_the_past(layout):
    model = randomize_(VideoUNet(small_config(temporal_attention="bidirectional", attention_layout=layout)), 1).eval()
    diff = causality_check(model, 3)
    assert (diff[:3] > 1e-4).all(), diff


def test_sequential_layout_is_causal_and_differs_from_parallel():
    torch.manual_seed(0)
    par = randomize_(VideoUNet(small_config()), seed=1).eval()
    seq = VideoUNet(small_config(attention_layout="sequential"))
    state = seq.state_dict()
    state.update(par.state_dict())
    seq.load_state_dict(state)
    seq.eval()
    assert causality_check(seq, 3)[:3].max() == 0.0
    x, t, ctx = inputs(frames=4)
    with torch.no_grad():
        assert (par(x, t, ctx) - seq(x, t, ctx)).abs().max() > 1e-4


def test_frame_adaptor_is_per_frame_scale_and_bias():
    adaptor = FrameAdaptor(channels=3, max_frames=5)
    with torch.no_grad():
        adaptor.scale.copy_(torch.randn(5, 3))
        adaptor.bias.copy_(torch.randn(5, 3))
    z = torch.randn(2 * 4, 3, 6, 7)  # (B*F, C, H, W), B=2, F=4
    out = adaptor(z, num_frames=4).view(2, 4, 3, 6, 7)
    expected = z.view(2, 4, 3, 6, 7) * adaptor.scale[:4, :, None, None] + adaptor.bias[:4, :, None, None]
    torch.testing.assert_close(out, expected)


def test_distinct_adaptors_give_distinct_frames():
    torch.manual_seed(0)
    model = VideoUNet(small_config()).eval()
    frame = torch.randn(1, 4, 1, 8, 8)
    x = frame.expand(1, 4, 6, 8, 8).contiguous()  # six identical frames
    t, ctx = torch.tensor([300]), torch.randn(1, 5, 24)
    with torch.no_grad():
        same = model(x, t, ctx)
        # identity adaptors: identical frames (up to float rounding: attention over 1..6 equal keys)
        assert (same - same[:, :, :1]).abs().max() < 1e-5
        for m in model.modules():
            if isinstance(m, FrameAdaptor):
                m.scale.add_(torch.randn_like(m.scale) * 0.2)
                m.bias.add_(torch.randn_like(m.bias) * 0.2)
        out = model(x, t, ctx)
    per_frame_gap = (out[:, :, 1:] - out[:, :, :1]).abs().amax(dim=(0, 1, 3, 4))
    assert (per_frame_gap > 1e-3).all(), per_frame_gap


def test_temporal_conv1d_starts_as_identity_and_is_causal():
    op = TemporalConv1d(channels=4, max_frames=8)
    z = torch.randn(2 * 5, 4, 3, 3)
    torch.testing.assert_close(op(z, 5), z)
    with torch.no_grad():
        op.conv.weight.add_(torch.randn_like(op.conv.weight))
    z2 = z.clone().view(2, 5, 4, 3, 3)
    z2[:, 2] += 1.0
    diff = (op(z, 5) - op(z2.view(10, 4, 3, 3), 5)).view(2, 5, 4, 3, 3).abs().amax(dim=(0, 2, 3, 4))
    assert diff[:2].max() == 0 and (diff[2:] > 0).all()


def test_fps_embedding_makes_output_depend_on_fps():
    torch.manual_seed(0)
    model = VideoUNet(small_config()).eval()
    x, t, ctx = inputs(frames=4)
    with torch.no_grad():
        assert (model(x, t, ctx, fps=4.0) - model(x, t, ctx, fps=16.0)).abs().max() == 0.0  # zero-init
        torch.nn.init.normal_(model.fps_embedding.linear_2.weight, std=0.1)
        gap = (model(x, t, ctx, fps=4.0) - model(x, t, ctx, fps=16.0)).abs().max()
        same = (model(x, t, ctx, fps=torch.tensor([4.0, 4.0])) - model(x, t, ctx, fps=4.0)).abs().max()
    assert gap > 1e-3 and same == 0.0


def test_per_frame_timesteps_and_context_match_shared_ones():
    torch.manual_seed(0)
    model = randomize_(VideoUNet(small_config()), seed=2).eval()
    x, t, ctx = inputs(frames=5)
    with torch.no_grad():
        shared = model(x, t, ctx)
        per_frame_t = model(x, t[:, None].expand(2, 5), ctx)
        per_frame_ctx = model(x, t, ctx[:, None].expand(2, 5, 7, 24))
        t_mixed = t[:, None].expand(2, 5).clone()
        t_mixed[:, 0] = 0
        mixed = model(x, t_mixed, ctx)
    torch.testing.assert_close(per_frame_t, shared, atol=1e-5, rtol=0)
    torch.testing.assert_close(per_frame_ctx, shared, atol=1e-5, rtol=0)
    assert (mixed - shared).abs().max() > 1e-3


def test_condition_channels_start_silent(diffusers_unet):
    _, path = diffusers_unet
    plain = VideoUNet.from_pretrained_2d(path)
    interp = VideoUNet.from_pretrained_2d(path, condition_channels=5)
    x, t, ctx = inputs(frames=5, width=32)
    cond = torch.randn(2, 5, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(interp(x, t, ctx, conditioning=cond), plain(x, t, ctx), atol=1e-6, rtol=0)
        interp.conv_in.weight[:, 4:].normal_()
        assert (interp(x, t, ctx, conditioning=cond) - plain(x, t, ctx)).abs().max() > 1e-3
    assert interp.parameter_counts()["image"] == plain.parameter_counts()["image"]


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = randomize_(VideoUNet(small_config()), seed=1).train()
    x, t, ctx = inputs(frames=4)

    def grads():
        model.zero_grad()
        model(x, t, ctx).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.enable_gradient_checkpointing()
    ckpt = grads()
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = randomize_(VideoUNet(small_config(temporal_conv_op="conv1d")), seed=1).eval()
    model.save_pretrained(tmp_path / "m")
    again = VideoUNet.from_pretrained(tmp_path / "m")
    assert again.config == model.config
    x, t, ctx = inputs(frames=3)
    with torch.no_grad():
        torch.testing.assert_close(again(x, t, ctx), model(x, t, ctx), atol=0, rtol=0)


@pytest.mark.parametrize("temporal_conv_op, layout", [("adaptor", "parallel"), ("conv1d", "sequential")])
def test_image_part_of_our_own_image_model_starts_a_video_model(tmp_path, temporal_conv_op, layout):
    from magicvideo.models import is_video_parameter

    # a text-to-image model of our own: no temporal layers, every weight random (its fps embedding too)
    image = randomize_(VideoUNet(small_config(temporal_conv_op="none", temporal_attention="none")), seed=1).eval()
    image.save_pretrained(tmp_path / "image")
    config = small_config(temporal_conv_op=temporal_conv_op, attention_layout=layout)
    torch.manual_seed(5)
    fresh = VideoUNet(config).state_dict()
    torch.manual_seed(5)
    video = VideoUNet(config).eval().load_image_part(tmp_path / "image")
    own = video.state_dict()
    assert any(is_video_parameter(k) for k in image.state_dict())  # the file's fps embedding is not taken
    for key, value in own.items():
        assert torch.equal(value, fresh[key] if is_video_parameter(key) else image.state_dict()[key]), key
    # the video layers start as identity, so the video model is the image model (with the fresh
    # model's fps embedding) frame by frame
    reference = VideoUNet(image.config).eval()
    reference.load_state_dict({k: own[k] if is_video_parameter(k) else v for k, v in image.state_dict().items()})
    x, t, ctx = inputs(frames=5)
    with torch.no_grad():
        torch.testing.assert_close(video(x, t, ctx, fps=8.0), reference(x, t, ctx, fps=8.0), atol=1e-5, rtol=1e-5)


def test_image_part_must_fit_the_model(tmp_path):
    VideoUNet(small_config(block_out_channels=(16, 48), temporal_attention="none")).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match=r"wide/model.safetensors \(image part\): tensor shapes do not match"):
        VideoUNet(small_config()).load_image_part(tmp_path / "wide")
    with pytest.raises(ValueError, match="weights file not found"):
        VideoUNet(small_config()).load_image_part(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x, t, c, kw: (x[:, :, 0], t, c, kw), "5D"),
        (lambda x, t, c, kw: (x[:, :3], t, c, kw), "channels"),
        (lambda x, t, c, kw: (torch.cat([x] * 5, dim=2), t, c, kw), "max_frames"),
        (lambda x, t, c, kw: (x, t, c, {"fps": 0.0}), "fps"),
        (lambda x, t, c, kw: (x, t, c, {"fps": -3.0}), "fps"),
        (lambda x, t, c, kw: (x, t, c[..., :16], kw), "cross_attention_dim"),
        (lambda x, t, c, kw: (x[..., :7, :7], t, c, kw), "divisible"),
        (lambda x, t, c, kw: (x, t, c, {"conditioning": torch.zeros(2, 1, 4, 8, 8)}), "condition_channels"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_problem(change, message):
    model = VideoUNet(small_config()).eval()
    x, t, ctx = inputs(frames=4)
    x, t, ctx, kw = change(x, t, ctx, {})
    with pytest.raises(ValueError, match=message):
        model(x, t, ctx, **kw)


def test_config_rejects_inconsistent_levels():
    with pytest.raises(ValueError, match="attention_levels"):
        VideoUNetConfig(block_out_channels=(32, 64), attention_levels=(True,), num_attention_heads=(4, 4))
    with pytest.raises(ValueError, match="temporal_conv_op"):
        dataclasses.replace(small_config(), temporal_conv_op="3d")


def test_condition_embedding_carries_the_prompt_without_cross_attention():
    torch.manual_seed(0)
    base = randomize_(VideoUNet(small_config()), seed=3).eval()
    model = base.with_condition_embedding().eval()
    x, t, ctx = inputs(frames=4)
    other = torch.randn_like(ctx)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ctx), base(x, t, ctx), atol=0, rtol=0)  # zero-init: same function
        for name, p in model.named_parameters():
            if "attn2.to_out" in name:  # cross-attention silenced: the prompt can only enter via the embedding
                p.zero_()
        assert (model(x, t, ctx) - model(x, t, other)).abs().max() == 0.0
        torch.nn.init.normal_(model.condition_embedding.linear_2.weight, std=0.1)
        gap = (model(x, t, ctx) - model(x, t, other)).abs().max()
        # per-frame condition tokens, the same in every frame, give the shared result (frame-major order)
        per_frame = (model(x, t, ctx[:, None].expand(2, 4, 7, 24)) - model(x, t, ctx)).abs().max()
    assert gap > 1e-3 and per_frame < 1e-6
    assert model.parameter_counts()["video"] > base.parameter_counts()["video"]
    with pytest.raises(ValueError, match="already has"):
        model.with_condition_embedding()


@pytest.mark.parametrize("d", [1, 4, 8, 15, 16, 32])
def test_narrow_heads_padded_on_the_cpu_are_plain_attention(d):
    """Heads narrower than CPU_MIN_HEAD_DIM run zero-padded (a faster kernel): the output and
    every gradient are PyTorch's attention at the true width; from the minimum up it is that call."""
    import torch.nn.functional as nnf

    from magicvideo.models.attention import CPU_MIN_HEAD_DIM, scaled_dot_product_attention, sliding_causal_mask

    g = torch.Generator().manual_seed(d)
    q, k, v = (torch.randn(3, 2, 40, d, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    mask = sliding_causal_mask(8, 32, window=12, device=q.device)  # 8 queries after 32 past keys
    for kwargs, rows in (({}, slice(None)), ({"is_causal": True}, slice(None)), ({"attn_mask": mask}, slice(32, None))):
        qq = q[:, :, rows]
        got = scaled_dot_product_attention(qq, k, v, **kwargs)
        want = nnf.scaled_dot_product_attention(qq, k, v, **kwargs)
        assert got.shape == want.shape
        if d >= CPU_MIN_HEAD_DIM:
            assert torch.equal(got, want)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        weights = torch.randn(want.shape, generator=g, dtype=torch.float64)
        grads = torch.autograd.grad((got * weights).sum(), (q, k, v))
        torch.testing.assert_close(grads, torch.autograd.grad((want * weights).sum(), (q, k, v)), rtol=1e-10, atol=1e-10)
        with torch.no_grad():  # inference pads without the autograd function
            torch.testing.assert_close(scaled_dot_product_attention(qq, k, v, **kwargs), want, rtol=1e-12, atol=1e-12)
