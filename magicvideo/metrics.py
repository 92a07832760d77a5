"""FID, FVD and CLIPSIM for sets of videos (``magicvideo evaluate``), with fallbacks for the
shapes domain.

No feature network can be downloaded here, so they come from files the user has:

* ``--fid-net`` / ``--fvd-net``: TorchScript modules (or ``.pt2`` ``torch.export`` programs,
  called as ``net(x)``; export them with a dynamic batch dimension). The image network is called on frames
  ``(N, 3, H, W)``, the video network on clips ``(N, 3, T, H, W)``, pixel values in [0, 255];
  of the keyword arguments ``return_features=True, rescale=True, resize=True`` those that the
  module's ``forward`` declares are passed, which is the calling convention of NVlabs'
  ``inception-2015-12-05.pt`` (FID) and StyleGAN-V's ``i3d_torchscript.pt`` (FVD). The module
  must return features ``(N, D)``. TorchScript runs the file's code: load only files you trust.
* ``--clip DIR``: a transformers CLIP directory (safetensors) for CLIPSIM, the mean cosine
  similarity of every frame's image embedding with its prompt's text embedding.

Without feature networks, FID and FVD are not computed (the report says so), and the
Frechet distance is taken on the pipeline's own image tower instead: "FID-shapes" on the
embeddings of single frames, "FVD-shapes" on the embeddings of ``CLIP_FRAMES`` evenly spaced
frames of each video, concatenated in order (so that motion, not only content, counts).
CLIPSIM then uses the pipeline's encoder (the LiT tower against MiniLM), and the shapes
analyzer scores color, shape and direction against the prompts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .frechet import frechet_distance_of_features

CLIP_FRAMES = 4  # frames per video in FVD-shapes features
TORCHSCRIPT_OPTIONS = {"return_features": True, "rescale": True, "resize": True}


def load_feature_net(path: str | Path, what: str):
    """A feature network file: TorchScript (``torch.jit.save``) or, for ``.pt2`` files, a
    ``torch.export`` program. Errors name the file."""
    import warnings

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {what} feature network not found")
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as err:  # torch raises many kinds here; all mean "not a loadable module"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        kind = "torch.export program" if path.suffix == ".pt2" else "TorchScript module"
        raise ValueError(f"{path}: not a {kind} ({first})") from None


def _call_options(net) -> dict:
    try:
        names = {arg.name for arg in net.forward.schema.arguments}
    except AttributeError:
        return {}
    return {k: v for k, v in TORCHSCRIPT_OPTIONS.items() if k in names}


@torch.no_grad()
def network_features(net, batches: Sequence[torch.Tensor], source: str) -> np.ndarray:
    """Run ``net`` on uint8-valued float batches; (N, D) features. ``source`` names the net."""
    options, out = _call_options(net), []
    for x in batches:
        try:
            features = net(x, **options)
        except RuntimeError as err:
            raise ValueError(f"{source}: failed on input {tuple(x.shape)} ({str(err).strip().splitlines()[0]})") from None
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != x.shape[0]:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{source}: must return features (N, D) for {x.shape[0]} inputs, got {shape}")
        out.append(features.double().numpy())
    return np.concatenate(out)


def frame_batches(videos: Sequence[np.ndarray], batch: int = 32) -> list[torch.Tensor]:
    """All frames of all videos, (n, 3, H, W) float in [0, 255]."""
    frames = np.concatenate(list(videos))
    return [torch.from_numpy(frames[i : i + batch]).permute(0, 3, 1, 2).float() for i in range(0, len(frames), batch)]


def clip_batches(videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """One clip per batch (videos may differ in length), (1, 3, T, H, W) in [0, 255]."""
    return [torch.from_numpy(np.ascontiguousarray(v)).permute(3, 0, 1, 2)[None].float() for v in videos]


def _signed(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def encoder_frame_embeddings(encoder, videos: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per video, the unit image embeddings (F, D) of its frames. Frames must already have
    the size the encoder expects."""
    return [encoder.embed_image(_signed(video)).double().cpu().numpy() for video in videos]


