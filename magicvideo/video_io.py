"""Read and write videos: mp4 (H.264, yuv420p, via PyAV), gif and png frames (via Pillow).

Frames are uint8 arrays ``(T, H, W, 3)``. Writes are atomic: the file is written next to
its destination under a temporary name and renamed at the end, so a failure or a kill never
leaves a partial video behind.
"""
from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np


VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")


def check_output_path(path: str | Path) -> Path:
    """Validate an output path before any compute is spent on it."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"{path}: unknown output extension {ext or '(none)'}; use one of {', '.join(VIDEO_EXTENSIONS)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{path}: directory {parent} is not writable")
    if path.is_dir() and ext != ".png":
        raise ValueError(f"{path}: is a directory")
    return path


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    return frames


def write_video(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Write ``frames`` to ``path`` (.mp4, .gif, or .png = a numbered frame sequence
    ``name_0000.png`` ...). Returns the path written."""
    frames = _check_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = check_output_path(path)
    ext = path.suffix.lower()
    if ext == ".png":
        return _write_png_frames(frames, path)
    from .models.io import usual_permissions  # imports torch: not needed by check_output_path

    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=ext, dir=path.parent or ".")
    os.close(fd)
    try:
        if ext == ".mp4":
            _write_mp4(frames, tmp, fps)
        else:
            _write_gif(frames, tmp, fps)
        usual_permissions(Path(tmp))  # not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_mp4(frames: np.ndarray, path: str, fps: float) -> None:
    encode_av(frames, path, fps, options={"crf": "18"})


def encode_av(frames: np.ndarray, path: str, fps: float, container_format: str = "mp4", codec: str | None = None,
              options: dict[str, str] | None = None, bit_rate: int | None = None) -> None:
    """uint8 (T, H, W, 3) -> a yuv420p video file through PyAV. ``codec`` None: libx264 where
    the PyAV build has it, else mpeg4."""
    import av

    # yuv420p needs even sizes: pad by edge replication rather than distort
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    with av.open(path, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = options or {}
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _write_gif(frames: np.ndarray, path: str, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    duration = max(int(round(1000 / fps)), 20)  # ms per frame; browsers clamp below 20
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_png_frames(frames: np.ndarray, path: Path) -> Path:
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent or "."))
    try:
        names = []
        for i, frame in enumerate(frames):
            name = f"{path.stem}_{i:04d}.png"
            Image.fromarray(frame).save(tmp / name)
            names.append(name)
        for name in names:
            os.replace(tmp / name, path.parent / name)
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    return path.parent / f"{path.stem}_0000.png"


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file (anything FFmpeg reads, gif included) to uint8 (T, H, W, 3) and
    its frame rate. Errors name the file."""
    import av

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: video file not found")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: contains no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 0
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable video ({err})") from None
    if not frames:
        raise ValueError(f"{path}: contains no frames")
    fps = float(rate) if rate else 8.0
    if path.suffix.lower() == ".gif" and not rate:
        fps = 8.0
    return np.stack(frames), fps


def read_image(path: str | Path) -> np.ndarray:
    """An image file (png, jpg, ... anything Pillow reads) -> uint8 (H, W, 3). Errors name the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


def fit_frames(frames: np.ndarray, size: int, source: str = "input") -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, size, size, 3): shorter side resized to ``size``
    (antialiased), then the centre square. ``source`` names the input in errors."""
    from .data.video_folder import resize_center_crop

    try:
        frames = _check_frames(frames)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    _, h, w, _ = frames.shape
    if min(h, w) < 8:
        raise ValueError(f"{source}: {w}x{h} is too small (at least 8x8)")
    return frames if h == w == size else resize_center_crop(frames, size)
