"""Assemble a pipeline directory from the model directories of a training run.

    python scripts/ship_pipeline.py RUN TARGET [--base PIPELINE] [--wall KEY=SECONDS ...]

Takes RUN/keyframe_object/model (the object-weighted finetune) or else RUN/keyframe_cond/model
(the condition-embedding finetune) or else RUN/keyframe/model,
RUN/lit/model (encoder), RUN/videovae/model or else RUN/vae_decoder/model (the decoder
finetune) or else RUN/vae/model, and, when present, RUN/interpolation/model and RUN/sr/model.
With ``--base``, the keyframe, encoder and VAE stages (and the keyframe noise schedule) that
RUN lacks come from an existing pipeline directory (the cascade stages trained on top of a
shipped keyframe model). The
keyframe noise schedule is read from the keyframe run's metrics (what it was trained with).
TARGET/training_metrics.json gets the first and last metrics record of every stage, plus the
given wall-clock figures; records and figures already in TARGET's (or the base's) metrics file
are kept unless RUN has them again (with ``--keep-previous``, the earlier record of a stage that
RUN trained on goes to STAGE_round1, STAGE_round2, ...).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from magicvideo.diffusion import NoiseSchedule
from magicvideo.models import VideoUNet, VideoVAE
from magicvideo.models.encoders import load_encoder
from magicvideo.models.sr_unet import SRUNet
from magicvideo.pipeline import MagicVideoPipeline

STAGE_DIRS = ("vae", "lit", "keyframe_unsup", "keyframe", "keyframe_cond", "keyframe_object", "vae_decoder", "videovae",
              "interpolation", "sr")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--base", type=Path, default=None, help="pipeline giving the stages RUN lacks")
    parser.add_argument("--wall", action="append", default=[], help="KEY=SECONDS to record")
    parser.add_argument("--keep-previous", action="store_true",
                        help="a stage RUN trained on top of an earlier run of the same stage (a second round): "
                             "keep the earlier record as STAGE_round1 (round2, ...) instead of replacing it")
    args = parser.parse_args()
    run, base = args.run, args.base

    def pick(run_stage: str, base_stage: str) -> Path:
        if (run / run_stage / "model").is_dir() or base is None:
            return run / run_stage / "model"
        return base / base_stage

    keyframe = next((d for d in ("keyframe_object", "keyframe_cond") if (run / d / "model").is_dir()), "keyframe")
    base_pipe = MagicVideoPipeline.from_pretrained(base) if base is not None else None
    if (run / keyframe / "metrics.jsonl").is_file() or base_pipe is None:
        schedule = NoiseSchedule(**read_metrics(run / keyframe / "metrics.jsonl")[0]["schedule"])
    else:
        schedule = base_pipe.schedule
    vae_dir = next((run / d / "model" for d in ("videovae", "vae_decoder") if (run / d / "model").is_dir()),
                   pick("vae", "vae"))
    optional = {}
    for stage, cls in (("interpolation", VideoUNet), ("sr", SRUNet)):
        if (run / stage / "model").is_dir():
            optional[stage] = cls.from_pretrained(run / stage / "model")
        elif base_pipe is not None and getattr(base_pipe, stage) is not None:
            optional[stage] = getattr(base_pipe, stage)
    pipe = MagicVideoPipeline(VideoUNet.from_pretrained(pick(keyframe, "keyframe")), VideoVAE.from_pretrained(vae_dir),
                              load_encoder(pick("lit", "encoder")), schedule=schedule,
                              defaults=base_pipe.defaults if base_pipe is not None else None,
                              sr_schedule=base_pipe.sr_schedule if base_pipe is not None else None, **optional)

    metrics = {}
    for old_file in (base / "training_metrics.json" if base else None, args.target / "training_metrics.json"):
        if old_file is not None and old_file.is_file():
            metrics.update(json.loads(old_file.read_text()))
    for stage in STAGE_DIRS:
        if (run / stage / "metrics.jsonl").is_file():
            lines = read_metrics(run / stage / "metrics.jsonl")
            if args.keep_previous and stage in metrics:
                rounds = 1 + sum(re.fullmatch(rf"{stage}_round\d+", key) is not None for key in metrics)
                metrics[f"{stage}_round{rounds}"] = metrics.pop(stage)
            metrics[stage] = {"start": next(l for l in lines if l.get("event") == "start"),
                              "last": [l for l in lines if "step" in l][-1]}
    for item in args.wall:
        key, _, seconds = item.partition("=")
        metrics[key] = round(float(seconds))

    staging = args.target.with_name(args.target.name + ".new")  # base may be the target itself
    if staging.exists():
        shutil.rmtree(staging)
    pipe.save_pretrained(staging)
    (staging / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    weights = "keyframe/model.safetensors"  # the keyframe evaluation holds while the keyframe model is the same
    old_eval = args.target / "eval_metrics.json"
    if old_eval.is_file() and (args.target / weights).read_bytes() == (staging / weights).read_bytes():
        shutil.copy2(old_eval, staging / old_eval.name)
    old_cascade = args.target / "cascade_metrics.json"  # figures of the cascade stages (evaluate_cascade.py)
    if old_cascade.is_file() and all((args.target / stage).is_dir() and (staging / stage).is_dir()
                                     for stage in ("interpolation", "sr")):
        shutil.copy2(old_cascade, staging / old_cascade.name)
    if args.target.exists():
        shutil.rmtree(args.target)
    staging.rename(args.target)
    print(f"pipeline written to {args.target}: stages {sorted(json.loads((args.target / 'pipeline.json').read_text())['stages'])}")


if __name__ == "__main__":
    main()
