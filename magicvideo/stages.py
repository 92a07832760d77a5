"""The training stages: each is a trainable model, a loss, and a batch maker.

``build_stage(name, options)`` returns a ``train.Stage``. Batches come from the procedural
shapes domain (``data/synthetic.py``) and are a pure function of (seed, step), so runs
resume exactly. Frozen helpers (VAE, encoders) are loaded from model directories.

* ``vae``: the SD-style KL autoencoder on single frames (reconstruction + tiny KL); its
  scaling factor is then set so that latents have unit variance, as SD does.
* ``lit``: the image tower, contrastively matched to the frozen MiniLM text tower (LiT).
* ``keyframe``: the VideoUNet on 16-frame latent clips at a random fps, conditioned on
  ``image`` (unsupervised: the image tower's embedding of the clip's frames as proxy text)
  or ``text`` (the caption), with condition dropout for classifier-free guidance.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import CONDITIONS, STAGES, VideoUNetConfig, get_preset
from .diffusion import NoiseSchedule, add_noise, training_target
from .models import VideoUNet, VideoVAE
from .models.encoders import clip_condition
from .models.layout import fold_frames, unfold_frames
from .train import Stage


@dataclass(frozen=True)
class StageOptions:
    preset: str = "tiny"
    seed: int = 0
    condition: str = "text"  # keyframe: image (unsupervised pretraining) | text (finetuning)
    vae: str | None = None  # model directory of a trained VAE (keyframe stage)
    encoder: str | None = None  # directory of a trained LiT encoder, or a CLIP directory
    init_from: str | None = None  # start weights: our model dir, or an SD folder / file
    init_image_from: str | None = None  # keyframe: a fresh model whose image part comes from this VideoUNet dir
    num_frames: int = 16
    fps_choices: tuple[float, ...] = (4.0, 8.0, 16.0)
    cond_drop: float = 0.1  # probability of the null condition (classifier-free guidance)
    object_weight: float = 0.0  # keyframe: extra loss weight on latent pixels off the frame's background
    align_weight: float = 1.0  # lit: weight of the image-to-caption alignment term (see lit_loss)
    pool_clips: int = 0  # keyframe: encode this many clips once and train on them (0: encode every batch)
    pool_cache: str | None = None  # keyframe: latent-cache directory that keeps the encoded pool between stages
    data: str | None = None  # a video folder (see data/video_folder.py) instead of the shapes domain
    latent_cache: str | None = None  # keyframe: train from a `magicvideo cache-latents` directory
    gradient_checkpointing: bool = False  # U-Net stages: trade compute for activation memory
    strides: tuple[int, ...] = (1, 2, 4)  # video folders: frame strides (clip fps = native fps / stride)
    schedule: NoiseSchedule = NoiseSchedule()
    sample_prompts: tuple[str, ...] = ("a red circle moving right", "a blue square moving up")
    device: str = "cpu"  # where the models run: cpu, cuda, cuda:N (under torchrun "cuda" = cuda:LOCAL_RANK)
    unet_overrides: tuple[tuple[str, Any], ...] = ()  # (field, value) of the preset's VideoUNetConfig, fresh models

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if not 0 <= self.cond_drop < 1:
            raise ValueError(f"cond_drop must be in [0, 1), got {self.cond_drop}")
        if not self.object_weight >= 0:
            raise ValueError(f"object_weight must be >= 0, got {self.object_weight}")
        if not self.align_weight >= 0:
            raise ValueError(f"align_weight must be >= 0, got {self.align_weight}")


def resolve_device(name: str) -> torch.device:
    """``--device``: cpu, cuda or cuda:N; a clear error when it is not there. Under torchrun,
    plain "cuda" means this process's GPU (``LOCAL_RANK``)."""
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU")
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if name == "cuda" else name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(device)
    return device


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in a batch (nested dicts, lists, tuples) moved to ``device``; the rest as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def build_stage(name: str, options: StageOptions) -> Stage:
    """The stage ``name``; its models live on ``options.device``. Batches and all random
    draws are made on the CPU (a function of seed and step, whatever the device) and then
    moved, so a run gives the same data on any machine."""
    options = dataclasses.replace(options, device=str(resolve_device(options.device)))
    torch.manual_seed(options.seed)  # fresh weights are a function of the seed (every process agrees)
    if options.data is not None and name in ("interpolation", "sr"):
        raise ValueError(f"--data: the {name} stage trains on the shapes domain only for now "
                         "(it needs clips at 4x the frame rate or frames at 4x the resolution)")
    if options.init_image_from is not None and name != "keyframe":
        raise ValueError(f"--init-image-from: only the keyframe stage starts a fresh VideoUNet, not the {name} stage")
    if name == "vae":
        return vae_stage(options)
    if name == "videovae":
        return videovae_stage(options)
    if name == "lit":
        return lit_stage(options)
    if name == "keyframe":
        return keyframe_stage(options)
    if name == "interpolation":
        return interpolation_stage(options)
    if name == "sr":
        return sr_stage(options)
    raise ValueError(f"unknown stage {name!r}; choose one of {STAGES}")


