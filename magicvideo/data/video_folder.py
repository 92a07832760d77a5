"""Real videos from a folder: fps-aware clip sampling with PyAV (paper §3, Frame sampling).

A dataset is a folder of videos (mp4, webm, mov, mkv, avi, gif; subfolders included) plus,
for captioned training, ``captions.csv`` (columns ``path,caption``) or ``captions.jsonl``
(``{"path": ..., "caption": ...}`` per line) with paths relative to the folder. Without a
captions file the folder is unlabeled: what unsupervised pretraining uses (image embeddings
of the frames stand in for text).

Sampling: a stride ``s`` is drawn from ``strides`` among those the video is long enough for,
then ``num_frames`` successive frames at that stride from a random start; the clip's fps is
``native fps / s``. Decoding seeks to the start (a keyframe before it) instead of decoding a
long file from the beginning. Frames are resized (shorter side) and center-cropped to
``resolution``.

Every path, listed in the captions file or found in the folder, must resolve (links
followed) inside the dataset folder: a listed one outside is an error naming the line, a found
one (``a.mp4 -> /elsewhere/b.mp4``) is skipped without being opened; links to folders are not
followed. Broken files (corrupt, truncated, zero-length, too short, not a video) never stop a
run: an item that lands on one moves on to the next file, and the file is remembered in
``skipped`` with the reason (logged once per file). ``report()`` sums the skips up in one line
with counts by reason; ``new_report()`` gives it only when something was skipped since its
last call, so a training loop that asks after every pass prints it once. Items are pure
functions of ``(seed, index)``, as for the shapes domain, so ``--resume`` stays exact.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
CAPTION_FILES = ("captions.csv", "captions.jsonl")
log = logging.getLogger("magicvideo.data")


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # number of frames (from the container when it knows, else counted)
    fps: float  # native frame rate


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"repeated key(s) {', '.join(map(repr, repeated))}")
    return dict(pairs)


def read_captions(root: Path, captions_file: Path) -> dict[Path, str]:
    """``captions.csv`` / ``.jsonl`` -> {resolved video path: caption}. Errors name the file
    and the line; paths must stay inside ``root`` (links included: the path is resolved).
    A CSV may start with a UTF-8 byte-order mark (Excel's "CSV UTF-8"); a repeated column,
    a repeated header row or a video listed twice is refused rather than half-read."""
    rows: list[tuple[int, str, str]] = []
    try:
        text = captions_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{captions_file}: cannot read ({err})") from None
    if captions_file.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys)
                rows.append((n, str(record["path"]), str(record["caption"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{captions_file}:{n}: expected {{\"path\": ..., \"caption\": ...}} ({err})") from None
    else:
        reader = csv.reader(text.splitlines())
        header = next(reader, None)
        columns = [c.strip() for c in header or []]
        if not {"path", "caption"} <= set(columns):
            raise ValueError(f"{captions_file}: needs a header with the columns path,caption")
        repeated = sorted({c for c in columns if c and columns.count(c) > 1})
        if repeated:
            raise ValueError(f"{captions_file}:1: column(s) {', '.join(repeated)} repeated in the header")
        at = {name: columns.index(name) for name in ("path", "caption")}
        for record in reader:
            n = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if [c.strip() for c in record] == columns:
                raise ValueError(f"{captions_file}:{n}: the header row again (two files joined?)")
            if len(record) != len(columns):
                raise ValueError(f"{captions_file}:{n}: {len(record)} fields, the header has {len(columns)} "
                                 f"(quote captions that hold commas)")
            if not record[at["path"]]:
                raise ValueError(f"{captions_file}:{n}: empty path")
            rows.append((n, record[at["path"]], record[at["caption"]]))
    root = root.resolve()
    captions: dict[Path, str] = {}
    lines: dict[Path, int] = {}
    for n, rel, caption in rows:
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{captions_file}:{n}: path {rel!r} is outside the dataset folder {root}")
        if not caption.strip():
            raise ValueError(f"{captions_file}:{n}: empty caption for {rel!r}")
        if path in lines:
            raise ValueError(f"{captions_file}:{n}: {rel!r} is listed again (first at line {lines[path]}); "
                             f"a video has one caption")
        captions[path], lines[path] = caption.strip(), n
    return captions


def probe_video(path: Path) -> VideoInfo:
    """Frame count and fps without decoding when the container knows them."""
    import av

    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = int(stream.frames or 0)
            if not frames:  # no count in the header: decode (short files such as GIFs)
                frames = sum(1 for _ in container.decode(stream))
            fps = float(rate) if rate else 0.0
            if fps <= 0 and frames and stream.duration and stream.time_base:
                fps = frames / float(stream.duration * stream.time_base)
    except av.error.FFmpegError as err:
        raise ValueError(f"not a readable video ({err})") from None
    if frames < 1:
        raise ValueError("no frames")
    return VideoInfo(frames=frames, fps=fps if fps > 0 else 8.0)


def decode_frames(path: Path, indices: list[int], fps: float) -> np.ndarray:
    """Frames at ``indices`` (sorted) as uint8 (N, H, W, 3). Seeks near the first one; frame
    numbers come from presentation times (``pts * time_base * fps``)."""
    import av

    wanted = {i: None for i in indices}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            first = indices[0]
            if first > 0 and stream.time_base:
                container.seek(int(first / fps / stream.time_base) + (stream.start_time or 0), stream=stream,
                               backward=True, any_frame=False)
            start = float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0
            count = None
            for frame in container.decode(stream):
                if frame.pts is not None and stream.time_base:
                    number = int(round((float(frame.pts * stream.time_base) - start) * fps))
                else:  # no timestamps: count from the start (no seek happened for such files)
                    count = 0 if count is None else count + 1
                    number = count
                if number in wanted and wanted[number] is None:
                    wanted[number] = frame.to_ndarray(format="rgb24")
                if number >= indices[-1]:
                    break
    except av.error.FFmpegError as err:
        raise ValueError(f"decoding failed ({err})") from None
    missing = [i for i, f in wanted.items() if f is None]
    if missing:
        raise ValueError(f"truncated: frames {missing[:3]}{'...' if len(missing) > 3 else ''} could not be decoded")
    return np.stack([wanted[i] for i in indices])


def resize_center_crop(frames: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, resolution, resolution, 3): shorter side to ``resolution``
    (antialiased), then the center square."""
    from PIL import Image

    out = []
    for frame in frames:
        image = Image.fromarray(frame)
        w, h = image.size
        scale = resolution / min(w, h)
        nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
        image = image.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        out.append(np.asarray(image.crop((left, top, left + resolution, top + resolution))))
    return np.stack(out)


class VideoFolderDataset(torch.utils.data.Dataset):
    """Map-style and deterministic: item ``i`` is a clip of file ``i mod n`` (or of the next
    readable file), with its stride and start drawn from ``(seed, i)``. Items are dicts with
    ``video`` (3, F, H, W) in [-1, 1], ``caption`` ("" when unlabeled), ``fps`` and ``path``."""

    def __init__(self, root: str | Path, num_frames: int = 16, resolution: int = 64,
                 strides: tuple[int, ...] = (1, 2, 4), labeled: bool = True, seed: int = 0,
                 length: int | None = None, captions: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: dataset folder not found")
        if num_frames < 1 or resolution < 8:
            raise ValueError(f"num_frames must be >= 1 and resolution >= 8, got {num_frames} and {resolution}")
        if not strides or min(strides) < 1:
            raise ValueError(f"strides must be positive integers, got {strides}")
        self.num_frames, self.resolution, self.strides = num_frames, resolution, tuple(sorted(strides))
        self.seed, self.labeled = seed, labeled
        self._resolved_root = self.root.resolve()
        self.skipped: dict[str, str] = {}  # path -> why (reported once each)
        self._reported = 0  # skips already in a new_report()
        found_files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS
                             and (p.is_file() or p.is_symlink()))  # rglob does not enter linked folders
        files = []
        for path in found_files:
            target = path.resolve()
            if not target.is_relative_to(self._resolved_root):
                self.skipped[str(path)] = f"outside the dataset folder (a link to {target})"
            elif target.is_file():
                files.append(path)
            elif not target.exists():
                self.skipped[str(path)] = "a link to a missing file"
        self.considered = len(found_files)  # what report() counts skips out of
        self.captions: dict[Path, str] = {}
        if labeled:
            found = Path(captions) if captions else next((self.root / n for n in CAPTION_FILES
                                                          if (self.root / n).is_file()), None)
            if found is None or not found.is_file():
                raise ValueError(f"{self.root}: no {' or '.join(CAPTION_FILES)} (captioned training needs one; "
                                 f"unsupervised pretraining reads the folder unlabeled)")
            self.captions = read_captions(self.root, found)
            for path in files:
                if path.resolve() not in self.captions:
                    self.skipped[str(path)] = "no caption"
            files = [p for p in files if p.resolve() in self.captions]
            on_disk = {p.resolve() for p in files}
            for listed in self.captions:
                if listed not in on_disk:
                    why = "listed in the captions, not found" if not listed.exists() else \
                        f"listed in the captions, not a video file ({', '.join(VIDEO_EXTENSIONS)})"
                    self.skipped[str(listed)] = why
                    self.considered += 1
        if not files:
            raise ValueError(f"{self.root}: no {'captioned ' if labeled else ''}videos "
                             f"({', '.join(VIDEO_EXTENSIONS)}){'; ' + self.report() if self.skipped else ''}")
        self.files = files
        self.length = len(files) if length is None else length
        self._info: dict[Path, VideoInfo] = {}

    def __len__(self) -> int:
        return self.length

    def _skip(self, path: Path, reason: str) -> None:
        if str(path) not in self.skipped:
            self.skipped[str(path)] = reason
            log.warning("skipping %s: %s (%d skipped so far)", path, reason, len(self.skipped))

    def report(self) -> str:
        """One line: how many files were skipped, counted by reason, with the first few named."""
        if not self.skipped:
            return f"{self.root}: all {len(self.files)} videos read"
        counts: dict[str, int] = {}
        for reason in self.skipped.values():
            kind = reason.split(" (")[0].split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
        by_reason = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        names = ", ".join(Path(p).name for p in list(self.skipped)[:5]) + (" ..." if len(self.skipped) > 5 else "")
        return f"{self.root}: skipped {len(self.skipped)} of {self.considered} videos: {by_reason} ({names})"

    def new_report(self) -> str | None:
        """``report()`` when files were skipped since the last call, else None: asked after
        every pass over the folder, the report appears once, and again only with news."""
        if len(self.skipped) == self._reported:
            return None
        self._reported = len(self.skipped)
        return self.report()

    def clip(self, path: Path, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """One fps-aware clip of ``path``: uint8 (F, r, r, 3) and its fps."""
        if not path.resolve().is_relative_to(self._resolved_root):  # a link changed since the folder was read
            raise ValueError(f"outside the dataset folder (a link to {path.resolve()})")
        info = self._info.get(path)
        if info is None:
            info = self._info[path] = probe_video(path)
        usable = [s for s in self.strides if (self.num_frames - 1) * s + 1 <= info.frames]
        if not usable:
            raise ValueError(f"too short: {info.frames} frames, a clip needs {self.num_frames}")
        stride = int(rng.choice(usable))
        span = (self.num_frames - 1) * stride + 1
        start = int(rng.integers(0, info.frames - span + 1))
        frames = decode_frames(path, list(range(start, start + span, stride)), info.fps)
        return resize_center_crop(frames, self.resolution), info.fps / stride

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        n = len(self.files)
        for offset in range(n):
            path = self.files[(index + offset) % n]
            if str(path) in self.skipped:
                continue
            try:
                frames, fps = self.clip(path, rng)
            except (ValueError, OSError) as err:
                self._skip(path, str(err))
                continue
            video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
            return {"video": video, "caption": self.captions.get(path.resolve(), ""), "fps": fps, "path": str(path)}
        raise ValueError(f"{self.root}: none of the {n} videos is readable ({self.report()})")


def collate_clips(items: list[dict]) -> dict:
    """Batch items of a video dataset: stacked videos, fps tensor, lists of the rest."""
    return {"video": torch.stack([it["video"] for it in items]), "fps": torch.tensor([it["fps"] for it in items]),
            "caption": [it["caption"] for it in items], "path": [it.get("path", "") for it in items]}


def clip_loader(dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False, seed: int = 0):
    """A torch DataLoader over a video dataset (workers decode in parallel)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=shuffle,
                                       generator=gen, collate_fn=collate_clips,
                                       persistent_workers=num_workers > 0)
