"""A small real-pixel video folder that builds offline, for smoke tests and loader benchmarks.

Real photos shipped by scikit-image (astronaut, coffee, chelsea, rocket) panned and zoomed into
short clips and encoded with PyAV (H.264 in .mp4 and .mov, MPEG-4 in .avi), scikit-image's
real animated GIF, a "counter" clip whose frame k is the gray level 4k (to check which frames
a loader returned), captions for all of them, and deliberately broken files: zero-length,
random bytes, a truncated mp4, a text file named .avi, and a clip too short to sample.

    python -m magicvideo.data.real_samples DIR
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from ..video_io import encode_av

BROKEN = ("empty.mp4", "garbage.mp4", "truncated.mp4", "notes.avi", "short.mp4")
COUNTER_FPS = 24.0


def encode(frames: np.ndarray, path: Path, fps: float, codec: str = "libx264", gop: int = 12) -> Path:
    """uint8 (T, H, W, 3), even H and W -> a video file; small GOP so that seeking matters."""
    container_format = {".mp4": "mp4", ".mov": "mov", ".avi": "avi"}[path.suffix]
    x264 = codec == "libx264"
    encode_av(frames, str(path), fps, container_format, codec, options={"g": str(gop), **({"crf": "16"} if x264 else {})},
              bit_rate=None if x264 else 4_000_000)
    return path


def _pan(image: np.ndarray, frames: int, size: int, zoom: bool = False) -> np.ndarray:
    """A camera moving right over ``image`` (or zooming in), ``size`` x ``size`` output."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w) * 2 // 3
    out = []
    for k in range(frames):
        f = k / max(frames - 1, 1)
        if zoom:
            s = int(side * (1 - 0.4 * f))
            top, left = (h - s) // 2, (w - s) // 2
        else:
            s, top, left = side, (h - side) // 2, int((w - side) * f)
        crop = Image.fromarray(image[top : top + s, left : left + s]).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(crop.convert("RGB")))
    return np.stack(out)


def counter_frames(frames: int = 48, size: int = 32) -> np.ndarray:
    """Frame k is a flat gray of level 4k: a decoded frame tells its own index."""
    return np.stack([np.full((size, size, 3), 4 * k, np.uint8) for k in range(frames)])


def build_sample_folder(root: str | Path) -> Path:
    """Write the sample folder (see the module doc) into ``root``; returns it."""
    try:
        from skimage import data
    except ImportError:
        raise ValueError("the real-pixel sample folder needs scikit-image (pip install scikit-image)") from None
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "clips").mkdir(exist_ok=True)
    captions = {
        "clips/astronaut_pan.mp4": (_pan(data.astronaut(), 40, 96), 24.0, "libx264", "an astronaut, camera panning right"),
        "clips/coffee_zoom.mov": (_pan(data.coffee(), 36, 96, zoom=True), 12.0, "libx264", "a cup of coffee, zooming in"),
        "chelsea_pan.avi": (_pan(data.chelsea(), 30, 64), 10.0, "mpeg4", "a cat, camera panning right"),
        "rocket_zoom.mp4": (_pan(data.rocket(), 32, 64, zoom=True), 30.0, "libx264", "a rocket on its launch pad, zooming in"),
        "counter.mp4": (counter_frames(), COUNTER_FPS, "libx264", "a gray screen getting brighter"),
    }
    for rel, (frames, fps, codec, _) in captions.items():
        encode(frames, root / rel, fps, codec)
    gif = Path(data.__file__).parent / "no_time_for_that_tiny.gif"
    shutil.copy(gif, root / "no_time_for_that.gif")
    rows = {rel: c[3] for rel, c in captions.items()}
    rows["no_time_for_that.gif"] = "a short animated clip"
    # broken files, captioned like the rest: a loader must skip them
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    whole = (root / "clips" / "astronaut_pan.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (root / "notes.avi").write_text("not a video\n")
    encode(counter_frames(3), root / "short.mp4", COUNTER_FPS)
    for name in BROKEN:
        rows[name] = "a broken file"
    with open(root / "captions.csv", "w", newline="") as f:
        import csv

        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        writer.writerows(sorted(rows.items()))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    print(build_sample_folder(sys.argv[1]))

