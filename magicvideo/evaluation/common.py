"""What the evaluations share: frames as uint8, per-clip means, the machine line, the check report."""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..video_io import frames_u8, video_u8  # noqa: F401  (what the evaluations import from here)


def machine() -> str:
    """The machine a figure was measured on, as the JSON files record it."""
    return f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"


def per_clip(metric: Callable[[np.ndarray, np.ndarray], float], decoded: np.ndarray, truth: np.ndarray) -> float:
    """Mean of ``metric(decoded clip, true clip)`` over the clips."""
    return float(np.mean([metric(d, t) for d, t in zip(decoded, truth)]))


def evaluation_parser(doc: str) -> argparse.ArgumentParser:
    """The options every evaluation has: ``--pipeline DIR`` and ``--out FILE.json`` (checked
    before minutes of measuring); the usage is the module's docstring."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=None, help="pipeline directory (default: the shipped one)")
    parser.add_argument("--out", type=_json_path, default=None, help="also write the figures to this JSON file")
    return parser


def _json_path(text: str) -> str:
    if Path(text).suffix != ".json" or not Path(text).resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: must be a .json file in an existing folder")
    return text


def write_figures(figures: dict, out: str | None) -> None:
    """Write ``figures`` to the JSON file ``out`` when given."""
    if out:
        Path(out).write_text(json.dumps(figures, indent=1, default=float) + "\n")


def report_checks(checks: Sequence[tuple[str, float, str, float]], figures: dict, out: str | None = None) -> bool:
    """Print one line per (name, value, "<=" or ">=", threshold), write ``figures`` to the
    JSON file ``out`` when given; True when every check passed."""
    ok = True
    for name, value, op, threshold in checks:
        if op not in ("<=", ">="):
            raise ValueError(f"check {name!r}: op must be '<=' or '>=', got {op!r}")
        passed = value <= threshold if op == "<=" else value >= threshold
        ok &= passed
        print(f"{name:<36} {value:9.4f}  ({op} {threshold:.4g})  {'ok' if passed else 'MISSED'}")
    write_figures(figures, out)
    return ok