def _load_vae(path: str) -> VideoVAE:
    """``--vae``: our model directory, or Stable Diffusion VAE weights (a diffusers folder,
    its ``vae/`` folder, or a single-file checkpoint) wrapped as a VideoVAE."""
    from .models.io import WEIGHTS_NAME

    if (Path(path) / WEIGHTS_NAME).is_file():
        return VideoVAE.from_pretrained(path)
    return VideoVAE.from_pretrained_2d(path)


def _dataset(options: StageOptions, num_frames: int, labeled: bool = False, resolution: int | None = None):
    """The training stream: the shapes domain, or the video folder ``options.data``
    (``labeled``: captions required), at ``resolution`` (default: the preset's)."""
    from .data.synthetic import ShapesDataset

    resolution = resolution or get_preset(options.preset).resolution
    if options.data is not None:
        from .data.video_folder import VideoFolderDataset

        return VideoFolderDataset(options.data, num_frames=num_frames, resolution=resolution,
                                  strides=options.strides, labeled=labeled, seed=options.seed, length=10**9)
    return ShapesDataset(num_frames=num_frames, resolution=resolution, fps_choices=options.fps_choices,
                         split="train", seed=options.seed, length=10**9)


def _items(dataset, step: int, batch_size: int, positions: range | None = None) -> list[dict[str, Any]]:
    """Items at ``positions`` (default: all) of the global batch of ``step``: under data
    parallelism every process builds only its own part of the same global batch. A video
    folder reports its skipped files once per pass over the folder."""
    indices = [step * batch_size + i for i in (positions or range(batch_size))]
    items = [dataset[i] for i in indices]
    files = getattr(dataset, "files", None)
    if files and dataset.skipped and any(i % len(files) == 0 for i in indices[1:] + [indices[-1] + 1]):
        print(dataset.report(), file=sys.stderr)
    return items


def _preview_frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3)."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


