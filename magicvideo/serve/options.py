"""What a job may ask for, checked as the CLI checks it.

A request is a flat set of fields (a JSON object, or the fields of a multipart form) and, for
animate / vary / edit, one uploaded source file. Every numeric field is parsed by the same
function as its CLI flag (``fps`` by ``--fps``'s ``cli._positive_float``, ...), then the whole
request is resolved against the pipeline's defaults and checked by the pipeline itself
(``MagicVideoPipeline.resolve``), so a request the CLI refuses is refused here with the same
words, before it is queued. Nothing a request carries is a path: the output is named by the
server's job id, and the upload is decoded from a private temporary file.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..cli import SAMPLING_SEED_BITS, _nonnegative_float, _positive_float, _positive_int, _seed, _strength

KINDS = ("generate", "animate", "vary", "edit")
UPLOADS = {"animate": "an image", "vary": "a video", "edit": "a video"}  # the source each kind needs
SOURCE_FIELD = "source"  # the multipart field that carries it
DEFAULT_NUM_FRAMES = 16  # as `magicvideo generate` / `animate`
DECODE_BUDGET = 1 << 31  # bytes of RGB frames an uploaded video may decode to (1080p: 345 frames)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class RequestError(ValueError):
    """A request the CLI would refuse: answered 422 with this one-line message."""


@dataclass(frozen=True)
class Field:
    parse: Callable[[str], Any] | None  # the CLI flag's own parser (text -> value); None: text / flag as is
    type: str  # JSON schema type
    kinds: tuple[str, ...]  # the job kinds that take it
    help: str


_ALL = KINDS
FIELDS: dict[str, Field] = {
    "kind": Field(None, "string", _ALL, f"one of {', '.join(KINDS)} (default generate)"),
    "prompt": Field(None, "string", ("generate", "animate", "edit"),
                    "the text prompt (animate: optional, added to the image's condition; edit: the new prompt)"),
    "seed": Field(_seed(SAMPLING_SEED_BITS), "integer", _ALL, "random seed (default 0)"),
    "fps": Field(_positive_float, "number", _ALL,
                 "frame rate the motion is generated at (default: the pipeline's; vary / edit: the source's)"),
    "steps": Field(_positive_int, "integer", _ALL, "denoising steps (default: the pipeline's)"),
    "guidance": Field(_nonnegative_float, "number", _ALL, "classifier-free guidance scale (default: the pipeline's)"),
    "scheduler": Field(None, "string", _ALL, "ddim or dpm (default: the pipeline's)"),
    "interpolate": Field(None, "boolean", _ALL, "run the interpolation stage (default: when the pipeline has it)"),
    "upscale": Field(None, "boolean", _ALL, "run the super-resolution stage (default: when the pipeline has it)"),
    "num_frames": Field(_positive_int, "integer", ("generate", "animate"), "keyframes (default 16)"),
    "context_frames": Field(_positive_int, "integer", ("generate",),
                            "long videos: frames each window continues from (default: half a window)"),
    "anchor": Field(None, "boolean", ("animate",), "hold the first frame to the image (default true)"),
    "strength": Field(_strength, "number", ("vary", "edit"),
                      "how far the result departs from the source, 0-1 (default: the pipeline's)"),
}


def request_schema() -> dict:
    """The fields as a JSON schema (the OpenAPI document of ``POST /api/jobs``)."""
    props = {name: {"type": f.type, "description": f"{f.help}. Jobs: {', '.join(f.kinds)}."}
             for name, f in FIELDS.items()}
    props["kind"]["enum"] = list(KINDS)
    return {"type": "object", "properties": props, "additionalProperties": False}


def _value(name: str, raw: Any) -> Any:
    """One field from JSON (typed) or a form (text) -> its value; None when absent or empty."""
    field = FIELDS[name]
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and name != "prompt"):
        return None
    if field.type == "string":
        if not isinstance(raw, str):
            raise RequestError(f"{name}: expected text, got {raw!r}")
        return raw
    if field.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise RequestError(f"{name}: expected true or false, got {raw!r}")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise RequestError(f"{name}: expected a number, got {raw!r}")
    try:
        return field.parse(str(raw).strip())
    except argparse.ArgumentTypeError as err:
        raise RequestError(f"{name}: {err}") from None


@dataclass(frozen=True)
class Upload:
    filename: str  # the client's name for the file: shown in messages and settings, never opened
    data: bytes

    @property
    def name(self) -> str:
        name = "".join(ch for ch in Path(self.filename or "upload").name if ch.isprintable())[:100]
        return name or "upload"

    def decode(self, reader: Callable[[Path], Any]) -> Any:
        """``reader`` on a private temporary copy; errors name the upload, not the copy."""
        suffix = Path(self.name).suffix.lower()
        suffix = suffix if 1 < len(suffix) <= 6 and suffix[1:].isalnum() else ""
        with tempfile.TemporaryDirectory(prefix="magicvideo-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(self.data)
            try:
                return reader(path)
            except ValueError as err:
                raise RequestError(str(err).replace(str(path), self.name)) from None
            except Exception as err:  # e.g. PIL's DecompressionBombError: a bad upload, not a server fault
                raise RequestError(f"{self.name}: not readable ({type(err).__name__}: {err})".replace(
                    str(path), self.name)) from None


def _read_video_bounded(path: Path) -> tuple[np.ndarray, float]:
    """read_video, refusing more than MAX_KEYFRAMES frames or DECODE_BUDGET bytes of them."""
    import av

    from ..pipeline import MAX_KEYFRAMES
    from ..video_io import read_video

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            side = (stream.codec_context.width * stream.codec_context.height) if stream is not None else 0
    except av.error.FFmpegError:
        side = 0  # read_video names the problem
    limit = min(MAX_KEYFRAMES, max(1, DECODE_BUDGET // max(3 * side, 1)))
    frames, fps = read_video(path, max_frames=limit + 1)
    if len(frames) > limit:
        raise ValueError(f"{path}: more than {limit} frames" + (
            " (the most a job takes)" if limit == MAX_KEYFRAMES else f" at {frames.shape[2]}x{frames.shape[1]}"))
    return frames, fps


def _fit(frames: np.ndarray, size: int, name: str) -> np.ndarray:
    """The source at the model's size, once, here: the pipeline takes it as it is."""
    from ..video_io import fit_frames

    try:
        return fit_frames(frames, size, name)
    except ValueError as err:
        raise RequestError(str(err)) from None


