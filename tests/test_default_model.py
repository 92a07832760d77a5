"""The shipped embedded default: it loads from the package and makes a video of an object."""
from __future__ import annotations

import json

import numpy as np

from magicvideo.evaluate import analyze_video
from magicvideo.pipeline import DEFAULT_PIPELINE, MagicVideoPipeline


def test_default_pipeline_ships_with_its_training_metrics():
    metrics = json.loads((DEFAULT_PIPELINE / "training_metrics.json").read_text())
    assert set(metrics) >= {"vae", "lit", "keyframe_unsup", "keyframe"}
    assert metrics["keyframe"]["start"]["condition"] == "text"
    assert metrics["keyframe_unsup"]["start"]["condition"] == "image"


def test_default_pipeline_generates_the_prompted_color():
    pipe = MagicVideoPipeline.from_pretrained()
    hits = 0
    for seed, (color, prompt) in enumerate([("red", "a red circle moving right"), ("blue", "a blue square moving up"),
                                            ("green", "a green square going left"),
                                            ("magenta", "a magenta circle moving right")]):
        video = pipe(prompt, seed=seed, steps=15, progress=False)
        assert video.frames.shape == (16, 64, 64, 3) and video.frames.dtype == np.uint8
        analysis = analyze_video(video.frames)
        assert analysis.object_found > 0.9  # one object, in (almost) every frame
        hits += analysis.color == color
    assert hits >= 3