# -- vae ----------------------------------------------------------------------------------
def object_weights(frames: torch.Tensor, weight: float, threshold: float = 0.1, margin: int = 2) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, H, W): 1 on the background, ``1 + weight`` on the object
    and ``margin`` pixels around it. Frames (B, 3, H, W) in [-1, 1], object = any channel
    brighter than ``threshold`` on black. Shapes are a few percent of a frame: unweighted,
    the loss is mostly "black stays black" and corners (square vs circle) come last."""
    mask = ((frames + 1) / 2).amax(dim=1, keepdim=True).gt(threshold).float()
    mask = F.max_pool2d(mask, 2 * margin + 1, stride=1, padding=margin)
    return 1.0 + weight * mask


def vae_stage(options: StageOptions, kl_weight: float = 1e-6, object_weight: float = 9.0) -> Stage:
    """The image VAE on single frames. With ``--init-from`` a trained VAE's decoder is
    finetuned and its encoder, latent scaling and temporal layers are kept: the latent space
    does not move, so diffusion models trained on it stay valid (as SD's finetuned decoders)."""
    device = torch.device(options.device)
    finetune = options.init_from is not None
    model = (_load_vae(options.init_from) if finetune else VideoVAE(get_preset(options.preset).vae)).to(device)
    model.temporal_layers.requires_grad_(False)  # trained later, in the videovae stage
    if finetune:
        for frozen in (model.vae.encoder, model.vae.quant_conv):
            frozen.requires_grad_(False)
    data = _dataset(options, num_frames=2)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> torch.Tensor:
        # one random frame of each clip: (B, 3, H, W)
        items = _items(data, step, batch_size, positions)
        return torch.stack([item["video"][:, step % 2] for item in items]).to(device)

    def loss(frames: torch.Tensor, gen: torch.Generator):
        with torch.set_grad_enabled(not finetune):
            posterior = model.vae.encode(frames).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen).to(device)
        recon = model.vae.decode(z).sample
        err = recon - frames
        w = object_weights(frames, object_weight)
        weighted = ((err.square() + err.abs()) * w).mean() / w.mean()
        kl = posterior.kl().mean()
        return weighted + kl_weight * kl, {"mse": err.square().mean().item(), "kl": kl.item()}

    def save(trained: VideoVAE, directory: Path) -> None:
        if finetune:  # same encoder, same scaling: the latents of the initial VAE
            trained.save_pretrained(directory)
            return
        # SD's convention: scale latents to unit variance for the diffusion model
        with torch.no_grad():
            frames = torch.cat([make_batch(10_000 + i, 16) for i in range(4)])
            std = trained.vae.encode(frames).latent_dist.mode().std().item()
        final = VideoVAE(dataclasses.replace(trained.config, scaling_factor=round(1.0 / std, 5)))
        final.load_state_dict(trained.state_dict())
        final.save_pretrained(directory)

    def sample(trained: VideoVAE, stem: Path) -> None:
        from .video_io import write_video

        video = torch.stack([data[50_000 + i]["video"] for i in range(2)])
        with torch.no_grad():
            recon = trained.decode(trained.encode(video.to(device)), temporal=False).cpu()
        grid = torch.cat([torch.cat([video[i], recon[i]], dim=-1) for i in range(2)], dim=-2)
        write_video(_preview_frames(grid), stem.with_suffix(".gif"), fps=4)

    return Stage("vae", model, loss, make_batch, save, sample,
                 describe={"preset": options.preset, "init_from": options.init_from})


