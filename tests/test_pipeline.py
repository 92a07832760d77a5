"""The text-to-video pipeline and `magicvideo generate`: determinism, files, bad input."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from magicvideo.cli import main
from magicvideo.pipeline import DEFAULT_PIPELINE, MagicVideoPipeline
from magicvideo.sampling import SamplingOptions
from magicvideo.video_io import read_video


def test_round_trip_and_determinism(pipeline_dir):
    pipe = MagicVideoPipeline.from_pretrained(pipeline_dir)
    a = pipe("a red circle moving right", num_frames=4, seed=1, progress=False)
    b = MagicVideoPipeline.from_pretrained(pipeline_dir)("a red circle moving right", num_frames=4, seed=1,
                                                         progress=False)
    c = pipe("a red circle moving right", num_frames=4, seed=2, progress=False)
    assert a.frames.shape == (4, 16, 16, 3) and a.frames.dtype == np.uint8 and a.fps == 8.0
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)
    steps = []
    pipe("a blue square", num_frames=2, steps=4, scheduler="ddim", progress=False,
         callback=lambda i, t, x: steps.append(i))
    assert steps == [0, 1, 2, 3]


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "  "}, "prompt is empty"), ({"scheduler": "euler"}, "unknown scheduler"),
    ({"fps": 0.0}, "fps"), ({"num_frames": 1025}, "between 1 and 1024"), ({"guidance": -1.0}, "guidance"),
    ({"num_frames": 12, "context_frames": 8}, "context_frames"),
    # what the CLI checks before loading, checked by the pipeline itself (Python and serve callers)
    ({"steps": 1001}, "steps must be between 1 and 1000 (the noise schedule's length)"),
    ({"guidance": 50.5}, "guidance must be a finite number from 0 to 50"),
    ({"guidance": float("inf")}, "guidance must be a finite number from 0 to 50"),
    ({"seed": -1}, "seed must be an integer >= 0"), ({"seed": 2**64 - 2}, "seed must be below 2**64 - 4"),
    ({"fps": 1e9}, "the output would play at 1e+09 fps; a video plays 0.1 to 240 fps"),
    ({"fps": 1e-9}, "the output would play at 1e-09 fps"),
])
def test_bad_requests_fail_before_compute(pipeline_dir, kwargs, message):
    pipe = MagicVideoPipeline.from_pretrained(pipeline_dir)
    with pytest.raises(ValueError, match=re.escape(message)):
        pipe(**{"prompt": "a red circle", "num_frames": 4, "progress": False, **kwargs})


def test_request_limits_count_interpolation_variations_and_windows():
    pipe = MagicVideoPipeline.from_pretrained()  # the shipped default: interpolation and sr stages
    assert pipe.resolve("a red ball", 16, 60.0, None, None, None, None, False).fps == 60.0  # 240 fps out
    with pytest.raises(ValueError, match=re.escape("would play at 400 fps (100 fps x 4 by the interpolation stage)")):
        pipe.resolve("a red ball", 16, 100.0, None, None, None, None, False)
    assert pipe.resolve("a red ball", 16, 100.0, None, None, None, False, False).fps == 100.0
    # vary's seeds run to seed + n - 1, a long video's windows to seed + its frames - 1
    pipe.resolve("video", 4, None, None, None, None, False, False, seed=2**64 - 5, variations=2)
    with pytest.raises(ValueError, match="seed must be below"):
        pipe.resolve("video", 4, None, None, None, None, False, False, seed=2**64 - 4, variations=2)


def test_optional_stages_load_on_first_use_and_are_checked_at_load():
    pipe = MagicVideoPipeline.from_pretrained()
    assert pipe.has_stage("interpolation") and pipe.has_stage("sr")
    assert pipe._optional == {"interpolation": None, "sr": None}  # configs read, weights not yet
    preview = pipe("a red ball", num_frames=2, steps=1, interpolate=False, upscale=False, progress=False)
    assert preview.frames.shape[0] == 2 and pipe._optional == {"interpolation": None, "sr": None}
    assert type(pipe.sr).__name__ == "SRUNet" and not pipe.sr.training and pipe._optional["interpolation"] is None
    assert pipe.interpolation.config.condition_channels > 0
    pipe.sr = None  # a stage set by hand replaces the deferred one
    assert not pipe.has_stage("sr")
    with pytest.raises(ValueError, match="no 'sr' stage"):
        pipe.resolve("a red ball", 2, None, None, None, None, False, True)


def test_pipeline_directory_problems_are_named(tmp_path, pipeline_dir):
    with pytest.raises(ValueError, match="pipeline.json missing"):
        MagicVideoPipeline.from_pretrained(tmp_path)
    spec = json.loads((pipeline_dir / "pipeline.json").read_text())
    spec["stages"]["keyframe"] = "nowhere"
    (tmp_path / "pipeline.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="stage 'keyframe' is missing"):
        MagicVideoPipeline.from_pretrained(tmp_path)
    spec = json.loads((pipeline_dir / "pipeline.json").read_text())
    spec_file = re.escape(str(tmp_path / "pipeline.json"))
    for key, value, message in (("sr_consistency_steps", -1, "sr_consistency_steps must be an integer >= 0"),
                                ("sr_steps", 0, "sr_steps must be an integer >= 1"),
                                ("steps", 2.5, "steps must be an integer"),
                                ("fps", 0, r"fps must be a finite number in \[0.1, 240\]"),
                                ("fps", 1e9, r"fps must be a finite number in \[0.1, 240\]"),
                                ("guidance", -1.0, r"guidance must be a finite number in \[0, 50\]"),
                                ("image_guidance", 1e6, r"image_guidance must be a finite number in \[0, 50\]"),
                                ("vary_strength", 1.5, r"vary_strength must be a finite number in \[0, 1\]"),
                                ("scheduler", "euler", "scheduler must be one of"),
                                ("stpes", 3, r"unknown fields \['stpes'\]")):
        (tmp_path / "pipeline.json").write_text(json.dumps({**spec, "defaults": {**spec["defaults"], key: value}}))
        with pytest.raises(ValueError, match=rf"^{spec_file}: defaults: {message}"):
            MagicVideoPipeline.from_pretrained(tmp_path)
    for key, value, message in (("guidance", float("inf"), "defaults.guidance must be a finite number"),
                                ("schedule", {"num_train_timesteps": 10**12},
                                 "schedule.num_train_timesteps must be an integer from 1 to 100000")):
        defaults = {**spec["defaults"], key: value} if key in spec["defaults"] else spec["defaults"]
        extra = {} if key in spec["defaults"] else {key: value}
        (tmp_path / "pipeline.json").write_text(json.dumps({**spec, "defaults": defaults, **extra}))
        with pytest.raises(ValueError, match=rf"^{spec_file}: {message}"):
            MagicVideoPipeline.from_pretrained(tmp_path)



def test_sampling_options_round_trip_through_pipeline_json(tmp_path, pipeline_dir):
    pipe = MagicVideoPipeline.from_pretrained(pipeline_dir)
    assert pipe.defaults == SamplingOptions(steps=3)
    custom = dataclasses.replace(pipe.defaults, fps=6.0, scheduler="ddim", edit_strength=0.5)
    MagicVideoPipeline(pipe.unet, pipe.vae, pipe.encoder, defaults=custom).save_pretrained(tmp_path / "p")
    spec = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    assert spec["defaults"] == dataclasses.asdict(custom)  # the JSON shape of every pipeline.json so far
    assert MagicVideoPipeline.from_pretrained(tmp_path / "p").defaults == custom
    # a pipeline.json with fewer defaults (an older release's) loads: the rest are SamplingOptions'
    spec["defaults"] = {"steps": 7, "fps": 8}
    (tmp_path / "p" / "pipeline.json").write_text(json.dumps(spec))
    assert MagicVideoPipeline.from_pretrained(tmp_path / "p").defaults == SamplingOptions(steps=7)
    with pytest.raises(TypeError, match=r"SamplingOptions\(steps=3\), got dict"):
        MagicVideoPipeline(pipe.unet, pipe.vae, pipe.encoder, defaults={"steps": 3})


def test_the_shipped_pipeline_holds_the_defaults_the_cli_quotes():
    # `magicvideo generate --help` quotes SamplingOptions(); the shipped pipeline must run with them
    spec = json.loads((DEFAULT_PIPELINE / "pipeline.json").read_text())
    assert spec["defaults"] == dataclasses.asdict(SamplingOptions())

def test_cli_generates_a_video(tmp_path, pipeline_dir, capsys):
    out = tmp_path / "clip.mp4"
    assert main(["generate", "a green square moving up", "-o", str(out), "--pipeline", str(pipeline_dir),
                 "--num-frames", "6", "--steps", "2", "--fps", "4", "-q"]) == 0
    frames, fps = read_video(out)
    assert frames.shape[0] == 6 and fps == pytest.approx(4.0)


@pytest.mark.parametrize("args, message", [
    (["", "-o", "x.mp4"], "prompt is empty"),
    (["a red circle", "-o", "x.avi"], "unknown output extension"),
    (["a red circle", "-o", "missing/x.mp4"], "does not exist"),
    (["a red circle", "-o", "x.mp4", "--fps", "0"], "--fps"),
    (["a red circle", "-o", "x.mp4", "--scheduler", "euler"], "--scheduler"),
    (["a red circle", "-o", "x.mp4", "--num-frames", "2000"], "1024"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_file(tmp_path, pipeline_dir, args, message):
    cmd = [sys.executable, "-m", "magicvideo.cli", "generate", *args, "--pipeline", str(pipeline_dir)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_help_and_input_checks_do_not_import_the_models():
    # `magicvideo --help` and the checks before loading a pipeline answer in a fraction of a second:
    # they must not pull in torch (about 1-2 s) or diffusers (3 s, with torch._dynamo).
    code = ("import sys\n"
            "from magicvideo.cli import build_parser\n"
            "from magicvideo.video_io import check_output_path\n"
            "import magicvideo\n"
            "build_parser().parse_args(['generate', 'a red circle', '-o', 'x.mp4'])\n"
            "check_output_path('x.mp4')\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
            "print(magicvideo.VideoUNet.__name__, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "VideoUNet True"]


def test_the_schedule_travels_with_the_pipeline_and_shapes_the_initial_noise(tmp_path, pipeline_dir):
    from magicvideo.diffusion import NoiseSchedule

    base = MagicVideoPipeline.from_pretrained(pipeline_dir)
    mixed = MagicVideoPipeline(base.unet, base.vae, base.encoder, NoiseSchedule(frame_noise_correlation=0.9))
    mixed.save_pretrained(tmp_path / "p")
    loaded = MagicVideoPipeline.from_pretrained(tmp_path / "p")
    assert loaded.schedule.frame_noise_correlation == 0.9
    first = {}

    class Probe(torch.nn.Module):  # records the sampler's first input, predicts zeros
        config = base.unet.config

        def forward(self, x, t, cond, fps=None):
            first.setdefault("x", x[:1].clone())
            return torch.zeros_like(x)

    for name, pipe in (("independent", base), ("mixed", loaded)):
        pipe.unet = Probe()
        first.clear()
        pipe.generate_latents(torch.zeros(1, 1, 384), num_frames=8, fps=8.0, steps=1, guidance=1.0, seed=0,
                              scheduler="ddim")
        frames = first["x"][0].transpose(0, 1).flatten(1)  # (F, C*H*W)
        off_diagonal = torch.corrcoef(frames)[~torch.eye(8, dtype=torch.bool)].mean().item()
        assert (off_diagonal > 0.8) if name == "mixed" else (abs(off_diagonal) < 0.1)