def clip_features(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """FVD-shapes features: per video, the embeddings of ``CLIP_FRAMES`` evenly spaced frames,
    concatenated in time order, (N, CLIP_FRAMES * D)."""
    return np.stack([e[np.linspace(0, len(e) - 1, CLIP_FRAMES).round().astype(int)].ravel() for e in embeddings])


@torch.no_grad()
def clipsim(encoder, videos: Sequence[np.ndarray], prompts: Sequence[str],
            embeddings: Sequence[np.ndarray] | None = None) -> float:
    """Mean over videos and frames of cos(image embedding of the frame, text embedding of the
    prompt). ``embeddings``: the videos' ``encoder_frame_embeddings`` when already computed."""
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
    embeddings = encoder_frame_embeddings(encoder, videos) if embeddings is None else embeddings
    texts = encoder.embed_text(list(prompts)).double().cpu().numpy()
    return float(np.mean([(frames @ text).mean() for frames, text in zip(embeddings, texts)]))


def evaluate_videos(generated: Sequence[np.ndarray], prompts: Sequence[str | None], reference: Sequence[np.ndarray] | None,
                    encoder, fid_net=None, fvd_net=None, analyze: bool = True) -> dict:
    """The metrics a set of generated videos (uint8 (T, H, W, 3) each, at the encoder's frame
    size) supports: FID / FVD with the given networks and a reference set; FID-shapes /
    FVD-shapes on the encoder's image tower and a reference set; CLIPSIM and the shapes
    analyzer where prompts are known."""
    from .data.synthetic import parse_prompt
    from .analyzers.shapes import analyze_video, score

    if len(generated) < 2:
        raise ValueError(f"need at least 2 generated videos, got {len(generated)}")
    report: dict = {"videos": len(generated)}
    if reference is not None:
        if len(reference) < 2:
            raise ValueError(f"need at least 2 reference videos, got {len(reference)}")
        report["reference_videos"] = len(reference)
        if fid_net is not None:
            report["fid"] = frechet_distance_of_features(network_features(fid_net, frame_batches(generated), "--fid-net"),
                                                         network_features(fid_net, frame_batches(reference), "--fid-net"))
        if fvd_net is not None:
            report["fvd"] = frechet_distance_of_features(network_features(fvd_net, clip_batches(generated), "--fvd-net"),
                                                         network_features(fvd_net, clip_batches(reference), "--fvd-net"))
    if reference is None and not any(prompts):
        return report  # no image-tower metric has anything to compare with
    embeddings = encoder_frame_embeddings(encoder, generated)  # once, for the fallbacks and CLIPSIM
    if reference is not None:
        ref_embeddings = encoder_frame_embeddings(encoder, reference)
        report["fid_shapes"] = frechet_distance_of_features(np.concatenate(embeddings), np.concatenate(ref_embeddings))
        report["fvd_shapes"] = frechet_distance_of_features(clip_features(embeddings), clip_features(ref_embeddings))
    known = [(v, p, e) for v, p, e in zip(generated, prompts, embeddings) if p]
    if known:
        report["clipsim"] = clipsim(encoder, [v for v, _, _ in known], [p for _, p, _ in known],
                                    [e for _, _, e in known])
        if analyze:
            report["analyzer"] = score([analyze_video(v) for v, _, _ in known], [parse_prompt(p) for _, p, _ in known])
    return report


def read_video_set(directory: str | Path, size: int) -> tuple[list[np.ndarray], list[str | None]]:
    """The videos of a folder (sorted by name), centre-cropped and resized to ``size``, and
    their prompts from captions.csv / captions.jsonl when the folder has one (else None)."""
    from .data.video_folder import CAPTION_FILES, VIDEO_EXTENSIONS, read_captions
    from .video_io import fit_frames, read_video

    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{root}: video folder not found")
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not paths:
        raise ValueError(f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)})")
    captions: dict[Path, str] = {}
    for name in CAPTION_FILES:
        if (root / name).is_file():
            captions = read_captions(root, root / name)
    videos = [fit_frames(read_video(p)[0], size, str(p)) for p in paths]
    return videos, [captions.get(p.resolve()) for p in paths]