def latent_object_weights(latents: torch.Tensor, weight: float, relative: float = 0.25) -> torch.Tensor:
    """Per-latent-pixel loss weights (B, 1, F, h, w) for latents (B, C, F, h, w): ``1 + weight``
    where a latent differs from its frame's background (the per-channel median of the frame)
    by more than ``relative`` of the frame's largest difference, and one latent pixel around;
    1 elsewhere. On the shapes domain that is the object: a few latent pixels that decide
    square or circle, against hundreds of background ones that dominate a plain MSE."""
    background = latents.flatten(3).median(dim=3).values[..., None, None]
    dist = (latents - background).norm(dim=1, keepdim=True)
    mask = (dist > relative * dist.amax(dim=(3, 4), keepdim=True).clamp(min=1e-6)).float()
    mask = F.max_pool3d(mask, (1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1.0 + weight * mask


# -- videovae -----------------------------------------------------------------------------
def videovae_stage(options: StageOptions, object_weight: float = 9.0, dithering_weight: float = 1.0) -> Stage:
    """Train only the decoder's directed temporal layers of a trained VAE (``--vae``) on
    clips, with the frame-wise reconstruction loss plus a dithering term (the L1 error of the
    frame-to-frame differences, what the temporal layers are there to fix); encoder and image
    decoder stay frozen."""
    if options.vae is None:
        raise ValueError("the videovae stage needs --vae DIR (a trained VAE model directory)")
    device = torch.device(options.device)
    model = _load_vae(options.vae).to(device)
    model.vae.requires_grad_(False)
    model.temporal_layers.requires_grad_(True)
    data = _dataset(options, num_frames=options.num_frames)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> torch.Tensor:
        items = _items(data, step, batch_size, positions)
        return torch.stack([item["video"] for item in items]).to(device)  # (B, 3, F, H, W)

    def loss(video: torch.Tensor, gen: torch.Generator):
        with torch.no_grad():
            latents = model.encode(video)
        err = model.decode(latents) - video
        w = unfold_frames(object_weights(fold_frames(video), object_weight), video.shape[2])
        weighted = ((err.square() + err.abs()) * w).mean() / w.mean()
        # decoded minus true frame-to-frame change = change of the error; weighted where
        # either frame has the object
        w_pair = torch.maximum(w[:, :, 1:], w[:, :, :-1])
        dither = ((err[:, :, 1:] - err[:, :, :-1]).abs() * w_pair).mean() / w_pair.mean()
        return weighted + dithering_weight * dither, {"mse": err.square().mean().item(), "dithering": dither.item()}

    def save(trained: VideoVAE, directory: Path) -> None:
        trained.save_pretrained(directory)

    def sample(trained: VideoVAE, stem: Path) -> None:
        from .video_io import write_video

        video = torch.stack([data[50_000 + i]["video"] for i in range(2)])
        with torch.no_grad():
            latents = trained.encode(video.to(device))
            plain, temporal = trained.decode(latents, temporal=False).cpu(), trained.decode(latents).cpu()
            rows = [torch.cat([video[i], plain[i], temporal[i]], -1) for i in range(2)]
        write_video(_preview_frames(torch.cat(rows, dim=-2)), stem.with_suffix(".gif"), fps=8)

    return Stage("videovae", model, loss, make_batch, save, sample,
                 describe={"preset": options.preset, "vae": options.vae, "num_frames": options.num_frames})


# -- lit ----------------------------------------------------------------------------------
def lit_stage(options: StageOptions, logit_scale: float = 20.0) -> Stage:
    from .models.encoders import MiniLMLiTEncoder, lit_loss

    device = torch.device(options.device)
    encoder = MiniLMLiTEncoder().to(device)
    data = _dataset(options, num_frames=2, labeled=True)

    def make_batch(step: int, batch_size: int, positions: range | None = None):
        items = _items(data, step, batch_size, positions)
        return torch.stack([it["video"][:, step % 2] for it in items]).to(device), [it["caption"] for it in items]

    def loss(batch, gen: torch.Generator):
        frames, captions = batch
        img, txt = encoder.embed_image(frames), encoder.embed_text(captions)
        value = lit_loss(img.float(), txt.float(), logit_scale, options.align_weight)
        acc = (img @ txt.T).argmax(1).cpu().eq(torch.arange(len(captions))).float().mean().item()
        return value, {"match_acc": acc, "caption_cos": (img * txt).sum(-1).mean().item()}

    def save(tower: torch.nn.Module, directory: Path) -> None:
        encoder.save_pretrained(directory)

    return Stage("lit", encoder.image_tower, loss, make_batch, save,
                 describe={"preset": options.preset, "logit_scale": logit_scale,
                           "align_weight": options.align_weight})


# -- keyframe -----------------------------------------------------------------------------
def unet_config_with(config: VideoUNetConfig, overrides: Sequence[tuple[str, Any]]) -> VideoUNetConfig:
    """``config`` with some fields replaced (``train --unet KEY=VALUE``: ablations, variants).
    Values arrive as JSON or plain strings; lists become tuples. Errors name the field."""
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in overrides:
        if key not in fields:
            raise ValueError(f"--unet {key}: not a VideoUNetConfig field (choose from {', '.join(sorted(fields))})")
        changes[key] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--unet: {err}") from None


def _load_unet(options: StageOptions) -> VideoUNet:
    preset = get_preset(options.preset)
    path = Path(options.init_from) if options.init_from is not None else None
    if path is not None and options.unet_overrides:
        raise ValueError("--unet changes the architecture of a fresh model; it cannot be combined with --init-from")
    if path is not None and options.init_image_from is not None:
        raise ValueError("--init-image-from starts a fresh model; it cannot be combined with --init-from")
    if path is None:
        config = dataclasses.replace(preset.unet, max_frames=max(options.num_frames, preset.unet.max_frames))
        unet = VideoUNet(unet_config_with(config, options.unet_overrides))
        if options.init_image_from is not None:
            unet.load_image_part(options.init_image_from)
    elif (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        unet = VideoUNet.from_pretrained(path)
        if preset.unet.use_condition_embedding and not unet.config.use_condition_embedding:
            unet = unet.with_condition_embedding()  # a model of the older preset: add the (zero) embedding
    else:
        unet = VideoUNet.from_pretrained_2d(path, max_frames=options.num_frames)
    return unet.enable_gradient_checkpointing(options.gradient_checkpointing)


def encode_clip_batch(batch: dict[str, Any], vae: VideoVAE, encoder, with_image_cond: bool) -> dict[str, Any]:
    """A collated batch of clips (``collate_clips``) -> VAE latents, image conditions (proxy
    text), captions and fps: the one encoding that training, the clip pool and
    ``magicvideo cache-latents`` share. Runs where the VAE is."""
    video = batch["video"].to(next(vae.parameters()).device)
    with torch.no_grad():
        return {"latents": vae.encode(video), "image_cond": clip_condition(encoder, video) if with_image_cond else None,
                "caption": list(batch["caption"]), "fps": batch["fps"].float()}


def _encode_clips(items: list[dict[str, Any]], vae: VideoVAE, encoder, with_image_cond: bool) -> dict[str, Any]:
    from .data.video_folder import collate_clips

    return encode_clip_batch(collate_clips(items), vae, encoder, with_image_cond)


def _pool_key(options: StageOptions, data) -> dict[str, Any]:
    """What a cached clip pool depends on; a cache made under other settings is not reused."""
    from .models.io import WEIGHTS_NAME

    def fingerprint(directory: str | None) -> str:
        files = sorted(Path(directory).rglob("*.safetensors")) if directory else []
        return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files) or WEIGHTS_NAME

    source = {"data": str(Path(options.data).resolve()), "strides": list(options.strides)} if options.data else {}
    return {"seed": options.seed, "num_frames": options.num_frames, "fps_choices": list(options.fps_choices), **source,
            "resolution": data.resolution, "vae": str(Path(options.vae).resolve()), "vae_files": fingerprint(options.vae),
            "encoder": str(options.encoder), "encoder_files": fingerprint(options.encoder)}


def _clip_pool(options: StageOptions, data, vae: VideoVAE, encoder) -> dict[str, Any]:
    """The first ``pool_clips`` clips of the training stream, encoded: latents, fps, captions
    and image conditions. ``options.pool_cache`` is a latent-cache directory (the format of
    ``magicvideo cache-latents``) that keeps the pool between stages: reused when it was made
    with the same settings (recorded as its source), re-encoded otherwise."""
    from .latent_cache import (INDEX, TENSORS, encoded_batches, read_cache_index, read_latent_cache,
                               write_latent_cache)

    n, key = options.pool_clips, {"pool": _pool_key(options, data)}
    cache = Path(options.pool_cache) if options.pool_cache else None

    def first_n(pool: dict[str, Any]) -> dict[str, Any]:
        return {**{k: pool[k][:n] for k in TENSORS}, "caption": pool["caption"][:n]}

    if cache is not None and cache.exists():
        if not (cache / INDEX).is_file():
            raise ValueError(f"{cache}: not a clip-pool cache directory ({INDEX} missing); delete it or choose "
                             f"another --pool-cache")
        index = read_cache_index(cache)  # the shards are read only when they are the pool wanted
        if index.get("source") == key and index["clips"] >= n:
            return first_n(read_latent_cache(cache))
        print(f"{cache}: made with other settings or fewer clips; re-encoding")
    if cache is not None and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 writes it
        return first_n(read_latent_cache(write_latent_cache(cache, data, n, vae, encoder, source=key, batch_size=32)))
    chunks = list(encoded_batches(data, n, vae, encoder, batch_size=32, desc="encoding clip pool"))
    return first_n({**{k: torch.cat([c[k] for c in chunks]) for k in TENSORS},
                    "caption": [x for c in chunks for x in c["caption"]]})


def keyframe_stage(options: StageOptions) -> Stage:
    from .models.encoders import load_encoder

    if options.vae is None:
        raise ValueError("the keyframe stage needs --vae DIR (a trained VAE model directory)")
    device = torch.device(options.device)
    vae = _load_vae(options.vae).requires_grad_(False).to(device)
    encoder = load_encoder(options.encoder).requires_grad_(False).eval().to(device)
    unet = _load_unet(options).to(device)
    if unet.config.cross_attention_dim != encoder.dim:
        raise ValueError(f"U-Net cross_attention_dim {unet.config.cross_attention_dim} does not match the "
                         f"encoder width {encoder.dim}")
    schedule = options.schedule
    alphas_cumprod = schedule.alphas_cumprod()
    def encode(items: list[dict[str, Any]]) -> dict[str, Any]:
        return _encode_clips(items, vae, encoder, with_image_cond=options.condition == "image")

    pool = data = None
    if options.latent_cache is not None:  # encoded once by `magicvideo cache-latents`
        from .latent_cache import read_latent_cache

        pool = read_latent_cache(options.latent_cache)
        _check_cache(options, pool, unet, vae, encoder)
    else:
        data = _dataset(options, num_frames=options.num_frames, labeled=options.condition == "text",
                        resolution=unet.config.sample_size * vae.config.downsample_factor)
        if options.pool_clips:
            # The VAE encoder costs as much as a U-Net step on CPU: encode a fixed pool once
            # (and, with --pool-cache, once for both keyframe stages).
            pool = _clip_pool(options, data, vae, encoder)
    pool_size = 0 if pool is None else len(pool["caption"])

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> dict[str, Any]:
        if pool is None:
            return to_device(encode(_items(data, step, batch_size, positions)), device)
        g = torch.Generator().manual_seed(options.seed * 7919 + step)
        idx = torch.randint(0, pool_size, (batch_size,), generator=g)[list(positions or range(batch_size))]
        return to_device({"latents": pool["latents"][idx], "fps": pool["fps"][idx],
                          "caption": [pool["caption"][i] for i in idx.tolist()],
                          "image_cond": None if pool["image_cond"] is None else pool["image_cond"][idx]}, device)

    def loss(batch, gen: torch.Generator):
        x0 = batch["latents"]
        with torch.no_grad():
            cond = encoder.encode_text(batch["caption"]) if options.condition == "text" else batch["image_cond"]
        b = x0.shape[0]
        keep = (torch.rand(b, generator=gen) >= options.cond_drop).to(device, cond.dtype).view(b, 1, 1)
        cond = cond * keep  # dropped condition = all-zero tokens, the null condition at sampling
        t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=gen).to(device)
        noise = schedule.noise(tuple(x0.shape), generator=gen).to(device)
        xt = add_noise(x0, noise, t, alphas_cumprod)
        target = training_target(x0, noise, t, alphas_cumprod, schedule.prediction_type)
        pred = unet(xt, t, cond, fps=batch["fps"])
        if options.object_weight == 0:
            return F.mse_loss(pred, target), {}
        w = latent_object_weights(x0, options.object_weight)
        return ((pred - target).square() * w).mean() / w.mean(), {}

    def save(trained: VideoUNet, directory: Path) -> None:
        trained.save_pretrained(directory)

    def sample(trained: VideoUNet, stem: Path) -> None:
        from .pipeline import MagicVideoPipeline
        from .video_io import write_video

        pipe = MagicVideoPipeline(unet=trained, vae=vae, encoder=encoder, schedule=schedule)
        videos = [pipe(p, num_frames=options.num_frames, fps=8.0, steps=20, seed=0, progress=False).frames
                  for p in options.sample_prompts]
        write_video(np.concatenate(videos, axis=2), stem.with_suffix(".gif"), fps=8)

    describe = {"preset": options.preset, "condition": options.condition, "init_from": options.init_from,
                "init_image_from": options.init_image_from, "unet_overrides": dict(options.unet_overrides),
                "schedule": dataclasses.asdict(schedule), "fps_choices": list(options.fps_choices),
                "pool_clips": pool_size, "latent_cache": options.latent_cache,
                "object_weight": options.object_weight}
    return Stage("keyframe", unet, loss, make_batch, save, sample, describe=describe)


def _check_cache(options: StageOptions, pool: dict[str, Any], unet: VideoUNet, vae: VideoVAE, encoder) -> None:
    """A latent cache must fit the models it trains, named before any step runs."""
    where = f"latent cache {options.latent_cache}"
    _, c, f, h, w = pool["latents"].shape
    if c != unet.config.in_channels or h != unet.config.sample_size or w != unet.config.sample_size:
        raise ValueError(f"{where}: latents are {c}x{h}x{w}, the U-Net takes "
                         f"{unet.config.in_channels}x{unet.config.sample_size}x{unet.config.sample_size}")
    if f > unet.config.max_frames:
        raise ValueError(f"{where}: clips of {f} frames, the U-Net takes at most {unet.config.max_frames}")
    if pool["image_cond"].shape[-1] != encoder.dim:
        raise ValueError(f"{where}: image conditions are {pool['image_cond'].shape[-1]}-d, the encoder gives {encoder.dim}")
    if options.condition == "text" and not all(pool["caption"]):
        raise ValueError(f"{where}: has clips without captions; the text condition needs a captioned dataset")
    if vae.config.latent_channels != c:
        raise ValueError(f"{where}: made with a {c}-channel VAE, --vae has {vae.config.latent_channels}")


# -- interpolation ------------------------------------------------------------------------
def interpolation_stage(options: StageOptions) -> Stage:
    """The interpolation VideoUNet, initialised from a keyframe model (``--init-from``), on
    5-frame windows of clips rendered at 4x the keyframe fps; the loss covers the 3 unknown
    frames. Condition: both keyframe latents as input channels, their image embeddings as
    tokens (dropped with ``cond_drop`` for guidance)."""
    from .interpolate import FPS_FACTOR, GAP, WINDOW, interpolation_channels, keyframe_tokens, window_conditioning
    from .models.encoders import load_encoder

    if options.vae is None or options.init_from is None:
        raise ValueError("the interpolation stage needs --vae DIR and --init-from KEYFRAME_MODEL_DIR")
    device = torch.device(options.device)
    vae = _load_vae(options.vae).requires_grad_(False).to(device)
    encoder = load_encoder(options.encoder).requires_grad_(False).eval().to(device)
    keyframe = _load_unet(options)
    if keyframe.config.condition_channels:
        raise ValueError(f"{options.init_from}: --init-from must be a keyframe model (it has condition channels)")
    unet = keyframe.with_condition_channels(interpolation_channels(vae.config.latent_channels)).to(device)
    unet.enable_gradient_checkpointing(options.gradient_checkpointing)
    schedule = options.schedule
    alphas_cumprod = schedule.alphas_cumprod()
    from .data.synthetic import ShapesDataset

    data = ShapesDataset(num_frames=WINDOW, resolution=get_preset(options.preset).resolution,
                         fps_choices=tuple(FPS_FACTOR * f for f in options.fps_choices), seed=options.seed,
                         length=10**9)

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> dict[str, Any]:
        items = _items(data, step, batch_size, positions)
        video = torch.stack([it["video"] for it in items]).to(device)
        with torch.no_grad():
            latents = vae.encode(video)
        return {"latents": latents, "fps": torch.tensor([it["fps"] for it in items], device=device),
                "tokens": keyframe_tokens(encoder, video[:, :, 0], video[:, :, -1])}

    def loss(batch, gen: torch.Generator):
        x0, tokens = batch["latents"], batch["tokens"]
        b = x0.shape[0]
        keep = (torch.rand(b, generator=gen) >= options.cond_drop).to(device, tokens.dtype).view(b, 1, 1)
        t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=gen).to(device)
        noise = schedule.noise(tuple(x0.shape), generator=gen).to(device)
        xt = add_noise(x0, noise, t, alphas_cumprod)
        target = training_target(x0, noise, t, alphas_cumprod, schedule.prediction_type)
        cond = window_conditioning(x0[:, :, 0], x0[:, :, -1])
        pred = unet(xt, t, tokens * keep, fps=batch["fps"], conditioning=cond)
        middle = slice(1, 1 + GAP)
        return F.mse_loss(pred[:, :, middle], target[:, :, middle]), {}

    def save(trained: VideoUNet, directory: Path) -> None:
        trained.save_pretrained(directory)

    describe = {"preset": options.preset, "init_from": options.init_from, "schedule": dataclasses.asdict(schedule),
                "fps_choices": [FPS_FACTOR * f for f in options.fps_choices]}
    return Stage("interpolation", unet, loss, make_batch, save, describe=describe)


