"""The paper's ablations on the shapes domain: same data, same steps, same seeds, one change each.

    python experiments/ablate.py [--steps 1200] [--pool-clips 2000] [--prompts 24] [--run runs/ablate]
                                 [--only baseline conv1d ...] [--out runs/ablate/results.json] [--base PIPELINE] [--seed 0]
                                 [--image-steps N] [--heldout-clips 64] [--with-base-model]

Every variant trains a fresh tiny keyframe VideoUNet on the shipped VAE and encoder: half the
steps unsupervised (image embeddings as proxy text), half on captions. With ``--image-steps N``
the variants start, as the paper's start from Stable Diffusion, from one text-to-image model:
the tiny preset without temporal layers (``temporal_conv_op=none``, ``temporal_attention=none``:
every frame an independent image) trained N steps on the captions of the same pool
(RUN/image_model), whose image part every variant takes (``--init-image-from``); the video
layers start at identity/zero. One thing changes:

  baseline        frame adaptor, directed temporal attention, parallel with spatial attention
  conv1d          1D temporal convolution after each shared 2D conv instead of the adaptor
  no_temporal_op  nothing after the shared 2D convs (temporal attention only)
  bidirectional   temporal attention sees all frames instead of the past ones
  sequential      temporal attention after spatial attention instead of in parallel
  no_pretraining  all the steps on captions (equal total steps)

Each model then generates keyframe videos for the same seen prompts and seeds, scored by the
shapes analyzer (color / shape / direction accuracy, jitter) and FVD-shapes against rendered
clips of the same combinations (``magicvideo.metrics``). Both are noisy at 24 videos, so each
model is also scored on fixed held-out clips (``magicvideo.metrics.denoising_loss``, the same
noisy inputs for every model): the mean denoising loss, and the order gap, the loss on the
clips played backwards under the same captions minus the loss in order, which is zero for a
model that does not use the direction a caption names. Per-clip values are kept, so variants
are compared paired on the same clips (mean +- standard error of the differences).

The encoded clip pool is shared by every run (RUN/pool). Runs are resumable: a variant whose
model exists is only re-evaluated (held-out losses; the generated videos' scores are kept from
RUN/results.json when there). Prints markdown tables (docs/ablations.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "baseline": [],
    "conv1d": ["temporal_conv_op=conv1d"],
    "no_temporal_op": ["temporal_conv_op=none"],
    "bidirectional": ["temporal_attention=bidirectional"],
    "sequential": ["attention_layout=sequential"],
    "no_pretraining": [],
}


IMAGE_MODEL = ["temporal_conv_op=none", "temporal_attention=none"]  # the text-to-image start of --image-steps


def unet_flags(overrides: list[str]) -> list[str]:
    """KEY=VALUE overrides -> ``--unet KEY=VALUE`` arguments of ``magicvideo train``."""
    return [x for override in overrides for x in ("--unet", override)]


def stage(run: Path, out: Path, condition: str, steps: int, extra: list[str], args, shipped: Path) -> Path:
    """One keyframe-stage run (skipped when its model exists, resumed from its checkpoint)."""
    if not (out / "model").is_dir():
        resume = ["--resume"] if (out / "checkpoint" / "state.json").is_file() else []
        cmd = [sys.executable, "-m", "magicvideo", "train", "--stage", "keyframe", "--condition", condition,
               "-o", str(out), "--steps", str(steps), "--pool-cache", str(run / "pool"), "--vae", str(shipped / "vae"),
               "--encoder", str(shipped / "encoder"), "--batch-size", "8", "--pool-clips", str(args.pool_clips),
               "--lr", "3e-4", "--seed", str(args.seed), "-q", *extra, *resume]
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return out / "model"


def train(run: Path, variant: str, args, shipped: Path, image: Path | None) -> Path:
    unet = unet_flags(VARIANTS[variant])
    if image is not None:
        unet += ["--init-image-from", str(image)]
    if variant == "no_pretraining":
        return stage(run, run / variant / "text", "text", args.steps, unet, args, shipped)
    half = args.steps // 2
    first = stage(run, run / variant / "image", "image", half, unet, args, shipped)
    return stage(run, run / variant / "text", "text", args.steps - half, ["--init-from", str(first)], args, shipped)


GENERATED = ("color_acc", "shape_acc", "direction_acc", "mean_jitter", "fvd_shapes", "fid_shapes")


def held_out_clips(base, count: int):
    """``count`` fixed clips of the training distribution that no pool draws from (their own
    seed), encoded with the base VAE, with caption tokens and fps: what denoising_loss takes."""
    import torch

    from magicvideo.data.synthetic import ShapesDataset

    data = ShapesDataset(num_frames=16, resolution=base.frame_size, split="train", seed=9001, length=count)
    items = [data[i] for i in range(count)]
    with torch.no_grad():
        latents = torch.cat([base.vae.encode(torch.stack([it["video"] for it in items[i : i + 16]]))
                             for i in range(0, count, 16)])
        cond = base.encoder.encode_text([it["caption"] for it in items])
    return latents, cond, torch.tensor([it["fps"] for it in items])


def evaluate(model: Path, args, base, clips, previous: dict) -> dict:
    """Held-out denoising loss, in order and reversed (per clip, for paired comparisons), and,
    unless ``previous`` has them from an earlier run of this script (same --prompts), the
    generated videos' analyzer scores and Frechet distances. ``base``: the loaded base pipeline
    (VAE, encoder, schedule, defaults)."""
    from magicvideo import VideoUNet
    from magicvideo.metrics import denoising_loss
    from magicvideo.pipeline import MagicVideoPipeline

    unet = VideoUNet.from_pretrained(model).eval()
    ahead = denoising_loss(unet, *clips, base.schedule).mean(1)
    back = denoising_loss(unet, *clips, base.schedule, reverse=True).mean(1)
    losses = {"heldout_loss": float(ahead.mean()), "order_gap": float((back - ahead).mean()),
              "heldout_loss_clips": ahead.round(6).tolist(), "order_gap_clips": (back - ahead).round(6).tolist()}
    if all(k in previous for k in GENERATED) and previous.get("prompts", 24) == args.prompts:
        return {**{k: previous[k] for k in GENERATED}, **losses, "prompts": args.prompts}
    return {**generate_and_score(MagicVideoPipeline(unet, base.vae, base.encoder, base.schedule, base.defaults), args),
            **losses, "prompts": args.prompts}


def generate_and_score(pipe, args) -> dict:
    import torch

    from magicvideo.analyzers.shapes import analyze_video, score
    from magicvideo.data.synthetic import SEEN, make_caption, parse_prompt, render_clip, spec_for
    from magicvideo.metrics import evaluate_videos

    rng = np.random.default_rng(1234)  # the same prompts, seeds and references for every variant
    combos = [SEEN[i] for i in rng.choice(len(SEEN), args.prompts, replace=False)]
    prompts = [make_caption(*c, rng) for c in combos]
    references = [render_clip(spec_for(*c, rng), 16, 8.0) for c in combos]
    torch.manual_seed(0)
    videos = [pipe(p, seed=i, progress=False, interpolate=False, upscale=False).frames for i, p in enumerate(prompts)]
    analyzer = score([analyze_video(v) for v in videos], [parse_prompt(p) for p in prompts])
    frechet = evaluate_videos(videos, [None] * len(videos), references, pipe.encoder, analyze=False)
    return {**{k: analyzer[k] for k in ("color_acc", "shape_acc", "direction_acc", "mean_jitter")},
            "fvd_shapes": frechet["fvd_shapes"], "fid_shapes": frechet["fid_shapes"]}


def table(results: dict) -> str:
    lines = ["| variant | color | shape | direction | jitter (px) | FVD-shapes | FID-shapes | held-out loss | "
             "order gap | train s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['color_acc']:.1%} | {r['shape_acc']:.1%} | {r['direction_acc']:.1%} | "
                     f"{r['mean_jitter']:.2f} | {r['fvd_shapes']:.3f} | {r['fid_shapes']:.3f} | "
                     f"{r['heldout_loss']:.4f} | {mean_se(r['order_gap_clips'])} | {r.get('train_s', 0):.0f} |")
    return "\n".join(lines)


def mean_se(values) -> str:
    """mean +- standard error of per-clip values (4 significant decimals)."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():+.4f} +- {v.std(ddof=1) / np.sqrt(len(v)):.4f}"


