"""Read and write videos: mp4 (H.264, yuv420p, via PyAV), gif and png frames (via Pillow).

Frames are uint8 arrays ``(T, H, W, 3)``; ``write_video`` also takes them as they are made,
an iterable of such chunks (a long video's windows, ``MagicVideoPipeline(..., stream=True)``),
and writes each as it comes: mp4 frames are encoded and png frames saved as they arrive (a GIF
is kept until the end: Pillow writes one from all its frames). Writes are atomic: the file is
written next to its destination as ``.{name}.tmp-{pid}`` and renamed at the end, so a failure
or a kill never leaves a partial video behind, and the next write to the same path removes what
a SIGKILL left (see ``magicvideo.files``). A ``.png`` output is a numbered frame sequence
``name_0000.png`` ...; a new sequence replaces every frame of an earlier one of that name,
so sequences of two runs never mix.

Limits, checked before anything is decoded or encoded: frame rates from ``MIN_FPS`` to
``MAX_FPS`` (``MAX_GIF_FPS`` for a GIF, whose frame delays below 20 ms players clamp), input
images up to ``MAX_IMAGE_PIXELS`` and videos up to ``MAX_VIDEO_PIXELS`` decoded pixels.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .files import (aside_path, check_new_output, check_parent_directory, prepare_output, probe_writable, publish,
                    remove_path, remove_stale_temps, temp_path)

VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")
MIN_FPS, MAX_FPS = 0.1, 240.0  # what the mp4 time base (rate to 1/1001) and players represent faithfully
MAX_GIF_FPS = 50.0  # a GIF's frame delay is in 1/100 s and players clamp delays under 20 ms
MAX_IMAGE_PIXELS = 64_000_000  # an input image (animate): checked from its header, before decoding
MAX_VIDEO_PIXELS = 2**31  # all frames of an input video together (1080p x 1024 frames fit): ~6 GiB of uint8


def check_fps(fps: float, ext: str = ".mp4", what: str = "fps") -> float:
    """A frame rate a video file can carry: finite, in [MIN_FPS, MAX_FPS] (GIF: MAX_GIF_FPS)."""
    high = MAX_GIF_FPS if ext == ".gif" else MAX_FPS
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or not MIN_FPS <= fps <= high:
        kind = "a GIF" if ext == ".gif" else "a video"
        raise ValueError(f"{what} must be between {MIN_FPS:g} and {high:g} for {kind}, got {fps!r}")
    return float(fps)


def sequence_frames(path: Path) -> list[Path]:
    """The frames ``stem_0000.png`` ... of the frame sequence ``path`` (stem.png) on disk."""
    pattern = re.compile(rf"{re.escape(path.stem)}_\d{{4,}}\.png")
    try:
        return sorted(path.parent / e.name for e in os.scandir(path.parent) if pattern.fullmatch(e.name))
    except OSError:
        return []


def check_output_path(path: str | Path, overwrite: bool = True) -> Path:
    """Validate an output path before any compute is spent on it: a known extension, a folder
    that exists and accepts a new file (created and removed there), not a folder itself, and,
    unless ``overwrite``, nothing there yet (for a frame sequence: none of its frames)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"{path}: unknown output extension {ext or '(none)'}; use one of {', '.join(VIDEO_EXTENSIONS)}")
    if ext != ".png":
        return prepare_output(path, overwrite)
    check_parent_directory(path)
    frames = sequence_frames(path)
    for frame in frames:
        if frame.is_dir():
            raise ValueError(f"{frame}: is a directory (a frame of the sequence {path.name})")
    check_new_output(path, overwrite, frames)
    remove_stale_temps(path)
    probe_writable(path)
    return path


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    return frames


