"""Video-folder loader throughput (clips/s) on the real-pixel sample folder, 0 vs N workers.

    python benchmarks/data_loader.py [--folder DIR] [--clips 96] [--frames 16] [--resolution 64] [--workers 0 2]

Builds the sample folder of ``magicvideo.data.real_samples`` (scikit-image photos panned and
zoomed, a real GIF, broken files) unless ``--folder`` is given, then times full passes of a
DataLoader over ``--clips`` items (decode with seek, fps-aware strides, resize + crop).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from magicvideo.data.real_samples import build_sample_folder
from magicvideo.data.video_folder import VideoFolderDataset, clip_loader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default=None)
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    folder = args.folder or build_sample_folder(tempfile.mkdtemp(prefix="magicvideo_samples_"))
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; folder {folder}")
    print(f"{args.clips} clips of {args.frames} frames at {args.resolution}px, batch {args.batch_size}")
    best: dict[int, float] = {}
    for _ in range(args.repeats):  # interleaved repeats: the machine is shared and noisy
        for workers in args.workers:
            ds = VideoFolderDataset(folder, num_frames=args.frames, resolution=args.resolution, length=args.clips,
                                    labeled=False)
            loader = clip_loader(ds, batch_size=args.batch_size, num_workers=workers)
            start = time.perf_counter()
            n = sum(batch["video"].shape[0] for batch in loader)
            rate = n / (time.perf_counter() - start)
            best[workers] = max(best.get(workers, 0.0), rate)
            del loader
    for workers, rate in best.items():
        print(f"workers={workers}: {rate:7.1f} clips/s (best of {args.repeats}, worker start-up included)")
    if 0 in best:
        for workers, rate in best.items():
            if workers:
                print(f"speed-up with {workers} workers: {rate / best[0]:.2f}x")


if __name__ == "__main__":
    main()
