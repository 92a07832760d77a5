"""The ``magicvideo`` command line.

Every user error (bad option, bad file, bad prompt) is one line on stderr and exit code 2,
checked before any expensive work starts; nothing is half-written.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float_above(minimum: float, strict: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum or (strict and value == minimum) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value

    return parse


_positive_float = _float_above(0.0, strict=True)
_nonnegative_float = _float_above(0.0, strict=False)


def _fraction(text: str) -> float:
    value = _nonnegative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value


def _key_value(text: str) -> tuple[str, object]:
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


def _stage_flags(args: argparse.Namespace) -> dict:
    """The sampling options every generating command shares, as pipeline keyword arguments."""
    return dict(fps=args.fps, steps=args.steps, guidance=args.guidance, seed=args.seed, scheduler=args.scheduler,
                progress=not args.quiet, interpolate=False if args.no_interpolate else None,
                upscale=False if args.no_upscale else None)


def _write(args: argparse.Namespace, video, path, start: float) -> None:
    from .video_io import write_video

    path = write_video(video.frames, path, fps=video.fps)
    t, h, w, _ = video.frames.shape
    if not args.quiet:
        import time

        print(f"wrote {path} ({t} frames, {w}x{h}, {video.fps:g} fps) in {time.time() - start:.1f} s")


def cmd_generate(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path

    if not args.prompt.strip():
        raise ValueError("prompt is empty")
    check_output_path(args.output)
    start = time.time()
    from .pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    video = pipe(args.prompt, num_frames=args.num_frames, context_frames=args.context_frames, **_stage_flags(args))
    _write(args, video, args.output, start)
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path, read_image

    if args.prompt is not None and not args.prompt.strip():
        raise ValueError("prompt is empty")
    check_output_path(args.output)
    start = time.time()
    image = read_image(args.image)
    from .pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    video = pipe.animate(image, prompt=args.prompt, num_frames=args.num_frames, anchor=not args.no_anchor,
                         source=args.image, **_stage_flags(args))
    _write(args, video, args.output, start)
    return 0


def _read_source_video(args: argparse.Namespace):
    from .video_io import read_video

    frames, fps = read_video(args.video)
    if args.fps is None:
        args.fps = fps  # the source's own frame rate drives the fps embedding
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
    for path in paths:
        check_output_path(path)
    start = time.time()
    frames = _read_source_video(args)
    from .pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    videos = pipe.vary(frames, n=args.n, strength=args.strength, source=args.video, **_stage_flags(args))
    for video, path in zip(videos, paths):
        _write(args, video, path, start)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    import time

    from .video_io import check_output_path

    if not args.prompt.strip():
        raise ValueError("prompt is empty")
    check_output_path(args.output)
    start = time.time()
    frames = _read_source_video(args)
    from .pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(args.pipeline)
    video = pipe.edit(frames, args.prompt, strength=args.strength, source=args.video, **_stage_flags(args))
    _write(args, video, args.output, start)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .metrics import evaluate_videos, load_feature_net, read_video_set, shapes_benchmark

    if args.out is not None:
        out = Path(args.out)
        if out.suffix != ".json" or not out.parent.is_dir():
            raise ValueError(f"{out}: --out must be a .json file in an existing folder")
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

        with atomic_file(out) as tmp:
            tmp.write_text(text + "\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .diffusion import NoiseSchedule
    from .stages import StageOptions, build_stage, resolve_device
    from .train import TrainConfig, distributed_context, train

    options = StageOptions(preset=args.preset, seed=args.seed, condition=args.condition, vae=args.vae,
                           encoder=args.encoder, init_from=args.init_from, init_image_from=args.init_image_from,
                           pool_clips=args.pool_clips, object_weight=args.object_weight, align_weight=args.align_weight,
                           pool_cache=args.pool_cache, data=args.data, strides=tuple(args.strides),
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

    from .data.video_folder import CAPTION_FILES
    from .latent_cache import write_latent_cache
    from .models.encoders import load_encoder
    from .stages import StageOptions, _dataset, _load_vae

    if Path(args.output).exists():
        raise ValueError(f"{args.output}: already exists (a cache is written once; remove it to rebuild)")
    options = StageOptions(preset=args.preset, seed=args.seed, data=args.data, strides=tuple(args.strides),
                           num_frames=args.num_frames)
    labeled = args.data is None or any((Path(args.data) / n).is_file() for n in CAPTION_FILES)
    data = _dataset(options, num_frames=args.num_frames, labeled=labeled)
    vae = _load_vae(args.vae).eval()  # as in training: our model directory or SD VAE weights
    encoder = load_encoder(args.encoder).eval()
    source = {"data": args.data or "shapes", "strides": args.strides, "num_frames": args.num_frames,
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
    from .config import CONDITIONS, PRESETS, SCHEDULERS, STAGES

    parser = _Parser(prog="magicvideo", description="MagicVideo text-to-video latent diffusion")
    parser.add_argument("--version", action="version", version=f"magicvideo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="parameter counts and FLOPs of a preset (built on the meta device)")
    info.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    info.add_argument("--frames", type=_positive_int, default=16, help="frames per step (default 16)")
    info.add_argument("--resolution", type=_positive_int, default=None,
                      help="video height/width in pixels (default: the preset's, 64 tiny / 256 sd15)")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.add_argument("--pipeline", default=None,
                      help="print this pipeline directory's vocabulary (vocabulary.json: sprites, backgrounds, motions)")
    info.set_defaults(func=cmd_info)

    def sampling_flags(p: argparse.ArgumentParser, fps_default: str) -> None:
        p.add_argument("-o", "--output", required=True, help="output file: .mp4, .gif, or .png (frame sequence)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--fps", type=_positive_float, default=None,
                       help=f"frame rate the motion is generated at (default: {fps_default})")
        p.add_argument("--steps", type=_positive_int, default=None, help="denoising steps (default 25)")
        p.add_argument("--guidance", type=_nonnegative_float, default=None,
                       help="classifier-free guidance scale (default: the pipeline's, 5 for a prompt, "
                            "2.5 for an image condition: animate, vary)")
        p.add_argument("--scheduler", choices=SCHEDULERS, default=None)
        p.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped tiny model)")
        p.add_argument("--no-interpolate", action="store_true",
                       help="skip frame interpolation (output: the keyframes at --fps)")
        p.add_argument("--no-upscale", action="store_true", help="skip super-resolution (output at the VAE's size)")
        p.add_argument("-q", "--quiet", action="store_true")

    gen = sub.add_parser("generate", help="generate a video from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--num-frames", type=_positive_int, default=16,
                     help="keyframes (default 16); interpolation makes 4n-3 output frames. Above the model's 16, "
                          "a long video is made in windows")
    gen.add_argument("--context-frames", type=_positive_int, default=None,
                     help="long videos: frames each window continues from (default: half a window)")
    sampling_flags(gen, "the pipeline's, 8")
    gen.set_defaults(func=cmd_generate)

    ani = sub.add_parser("animate", help="image-to-video: animate an image (optionally guided by a prompt)")
    ani.add_argument("image", help="image file (png, jpg, ...); centre-cropped and resized to the model's size")
    ani.add_argument("--prompt", default=None, help="text condition added to the image's")
    ani.add_argument("--num-frames", type=_positive_int, default=16, help="keyframes (default 16)")
    ani.add_argument("--no-anchor", action="store_true", help="do not hold the first frame to the image")
    sampling_flags(ani, "the pipeline's, 8")
    ani.set_defaults(func=cmd_animate)

    var = sub.add_parser("vary", help="video variations: N videos with the content of VIDEO")
    var.add_argument("video", help="source video (every frame a keyframe; longer than the model's 16 in windows)")
    var.add_argument("-n", type=_positive_int, default=4, help="variations to make (default 4); -o out.mp4 "
                     "writes out_0.mp4 ... when n > 1")
    var.add_argument("--strength", type=_strength, default=None,
                     help="how far each variation departs from the source, 0-1 (default: the pipeline's, 0.7)")
    sampling_flags(var, "the source's")
    var.set_defaults(func=cmd_vary)

    ed = sub.add_parser("edit", help="video editing (SDEdit): re-render VIDEO under a new prompt")
    ed.add_argument("video", help="source video (every frame a keyframe; longer than the model's 16 in windows)")
    ed.add_argument("prompt", help="the new prompt")
    ed.add_argument("--strength", type=_strength, default=None,
                    help="noise level to restart from, 0 (keep the source) - 1 (ignore it); default: the "
                         "pipeline's, 0.7")
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
    ev.add_argument("--num-videos", type=_positive_int, default=32, help="shapes benchmark size (default 32)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default=None, help="also write the report to this .json file")
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
    tr.add_argument("--data", default=None,
                    help="train on a folder of videos (captions.csv/.jsonl for captioned stages) instead of "
                         "the shapes domain")
    tr.add_argument("--strides", type=_positive_int, nargs="+", default=[1, 2, 4],
                    help="--data: frame strides to sample clips at (clip fps = native fps / stride)")
    tr.add_argument("--latent-cache", default=None,
                    help="keyframe stage: train from a directory made by `magicvideo cache-latents`")
    tr.add_argument("--gradient-checkpointing", action="store_true",
                    help="U-Net stages: recompute activations in the backward pass (less memory, ~30%% more time)")
    tr.add_argument("--object-weight", type=float, default=0.0,
                    help="keyframe stage: weight the loss 1+W on latent pixels off the frame's background "
                         "(on the shapes domain: the object, whose few latent pixels decide its shape)")
    tr.add_argument("--align-weight", type=float, default=1.0,
                    help="lit stage: weight of the term pulling an image's embedding onto its caption's "
                         "(1 - cosine), beside the contrastive loss; 0 = plain LiT")
    tr.add_argument("--pool-clips", type=int, default=0,
                    help="keyframe stage: encode this many clips once and sample batches from them")
    tr.add_argument("--pool-cache", default=None,
                    help="keyframe stage: directory keeping the encoded pool (latent-cache format; shared between stages)")
    tr.add_argument("--frame-noise-correlation", type=_fraction, default=0.0,
                    help="keyframe stage: share this fraction of the noise variance across frames (default 0)")
    tr.add_argument("--num-frames", type=_positive_int, default=16, help="frames per training clip")
    tr.add_argument("--unet", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="keyframe stage, fresh model: change a field of the preset's VideoUNetConfig, e.g. "
                         "temporal_conv_op=conv1d, attention_layout=sequential (repeatable; values as JSON)")
    tr.add_argument("--steps", type=_positive_int, default=1000)
    tr.add_argument("--batch-size", type=_positive_int, default=4)
    tr.add_argument("--lr", type=_positive_float, default=2e-4)
    tr.add_argument("--ema-decay", type=_nonnegative_float, default=0.999)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--checkpoint-every", type=_positive_int, default=500)
    tr.add_argument("--stop-at", type=_positive_int, default=0, metavar="N",
                    help="end this run after step N (checkpoint and model written there) while the learning-rate "
                         "schedule spans --steps; --resume goes on from there (a job cut to fit a time limit)")
    tr.add_argument("--sample-every", type=int, default=0)
    tr.add_argument("--micro-batches", type=int, default=0,
                    help="cut each global batch into this many pieces (gradient accumulation); the default 0 "
                         "means one per process. Same value = same weights on any number of processes")
    tr.add_argument("--device", default="cpu",
                    help="cpu (default), cuda or cuda:N; under torchrun, cuda = each process's LOCAL_RANK GPU")
    tr.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                    help="bf16: forward/backward under bfloat16 autocast, float32 weights and optimizer")
    tr.add_argument("--compile", action="store_true", help="torch.compile the trained model (GPU; slow first step)")
    tr.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    tr.add_argument("-q", "--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    cache = sub.add_parser("cache-latents", help="encode a dataset once (VAE latents, image conditions, captions) "
                                                 "for the keyframe stages")
    cache.add_argument("-o", "--output", required=True, help="cache directory to create")
    cache.add_argument("--vae", required=True, help="trained VAE model directory or SD weights")
    cache.add_argument("--encoder", default=None, help="trained LiT encoder or CLIP directory")
    cache.add_argument("--data", default=None, help="a video folder (default: the shapes domain)")
    cache.add_argument("--strides", type=_positive_int, nargs="+", default=[1, 2, 4])
    cache.add_argument("--clips", type=_positive_int, default=1000, help="clips to encode (the first N of the stream)")
    cache.add_argument("--num-frames", type=_positive_int, default=16)
    cache.add_argument("--shard-clips", type=_positive_int, default=256, help="clips per safetensors shard")
    cache.add_argument("--batch-size", type=_positive_int, default=16)
    cache.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding videos")
    cache.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    cache.add_argument("--seed", type=int, default=0)
    cache.add_argument("-q", "--quiet", action="store_true")
    cache.set_defaults(func=cmd_cache_latents)

    ship = sub.add_parser("ship", help="assemble a pipeline directory from the model directories of a training run")
    ship.add_argument("run", help="run directory: STAGE/model for vae, lit, keyframe(_cond/_object), vae_decoder, "
                                  "videovae, interpolation, sr (see magicvideo/ship.py)")
    ship.add_argument("target", help="pipeline directory to write (replaced atomically; may be the base)")
    ship.add_argument("--base", default=None, help="pipeline giving the stages RUN lacks")
    ship.add_argument("--wall", type=_key_value, action="append", default=[], metavar="KEY=SECONDS",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"magicvideo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"magicvideo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
