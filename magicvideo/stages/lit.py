"""``lit``: the image tower that turns frames into "proxy text" for unsupervised pretraining.

The paper pretrains the keyframe model on uncaptioned video with the CLIP image embedding of
the clip's frames standing in for the text (DESIGN.md §2). That needs an image encoder in the
text encoder's space; at the embedded scale we train one, LiT-style (locked-text tuning): the
MiniLM text tower is frozen and a small CNN image tower learns to match it. Model: the image
tower. Loss: ``encoders.lit_loss`` (symmetric InfoNCE, plus ``align_weight`` times
1 - cos(image, its caption)). Batches: one frame of each captioned clip.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..train import Stage
from .data import batch_items, training_dataset
from .options import StageOptions


def lit_stage(options: StageOptions, logit_scale: float = 20.0) -> Stage:
    from ..models.encoders import MiniLMLiTEncoder, lit_loss

    device = torch.device(options.device)
    encoder = MiniLMLiTEncoder().to(device)
    data = training_dataset(options, num_frames=2, labeled=True, stills=True)

    def make_batch(step: int, batch_size: int, positions: range | None = None):
        items = batch_items(data, step, batch_size, positions)
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
                 describe={"preset": options.preset, "domain": options.domain, "logit_scale": logit_scale,
                           "align_weight": options.align_weight})
