"""The ``magicvideo`` command line.

Every user error (bad option, bad file, bad prompt) is one line on stderr and exit code 2,
checked before any expensive work starts; nothing is half-written. Every number is checked
for finiteness and range before a model loads. SIGTERM (``timeout``, schedulers, container
stops) ends a command like Ctrl-C: one line, exit 143 (130 for Ctrl-C), no temporary left.

Existing outputs (OVERWRITE_POLICY below, also in ``--help``): refused unless ``--overwrite``.

Why ~750 lines in one file: it is the whole boundary — the value types and pre-load checks
(also used by ``magicvideo serve``), one thin ``cmd_*`` per subcommand and the argparse tree
(~220 lines of flags and help); nothing here computes, so it reads top to bottom as the list of
what a user may type.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys

from . import __version__
from .sampling import MAX_GUIDANCE


OVERWRITE_POLICY = (
    "Existing outputs are never replaced silently: a command that writes (generate, animate, vary, edit, "
    "train, cache-latents, evaluate --out) refuses an output that exists unless --overwrite is given, and "
    "checks that the output's folder accepts a new file before any compute. train -o on a folder holding a "
    "run needs --resume (continue) or --overwrite (start again); a non-empty folder that is not a run is "
    "refused. edit and vary never write over their input video, --overwrite or not. A .png output is a frame "
    "sequence NAME_0000.png ...: with --overwrite it replaces every frame of an earlier sequence of that name "
    "(none is left behind), without it any existing frame of the sequence is refused.")
SAMPLING_SEED_BITS = 63  # torch seeds are 64-bit; windows and variations add their index to the seed
TRAINING_SEED_BITS = 32  # training derives per-step seeds as seed * 1_000_003 + step + ...
MAX_KEYFRAMES = 1024  # = pipeline.MAX_KEYFRAMES, here so that the check costs no torch import


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(low: int, high: int):
    """An integer option in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value

    return parse


_positive_int = _int_in(1, 10**9)
_nonnegative_int = _int_in(0, 10**9)


def _seed(bits: int):
    """A seed: an integer 0 <= seed < 2**bits."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not 0 <= value < 2**bits:
            raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**{bits} - 1, got {value}")
        return value

    return parse


def _float_above(minimum: float, strict: bool, maximum: float = math.inf):
    """A finite number above ``minimum`` (``strict``: not equal to it), at most ``maximum``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    return parse


_positive_float = _float_above(0.0, strict=True)
_nonnegative_float = _float_above(0.0, strict=False)
_guidance = _float_above(0.0, strict=False, maximum=MAX_GUIDANCE)