def paired_table(results: dict, against: str = "baseline") -> str:
    """Each variant minus ``against`` on the same held-out clips: mean +- standard error of the
    per-clip differences (negative loss: better than ``against``; positive order gap: more
    sensitive to the direction the caption names)."""
    lines = [f"| variant - {against} | held-out loss | order gap |", "| --- | --- | --- |"]
    ref = results[against]
    for name, r in results.items():
        if name != against:
            loss = np.subtract(r["heldout_loss_clips"], ref["heldout_loss_clips"])
            gap = np.subtract(r["order_gap_clips"], ref["order_gap_clips"])
            lines.append(f"| {name} | {mean_se(loss)} | {mean_se(gap)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200, help="training steps per variant (all stages)")
    parser.add_argument("--pool-clips", type=int, default=2000)
    parser.add_argument("--prompts", type=int, default=24, help="seen prompts generated per variant")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every variant (use a new --run per seed)")
    parser.add_argument("--run", type=Path, default=Path("runs/ablate"))
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default RUN/results.json)")
    parser.add_argument("--image-steps", type=int, default=0,
                        help="train a text-to-image model (no temporal layers) this many steps once and start "
                             "every variant's image part from it, as the paper starts from Stable Diffusion "
                             "(0: from scratch)")
    parser.add_argument("--heldout-clips", type=int, default=64,
                        help="fixed training-distribution clips for the held-out denoising loss and order gap")
    parser.add_argument("--with-base-model", action="store_true",
                        help="also evaluate the base pipeline's own keyframe model (row 'base model')")
    parser.add_argument("--base", type=Path, default=None,
                        help="pipeline whose VAE and encoder the variants use (default: the shipped one)")
    args = parser.parse_args()
    from magicvideo.pipeline import DEFAULT_PIPELINE

    base = args.base or DEFAULT_PIPELINE

    args.run.mkdir(parents=True, exist_ok=True)
    out = args.out or args.run / "results.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    image = None
    if args.image_steps:
        start = time.time()
        image = stage(args.run, args.run / "image_model", "text", args.image_steps,
                      unet_flags(IMAGE_MODEL), args, base)
        print(f"text-to-image model: {image} ({time.time() - start:.0f} s)", flush=True)
    from magicvideo.pipeline import MagicVideoPipeline

    pipe = MagicVideoPipeline.from_pretrained(base)  # loaded once: every model is scored with its VAE and encoder
    clips = held_out_clips(pipe, args.heldout_clips)
    if args.with_base_model:  # the yardstick: the base pipeline's keyframe model, trained far longer
        results["base model"] = evaluate(Path(base) / "keyframe", args, pipe, clips, results.get("base model", {}))
        out.write_text(json.dumps(results, indent=1) + "\n")
    for variant in args.only:
        start = time.time()
        model = train(args.run, variant, args, base, image)
        trained = time.time() - start
        previous = results.get(variant, {})
        results[variant] = {**evaluate(model, args, pipe, clips, previous), "steps": args.steps,
                            "image_steps": args.image_steps,
                            "train_s": previous.get("train_s", trained) if trained < 5 else trained}
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(table({variant: results[variant]}).splitlines()[-1], flush=True)
    shown = {k: results[k] for k in [*VARIANTS, "base model"] if k in results}
    print(table(shown))
    if "baseline" in shown:
        print(paired_table(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
