"""Video-folder datasets on real pixels (scikit-image photos and GIF) and broken files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from magicvideo.cli import main
from magicvideo.data.real_samples import BROKEN, COUNTER_FPS, build_sample_folder
from magicvideo.data.video_folder import VideoFolderDataset, clip_loader, read_captions


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_sample_folder(tmp_path_factory.mktemp("videos"))


def frame_numbers(video: torch.Tensor) -> np.ndarray:
    """The counter clip's frame k is gray level 4k."""
    return ((video.mean(dim=(0, 2, 3)) + 1) * 127.5 / 4).numpy()


def test_clips_are_successive_frames_at_a_stride_with_fps_native_over_stride(folder):
    ds = VideoFolderDataset(folder, num_frames=8, resolution=32, strides=(1, 2, 4), seed=3, length=400)
    counter = ds.files.index(folder / "counter.mp4")
    strides = set()
    for index in range(counter, 400, len(ds.files))[:12]:
        item = ds[index]
        assert item["path"].endswith("counter.mp4") and item["video"].shape == (3, 8, 32, 32)
        numbers = frame_numbers(item["video"])
        assert np.abs(numbers - np.round(numbers)).max() < 0.6  # H.264 keeps flat grays within a level or so
        steps = np.diff(np.round(numbers))
        stride = int(steps[0])
        assert np.all(steps == stride) and stride in (1, 2, 4), numbers
        assert item["fps"] == pytest.approx(COUNTER_FPS / stride)
        assert item["caption"] == "a gray screen getting brighter"
        strides.add(stride)
    assert len(strides) >= 2  # the stride is drawn per item
    again = VideoFolderDataset(folder, num_frames=8, resolution=32, strides=(1, 2, 4), seed=3, length=400)
    assert torch.equal(again[counter]["video"], ds[counter]["video"])  # items are functions of (seed, index)


def test_real_photos_are_resized_and_center_cropped(folder):
    ds = VideoFolderDataset(folder, num_frames=4, resolution=48, strides=(1,))
    item = ds[ds.files.index(folder / "clips" / "astronaut_pan.mp4")]
    video = item["video"]
    assert video.shape == (3, 4, 48, 48) and video.min() >= -1 and video.max() <= 1
    assert video.std() > 0.2  # a real photo, not a flat frame
    assert (video[:, 1:] - video[:, :-1]).abs().mean() > 0.01  # the camera moves


def test_broken_files_are_skipped_counted_and_reported(folder, caplog):
    ds = VideoFolderDataset(folder, num_frames=8, resolution=32, length=100)
    readable = set()
    with caplog.at_level("WARNING", logger="magicvideo.data"):
        for i in range(2 * len(ds.files)):
            readable.add(ds[i]["path"].split("/")[-1])
    assert {p.split("/")[-1] for p in ds.skipped} == set(BROKEN)
    assert readable.isdisjoint(BROKEN) and "no_time_for_that.gif" in readable
    assert sum("skipping" in r.message for r in caplog.records) == len(BROKEN)  # once per file
    assert ds.skipped[str(folder / "short.mp4")].startswith("too short")
    assert f"skipped {len(BROKEN)} of {len(ds.files)}" in ds.report()


def test_captions_are_validated(tmp_path, folder):
    (tmp_path / "captions.csv").write_text("path,caption\n../escape.mp4,a clip\n")
    with pytest.raises(ValueError, match="captions.csv:2: path '../escape.mp4' is outside"):
        read_captions(tmp_path, tmp_path / "captions.csv")
    (tmp_path / "captions.jsonl").write_text('{"path": "a.mp4"}\n')
    with pytest.raises(ValueError, match="captions.jsonl:1"):
        read_captions(tmp_path, tmp_path / "captions.jsonl")
    (tmp_path / "captions.csv").write_text("file,text\na.mp4,x\n")
    with pytest.raises(ValueError, match="header with the columns path,caption"):
        read_captions(tmp_path, tmp_path / "captions.csv")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "clip.mp4").write_bytes((folder / "counter.mp4").read_bytes())
    with pytest.raises(ValueError, match="no captions.csv or captions.jsonl"):
        VideoFolderDataset(bare)
    unlabeled = VideoFolderDataset(bare, num_frames=4, labeled=False)
    assert unlabeled[0]["caption"] == ""
    with pytest.raises(ValueError, match="dataset folder not found"):
        VideoFolderDataset(tmp_path / "missing")