def frames_u8(frames) -> np.ndarray:
    """Frames, a torch tensor (T, 3, H, W) in [-1, 1] -> uint8 (T, H, W, 3), what the writers take."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def video_u8(video) -> np.ndarray:
    """A video, a torch tensor (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    return frames_u8(video.transpose(0, 1))


def _frames_of(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames (H, W, 3) of chunks (n, H, W, 3) as they come, each chunk checked when it
    arrives: uint8, frames of the first chunk's size, at least one frame in all."""
    size, chunks = None, iter(chunks)
    try:
        for chunk in chunks:
            chunk = np.asarray(chunk)
            if chunk.ndim != 4 or chunk.shape[-1] != 3 or chunk.dtype != np.uint8:
                raise ValueError(f"frames must come as uint8 chunks (n, H, W, 3), got {chunk.dtype} {chunk.shape}")
            if size is not None and chunk.shape[1:] != size:
                raise ValueError(f"frames must all be {size[1]}x{size[0]}, a chunk has "
                                 f"{chunk.shape[2]}x{chunk.shape[1]}")
            size = chunk.shape[1:]
            for i in range(len(chunk)):
                yield chunk[i].copy()  # not a view of the chunk, which is let go before the next is computed
            del chunk
    finally:
        # stopped early (a bad chunk, the encoder failed): the source (a pipeline's stream) is
        # closed now, its state let go, not whenever the traceback that holds it is dropped
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if size is None:
        raise ValueError("frames must be (T, H, W, 3) with T >= 1, got no frames")


def write_video(frames: np.ndarray | Iterable[np.ndarray], path: str | Path, fps: float,
                overwrite: bool = True) -> Path:
    """Write ``frames`` to ``path`` (.mp4, .gif, or .png = a numbered frame sequence
    ``name_0000.png`` ...). Returns the path written (the first frame for a sequence).
    ``frames``: uint8 (T, H, W, 3) (an array or a list of frames), or any other iterable of
    uint8 chunks (n, H, W, 3), written as they come (see the module's docstring); the file
    appears only when the last is written, and an exception from the iterable leaves nothing.
    ``overwrite=False``: refuse when the file (any frame of the sequence) exists."""
    whole = isinstance(frames, (list, tuple)) or hasattr(frames, "ndim")  # an array or a tensor, as before chunks
    if whole:
        frames = _check_frames(frames)
    path = Path(path)
    check_fps(fps, path.suffix.lower())
    path = check_output_path(path, overwrite)
    ext = path.suffix.lower()
    # an array is handed on as it is, chunks as a stream of frames: the encoders take either
    frames = frames if whole else _frames_of(frames)
    try:
        if ext == ".png":
            return _write_png_frames(frames, path, overwrite)
        tmp = temp_path(path)
        remove_path(tmp)
        try:
            if ext == ".mp4":
                _write_mp4(frames, str(tmp), fps)
            else:
                _write_gif(frames, str(tmp), fps)
            publish(tmp, path, overwrite)
        except BaseException:
            remove_path(tmp)
            raise
    finally:
        if not whole:
            frames.close()  # an encoder that stopped early leaves no stream half-run (see _frames_of)
    return path


def _write_mp4(frames: np.ndarray | Iterable[np.ndarray], path: str, fps: float) -> None:
    encode_av(frames, path, fps, options={"crf": "18"})


def encode_av(frames: np.ndarray | Iterable[np.ndarray], path: str, fps: float, container_format: str = "mp4",
              codec: str | None = None, options: dict[str, str] | None = None, bit_rate: int | None = None) -> None:
    """uint8 frames (T, H, W, 3), or any iterable of frames (H, W, 3) of one size, encoded as
    they come -> a yuv420p video file through PyAV. ``codec`` None: libx264 where the PyAV
    build has it, else mpeg4."""
    import av

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("frames must be (T, H, W, 3) with T >= 1, got no frames")
    h, w, _ = first.shape
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    if codec == "libx264":
        # x264's macroblock-tree rate control reads uninitialised memory in its AVX-512 code (x264
        # core 165 in PyAV 18's wheels): at some widths (64 px among them) the same frames gave
        # different files from run to run, as the heap's leftovers differed. Without it a file
        # depends on the frames alone; at crf 18 it is larger (a 61-frame 256 px clip: 84 kB, not
        # 29 kB) and slightly closer to the frames (+0.3 dB). tests/test_determinism.py
        options = {"x264-params": "mbtree=0", **(options or {})}
    with av.open(path, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        # yuv420p needs even sizes: pad by edge replication rather than distort
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        stream.options = options or {}
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in itertools.chain([first], frames):
            if frame.shape[:2] != (h, w):
                raise ValueError(f"frames must all be {w}x{h}, got one of {frame.shape[1]}x{frame.shape[0]}")
            if h % 2 or w % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _write_gif(frames: Iterable[np.ndarray], path: str, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]  # all of them: Pillow writes a GIF from the whole list
    duration = max(int(round(1000 / fps)), 20)  # ms per frame; browsers clamp below 20
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_png_frames(frames: Iterable[np.ndarray], path: Path, overwrite: bool) -> Path:
    """Frames into a temporary folder as they come, then swapped in: the earlier sequence's
    frames are moved aside first, so a kill at any point shows frames of one run only (the
    folders left are stale temporaries, removed by the next write)."""
    from PIL import Image

    parent = path.parent
    tmp, aside = temp_path(path), aside_path(path)
    for leftover in (tmp, aside):
        remove_path(leftover)
    tmp.mkdir()
    try:
        names = []
        for i, frame in enumerate(frames):
            name = f"{path.stem}_{i:04d}.png"
            Image.fromarray(frame).save(tmp / name)
            names.append(name)
        old = sequence_frames(path)
        check_new_output(path, overwrite, old)
        if old:
            aside.mkdir()
            for frame in old:
                os.replace(frame, aside / frame.name)
        for name in names:
            os.replace(tmp / name, parent / name)
    finally:
        remove_path(tmp)
        remove_path(aside)
    return parent / f"{path.stem}_0000.png"


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file (anything FFmpeg reads, gif included) to uint8 (T, H, W, 3) and
    its frame rate. Errors name the file; frames past ``MAX_VIDEO_PIXELS`` decoded pixels are
    refused rather than decoded (frame sizes are checked from the stream before decoding)."""
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
            pixels = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
            if pixels > MAX_IMAGE_PIXELS:
                raise ValueError(f"{path}: {stream.codec_context.width}x{stream.codec_context.height} frames are "
                                 f"larger than {MAX_IMAGE_PIXELS / 1e6:g} megapixels")
            rate = stream.average_rate or stream.guessed_rate or 0
            total = 0
            for frame in container.decode(stream):
                total += frame.width * frame.height
                if total > MAX_VIDEO_PIXELS:
                    raise ValueError(f"{path}: more than {MAX_VIDEO_PIXELS / 1e9:.1f} billion pixels to decode "
                                     f"({len(frames)} frames of {frame.width}x{frame.height} so far); cut or scale "
                                     f"it down first")
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
    """An image file (png, jpg, ... anything Pillow reads) -> uint8 (H, W, 3). Errors name the
    file; an image over ``MAX_IMAGE_PIXELS`` is refused from its header, before decoding."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
            with Image.open(path) as image:
                w, h = image.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ValueError(f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, more than the "
                                     f"{MAX_IMAGE_PIXELS / 1e6:g} an input image may have")
                return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path}: more than {MAX_IMAGE_PIXELS / 1e6:g} megapixels, refused ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
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
