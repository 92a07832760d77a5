"""Assemble a pipeline directory from the model directories of a training run (``magicvideo ship``).

    magicvideo ship RUN TARGET [--base PIPELINE] [--wall KEY=SECONDS ...] [--keep-previous]

Takes RUN/keyframe_object/model (the object-weighted finetune) or else RUN/keyframe_cond/model
(the condition-embedding finetune) or else RUN/keyframe/model, RUN/lit/model (encoder),
RUN/videovae/model or else RUN/vae_decoder/model (the decoder finetune) or else RUN/vae/model,
and, when present, RUN/interpolation/model and RUN/sr/model. With ``base``, the keyframe,
encoder and VAE stages (and the keyframe noise schedule, the sampling defaults and the SR
schedule) that RUN lacks come from an existing pipeline directory (the cascade stages trained
on top of a shipped keyframe model). The keyframe noise schedule is read from the keyframe
run's metrics (what it was trained with).

TARGET/training_metrics.json gets the first and last metrics record of every stage, plus the
given wall-clock figures; records and figures already in TARGET's (or the base's) metrics file
are kept unless RUN has them again (with ``keep_previous``, the earlier record of a stage that
RUN trained on goes to STAGE_round1, STAGE_round2, ...). The measured figures beside a pipeline
stay while they still describe it: eval_metrics.json (the keyframe evaluation) while the keyframe
and VAE weights are the same, cascade_metrics.json while those and both cascade stages' are; MODEL_CARD.md and
vocabulary.json always stay (from TARGET, else the base). TARGET is
replaced atomically, and may be the base itself.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Mapping

# the stage directories a training run may hold, in the order their records are written
STAGE_DIRS = ("vae", "lit", "keyframe_unsup", "keyframe", "keyframe_cond", "keyframe_object", "vae_decoder", "videovae",
              "interpolation", "sr")
KEYFRAME_DIRS = ("keyframe_object", "keyframe_cond", "keyframe")  # the first present is shipped
VAE_DIRS = ("videovae", "vae_decoder", "vae")
# kept from TARGET (or else the base) on every ship: the model card (its tables name the JSON files
# they are checked against, so a card left stale by new weights fails tests/test_docs_figures.py)
# and a procedural domain's vocabulary.json
CARRIED_DOCS = ("MODEL_CARD.md", "vocabulary.json")


def read_metrics(path: Path) -> list[dict]:
    """The records of a stage's metrics.jsonl; a file without its start record or any step
    record (a run cut before its first log) is an error that names it."""
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise ValueError(f"{path}: not found (the run's metrics: the noise schedule is read from it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not JSON lines ({err})") from None
    if not any(r.get("event") == "start" for r in records) or not any("step" in r for r in records):
        raise ValueError(f"{path}: no start record or no step record (a run cut before its first log?)")
    return records


WEIGHTS = "model.safetensors"


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def ship_pipeline(run: str | Path, target: str | Path, base: str | Path | None = None,
                  walls: Mapping[str, float] | None = None, keep_previous: bool = False) -> Path:
    """Write the pipeline of ``run``'s stages (the rest from ``base``) to ``target``; see the module."""
    from .diffusion import NoiseSchedule
    from .models import VideoUNet, VideoVAE
    from .models.encoders import load_encoder
    from .models.io import atomic_directory
    from .models.sr_unet import SRUNet
    from .pipeline import MagicVideoPipeline

    run, target, base = Path(run), Path(target), Path(base) if base is not None else None
    if not run.is_dir():
        raise ValueError(f"{run}: run directory not found")
    walls = dict(walls or {})
    for key, seconds in walls.items():
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise ValueError(f"--wall {key}: seconds must be a number, got {seconds!r}")

    def model_dir(run_stages: tuple[str, ...], base_stage: str) -> Path:
        found = next((run / d / "model" for d in run_stages if (run / d / "model").is_dir()), None)
        if found is not None:
            return found
        if base is None:
            raise ValueError(f"{run}: no {' or '.join(f'{d}/model' for d in run_stages)} and no base pipeline "
                             f"to take the {base_stage} stage from")
        return base / base_stage

    keyframe = next((d for d in KEYFRAME_DIRS if (run / d / "model").is_dir()), "keyframe")
    sources = {"keyframe": model_dir(KEYFRAME_DIRS, "keyframe"), "vae": model_dir(VAE_DIRS, "vae"),
               "encoder": model_dir(("lit",), "encoder")}
    base_pipe = MagicVideoPipeline.from_pretrained(base) if base is not None else None
    if (run / keyframe / "metrics.jsonl").is_file() or base_pipe is None:
        schedule = NoiseSchedule(**read_metrics(run / keyframe / "metrics.jsonl")[0]["schedule"])
    else:
        schedule = base_pipe.schedule
    optional = {}
    for stage, cls in (("interpolation", VideoUNet), ("sr", SRUNet)):
        if (run / stage / "model").is_dir():
            optional[stage] = cls.from_pretrained(run / stage / "model")
        elif base_pipe is not None and getattr(base_pipe, stage) is not None:
            optional[stage] = getattr(base_pipe, stage)
    pipe = MagicVideoPipeline(VideoUNet.from_pretrained(sources["keyframe"]), VideoVAE.from_pretrained(sources["vae"]),
                              load_encoder(sources["encoder"]), schedule=schedule,
                              defaults=base_pipe.defaults if base_pipe is not None else None,
                              sr_schedule=base_pipe.sr_schedule if base_pipe is not None else None, **optional)

    metrics = {}
    for old_file in (base / "training_metrics.json" if base else None, target / "training_metrics.json"):
        if old_file is not None and old_file.is_file():
            metrics.update(json.loads(old_file.read_text()))
    for stage in STAGE_DIRS:
        if (run / stage / "metrics.jsonl").is_file():
            lines = read_metrics(run / stage / "metrics.jsonl")
            if keep_previous and stage in metrics:
                rounds = 1 + sum(re.fullmatch(rf"{stage}_round\d+", key) is not None for key in metrics)
                metrics[f"{stage}_round{rounds}"] = metrics.pop(stage)
            metrics[stage] = {"start": next(line for line in lines if line.get("event") == "start"),
                              "last": [line for line in lines if "step" in line][-1]}
    for key, seconds in walls.items():
        metrics[key] = round(float(seconds))

    with atomic_directory(target) as staging:  # the old target stays readable until the new one replaces it
        pipe.save_pretrained(staging)
        (staging / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        old_eval = target / "eval_metrics.json"  # the keyframe evaluation holds while the models it ran are the same
        if old_eval.is_file() and all(_same_file(target / stage / WEIGHTS, staging / stage / WEIGHTS)
                                      for stage in ("keyframe", "vae")):
            shutil.copy2(old_eval, staging / old_eval.name)
        old_cascade = target / "cascade_metrics.json"  # figures of the cascade stages (magicvideo.evaluation.cascade)
        if old_cascade.is_file() and all(_same_file(target / stage / WEIGHTS, staging / stage / WEIGHTS)
                                         for stage in ("keyframe", "vae", "interpolation", "sr")):
            shutil.copy2(old_cascade, staging / old_cascade.name)
        for doc in CARRIED_DOCS:  # what describes the pipeline rather than its weights stays with it
            source = next((d / doc for d in (target, base) if d is not None and (d / doc).is_file()), None)
            if source is not None:
                shutil.copy2(source, staging / doc)
    return target