@dataclass
class JobSpec:
    """A checked request: every option resolved (the pipeline's defaults filled in)."""

    kind: str
    settings: dict[str, Any]  # JSON-ready: what the job runs with, and what the gallery shows
    source: np.ndarray | None = None  # animate: image (S, S, 3); vary / edit: frames (T, S, S, 3), at the model's size

    def run(self, pipe, on_progress: Callable[[str, int, int], None]):
        """The job on ``pipe`` -> a VideoOutput, or for generate and animate a VideoStream (its
        frames made window by window as the writer asks for them, so a long video is never held
        whole); ``on_progress(stage, step, total)`` as it goes."""
        s = self.settings
        common = dict(fps=s["fps"], steps=s["steps"], guidance=s["guidance"], seed=s["seed"],
                      scheduler=s["scheduler"], interpolate=s["interpolate"], upscale=s["upscale"], progress=False,
                      on_progress=on_progress)
        if self.kind == "generate":
            return pipe(s["prompt"], num_frames=s["num_frames"], context_frames=s["context_frames"], stream=True,
                        **common)
        if self.kind == "animate":
            return pipe.animate(self.source, prompt=s["prompt"], num_frames=s["num_frames"], anchor=s["anchor"],
                                source=s["source"], stream=True, **common)
        if self.kind == "vary":  # one variation per job: variation i of `magicvideo vary` is seed + i
            return pipe.vary(self.source, n=1, strength=s["strength"], source=s["source"], **common)[0]
        return pipe.edit(self.source, s["prompt"], strength=s["strength"], source=s["source"], **common)


# one upload decoded at a time: a small, highly compressed video may decode to up to DECODE_BUDGET
# bytes of frames, so parallel requests must not multiply that
_DECODING = threading.BoundedSemaphore(1)


def _decode(upload: Upload, reader: Callable):
    with _DECODING:
        return upload.decode(reader)


def resolve(pipe, raw: Mapping[str, Any], upload: Upload | None = None) -> JobSpec:
    """A request's fields (and upload) -> a JobSpec, or RequestError with the CLI's message."""
    from ..video_io import read_image

    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; a job takes {', '.join(FIELDS)}")
    kind = _value("kind", raw.get("kind")) or "generate"
    if kind not in KINDS:
        raise RequestError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    v = {name: _value(name, raw.get(name)) for name in FIELDS}
    for name in raw:
        if kind not in FIELDS[name].kinds and v[name] is not None:
            raise RequestError(f"{kind} does not take {name!r}")
    wanted = UPLOADS.get(kind)
    if wanted and upload is None:
        raise RequestError(f"{kind} needs {wanted} upload (multipart field {SOURCE_FIELD!r})")
    if not wanted and upload is not None:
        raise RequestError(f"{kind} takes no upload")
    prompt = v["prompt"]  # None: not given (animate: no text condition; vary takes none)
    if (prompt is None and kind in ("generate", "edit")) or (prompt is not None and not prompt.strip()):
        raise RequestError("prompt is empty")  # as the CLI, before any file is read

    def check(request_prompt: str, num_frames: int, fps, image_condition: bool = False) -> dict:
        """The pipeline's own resolution and checks: (fps, steps, guidance, scheduler, interpolate, upscale)."""
        try:
            return dataclasses.asdict(pipe.resolve(
                request_prompt, num_frames, fps, v["steps"], v["guidance"], v["scheduler"], v["interpolate"],
                v["upscale"], v["context_frames"],
                default_guidance=pipe.defaults.image_guidance if image_condition else None, seed=seed))
        except ValueError as err:
            raise RequestError(str(err)) from None

    seed = 0 if v["seed"] is None else v["seed"]
    settings: dict[str, Any] = {"kind": kind, "prompt": prompt, "seed": seed}
    source = None
    if kind == "generate":
        num_frames = v["num_frames"] or DEFAULT_NUM_FRAMES
        settings.update(check(prompt, num_frames, v["fps"]), num_frames=num_frames, context_frames=v["context_frames"])
    elif kind == "animate":
        num_frames = v["num_frames"] or DEFAULT_NUM_FRAMES
        settings.update(check("image" if prompt is None else prompt, num_frames, v["fps"], image_condition=True),
                        num_frames=num_frames, anchor=True if v["anchor"] is None else v["anchor"],
                        source=upload.name)
        source = _fit(_decode(upload, read_image)[None], pipe.frame_size, upload.name)[0]
    else:
        frames, source_fps = _decode(upload, _read_video_bounded)
        fps = source_fps if v["fps"] is None else v["fps"]  # the source's own rate drives the fps embedding
        default_strength = pipe.defaults.vary_strength if kind == "vary" else pipe.defaults.edit_strength
        strength = default_strength if v["strength"] is None else v["strength"]
        settings.update(check("video" if kind == "vary" else prompt, len(frames), fps, image_condition=kind == "vary"),
                        num_frames=len(frames), source=upload.name, strength=float(strength))
        source = _fit(frames, pipe.frame_size, upload.name)
    return JobSpec(kind, settings, source)