# -- sr -----------------------------------------------------------------------------------
def sr_frame_pair(index: int, seed: int, low_res: int, scale: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """One random shapes frame rendered at ``low_res * scale`` and its ``scale`` x ``scale``
    area average (the degradation SR inverts; it matches a direct ``low_res`` render up to
    the renderer's supersampling error). Returns (low (3, h, w), high (3, H, W)) in [-1, 1]."""
    from .data.synthetic import MAX_DURATION_S, render_at, sample_spec

    rng = np.random.default_rng([seed, index, 7])
    spec = sample_spec(rng, split)
    t = rng.uniform(0, MAX_DURATION_S)
    high = torch.from_numpy(render_at(spec, t, low_res * scale)[0]).permute(2, 0, 1).float() / 127.5 - 1.0
    return F.avg_pool2d(high[None], scale)[0], high


def sr_stage(options: StageOptions, crop: int = 32, background_crops: float = 0.25) -> Stage:
    """The 4x pixel-space SR U-Net on single frames, ``crop`` x ``crop`` low-res crops (the
    model is fully convolutional), with noise-conditioning augmentation. Crops are centred
    on the object, except a ``background_crops`` fraction placed anywhere: whole frames are
    mostly black, and noise left on a flat background costs SSIM. ``--init-from``: go on
    training a trained SR model."""
    from .models.sr_unet import SR_SCHEDULE, SRUNet, augment_low_res

    device = torch.device(options.device)
    if options.init_from is not None:
        model = SRUNet.from_pretrained(options.init_from).to(device)
    else:
        model = SRUNet(get_preset(options.preset).sr).to(device)
    cfg = model.config
    schedule = SR_SCHEDULE
    alphas_cumprod = schedule.alphas_cumprod()

    def make_batch(step: int, batch_size: int, positions: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        lows, highs = [], []
        for i in positions or range(batch_size):
            low, high = sr_frame_pair(step * batch_size + i, options.seed, cfg.low_res_size, cfg.scale)
            rng = np.random.default_rng([options.seed, step, i, 11])
            ys, xs = np.nonzero((low > -0.9).any(dim=0).numpy())
            cy, cx = (int(ys.mean()), int(xs.mean())) if len(ys) else (cfg.low_res_size // 2,) * 2
            if rng.random() < background_crops:
                cy, cx = rng.integers(crop // 2, cfg.low_res_size - crop // 2 + 1, size=2)
            top = int(np.clip(cy - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, cfg.low_res_size - crop))
            left = int(np.clip(cx - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, cfg.low_res_size - crop))
            lows.append(low[:, top : top + crop, left : left + crop])
            s = cfg.scale
            highs.append(high[:, top * s : (top + crop) * s, left * s : (left + crop) * s])
        return torch.stack(lows).to(device), torch.stack(highs).to(device)

    def loss(batch, gen: torch.Generator):
        low, high = batch
        x0 = high - model.base(low)  # the HR frame itself, or its residual over bicubic
        b = x0.shape[0]
        level = torch.randint(0, cfg.max_noise_level, (b,), generator=gen).to(device)
        low = augment_low_res(low, level, alphas_cumprod, torch.randn(low.shape, generator=gen).to(device))
        t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        xt = add_noise(x0[:, :, None], noise[:, :, None], t, alphas_cumprod)[:, :, 0]
        target = training_target(x0[:, :, None], noise[:, :, None], t, alphas_cumprod, schedule.prediction_type)
        return F.mse_loss(model(xt, t, low, level), target[:, :, 0]), {}

    def save(trained, directory: Path) -> None:
        trained.save_pretrained(directory)

    def sample(trained, stem: Path) -> None:
        from PIL import Image

        from .models.sr_unet import upscale_video

        low, high = zip(*(sr_frame_pair(90_000 + i, options.seed, cfg.low_res_size, cfg.scale) for i in range(2)))
        up = upscale_video(trained, torch.stack(low).to(device), schedule, steps=6).cpu()
        bicubic = F.interpolate(torch.stack(low), scale_factor=cfg.scale, mode="bicubic", align_corners=False)
        grid = torch.cat([torch.cat([bicubic[i], up[i], high[i]], dim=-1) for i in range(2)], dim=-2)
        image = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        stem.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(stem.with_suffix(".png"))

    return Stage("sr", model, loss, make_batch, save, sample,
                 describe={"preset": options.preset, "crop": crop, "background_crops": background_crops,
                           "init_from": options.init_from, "schedule": dataclasses.asdict(schedule)})
