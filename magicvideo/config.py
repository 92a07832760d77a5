"""Model configurations as frozen dataclasses, with named presets.

Every field has a default that runs on a CPU. Presets are plain instances:
``PRESETS["tiny"]`` (the embedded default, a few M parameters), ``PRESETS["small"]`` (the
sprites domain's, 1.5x as wide) and ``PRESETS["sd15"]``
(Stable Diffusion 1.5 sized, 4-channel latents, 768-d text tokens).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# Every mode string is a Literal type; the tuple beside it is the same names at run time
# (argparse choices, error messages). This module imports no torch, so that building the
# CLI parser is cheap; magicvideo.stages, magicvideo.diffusion and the pipeline use them from here.
TemporalConvOp = Literal["adaptor", "conv1d", "none"]  # after each shared 2D conv
TemporalAttentionKind = Literal["directed", "bidirectional", "none"]
AttentionLayout = Literal["parallel", "sequential"]  # spatial and temporal attention
StageName = Literal["vae", "videovae", "lit", "keyframe", "interpolation", "sr"]  # `magicvideo train --stage`
Condition = Literal["image", "text"]  # keyframe conditioning: image embeddings as proxy text, or captions
Domain = Literal["shapes", "sprites"]  # procedural training data: data/synthetic.py, data/sprites.py
Scheduler = Literal["ddim", "dpm"]  # DDIM, DPM-Solver++ (diffusers)
ProgressStage = Literal["keyframes", "interpolation", "decoding", "super-resolution"]  # what on_progress reports

TEMPORAL_CONV_OPS: tuple[TemporalConvOp, ...] = get_args(TemporalConvOp)
TEMPORAL_ATTENTION_KINDS: tuple[TemporalAttentionKind, ...] = get_args(TemporalAttentionKind)
ATTENTION_LAYOUTS: tuple[AttentionLayout, ...] = get_args(AttentionLayout)
STAGES: tuple[StageName, ...] = get_args(StageName)
CONDITIONS: tuple[Condition, ...] = get_args(Condition)
DOMAINS: tuple[Domain, ...] = get_args(Domain)
SCHEDULERS: tuple[Scheduler, ...] = get_args(Scheduler)
PROGRESS_STAGES: tuple[ProgressStage, ...] = get_args(ProgressStage)


@dataclass(frozen=True)
class VideoUNetConfig:
    """The keyframe / interpolation VideoUNet (latent space, SD-style)."""

    in_channels: int = 4  # latent channels of the noisy input
    out_channels: int = 4  # channels of the prediction (eps or v)
    condition_channels: int = 0  # extra input channels (interpolation: known latents + mask)
    block_out_channels: tuple[int, ...] = (32, 64, 128)  # width per resolution level
    layers_per_block: int = 1  # resnets per down level (up levels get one more)
    attention_levels: tuple[bool, ...] = (False, True, True)  # attention after which down level
    num_attention_heads: tuple[int, ...] = (4, 4, 4)  # heads per level
    cross_attention_dim: int = 384  # width of the condition tokens
    norm_num_groups: int = 8
    norm_eps: float = 1e-5
    use_linear_projection: bool = False  # SD 1.x: 1x1 conv proj_in/out; SD 2.x: linear
    max_frames: int = 16  # frames the per-frame adaptor has parameters for
    temporal_conv_op: TemporalConvOp = "adaptor"  # after each shared 2D conv: adaptor | conv1d | none
    temporal_attention: TemporalAttentionKind = "directed"  # directed | bidirectional | none
    attention_layout: AttentionLayout = "parallel"  # spatial and temporal attention: parallel | sequential
    use_fps_embedding: bool = True
    default_fps: float = 8.0  # used when forward() gets no fps
    use_condition_embedding: bool = False  # also add the mean condition token to the timestep embedding
    sample_size: int = 16  # latent height/width the model is meant for (info, defaults)

    def __post_init__(self) -> None:
        levels = len(self.block_out_channels)
        if levels < 1:
            raise ValueError("block_out_channels must name at least one level")
        if len(self.attention_levels) != levels:
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} entries, "
                f"block_out_channels has {levels}"
            )
        if len(self.num_attention_heads) != levels:
            raise ValueError(
                f"num_attention_heads has {len(self.num_attention_heads)} entries, "
                f"block_out_channels has {levels}"
            )
        for ch, heads in zip(self.block_out_channels, self.num_attention_heads):
            if ch % heads:
                raise ValueError(f"width {ch} is not divisible by {heads} attention heads")
            if ch % self.norm_num_groups:
                raise ValueError(f"width {ch} is not divisible by norm_num_groups={self.norm_num_groups}")
        if self.temporal_conv_op not in TEMPORAL_CONV_OPS:
            raise ValueError(f"temporal_conv_op must be one of {TEMPORAL_CONV_OPS}, got {self.temporal_conv_op!r}")
        if self.temporal_attention not in TEMPORAL_ATTENTION_KINDS:
            raise ValueError(
                f"temporal_attention must be one of {TEMPORAL_ATTENTION_KINDS}, got {self.temporal_attention!r}"
            )
        if self.attention_layout not in ATTENTION_LAYOUTS:
            raise ValueError(f"attention_layout must be one of {ATTENTION_LAYOUTS}, got {self.attention_layout!r}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.default_fps <= 0:
            raise ValueError(f"default_fps must be > 0, got {self.default_fps}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    # -- diffusers interop -------------------------------------------------------------
    @classmethod
    def from_diffusers(cls, dcfg: dict[str, Any], **video_options: Any) -> "VideoUNetConfig":
        """Map a diffusers ``UNet2DConditionModel`` config onto ours (image part), plus options."""
        down = list(dcfg.get("down_block_types", ()))
        up = list(dcfg.get("up_block_types", ()))
        supported_down = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
        supported_up = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}
        bad = [b for b in down if b not in supported_down] + [b for b in up if b not in supported_up]
        if bad:
            raise ValueError(f"unsupported diffusers block types {bad}; expected SD 1.x/2.x style blocks")
        attention = tuple(supported_down[b] for b in down)
        if tuple(supported_up[b] for b in reversed(up)) != attention:
            raise ValueError("up_block_types must mirror down_block_types")
        mid = dcfg.get("mid_block_type", "UNetMidBlock2DCrossAttn")
        if mid != "UNetMidBlock2DCrossAttn":
            raise ValueError(f"unsupported mid_block_type {mid!r}")
        for key in ("class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim"):
            if dcfg.get(key) is not None:
                raise ValueError(f"diffusers config option {key}={dcfg[key]!r} is not supported")
        tlpb = dcfg.get("transformer_layers_per_block", 1)
        if tlpb not in (1, [1] * len(down), (1,) * len(down)):
            raise ValueError(f"transformer_layers_per_block={tlpb!r} is not supported (only 1)")
        if dcfg.get("flip_sin_to_cos", True) is not True or dcfg.get("freq_shift", 0) != 0:
            raise ValueError("only flip_sin_to_cos=True, freq_shift=0 timestep embeddings are supported")
        if dcfg.get("act_fn", "silu") != "silu" or dcfg.get("resnet_time_scale_shift", "default") != "default":
            raise ValueError("only silu activations and 'default' resnet time embedding are supported")
        # diffusers' legacy naming: attention_head_dim holds the number of heads for SD 1.x/2.x
        heads = dcfg.get("num_attention_heads") or dcfg.get("attention_head_dim", 8)
        if isinstance(heads, int):
            heads = (heads,) * len(down)
        layers = dcfg.get("layers_per_block", 2)
        if not isinstance(layers, int):
            raise ValueError(f"layers_per_block must be one int, got {layers!r}")
        image_part = dict(
            in_channels=dcfg.get("in_channels", 4),
            out_channels=dcfg.get("out_channels", 4),
            block_out_channels=tuple(dcfg["block_out_channels"]),
            layers_per_block=layers,
            attention_levels=attention,
            num_attention_heads=tuple(heads),
            cross_attention_dim=dcfg.get("cross_attention_dim", 768),
            norm_num_groups=dcfg.get("norm_num_groups", 32),
            norm_eps=dcfg.get("norm_eps", 1e-5),
            use_linear_projection=bool(dcfg.get("use_linear_projection", False)),
            sample_size=dcfg.get("sample_size", 64),
        )
        clash = set(video_options) & set(image_part)
        if clash - {"sample_size"}:
            raise ValueError(f"options {sorted(clash)} are fixed by the 2D model and cannot be overridden")
        return cls(**{**image_part, **video_options})

    def to_diffusers(self) -> dict[str, Any]:
        """The diffusers ``UNet2DConditionModel`` config of the image part."""
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            block_out_channels=list(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in self.attention_levels],
            up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(self.attention_levels)],
            attention_head_dim=list(self.num_attention_heads),
            cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=self.norm_num_groups,
            norm_eps=self.norm_eps,
            use_linear_projection=self.use_linear_projection,
            sample_size=self.sample_size,
        )


@dataclass(frozen=True)
class VideoVAEConfig:
    """An SD-compatible KL autoencoder plus directed temporal attention in the decoder."""

    in_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # downsampling factor 2**(levels-1)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    sample_size: int = 64  # pixel height/width the VAE is meant for
    temporal_attention_heads: int = 1  # heads of each decoder temporal attention layer
    temporal_window: int = 16  # frames each decoded frame may look back on (incl. itself)
    # decoder places with a temporal layer: after the mid block, then after each up block in
    # turn (2: the mid block and the first up block; 1 + len(block_out_channels): everywhere)
    temporal_levels: int = 2
    # a temporal layer's pixel attends to the k x k pixels around it in every frame up to its own
    # (1: the same pixel only, the paper's layer; 3: it can follow an edge moving 1 pixel a frame)
    temporal_neighbourhood: int = 1

    def __post_init__(self) -> None:
        if self.temporal_neighbourhood < 1 or self.temporal_neighbourhood % 2 == 0:
            raise ValueError(f"temporal_neighbourhood must be an odd number >= 1, got {self.temporal_neighbourhood}")
        if self.temporal_window < 1:
            raise ValueError(f"temporal_window must be >= 1, got {self.temporal_window}")
        if not 1 <= self.temporal_levels <= 1 + len(self.block_out_channels):
            raise ValueError(f"temporal_levels must be in [1, {1 + len(self.block_out_channels)}] (the mid block "
                             f"and {len(self.block_out_channels)} up blocks), got {self.temporal_levels}")
        for ch in self.block_out_channels:
            if ch % self.norm_num_groups:
                raise ValueError(f"width {ch} is not divisible by norm_num_groups={self.norm_num_groups}")
            if ch % self.temporal_attention_heads:
                raise ValueError(f"width {ch} is not divisible by {self.temporal_attention_heads} heads")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def temporal_widths(self) -> list[int]:
        """Channels at each temporal layer: the mid block's, then each up block's output."""
        up = list(reversed(self.block_out_channels))
        return [up[0]] + up[: self.temporal_levels - 1]

    @classmethod
    def from_diffusers(cls, dcfg: dict[str, Any], **video_options: Any) -> "VideoVAEConfig":
        for key, want in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
            bad = [b for b in dcfg.get(key, ()) if b != want]
            if bad:
                raise ValueError(f"unsupported VAE block types {bad} in {key}")
        if dcfg.get("in_channels", 3) != dcfg.get("out_channels", 3):
            raise ValueError("VAE in_channels and out_channels must match")
        for key in ("use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"):
            if dcfg.get(key, True) is not True:
                raise ValueError(f"VAE option {key}={dcfg[key]!r} is not supported")
        image_part = dict(
            in_channels=dcfg.get("in_channels", 3),
            latent_channels=dcfg.get("latent_channels", 4),
            block_out_channels=tuple(dcfg["block_out_channels"]),
            layers_per_block=dcfg.get("layers_per_block", 1),
            norm_num_groups=dcfg.get("norm_num_groups", 32),
            scaling_factor=dcfg.get("scaling_factor", 0.18215),
            shift_factor=dcfg.get("shift_factor"),
            sample_size=dcfg.get("sample_size", 256),
        )
        return cls(**{**image_part, **video_options})

    def to_diffusers(self) -> dict[str, Any]:
        levels = len(self.block_out_channels)
        return dict(
            in_channels=self.in_channels,
            out_channels=self.in_channels,
            down_block_types=["DownEncoderBlock2D"] * levels,
            up_block_types=["UpDecoderBlock2D"] * levels,
            block_out_channels=list(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=self.norm_num_groups,
            scaling_factor=self.scaling_factor,
            shift_factor=self.shift_factor,
            sample_size=self.sample_size,
        )


@dataclass(frozen=True)
class SRUNetConfig:
    """The pixel-space super-resolution U-Net (diffusers ``UNet2DModel`` inside).

    It denoises the high-resolution frame as ``patch x patch`` pixel blocks folded into
    channels (space-to-depth), so the U-Net runs at the low-res grid: a 4x model costs about
    what a low-res U-Net costs. Input per position: the noisy HR patch (3 * patch**2
    channels) and the (noise-augmented) low-res pixel, upsampled bilinearly then folded the
    same way; the augmentation level is embedded like a timestep and added to it."""

    scale: int = 4  # output side / input side
    patch: int = 4  # space-to-depth block of the HR frame (1 = plain pixel U-Net)
    block_out_channels: tuple[int, ...] = (64, 96, 128)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    low_res_size: int = 64  # input side the model is trained for (fully convolutional)
    max_noise_level: int = 350  # augmentation levels s are drawn from [0, max_noise_level)
    # Diffuse the residual HR - bicubic(LR) instead of the HR frame, with a zero-initialised
    # output layer: the untrained model already returns the bicubic upsampling, and training
    # only has to learn the detail bicubic misses.
    residual: bool = True

    def __post_init__(self) -> None:
        if self.scale < 1 or self.patch < 1:
            raise ValueError(f"scale and patch must be >= 1, got {self.scale} and {self.patch}")
        for ch in self.block_out_channels:
            if ch % self.norm_num_groups:
                raise ValueError(f"width {ch} is not divisible by norm_num_groups={self.norm_num_groups}")

    @property
    def high_res_size(self) -> int:
        return self.low_res_size * self.scale

    def to_diffusers(self) -> dict[str, Any]:
        levels = len(self.block_out_channels)
        folded = 3 * self.patch**2
        return dict(
            sample_size=self.high_res_size // self.patch,
            in_channels=2 * folded,
            out_channels=folded,
            down_block_types=["DownBlock2D"] * levels,
            up_block_types=["UpBlock2D"] * levels,
            block_out_channels=list(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            add_attention=False,
            class_embed_type="timestep",
        )


@dataclass(frozen=True)
class Preset:
    """A named pair of model configs that fit together (latent channels, frame counts)."""

    name: str
    unet: VideoUNetConfig
    vae: VideoVAEConfig
    text_dim: int = field(default=384)  # width of the condition tokens the text encoder gives
    sr: SRUNetConfig = field(default_factory=SRUNetConfig)

    @property
    def resolution(self) -> int:
        return self.unet.sample_size * self.vae.downsample_factor


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        unet=VideoUNetConfig(use_condition_embedding=True),
        vae=VideoVAEConfig(),
        text_dim=384,
    ),
    # the sprites domain (issue 27): 124 textured sprites over photographs at the same 64x64
    # frames / 16x16 latents; a wider U-Net and VAE (8.4 M and 2.2 M parameters; tiny 5.0 M and 1.0 M)
    "small": Preset(
        name="small",
        unet=VideoUNetConfig(block_out_channels=(48, 96, 160), use_condition_embedding=True),
        vae=VideoVAEConfig(block_out_channels=(48, 96, 96)),
        text_dim=384,
    ),
    "sd15": Preset(
        name="sd15",
        unet=VideoUNetConfig(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            attention_levels=(True, True, True, False),
            num_attention_heads=(8, 8, 8, 8),
            cross_attention_dim=768,
            norm_num_groups=32,
            sample_size=32,  # 256x256 video with the f=8 VAE
        ),
        vae=VideoVAEConfig(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            norm_num_groups=32,
            sample_size=256,
            temporal_attention_heads=8,
        ),
        text_dim=768,
        sr=SRUNetConfig(low_res_size=256, block_out_channels=(128, 256, 256, 512), norm_num_groups=32),
    ),
}



def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


# -- JSON round trip -------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    return {"_class_name": type(config).__name__, **dataclasses.asdict(config)}


def config_from_dict(cls: type, data: dict[str, Any], source: str = "config") -> Any:
    """Build ``cls`` from a dict read from JSON, with errors naming the source and the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    name = data.get("_class_name")
    if name is not None and name != cls.__name__:
        raise ValueError(f"{source}: describes a {name}, expected a {cls.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in data if k not in fields and not k.startswith("_"))
    if unknown:
        raise ValueError(f"{source}: unknown fields {unknown} for {cls.__name__}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in fields}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None
