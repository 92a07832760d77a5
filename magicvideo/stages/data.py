"""What the stages share: the training stream, the items of a step, the frozen VAE, previews.

Batches are a pure function of (seed, step): item ``i`` of step ``s``'s global batch of ``B``
is item ``s * B + i`` of an endless deterministic dataset (a procedural domain, shapes
``data/synthetic.py`` or sprites ``data/sprites.py``, or a video folder,
``data/video_folder.py``), so runs resume exactly
and every process of a data-parallel run builds its own share of the same batch.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import get_preset
from ..models import VideoVAE
from ..video_io import video_u8
from .options import StageOptions


def load_vae(path: str) -> VideoVAE:
    """``--vae``: our model directory, or Stable Diffusion VAE weights (a diffusers folder,
    its ``vae/`` folder, or a single-file checkpoint) wrapped as a VideoVAE."""
    from ..models.io import WEIGHTS_NAME

    if (Path(path) / WEIGHTS_NAME).is_file():
        return VideoVAE.from_pretrained(path)
    return VideoVAE.from_pretrained_2d(path)


def domain_module(domain: str):
    """The procedural domain's module: ``data.synthetic`` (shapes) or ``data.sprites``; both
    have ``sample_spec(rng, split)``, ``render_at(spec, t, resolution)`` and ``MAX_DURATION_S``."""
    if domain == "shapes":
        from ..data import synthetic as module
    elif domain == "sprites":
        from ..data import sprites as module
    else:
        raise ValueError(f"unknown domain {domain!r}; choose shapes or sprites")
    return module


def image_split(domain: str) -> str:
    """The split the image stages (vae, lit, sr) draw single frames from: sprites adds the
    sprites held out of every training clip (``sprites.STILL_ONLY``)."""
    return "images" if domain == "sprites" else "train"


def domain_dataset(domain: str, num_frames: int, resolution: int, fps_choices: tuple[float, ...], seed: int,
                   split: str = "train", length: int = 10**9):
    """``ShapesDataset`` or ``SpritesDataset`` (same arguments, same items)."""
    if domain == "sprites":
        from ..data.sprites import SpritesDataset as Dataset
    else:
        from ..data.synthetic import ShapesDataset as Dataset
    domain_module(domain)  # an unknown name fails here
    return Dataset(num_frames=num_frames, resolution=resolution, fps_choices=fps_choices, split=split, seed=seed,
                   length=length)


def training_dataset(options: StageOptions, num_frames: int, labeled: bool = False, resolution: int | None = None,
                     stills: bool = False):
    """The training stream: the procedural domain ``options.domain``, or the video folder
    ``options.data`` (``labeled``: captions required), at ``resolution`` (default: the
    preset's). ``stills``: for a stage that sees single frames (``image_split``)."""
    resolution = resolution or get_preset(options.preset).resolution
    if options.data is not None:
        from ..data.video_folder import VideoFolderDataset

        return VideoFolderDataset(options.data, num_frames=num_frames, resolution=resolution,
                                  strides=options.strides, labeled=labeled, seed=options.seed, length=10**9)
    return domain_dataset(options.domain, num_frames, resolution, options.fps_choices, options.seed,
                          split=image_split(options.domain) if stills else "train")


def batch_items(dataset, step: int, batch_size: int, positions: range | None = None) -> list[dict[str, Any]]:
    """Items at ``positions`` (default: all) of the global batch of ``step``: under data
    parallelism every process builds only its own part of the same global batch. A video
    folder reports its skipped files at the end of a pass over the folder, once (again only
    when a later pass skipped more)."""
    indices = [step * batch_size + i for i in (positions or range(batch_size))]
    items = [dataset[i] for i in indices]
    files = getattr(dataset, "files", None)
    if files and any(i % len(files) == 0 for i in indices[1:] + [indices[-1] + 1]):
        report = dataset.new_report()
        if report:
            print(report, file=sys.stderr)
    return items


def preview_frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3)."""
    return video_u8(video)
