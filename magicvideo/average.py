"""Average trainings of one model in weight space (as in WiSE-FT and model soups), tensor by
tensor, with weights that sum to 1:

    python -m magicvideo.average A_DIR:0.75 B_DIR:0.25 -o OUT_DIR

The model directories (config.json + model.safetensors: a keyframe or interpolation U-Net, a
VAE, an SR model) must hold the same config and the same tensors, usually points of one
finetuning path (B a further round on top of A): there the average trades what the later round
gained against what it lost. Weights are read with safetensors only. OUT_DIR gets the config
and is written atomically. The shipped keyframe model of step 9 is 0.75 x round 2 + 0.25 x
round 3 (scripts/recipe_shapes.sh).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import torch


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i weights[i] * states[i] as a running mean in float32 (for two models exactly
    ``lerp(a, b, w_b)``), cast back to the first state's dtypes."""
    if len(states) != len(weights) or len(states) < 2:
        raise ValueError(f"need two or more states with one weight each, got {len(states)} and {len(weights)}")
    if any(s.keys() != states[0].keys() for s in states):
        differ = sorted(set().union(*(s.keys() ^ states[0].keys() for s in states)))
        raise ValueError(f"the models hold different tensors: {differ[:3]}")
    out = {k: v.float() for k, v in states[0].items()}
    total = weights[0]
    for state, weight in zip(states[1:], weights[1:]):
        total += weight
        out = {k: torch.lerp(v, state[k].float(), weight / total) for k, v in out.items()}
    return {k: v.to(states[0][k].dtype) for k, v in out.items()}


def average_model_dirs(sources: Sequence[tuple[str | Path, float]], out: str | Path) -> Path:
    """Write the weighted average of the model directories ``sources`` ((dir, weight), ...) to ``out``."""
    from safetensors.torch import save_file

    from .models.io import CONFIG_NAME, WEIGHTS_NAME, atomic_directory, load_safetensors

    dirs, weights = [Path(d) for d, _ in sources], [float(w) for _, w in sources]
    if any(not w > 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"weights must be positive and sum to 1, got {weights}")
    configs = []
    for d in dirs:
        if not (d / CONFIG_NAME).is_file():
            raise ValueError(f"{d}: not a model directory ({CONFIG_NAME} missing)")
        configs.append(json.loads((d / CONFIG_NAME).read_text()))
    for d, config in zip(dirs[1:], configs[1:]):
        if config != configs[0]:
            raise ValueError(f"{dirs[0]} and {d}: different configs, not two trainings of one model")
    states = [load_safetensors(d / WEIGHTS_NAME) for d in dirs]
    for d, state in zip(dirs[1:], states[1:]):
        bad = [k for k, v in state.items() if k in states[0] and v.shape != states[0][k].shape]
        if bad:
            raise ValueError(f"{dirs[0]} and {d}: tensor shapes differ ({bad[:3]})")
    averaged = average_state_dicts(states, weights)
    with atomic_directory(Path(out)) as tmp:
        shutil.copy2(dirs[0] / CONFIG_NAME, tmp / CONFIG_NAME)
        save_file({k: v.contiguous() for k, v in averaged.items()}, str(tmp / WEIGHTS_NAME))
    return Path(out)


def _source(text: str) -> tuple[str, float]:
    path, _, weight = text.rpartition(":")
    try:
        if not path:
            raise ValueError
        return path, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MODEL_DIR:WEIGHT, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", type=_source, nargs="+", metavar="MODEL_DIR:WEIGHT")
    parser.add_argument("-o", "--output", required=True, help="model directory to write")
    args = parser.parse_args(argv)
    try:
        out = average_model_dirs(args.sources, args.output)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{out}: " + " + ".join(f"{w:g} x {d}" for d, w in args.sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
