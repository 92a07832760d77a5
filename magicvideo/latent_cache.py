"""Latent cache: encode a training set once, train the keyframe stages from the result.

The VAE encoder and the image tower cost as much as a U-Net step; at scale they are run
once over the dataset (``magicvideo cache-latents``) and the keyframe stages read the cache
(``magicvideo train --stage keyframe --latent-cache DIR``). A cache is a directory::

    cache.json               {"format": 1, "clips": N, "shards": [{"file": ..., "clips": n}], "source": {...}}
    shard_00000.safetensors  latents (n, C, F, h, w), fps (n,), image_cond (n, L, D);
                             metadata "captions" (JSON list of n strings)
    ...

written atomically (a crash leaves no half cache). Clips are the first N items of the
training stream (shapes domain or a video folder), decoded by a DataLoader with workers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .models.io import atomic_directory, load_safetensors

INDEX = "cache.json"
FORMAT = 1
TENSORS = ("latents", "fps", "image_cond")


@torch.no_grad()
def encoded_batches(data, clips: int, vae, encoder, batch_size: int = 16, workers: int = 0, progress: bool = True,
                    desc: str = "caching latents") -> Iterator[dict[str, Any]]:
    """Items 0..clips-1 of ``data`` encoded batch by batch, on the CPU: latents, fps,
    image_cond and caption (a DataLoader with ``workers`` decodes)."""
    from .data.video_folder import clip_loader
    from .stages import encode_clip_batch

    if clips < 1 or batch_size < 1:
        raise ValueError(f"clips and batch_size must be >= 1, got {clips}, {batch_size}")
    loader = clip_loader(torch.utils.data.Subset(data, range(clips)), batch_size=batch_size, num_workers=workers)
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        encoded = encode_clip_batch(batch, vae, encoder, with_image_cond=True)
        yield {**{k: encoded[k].cpu() for k in TENSORS}, "caption": encoded["caption"]}


def write_latent_cache(out: str | Path, data, clips: int, vae, encoder, source: dict[str, Any] | None = None,
                       shard_clips: int = 256, batch_size: int = 16, workers: int = 0, progress: bool = True) -> Path:
    """Encode items 0..clips-1 of ``data`` into shards under ``out``; returns ``out``."""
    if shard_clips < 1:
        raise ValueError(f"shard_clips must be >= 1, got {shard_clips}")
    out = Path(out)
    batches = encoded_batches(data, clips, vae, encoder, batch_size, workers, progress)
    with atomic_directory(out) as tmp:
        shards: list[dict[str, Any]] = []
        pending: dict[str, list] = {"latents": [], "fps": [], "image_cond": [], "caption": []}

        def flush(count: int) -> None:  # write the first ``count`` pending clips as one shard
            tensors = {k: torch.cat(pending[k]) for k in TENSORS}
            name = f"shard_{len(shards):05d}.safetensors"
            save_file({k: v[:count].contiguous() for k, v in tensors.items()}, str(tmp / name),
                      metadata={"captions": json.dumps(pending["caption"][:count])})
            shards.append({"file": name, "clips": count})
            for k in TENSORS:
                pending[k] = [tensors[k][count:]]
            pending["caption"] = pending["caption"][count:]

        for encoded in batches:
            for k in TENSORS:
                pending[k].append(encoded[k])
            pending["caption"] += encoded["caption"]
            while len(pending["caption"]) >= shard_clips:
                flush(shard_clips)
        if pending["caption"]:
            flush(len(pending["caption"]))
        index = {"format": FORMAT, "clips": clips, "shards": shards, "source": source or {}}
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return out


def read_cache_index(directory: str | Path) -> dict[str, Any]:
    """The index (cache.json) of a cache directory, checked: format, clips, shards, source."""
    directory = Path(directory)
    index_file = directory / INDEX
    if not index_file.is_file():
        raise ValueError(f"{directory}: not a latent cache ({INDEX} missing; make one with magicvideo cache-latents)")
    try:
        index = json.loads(index_file.read_text())
        if not all(isinstance(s["file"], str) and int(s["clips"]) >= 1 for s in index["shards"]):
            raise ValueError("a shard entry needs a file name and clips >= 1")
        index["clips"] = int(index["clips"])
        if index.get("format") != FORMAT:
            raise ValueError(f"format {index.get('format')!r}, expected {FORMAT}")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{index_file}: malformed ({err})") from None
    return index


def read_latent_cache(directory: str | Path) -> dict[str, Any]:
    """A cache directory -> {"latents", "fps", "image_cond" tensors, "caption" list, "source"}.
    Every problem names the file."""
    directory = Path(directory)
    index_file = directory / INDEX
    index = read_cache_index(directory)
    shards = [(directory / s["file"], int(s["clips"])) for s in index["shards"]]
    parts: dict[str, list] = {k: [] for k in (*TENSORS, "caption")}
    for path, count in shards:
        if path.parent.resolve() != directory.resolve():
            raise ValueError(f"{index_file}: shard {path.name!r} is outside the cache directory")
        tensors = load_safetensors(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                captions = json.loads((f.metadata() or {})["captions"])
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: no caption list in the metadata ({err})") from None
        missing = [k for k in TENSORS if k not in tensors]
        if missing:
            raise ValueError(f"{path}: missing tensors {missing}")
        sizes = {k: tensors[k].shape[0] for k in TENSORS} | {"captions": len(captions)}
        if set(sizes.values()) != {count}:
            raise ValueError(f"{path}: {count} clips listed in {INDEX}, the shard holds {sizes}")
        for k in TENSORS:
            parts[k].append(tensors[k])
        parts["caption"] += captions
    if not shards:
        raise ValueError(f"{index_file}: the cache has no shards")
    pool = {k: torch.cat(parts[k]) for k in TENSORS}
    pool["caption"], pool["source"] = parts["caption"], index.get("source", {})
    return pool


__all__ = ["encoded_batches", "read_cache_index", "read_latent_cache", "write_latent_cache"]