def shapes_benchmark(pipe, num_videos: int, seed: int = 0, progress: bool = True):
    """Generated keyframe videos for shapes prompts (seen combinations in turn), the prompts,
    and rendered reference clips of the same combinations (other sizes, speeds, positions)."""
    from tqdm.auto import tqdm

    from .data.synthetic import SEEN, make_caption, render_clip, spec_for

    rng = np.random.default_rng(seed)
    size = pipe.frame_size
    frames, fps = pipe.unet.config.max_frames, pipe.defaults.fps
    combos = [SEEN[i % len(SEEN)] for i in rng.permutation(max(num_videos, len(SEEN)))[:num_videos]]
    prompts = [make_caption(*combo, rng) for combo in combos]
    generated = [pipe(p, num_frames=frames, fps=fps, seed=seed + i, progress=False, interpolate=False,
                      upscale=False).frames
                 for i, p in enumerate(tqdm(prompts, desc="generating", disable=not progress))]
    reference = [render_clip(spec_for(*combo, rng), frames, fps, resolution=size) for combo in combos]
    return generated, prompts, reference


def denoising_loss(unet, latents: torch.Tensor, cond: torch.Tensor, fps: torch.Tensor, schedule, levels: int = 8,
                   seed: int = 0, batch: int = 8, reverse: bool = False) -> np.ndarray:
    """A keyframe U-Net's denoising loss on fixed clips, per clip and noise level: ``(N, levels)``.

    ``latents`` (N, C, F, h, w) are clean clip latents, ``cond`` (N, L, D) their caption tokens,
    ``fps`` (N,). Level k noises every clip to timestep (k + 1/2) T / levels with noise drawn
    from ``seed`` and the clip's index, so two models (or two calls) see the same noisy inputs,
    and the training loss is taken (``diffusion.denoising_loss`` at that t and noise). ``reverse`` plays each
    clip and its noise backwards under the same caption and fps: a model that knows what the
    caption says about motion (which way the object moves) does worse on it, a model that
    treats frames independently does exactly as well. A low-variance measure that compares
    models paired on the same clips, where sampling and scoring videos is too noisy."""
    if latents.ndim != 5 or cond.shape[0] != latents.shape[0] or fps.shape != (latents.shape[0],):
        raise ValueError(f"need latents (N, C, F, h, w), cond (N, L, D) and fps (N,), got "
                         f"{tuple(latents.shape)}, {tuple(cond.shape)}, {tuple(fps.shape)}")
    if levels < 1 or batch < 1:
        raise ValueError(f"levels and batch must be >= 1, got {levels} and {batch}")
    from .diffusion import denoising_loss as training_loss

    device = next(unet.parameters()).device
    steps = ((torch.arange(levels) + 0.5) * schedule.num_train_timesteps / levels).long()
    losses = np.zeros((latents.shape[0], levels))
    with torch.no_grad():
        for start in range(0, latents.shape[0], batch):
            part = slice(start, min(start + batch, latents.shape[0]))
            x0, c, f = latents[part].to(device), cond[part].to(device), fps[part].to(device)
            noise = torch.cat([schedule.noise((1, *x0.shape[1:]), generator=torch.Generator().manual_seed(
                seed * 100_003 + i)) for i in range(part.start, part.stop)]).to(device)
            if reverse:
                x0, noise = x0.flip(2), noise.flip(2)
            for k, step in enumerate(steps.tolist()):
                t = torch.full((x0.shape[0],), step, dtype=torch.long, device=device)
                losses[part, k] = training_loss(lambda xt, t: unet(xt, t, c, fps=f), x0, schedule, t=t, noise=noise,
                                                per_item=True).cpu().numpy()
    return losses


__all__ = ["CLIP_FRAMES", "clip_features", "clipsim", "denoising_loss", "encoder_frame_embeddings", "evaluate_videos",
           "load_feature_net", "network_features", "read_video_set", "shapes_benchmark"]