def test_loader_workers_give_the_same_batches(folder):
    ds = VideoFolderDataset(folder, num_frames=4, resolution=32, length=12)
    serial = list(clip_loader(ds, batch_size=4, num_workers=0))
    parallel = list(clip_loader(ds, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert torch.equal(a["video"], b["video"]) and a["path"] == b["path"] and torch.equal(a["fps"], b["fps"])


def test_training_runs_through_a_real_video_folder(tmp_path, folder, capsys):
    from magicvideo.models.encoders import MiniLMLiTEncoder

    common = ["--data", str(folder), "--steps", "2", "--batch-size", "2", "-q"]
    assert main(["train", "--stage", "vae", "-o", str(tmp_path / "vae"), *common]) == 0
    MiniLMLiTEncoder().save_pretrained(tmp_path / "enc")
    unet = ["--vae", str(tmp_path / "vae" / "model"), "--encoder", str(tmp_path / "enc"), "--pool-clips", "0"]
    assert main(["train", "--stage", "keyframe", "--condition", "image", "-o", str(tmp_path / "unsup"), *unet,
                 *common]) == 0
    assert main(["train", "--stage", "keyframe", "--condition", "text", "-o", str(tmp_path / "text"), *unet,
                 "--init-from", str(tmp_path / "unsup" / "model"), *common]) == 0
    assert (tmp_path / "text" / "model" / "model.safetensors").is_file()
    assert main(["train", "--stage", "sr", "-o", str(tmp_path / "sr"), *common]) == 2
    assert "trains on the shapes domain only" in capsys.readouterr().err


def test_latent_cache_round_trip_and_training(tmp_path, folder, capsys):
    from magicvideo import VideoVAE, VideoVAEConfig
    from magicvideo.latent_cache import read_latent_cache
    from magicvideo.models.encoders import MiniLMLiTEncoder

    torch.manual_seed(0)
    VideoVAE(VideoVAEConfig()).save_pretrained(tmp_path / "vae")
    MiniLMLiTEncoder().save_pretrained(tmp_path / "enc")
    models = ["--vae", str(tmp_path / "vae"), "--encoder", str(tmp_path / "enc")]
    cache = tmp_path / "cache"
    assert main(["cache-latents", "-o", str(cache), *models, "--data", str(folder), "--clips", "7",
                 "--shard-clips", "3", "--batch-size", "2", "--num-frames", "8", "-q"]) == 0
    assert "skipped" in capsys.readouterr().err  # the broken files were reported
    pool = read_latent_cache(cache)
    assert sorted(p.name for p in cache.glob("shard_*")) == ["shard_00000.safetensors", "shard_00001.safetensors",
                                                              "shard_00002.safetensors"]
    assert pool["latents"].shape == (7, 4, 8, 16, 16) and pool["image_cond"].shape == (7, 1, 384)
    # the cache holds exactly what encoding the same items gives
    ds = VideoFolderDataset(folder, num_frames=8, resolution=64, length=7)
    with torch.no_grad():
        expected = VideoVAE.from_pretrained(tmp_path / "vae").encode(torch.stack([ds[i]["video"] for i in range(7)]))
    torch.testing.assert_close(pool["latents"], expected, atol=1e-5, rtol=1e-5)
    assert pool["caption"] == [ds[i]["caption"] for i in range(7)]
    assert torch.equal(pool["fps"], torch.tensor([ds[i]["fps"] for i in range(7)], dtype=torch.float32))

    assert main(["train", "--stage", "keyframe", "--condition", "image", "-o", str(tmp_path / "kf"), *models,
                 "--latent-cache", str(cache), "--steps", "2", "--batch-size", "2", "-q"]) == 0
    assert json.loads((tmp_path / "kf" / "metrics.jsonl").read_text().splitlines()[0])["pool_clips"] == 7
    assert main(["cache-latents", "-o", str(cache), *models, "--clips", "2"]) == 2  # never overwritten
    (cache / "shard_00001.safetensors").write_bytes(b"junk")
    assert main(["train", "--stage", "keyframe", "-o", str(tmp_path / "kf2"), *models, "--latent-cache", str(cache),
                 "--steps", "1", "-q"]) == 2
    assert "shard_00001.safetensors: not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("index, shard_meta, message", [
    (None, {}, "cache.json missing"),
    ("{not json", {}, "cache.json: malformed"),
    ({"format": 2, "clips": 2, "shards": [{"file": "s.safetensors", "clips": 2}]}, {}, "format 2, expected 1"),
    ({"format": 1, "clips": 2, "shards": [{"file": "s.safetensors"}]}, {}, "cache.json: malformed"),
    ({"format": 1, "clips": 2, "shards": []}, {}, "the cache has no shards"),
    ({"format": 1, "clips": 2, "shards": [{"file": "../s.safetensors", "clips": 2}]}, {}, "outside the cache"),
    ({"format": 1, "clips": 3, "shards": [{"file": "s.safetensors", "clips": 3}]}, {}, "3 clips listed"),
    ({"format": 1, "clips": 2, "shards": [{"file": "s.safetensors", "clips": 2}]}, None, "no caption list"),
])
def test_a_bad_latent_cache_is_named_with_its_problem(tmp_path, index, shard_meta, message):
    from safetensors.torch import save_file

    from magicvideo.latent_cache import read_latent_cache

    cache = tmp_path / "cache"
    cache.mkdir()
    tensors = {"latents": torch.zeros(2, 4, 2, 4, 4), "fps": torch.ones(2), "image_cond": torch.zeros(2, 1, 8)}
    save_file(tensors, str(cache / "s.safetensors"),
              metadata=None if shard_meta is None else {"captions": json.dumps(["a", "b"])})
    save_file(tensors, str(tmp_path / "s.safetensors"), metadata={"captions": json.dumps(["a", "b"])})
    if index is not None:
        (cache / "cache.json").write_text(index if isinstance(index, str) else json.dumps(index))
    with pytest.raises(ValueError, match=message):
        read_latent_cache(cache)
    good = {"format": 1, "clips": 2, "shards": [{"file": "s.safetensors", "clips": 2}]}
    if shard_meta is not None:
        (cache / "cache.json").write_text(json.dumps(good))
        assert read_latent_cache(cache)["caption"] == ["a", "b"]  # the same files, a good index: read
