"""scripts/ship_pipeline.py: a keyframe run shipped on top of a pipeline, once and in rounds."""
import dataclasses
import json
import runpy
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from magicvideo import VideoUNet

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_pipeline.py"


def _keyframe_run(run: Path, base: Path, seed: int, lr: float) -> dict:
    """RUN/keyframe_object as the trainer leaves it: the model dir and its metrics.jsonl."""
    unet = VideoUNet.from_pretrained(base / "keyframe")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    unet.save_pretrained(run / "keyframe_object" / "model")
    spec = json.loads((base / "pipeline.json").read_text())
    records = [{"event": "start", "stage": "keyframe", "config": {"lr": lr, "seed": seed}, "schedule": spec["schedule"]},
               {"step": 10, "loss": 0.1}]
    (run / "keyframe_object" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {k: v.clone() for k, v in unet.state_dict().items()}


def _ship(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *map(str, args)])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_rounds_keep_the_earlier_record_and_ship_the_last_weights(pipeline_dir, tmp_path, monkeypatch):
    target = tmp_path / "shipped"
    shutil.copytree(pipeline_dir, target)
    (target / "eval_metrics.json").write_text("{}")  # figures of the keyframe model about to be replaced

    _keyframe_run(tmp_path / "r1", target, seed=1, lr=1e-4)
    _ship(monkeypatch, tmp_path / "r1", target, "--base", target, "--keep-previous",
          "--wall", "a_wall_s=12.4", "--wall", "keyframe_object_round1_wall_s=3")  # not a round's record
    second = _keyframe_run(tmp_path / "r2", target, seed=2, lr=5e-5)
    _ship(monkeypatch, tmp_path / "r2", target, "--base", target, "--keep-previous")

    metrics = json.loads((target / "training_metrics.json").read_text())
    assert metrics["keyframe_object_round1"]["start"]["config"] == {"lr": 1e-4, "seed": 1}
    assert metrics["keyframe_object"]["start"]["config"] == {"lr": 5e-5, "seed": 2}
    assert metrics["keyframe_object"]["last"] == {"step": 10, "loss": 0.1}
    assert metrics["a_wall_s"] == 12 and metrics["keyframe_object_round1_wall_s"] == 3
    assert not any(key.startswith("keyframe_object_round2") for key in metrics)
    shipped = load_file(str(target / "keyframe" / "model.safetensors"))
    assert all(torch.equal(shipped[k], v) for k, v in second.items())
    assert not (target / "eval_metrics.json").exists()  # stale once the keyframe model changed
    assert dataclasses.asdict(VideoUNet.from_pretrained(target / "keyframe").config) == \
        dataclasses.asdict(VideoUNet.from_pretrained(pipeline_dir / "keyframe").config)

    # without --keep-previous a new run of the stage replaces its record
    _keyframe_run(tmp_path / "r3", target, seed=3, lr=2e-5)
    _ship(monkeypatch, tmp_path / "r3", target, "--base", target)
    metrics = json.loads((target / "training_metrics.json").read_text())
    assert metrics["keyframe_object"]["start"]["config"]["seed"] == 3
    assert "keyframe_object_round2" not in metrics and metrics["keyframe_object_round1"]["start"]["config"]["seed"] == 1


def test_average_weights_interpolates_two_trainings_and_refuses_two_models(pipeline_dir, tmp_path, capsys):
    script = runpy.run_path(str(SCRIPT.parent / "average_weights.py"), run_name="average_weights")
    a = VideoUNet.from_pretrained(pipeline_dir / "keyframe")
    later = _keyframe_run(tmp_path / "run", pipeline_dir, seed=3, lr=1e-4)  # a perturbed copy, as a later round
    assert script["main"]([str(pipeline_dir / "keyframe"), str(tmp_path / "run" / "keyframe_object" / "model"),
                           str(tmp_path / "avg"), "--alpha", "0.25"]) == 0
    out = load_file(tmp_path / "avg" / "model.safetensors")
    for k, v in a.state_dict().items():
        torch.testing.assert_close(out[k], 0.75 * v + 0.25 * later[k])
    assert VideoUNet.from_pretrained(tmp_path / "avg").config == a.config

    other = VideoUNet(dataclasses.replace(a.config, cross_attention_dim=a.config.cross_attention_dim * 2))
    other.save_pretrained(tmp_path / "other")
    assert script["main"]([str(pipeline_dir / "keyframe"), str(tmp_path / "other"), str(tmp_path / "bad")]) == 2
    assert "different configs" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