def _fps(text: str) -> float:
    """A frame rate a video file carries faithfully (``video_io.MIN_FPS`` to ``MAX_FPS``)."""
    from .video_io import MAX_FPS, MIN_FPS

    value = _positive_float(text)
    if not MIN_FPS <= value <= MAX_FPS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_FPS:g} and {MAX_FPS:g} frames per second, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _nonnegative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` (an argparse type) -> (key, value), the value read as JSON (``6``, ``2.5``) or as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw  # a plain string: temporal_conv_op=conv1d


def _strength(text: str) -> float:
    value = _nonnegative_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def cmd_info(args: argparse.Namespace) -> int:
    from .config import get_preset
    from .info import describe, format_report

    if args.pipeline is not None:  # what the pipeline's prompts can name (vocabulary.json)
        from .info import format_vocabulary, read_vocabulary

        vocab = read_vocabulary(args.pipeline)
        print(json.dumps(vocab, indent=1, ensure_ascii=False) if args.json else format_vocabulary(vocab))
        return 0
    report = describe(get_preset(args.preset), frames=args.frames, resolution=args.resolution)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _load_pipeline(args: argparse.Namespace):
    """The pipeline of a generating command, with its stage settings (``--sr-steps``) applied."""
    import dataclasses

    from .pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    if args.sr_steps is not None:
        pipe.defaults = dataclasses.replace(pipe.defaults, sr_steps=args.sr_steps)
    return pipe


def _step_caching(pipe, args: argparse.Namespace):
    """``--step-cache THRESHOLD``: the keyframe U-Net forecasts its deep features from earlier
    steps while its first level's output stays within THRESHOLD of its own forecast
    (``VideoUNet.step_cache``; faster, no longer exact); without it a block that changes nothing."""
    import contextlib

    return contextlib.nullcontext() if args.step_cache is None else pipe.unet.step_cache(args.step_cache)


def _stage_flags(args: argparse.Namespace) -> dict:
    """The sampling options every generating command shares, as pipeline keyword arguments."""
    return dict(fps=args.fps, steps=args.steps, guidance=args.guidance, seed=args.seed, scheduler=args.scheduler,
                progress=not args.quiet, interpolate=False if args.no_interpolate else None,
                upscale=False if args.no_upscale else None)


FPS_FACTOR = 4  # = interpolate.FPS_FACTOR: the interpolation stage's output runs at 4x the keyframes' fps


def _pipeline_facts(args: argparse.Namespace) -> dict:
    """What the checks before loading need from the pipeline, read from its JSON files (no
    torch): schedule length, default fps, interpolation stage, keyframe window. Its numbers
    are checked here (finite, in range; the error names the file and key); a missing or
    malformed file is left to the loader, whose error names it."""
    from pathlib import Path

    from .config import config_from_dict
    from .files import check_json_numbers
    from .sampling import SamplingOptions, check_schedule_length

    path = Path(args.pipeline) if args.pipeline else Path(__file__).parent / "weights" / "default"
    spec_file = path / "pipeline.json"
    try:
        spec = json.loads(spec_file.read_text())
        keyframe_file = path / str(spec["stages"]["keyframe"]) / "config.json"
        keyframe = json.loads(keyframe_file.read_text())
        defaults = spec.get("defaults") or {}
        interpolation = "interpolation" in spec["stages"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    check_json_numbers(spec, str(spec_file))
    check_json_numbers(keyframe, str(keyframe_file))
    options = config_from_dict(SamplingOptions, defaults, source=f"{spec_file}: defaults")  # the loader's check
    timesteps = check_schedule_length(spec, "schedule", str(spec_file))
    window = keyframe.get("max_frames", 16)
    if not isinstance(window, int) or isinstance(window, bool):
        return {}  # the model loader names it
    return {"timesteps": timesteps, "fps": options.fps, "window": window, "interpolation": interpolation}


def _check_sampling(args: argparse.Namespace, num_frames: int) -> None:
    """The numbers that depend on the pipeline, before it loads: --steps within its noise
    schedule, --context-frames within its window, and the frame rate of the file written (the
    interpolation stage multiplies it by 4) one a video can carry."""
    from pathlib import Path

    from .video_io import MAX_FPS, MAX_GIF_FPS, MIN_FPS

    facts = _pipeline_facts(args)
    if not facts:
        return
    if args.steps is not None and args.steps > facts["timesteps"]:
        raise ValueError(f"--steps must be at most {facts['timesteps']} (the noise schedule's length), "
                         f"got {args.steps}")
    context = getattr(args, "context_frames", None)
    if context is not None and context >= facts["window"]:
        raise ValueError(f"--context-frames must be below the model's window of {facts['window']} frames, "
                         f"got {context}")
    fps = args.fps if args.fps is not None else float(facts["fps"])
    interpolates = facts["interpolation"] and not args.no_interpolate and num_frames >= 2
    out = fps * FPS_FACTOR if interpolates else fps
    gif = Path(args.output).suffix.lower() == ".gif"
    high = MAX_GIF_FPS if gif else MAX_FPS
    if not MIN_FPS <= out <= high:
        how = f" ({fps:g} fps x {FPS_FACTOR} by the interpolation stage)" if interpolates else ""
        raise ValueError(f"the output would play at {out:g} fps{how}; {'a GIF' if gif else 'a video'} plays "
                         f"{MIN_FPS:g} to {high:g} fps: choose another --fps"
                         f"{' or pass --no-interpolate' if interpolates else ''}")


def _warn_if_prompt_cut(encoder, prompt: str | None, command: str) -> None:
    """One line on stderr when the text encoder reads only the first ``max_length`` tokens."""
    limit, tokenizer = getattr(encoder, "max_length", None), getattr(encoder, "tokenizer", None)
    if not prompt or limit is None or tokenizer is None:
        return
    count = len(tokenizer(prompt)["input_ids"])
    if count > limit:
        print(f"magicvideo {command}: warning: the prompt is {count} tokens long; it was cut at {limit} tokens "
              f"(the text encoder's limit), the rest is not read", file=sys.stderr)


def _refuse_input_as_output(source: str, outputs: list) -> None:
    """edit and vary never write over their source video, --overwrite or not."""
    import os
    import re
    from pathlib import Path

    src = Path(source).resolve()
    for out in map(Path, outputs):
        same = out.resolve() == src or (out.exists() and src.exists() and os.path.samefile(out, src))
        frame = out.suffix.lower() == ".png" and src.parent == out.resolve().parent and \
            re.fullmatch(rf"{re.escape(out.stem)}_\d{{4,}}\.png", src.name)
        if same or frame:
            raise ValueError(f"{out}: is the input video {source}; write the result to another file")


def _write(args: argparse.Namespace, video, path, start: float) -> None:
    """Write ``video`` (a ``VideoOutput``, or a ``VideoStream`` computed here, window by window,
    as its frames are written: a long video never sits whole in memory)."""
    from .video_io import write_video

    path = write_video(video.frames, path, fps=video.fps, overwrite=args.overwrite)
    t, h, w, _ = video.frames.shape
    if not args.quiet:
        import time

        print(f"wrote {path} ({t} frames, {w}x{h}, {video.fps:g} fps) in {time.time() - start:.1f} s")


def cmd_generate(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path

    if not args.prompt.strip():
        raise ValueError("prompt is empty")
    check_output_path(args.output, overwrite=args.overwrite)
    _check_sampling(args, args.num_frames)
    start = time.time()
    pipe = _load_pipeline(args)
    _warn_if_prompt_cut(pipe.encoder, args.prompt, args.command)
    with _step_caching(pipe, args):  # the frames are computed while they are written
        video = pipe(args.prompt, num_frames=args.num_frames, context_frames=args.context_frames, stream=True,
                     **_stage_flags(args))
        _write(args, video, args.output, start)
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path, read_image

    if args.prompt is not None and not args.prompt.strip():
        raise ValueError("prompt is empty")
    check_output_path(args.output, overwrite=args.overwrite)
    _check_sampling(args, args.num_frames)
    start = time.time()
    image = read_image(args.image)
    pipe = _load_pipeline(args)
    _warn_if_prompt_cut(pipe.encoder, args.prompt, args.command)
    with _step_caching(pipe, args):  # the frames are computed while they are written
        video = pipe.animate(image, prompt=args.prompt, num_frames=args.num_frames, anchor=not args.no_anchor,
                             source=args.image, stream=True, **_stage_flags(args))
        _write(args, video, args.output, start)
    return 0


def _read_source_video(args: argparse.Namespace):
    from .video_io import read_video

    frames, fps = read_video(args.video, max_frames=MAX_KEYFRAMES + 1)
    if len(frames) > MAX_KEYFRAMES:
        raise ValueError(f"{args.video}: more than {MAX_KEYFRAMES} frames (every frame is a keyframe); cut it first")
    if args.fps is None:
        args.fps = fps  # the source's own frame rate drives the fps embedding
    _check_sampling(args, len(frames))
    return frames


def variation_paths(output: str, n: int) -> list:
    """-o out.mp4 with n > 1 -> out_0.mp4 ... out_{n-1}.mp4."""
    from pathlib import Path

    path = Path(output)
    return [path] if n == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(n)]


def cmd_vary(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path

    paths = variation_paths(args.output, args.n)
    _refuse_input_as_output(args.video, paths)
    for path in paths:
        check_output_path(path, overwrite=args.overwrite)
    if args.seed + args.n > 2**SAMPLING_SEED_BITS:
        raise ValueError(f"--seed {args.seed} + -n {args.n}: the variations' seeds pass 2**{SAMPLING_SEED_BITS}")
    start = time.time()
    frames = _read_source_video(args)
    pipe = _load_pipeline(args)
    with _step_caching(pipe, args):
        videos = pipe.vary(frames, n=args.n, strength=args.strength, source=args.video, **_stage_flags(args))
    for video, path in zip(videos, paths):
        _write(args, video, path, start)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path

    if not args.prompt.strip():
        raise ValueError("prompt is empty")
    _refuse_input_as_output(args.video, [args.output])
    check_output_path(args.output, overwrite=args.overwrite)
    start = time.time()
    frames = _read_source_video(args)
    pipe = _load_pipeline(args)
    _warn_if_prompt_cut(pipe.encoder, args.prompt, args.command)
    with _step_caching(pipe, args):
        video = pipe.edit(frames, args.prompt, strength=args.strength, source=args.video, **_stage_flags(args))
    _write(args, video, args.output, start)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .metrics import evaluate_videos, load_feature_net, read_video_set, shapes_benchmark

    if args.out is not None:
        from .files import prepare_output

        out = Path(args.out)
        if out.suffix != ".json" or not out.parent.is_dir():
            raise ValueError(f"{out}: --out must be a .json file in an existing folder")
        prepare_output(out, args.overwrite)
    fid_net = load_feature_net(args.fid_net, "--fid-net") if args.fid_net else None
    fvd_net = load_feature_net(args.fvd_net, "--fvd-net") if args.fvd_net else None
    from .models.encoders import load_encoder
    from .pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    encoder = load_encoder(args.clip) if args.clip else pipe.encoder
    if args.generated is None:
        generated, prompts, reference = shapes_benchmark(pipe, args.num_videos, args.seed, progress=not args.quiet)
    else:
        generated, prompts = read_video_set(args.generated, pipe.frame_size)
        reference = None
    if args.reference is not None:
        reference = read_video_set(args.reference, pipe.frame_size)[0]
    if fid_net is None and fvd_net is None:
        print("magicvideo evaluate: no feature networks given (--fid-net, --fvd-net), so no FID or FVD; "
              "fid_shapes and fvd_shapes are Frechet distances on the pipeline's image tower", file=sys.stderr)
    report = evaluate_videos(generated, prompts, reference, encoder, fid_net, fvd_net)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        from .models.io import atomic_file

        with atomic_file(out, overwrite=args.overwrite) as tmp:
            tmp.write_text(text + "\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from .files import check_run_directory, probe_folder_for, remove_path

    first_process = os.environ.get("RANK", "0") == "0"  # under torchrun rank 0 alone owns the folder
    if first_process:
        check_run_directory(args.output, args.resume, args.overwrite)
        probe_folder_for(args.output)
    if args.unet:
        from .config import VideoUNetConfig
        from .models.io import check_config_values

        check_config_values(VideoUNetConfig, dict(args.unet), "--unet")
    from .diffusion import NoiseSchedule
    from .stages import StageOptions, build_stage, resolve_device
    from .train import TrainConfig, distributed_context, train

    options = StageOptions(preset=args.preset, seed=args.seed, condition=args.condition, vae=args.vae,
                           encoder=args.encoder, init_from=args.init_from, init_image_from=args.init_image_from,
                           pool_clips=args.pool_clips, object_weight=args.object_weight, align_weight=args.align_weight,
                           pool_cache=args.pool_cache, domain=args.domain, data=args.data, strides=tuple(args.strides),
                           latent_cache=args.latent_cache, gradient_checkpointing=args.gradient_checkpointing,
                           num_frames=args.num_frames, device=args.device, unet_overrides=tuple(args.unet),
                           schedule=NoiseSchedule(frame_noise_correlation=args.frame_noise_correlation))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every,
                      sample_every=args.sample_every, warmup_steps=min(100, args.steps // 10),
                      micro_batches=args.micro_batches, mixed_precision=args.mixed_precision,
                      compile=args.compile, stop_at=args.stop_at)
    try:
        rank, _ = distributed_context(resolve_device(args.device))  # under torchrun: one process per GPU / CPU share
        stage = build_stage(args.stage, options)
        if first_process:  # --overwrite: the old run goes only once the new one could be built
            for old in check_run_directory(args.output, args.resume, args.overwrite):
                remove_path(old)
        final = train(stage, cfg, args.output, resume=args.resume, progress=not args.quiet)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(f"stage {args.stage}: model written to {final}")
    return 0


def cmd_cache_latents(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .files import OVERWRITE_HINT, probe_folder_for

    out = Path(args.output)
    if out.exists() or out.is_symlink():
        if not args.overwrite:
            raise ValueError(f"{out}: already exists (a cache is written once); {OVERWRITE_HINT}")
        if not out.is_dir() or (any(out.iterdir()) and not (out / "cache.json").is_file()):
            raise ValueError(f"{out}: not a latent cache (no cache.json); --overwrite replaces only a cache")
    probe_folder_for(out)
    from .data.video_folder import CAPTION_FILES
    from .latent_cache import write_latent_cache
    from .models.encoders import load_encoder
    from .stages import StageOptions, load_vae, training_dataset

    options = StageOptions(preset=args.preset, seed=args.seed, domain=args.domain, data=args.data,
                           strides=tuple(args.strides), num_frames=args.num_frames)
    labeled = args.data is None or any((Path(args.data) / n).is_file() for n in CAPTION_FILES)
    data = training_dataset(options, num_frames=args.num_frames, labeled=labeled)
    vae = load_vae(args.vae).eval()  # as in training: our model directory or SD VAE weights
    encoder = load_encoder(args.encoder).eval()
    source = {"data": args.data or args.domain, "strides": args.strides, "num_frames": args.num_frames,
              "seed": args.seed, "vae": args.vae, "encoder": args.encoder}
    out = write_latent_cache(args.output, data, args.clips, vae, encoder, source=source, shard_clips=args.shard_clips,
                             batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
    if getattr(data, "skipped", None):
        print(data.report(), file=sys.stderr)
    print(f"{args.clips} clips cached in {out}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .ship import ship_pipeline

    target = ship_pipeline(args.run, args.target, base=args.base, walls=dict(args.wall),
                           keep_previous=args.keep_previous)
    stages = sorted(json.loads((Path(target) / "pipeline.json").read_text())["stages"])
    print(f"pipeline written to {target}: stages {stages}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.command import serve

    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    from .config import CONDITIONS, DOMAINS, PRESETS, SCHEDULERS, STAGES
    from .sampling import SamplingOptions

    defaults = SamplingOptions()  # those of a pipeline.json without "defaults", and the shipped one's

    parser = _Parser(prog="magicvideo", description="MagicVideo text-to-video latent diffusion",
                     epilog=OVERWRITE_POLICY)
    parser.add_argument("--version", action="version", version=f"magicvideo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="parameter counts and FLOPs of a preset (built on the meta device)")
    info.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    info.add_argument("--frames", type=_int_in(1, MAX_KEYFRAMES), default=16, help="frames per step (default 16)")
    info.add_argument("--resolution", type=_int_in(8, 8192), default=None,
                      help="video height/width in pixels (default: the preset's, 64 tiny / 256 sd15)")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.add_argument("--pipeline", default=None,
                      help="print this pipeline directory's vocabulary (vocabulary.json: sprites, backgrounds, motions)")
    info.set_defaults(func=cmd_info)

    def sampling_flags(p: argparse.ArgumentParser, fps_default: str) -> None:
        p.add_argument("-o", "--output", required=True, help="output file: .mp4, .gif, or .png (frame sequence)")
        p.add_argument("--seed", type=_seed(SAMPLING_SEED_BITS), default=0,
                       help="0 to 2**63 - 1 (default %(default)s)")
        p.add_argument("--fps", type=_fps, default=None,
                       help=f"frame rate the motion is generated at (default: {fps_default})")
        p.add_argument("--steps", type=_positive_int, default=None,
                       help=f"denoising steps (default: the pipeline's, {defaults.steps})")
        p.add_argument("--guidance", type=_guidance, default=None,
                       help=f"classifier-free guidance scale (default: the pipeline's, {defaults.guidance:g} for a "
                            f"prompt, {defaults.image_guidance:g} for an image condition: animate, vary)")
        p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                       help=f"sampler: DDIM or DPM-Solver++ (default: the pipeline's, {defaults.scheduler})")
        p.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped tiny model)")
        p.add_argument("--no-interpolate", action="store_true",
                       help="skip frame interpolation (output: the keyframes at --fps)")
        p.add_argument("--no-upscale", action="store_true", help="skip super-resolution (output at the VAE's size)")
        p.add_argument("--sr-steps", type=_positive_int, default=None,
                       help=f"super-resolution denoising steps (default: the pipeline's, {defaults.sr_steps}; 6 "
                            f"reproduces the shipped default's videos made before 2026-12-02)")
        p.add_argument("--step-cache", type=_float_above(0.0, strict=False), default=None, metavar="THRESHOLD",
                       help="forecast the keyframe U-Net's deep features from its last computed steps while the "
                            "first level's output stays within THRESHOLD of its own forecast (relative L1; 0.05: "
                            "about 1.35x faster keyframes, 49 dB from the exact ones, benchmarks/step_cache.py); "
                            "default: off, exact")
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing output (default: refuse; a .png sequence is replaced whole)")
        p.add_argument("-q", "--quiet", action="store_true")

    gen = sub.add_parser("generate", help="generate a video from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--num-frames", type=_int_in(1, MAX_KEYFRAMES), default=16,
                     help="keyframes (default %(default)s); interpolation makes 4n-3 output frames. Above the "
                          "model's 16, a long video is made in windows, each written to the output as it is done "
                          "(memory stays flat in the length; a .gif is held whole to the end)")
    gen.add_argument("--context-frames", type=_int_in(1, MAX_KEYFRAMES), default=None,
                     help="long videos: frames each window continues from (default: half a window)")
    sampling_flags(gen, f"the pipeline's, {defaults.fps:g}")
    gen.set_defaults(func=cmd_generate)

    ani = sub.add_parser("animate", help="image-to-video: animate an image (optionally guided by a prompt)")
    ani.add_argument("image", help="image file (png, jpg, ...); centre-cropped and resized to the model's size")
    ani.add_argument("--prompt", default=None, help="text condition added to the image's")
    ani.add_argument("--num-frames", type=_int_in(1, MAX_KEYFRAMES), default=16,
                     help="keyframes (default %(default)s)")
    ani.add_argument("--no-anchor", action="store_true", help="do not hold the first frame to the image")
    sampling_flags(ani, f"the pipeline's, {defaults.fps:g}")
    ani.set_defaults(func=cmd_animate)

    var = sub.add_parser("vary", help="video variations: N videos with the content of VIDEO")
    var.add_argument("video", help="source video (every frame a keyframe; longer than the model's 16 in windows)")
    var.add_argument("-n", type=_positive_int, default=4, help="variations to make (default %(default)s); -o out.mp4 "
                     "writes out_0.mp4 ... when n > 1")
    var.add_argument("--strength", type=_strength, default=None,
                     help=f"how far each variation departs from the source, 0-1 (default: the pipeline's, "
                          f"{defaults.vary_strength:g})")
    sampling_flags(var, "the source's")
    var.set_defaults(func=cmd_vary)

    ed = sub.add_parser("edit", help="video editing (SDEdit): re-render VIDEO under a new prompt")
    ed.add_argument("video", help="source video (every frame a keyframe; longer than the model's 16 in windows)")
    ed.add_argument("prompt", help="the new prompt")
    ed.add_argument("--strength", type=_strength, default=None,
                    help=f"noise level to restart from, 0 (keep the source) - 1 (ignore it); default: the "
                         f"pipeline's, {defaults.edit_strength:g}")
    sampling_flags(ed, "the source's")
    ed.set_defaults(func=cmd_edit)

    ev = sub.add_parser("evaluate", help="FID / FVD / CLIPSIM of generated videos (default: a shapes benchmark "
                                         "of the pipeline)")
    ev.add_argument("generated", nargs="?", default=None,
                    help="folder of generated videos (captions.csv/.jsonl for prompts); default: generate "
                         "--num-videos shapes videos and compare them with rendered clips")
    ev.add_argument("--reference", default=None, help="folder of reference (real) videos for FID / FVD")
    ev.add_argument("--fid-net", default=None, help="TorchScript image feature network (e.g. inception-2015-12-05.pt)")
    ev.add_argument("--fvd-net", default=None, help="TorchScript video feature network (e.g. i3d_torchscript.pt)")
    ev.add_argument("--clip", default=None, help="transformers CLIP directory for CLIPSIM (default: the pipeline's "
                                                 "encoder)")
    ev.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped tiny model)")
    ev.add_argument("--num-videos", type=_int_in(1, 100_000), default=32, help="shapes benchmark size (default 32)")
    ev.add_argument("--seed", type=_seed(TRAINING_SEED_BITS), default=0)
    ev.add_argument("--out", default=None, help="also write the report to this .json file")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out file (default: refuse)")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("train", help="train one stage (checkpoints, metrics and samples go to --output)")
    tr.add_argument("--stage", choices=STAGES, required=True)
    tr.add_argument("-o", "--output", required=True, help="run directory")
    tr.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    tr.add_argument("--condition", choices=CONDITIONS, default="text",
                    help="keyframe stage: image = unsupervised pretraining, text = finetuning")
    tr.add_argument("--vae", default=None, help="trained VAE model directory (videovae and keyframe stages)")
    tr.add_argument("--encoder", default=None, help="trained LiT encoder or CLIP directory (keyframe stage)")
    tr.add_argument("--init-from", default=None, help="initial weights: a U-Net (our model dir or an SD folder/file); for the vae "
                         "stage a trained VAE whose decoder is finetuned (encoder and latents kept); for "
                         "the sr stage a trained SR model")
    tr.add_argument("--init-image-from", default=None,
                    help="keyframe stage: a fresh U-Net (with any --unet changes) whose image part "
                         "(all but the frame operators, temporal attention, fps and condition embeddings) comes from "
                         "this VideoUNet directory, e.g. one trained with temporal_conv_op=none and "
                         "temporal_attention=none as a text-to-image model; the video part starts at identity/zero")
    tr.add_argument("--domain", choices=DOMAINS, default="shapes",
                    help="procedural training data: shapes, or sprites (named emoji over photos; needs the Noto "
                         "Color Emoji font, see docs/sprites.md)")
    tr.add_argument("--data", default=None,
                    help="train on a folder of videos (captions.csv/.jsonl for captioned stages) instead of "
                         "the shapes domain")
    tr.add_argument("--strides", type=_positive_int, nargs="+", default=[1, 2, 4],
                    help="--data: frame strides to sample clips at (clip fps = native fps / stride)")
    tr.add_argument("--latent-cache", default=None,
                    help="keyframe stage: train from a directory made by `magicvideo cache-latents`")
    tr.add_argument("--gradient-checkpointing", action="store_true",
                    help="U-Net stages: recompute activations in the backward pass (less memory, ~30%% more time)")
    tr.add_argument("--object-weight", type=_nonnegative_float, default=0.0,
                    help="keyframe stage: weight the loss 1+W on latent pixels off the frame's background "
                         "(on the shapes domain: the object, whose few latent pixels decide its shape)")
    tr.add_argument("--align-weight", type=_nonnegative_float, default=1.0,
                    help="lit stage: weight of the term pulling an image's embedding onto its caption's "
                         "(1 - cosine), beside the contrastive loss; 0 = plain LiT")
    tr.add_argument("--pool-clips", type=_nonnegative_int, default=0,
                    help="keyframe stage: encode this many clips once and sample batches from them")
    tr.add_argument("--pool-cache", default=None,
                    help="keyframe stage: directory keeping the encoded pool (latent-cache format; shared between stages)")
    tr.add_argument("--frame-noise-correlation", type=_fraction, default=0.0,
                    help="keyframe stage: share this fraction of the noise variance across frames (default 0)")
    tr.add_argument("--num-frames", type=_int_in(1, MAX_KEYFRAMES), default=16, help="frames per training clip")
    tr.add_argument("--unet", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="keyframe stage, fresh model: change a field of the preset's VideoUNetConfig, e.g. "
                         "temporal_conv_op=conv1d, attention_layout=sequential (repeatable; values as JSON)")
    tr.add_argument("--steps", type=_positive_int, default=1000)
    tr.add_argument("--batch-size", type=_positive_int, default=4)
    tr.add_argument("--lr", type=_float_above(0.0, strict=True, maximum=1.0), default=2e-4)
    tr.add_argument("--ema-decay", type=_fraction, default=0.999)
    tr.add_argument("--seed", type=_seed(TRAINING_SEED_BITS), default=0, help="0 to 2**32 - 1 (default 0)")
    tr.add_argument("--checkpoint-every", type=_positive_int, default=500)
    tr.add_argument("--stop-at", type=_positive_int, default=0, metavar="N",
                    help="end this run after step N (checkpoint and model written there) while the learning-rate "
                         "schedule spans --steps; --resume goes on from there (a job cut to fit a time limit)")
    tr.add_argument("--sample-every", type=_nonnegative_int, default=0)
    tr.add_argument("--micro-batches", type=_nonnegative_int, default=0,
                    help="cut each global batch into this many pieces (gradient accumulation); the default 0 "
                         "means one per process. Same value = same weights on any number of processes")
    tr.add_argument("--device", default="cpu",
                    help="cpu (default), cuda or cuda:N; under torchrun, cuda = each process's LOCAL_RANK GPU")
    tr.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                    help="bf16: forward/backward under bfloat16 autocast, float32 weights and optimizer")
    tr.add_argument("--compile", action="store_true", help="torch.compile the trained model (GPU; slow first step)")
    tr.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    tr.add_argument("--overwrite", action="store_true",
                    help="OUTPUT holds a run: start it again from step 0 (its checkpoint, model, samples and "
                         "metrics are removed); default: refuse")
    tr.add_argument("-q", "--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    cache = sub.add_parser("cache-latents", help="encode a dataset once (VAE latents, image conditions, captions) "
                                                 "for the keyframe stages")
    cache.add_argument("-o", "--output", required=True, help="cache directory to create")
    cache.add_argument("--vae", required=True, help="trained VAE model directory or SD weights")
    cache.add_argument("--encoder", default=None, help="trained LiT encoder or CLIP directory")
    cache.add_argument("--domain", choices=DOMAINS, default="shapes", help="procedural domain: shapes or sprites")
    cache.add_argument("--data", default=None, help="a video folder (default: the --domain's procedural clips)")
    cache.add_argument("--strides", type=_positive_int, nargs="+", default=[1, 2, 4])
    cache.add_argument("--clips", type=_positive_int, default=1000, help="clips to encode (the first N of the stream)")
    cache.add_argument("--num-frames", type=_int_in(1, MAX_KEYFRAMES), default=16)
    cache.add_argument("--shard-clips", type=_positive_int, default=256, help="clips per safetensors shard")
    cache.add_argument("--batch-size", type=_positive_int, default=16)
    cache.add_argument("--workers", type=_int_in(0, 256), default=0, help="DataLoader workers decoding videos")
    cache.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    cache.add_argument("--seed", type=_seed(TRAINING_SEED_BITS), default=0)
    cache.add_argument("--overwrite", action="store_true", help="replace an existing cache (default: refuse)")
    cache.add_argument("-q", "--quiet", action="store_true")
    cache.set_defaults(func=cmd_cache_latents)

    ship = sub.add_parser("ship", help="assemble a pipeline directory from the model directories of a training run")
    ship.add_argument("run", help="run directory: STAGE/model for vae, lit, keyframe(_cond/_object), vae_decoder, "
                                  "videovae, interpolation, sr (see magicvideo/ship.py)")
    ship.add_argument("target", help="pipeline directory to write (replaced atomically; may be the base)")
    ship.add_argument("--base", default=None, help="pipeline giving the stages RUN lacks")
    ship.add_argument("--wall", type=key_value, action="append", default=[], metavar="KEY=SECONDS",
                      help="a wall-clock figure to record in training_metrics.json (repeatable)")
    ship.add_argument("--keep-previous", action="store_true",
                      help="a stage RUN trained on top of an earlier run of the same stage (a second round): "
                           "keep the earlier record as STAGE_round1 (round2, ...) instead of replacing it")
    ship.set_defaults(func=cmd_ship)

    srv = sub.add_parser("serve", help="a local web studio and HTTP job API over one pipeline (the serve extra: "
                                       "pip install 'magicvideo[serve]')")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; any other needs --token)")
    srv.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free one)")
    srv.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped tiny model)")
    srv.add_argument("--outputs", default="magicvideo-outputs",
                     help="folder of the jobs' videos and settings, the gallery (default ./magicvideo-outputs)")
    srv.add_argument("--token", default=None,
                     help="a secret every API call must carry (Authorization: Bearer TOKEN; the page: open "
                          "/?token=TOKEN once); default: $MAGICVIDEO_TOKEN")
    srv.add_argument("--queue-size", type=_positive_int, default=16,
                     help="jobs that may wait behind the running one; more are refused with 429 (default 16)")
    srv.add_argument("--max-upload-mb", type=_positive_float, default=32.0,
                     help="largest request body, uploads included; larger is refused with 413 (default 32)")
    srv.add_argument("--device", default="cpu", help="device the pipeline runs on: cpu (default), cuda, cuda:N")
    srv.set_defaults(func=cmd_serve)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python is: whatever cleans up after Ctrl-C cleans up after it."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return args.func(args)
    except ValueError as err:
        print(f"magicvideo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"magicvideo {args.command}: terminated (SIGTERM); nothing half-written was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"magicvideo {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the disk, not the input: full, gone, read-only after the checks
        where = f"{err.filename}: " if err.filename else ""
        print(f"magicvideo {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
