"""Assemble a pipeline directory from the model directories of a training run.

    python scripts/ship_pipeline.py RUN TARGET [--wall KEY=SECONDS ...]

Takes RUN/keyframe/model, RUN/lit/model (encoder), RUN/videovae/model or else RUN/vae/model,
and, when present, RUN/interpolation/model and RUN/sr/model. The keyframe noise schedule is
read from the keyframe run's metrics (what it was trained with). TARGET/training_metrics.json
gets the first and last metrics record of every stage, plus the given wall-clock figures
(figures already in TARGET's old metrics file are kept unless given again).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from magicvideo.diffusion import NoiseSchedule
from magicvideo.models import VideoUNet, VideoVAE
from magicvideo.models.encoders import load_encoder
from magicvideo.models.sr_unet import SRUNet
from magicvideo.pipeline import MagicVideoPipeline

STAGE_DIRS = ("vae", "lit", "keyframe_unsup", "keyframe", "videovae", "interpolation", "sr")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--wall", action="append", default=[], help="KEY=SECONDS to record")
    args = parser.parse_args()
    run = args.run

    start_event = read_metrics(run / "keyframe" / "metrics.jsonl")[0]
    vae_dir = run / "videovae" / "model" if (run / "videovae" / "model").is_dir() else run / "vae" / "model"
    optional = {}
    if (run / "interpolation" / "model").is_dir():
        optional["interpolation"] = VideoUNet.from_pretrained(run / "interpolation" / "model")
    if (run / "sr" / "model").is_dir():
        optional["sr"] = SRUNet.from_pretrained(run / "sr" / "model")
    pipe = MagicVideoPipeline(VideoUNet.from_pretrained(run / "keyframe" / "model"), VideoVAE.from_pretrained(vae_dir),
                              load_encoder(run / "lit" / "model"), schedule=NoiseSchedule(**start_event["schedule"]),
                              **optional)

    old_file = args.target / "training_metrics.json"
    metrics = json.loads(old_file.read_text()) if old_file.is_file() else {}
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, dict)}  # keep wall figures only
    for stage in STAGE_DIRS:
        if (run / stage / "metrics.jsonl").is_file():
            lines = read_metrics(run / stage / "metrics.jsonl")
            metrics[stage] = {"start": next(l for l in lines if l.get("event") == "start"),
                              "last": [l for l in lines if "step" in l][-1]}
    for item in args.wall:
        key, _, seconds = item.partition("=")
        metrics[key] = round(float(seconds))

    if args.target.exists():
        shutil.rmtree(args.target)
    pipe.save_pretrained(args.target)
    (args.target / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"pipeline written to {args.target}: stages {sorted(json.loads((args.target / 'pipeline.json').read_text())['stages'])}")


if __name__ == "__main__":
    main()
