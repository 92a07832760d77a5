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

``encode_clip_batch`` is the one encoding of clips (latents, the image condition used as
proxy text, captions, fps) that training, the cache and the clip pool share. The clip pool
(``train --pool-clips N``) is the same thing in small: the first N clips encoded once, in
memory, kept between stages in a cache directory (``--pool-cache``) that is reused only when
its recorded ``source`` (``pool_key``: seed, frames, data, VAE and encoder files) matches.
"""
from __future__ import annotations

import json
import os
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


def encode_clip_batch(batch: dict[str, Any], vae, encoder, with_image_cond: bool) -> dict[str, Any]:
    """A collated batch of clips (``collate_clips``) -> VAE latents, image conditions (proxy
    text), captions and fps: the one encoding that training, the clip pool and
    ``magicvideo cache-latents`` share. Runs where the VAE is."""
    from .models.encoders import image_condition

    video = batch["video"].to(next(vae.parameters()).device)
    with torch.no_grad():
        return {"latents": vae.encode(video), "image_cond": image_condition(encoder, video) if with_image_cond else None,
                "caption": list(batch["caption"]), "fps": batch["fps"].float()}


def encode_clips(items: list[dict[str, Any]], vae, encoder, with_image_cond: bool) -> dict[str, Any]:
    """``encode_clip_batch`` of dataset items (dicts with video, caption, fps)."""
    from .data.video_folder import collate_clips

    return encode_clip_batch(collate_clips(items), vae, encoder, with_image_cond)


@torch.no_grad()
def encoded_batches(data, clips: int, vae, encoder, batch_size: int = 16, workers: int = 0, progress: bool = True,
                    desc: str = "caching latents") -> Iterator[dict[str, Any]]:
    """Items 0..clips-1 of ``data`` encoded batch by batch, on the CPU: latents, fps,
    image_cond and caption (a DataLoader with ``workers`` decodes)."""
    from .data.video_folder import clip_loader

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



def pool_key(options, data) -> dict[str, Any]:
    """What a clip pool depends on, from the keyframe stage's ``StageOptions`` (seed,
    num_frames, fps_choices, data, strides, vae, encoder) and its dataset (resolution); a
    pool cache made under other settings is not reused. Model directories count by their
    weight files' names, sizes and modification times."""
    from .models.io import WEIGHTS_NAME

    def fingerprint(directory: str | None) -> str:
        files = sorted(Path(directory).rglob("*.safetensors")) if directory else []
        return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files) or WEIGHTS_NAME

    source = {"data": str(Path(options.data).resolve()), "strides": list(options.strides)} if options.data else {}
    if options.domain != "shapes":  # (a shapes pool's key stays as it was)
        source["domain"] = options.domain
    return {"seed": options.seed, "num_frames": options.num_frames, "fps_choices": list(options.fps_choices), **source,
            "resolution": data.resolution, "vae": str(Path(options.vae).resolve()), "vae_files": fingerprint(options.vae),
            "encoder": str(options.encoder), "encoder_files": fingerprint(options.encoder)}


def clip_pool(data, clips: int, vae, encoder, cache: str | Path | None = None,
              source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first ``clips`` items of ``data``, encoded: latents, fps, image conditions and
    captions. ``cache`` is a latent-cache directory that keeps the pool between stages: read
    when it was made from the same ``source`` with at least ``clips`` clips, re-encoded (and
    rewritten, by rank 0 under torchrun) otherwise; a path that is not a cache directory is
    an error, never overwritten."""
    cache, source = Path(cache) if cache else None, source or {}

    def first_n(pool: dict[str, Any]) -> dict[str, Any]:
        return {**{k: pool[k][:clips] for k in TENSORS}, "caption": pool["caption"][:clips]}

    if cache is not None and cache.exists():
        if not (cache / INDEX).is_file():
            raise ValueError(f"{cache}: not a clip-pool cache directory ({INDEX} missing); delete it or choose "
                             f"another --pool-cache")
        index = read_cache_index(cache)  # the shards are read only when they are the pool wanted
        if index.get("source") == source and index["clips"] >= clips:
            return first_n(read_latent_cache(cache))
        print(f"{cache}: made with other settings or fewer clips; re-encoding")
    if cache is not None and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 writes it
        return first_n(read_latent_cache(write_latent_cache(cache, data, clips, vae, encoder, source=source,
                                                            batch_size=32)))
    chunks = list(encoded_batches(data, clips, vae, encoder, batch_size=32, desc="encoding clip pool"))
    return first_n({**{k: torch.cat([c[k] for c in chunks]) for k in TENSORS},
                    "caption": [x for c in chunks for x in c["caption"]]})

__all__ = ["clip_pool", "encode_clip_batch", "encode_clips", "encoded_batches", "pool_key", "read_cache_index",
           "read_latent_cache", "write_latent_cache"]
