"""The shipped embedded default: it loads from the package and makes a video of an object."""
from __future__ import annotations

import json

import numpy as np

from magicvideo.analyzers.shapes import analyze_video
from magicvideo.pipeline import DEFAULT_PIPELINE, MagicVideoPipeline


def test_default_pipeline_ships_with_its_training_metrics():
    metrics = json.loads((DEFAULT_PIPELINE / "training_metrics.json").read_text())
    assert set(metrics) >= {"vae", "lit", "keyframe_unsup", "keyframe", "sr", "interpolation", "videovae"}
    assert metrics["sr"]["start"]["schedule"]["prediction_type"] == "sample"
    assert metrics["keyframe"]["start"]["condition"] == "text"
    assert metrics["keyframe_unsup"]["start"]["condition"] == "image"


def test_default_pipeline_generates_the_prompted_color():
    pipe = MagicVideoPipeline.from_pretrained()
    hits = 0
    for seed, (color, prompt) in enumerate([("red", "a red circle moving right"), ("blue", "a blue square moving up"),
                                            ("green", "a green square going left"),
                                            ("magenta", "a magenta circle moving right")]):
        video = pipe(prompt, seed=seed, steps=15, progress=False, interpolate=False, upscale=False)
        assert video.frames.shape == (16, 64, 64, 3) and video.frames.dtype == np.uint8
        analysis = analyze_video(video.frames)
        assert analysis.object_found > 0.9  # one object, in (almost) every frame
        hits += analysis.color == color
    assert hits >= 3


def test_default_pipeline_runs_the_whole_cascade():
    pipe = MagicVideoPipeline.from_pretrained()
    assert pipe.interpolation is not None and pipe.sr is not None
    video = pipe("a blue square moving up", num_frames=3, steps=10, seed=1, progress=False)
    assert video.frames.shape == (9, 256, 256, 3) and video.fps == 4 * pipe.defaults.fps
    keys = pipe("a blue square moving up", num_frames=3, steps=10, seed=1, progress=False, interpolate=False,
                upscale=False)
    # every 4th output frame is a keyframe, upscaled: its 4x4 area average is close to the keyframe
    down = video.frames[::4].reshape(3, 64, 4, 64, 4, 3).mean(axis=(2, 4))
    assert np.abs(down - keys.frames.astype(float)).mean() < 4.0
    assert analyze_video(video.frames).color == "blue"
