"""What the stages share: the training stream, the items of a step, the frozen VAE, previews.

Batches are a pure function of (seed, step): item ``i`` of step ``s``'s global batch of ``B``
is item ``s * B + i`` of an endless deterministic dataset (the procedural shapes domain,
``data/synthetic.py``, or a video folder, ``data/video_folder.py``), so runs resume exactly
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
from .options import StageOptions


def load_vae(path: str) -> VideoVAE:
    """``--vae``: our model directory, or Stable Diffusion VAE weights (a diffusers folder,
    its ``vae/`` folder, or a single-file checkpoint) wrapped as a VideoVAE."""
    from ..models.io import WEIGHTS_NAME

    if (Path(path) / WEIGHTS_NAME).is_file():
        return VideoVAE.from_pretrained(path)
    return VideoVAE.from_pretrained_2d(path)


def training_dataset(options: StageOptions, num_frames: int, labeled: bool = False, resolution: int | None = None):
    """The training stream: the shapes domain, or the video folder ``options.data``
    (``labeled``: captions required), at ``resolution`` (default: the preset's)."""
    from ..data.synthetic import ShapesDataset

    resolution = resolution or get_preset(options.preset).resolution
    if options.data is not None:
        from ..data.video_folder import VideoFolderDataset

        return VideoFolderDataset(options.data, num_frames=num_frames, resolution=resolution,
                                  strides=options.strides, labeled=labeled, seed=options.seed, length=10**9)
    return ShapesDataset(num_frames=num_frames, resolution=resolution, fps_choices=options.fps_choices,
                         split="train", seed=options.seed, length=10**9)


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
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()
