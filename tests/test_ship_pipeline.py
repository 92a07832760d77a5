"""`magicvideo ship` (magicvideo/ship.py): a keyframe run shipped on top of a pipeline, once and in
rounds; `python -m magicvideo.average`: two trainings of one model averaged in weight space."""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from magicvideo import VideoUNet
from magicvideo.average import average_state_dicts
from magicvideo.average import main as average_main
from magicvideo.cli import main as cli_main
from magicvideo.ship import ship_pipeline


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


def _ship(*args) -> None:
    assert cli_main(["ship", *map(str, args)]) == 0


def test_rounds_keep_the_earlier_record_and_ship_the_last_weights(pipeline_dir, tmp_path):
    target = tmp_path / "shipped"
    shutil.copytree(pipeline_dir, target)
    (target / "eval_metrics.json").write_text("{}")  # figures of the keyframe model about to be replaced
    (target / "MODEL_CARD.md").write_text("# card\n")  # documents of the pipeline, not of its weights
    (target / "vocabulary.json").write_text("{}\n")

    _keyframe_run(tmp_path / "r1", target, seed=1, lr=1e-4)
    _ship(tmp_path / "r1", target, "--base", target, "--keep-previous",
          "--wall", "a_wall_s=12.4", "--wall", "keyframe_object_round1_wall_s=3")  # not a round's record
    second = _keyframe_run(tmp_path / "r2", target, seed=2, lr=5e-5)
    _ship(tmp_path / "r2", target, "--base", target, "--keep-previous")

    metrics = json.loads((target / "training_metrics.json").read_text())
    assert metrics["keyframe_object_round1"]["start"]["config"] == {"lr": 1e-4, "seed": 1}
    assert metrics["keyframe_object"]["start"]["config"] == {"lr": 5e-5, "seed": 2}
    assert metrics["keyframe_object"]["last"] == {"step": 10, "loss": 0.1}
    assert metrics["a_wall_s"] == 12 and metrics["keyframe_object_round1_wall_s"] == 3
    assert not any(key.startswith("keyframe_object_round2") for key in metrics)
    shipped = load_file(str(target / "keyframe" / "model.safetensors"))
    assert all(torch.equal(shipped[k], v) for k, v in second.items())
    assert not (target / "eval_metrics.json").exists()  # stale once the keyframe model changed
    assert (target / "MODEL_CARD.md").read_text() == "# card\n" and (target / "vocabulary.json").is_file()
    fresh = tmp_path / "fresh"  # a new target takes them from the base
    _ship(tmp_path / "r2", fresh, "--base", target)
    assert (fresh / "MODEL_CARD.md").read_text() == "# card\n" and (fresh / "vocabulary.json").is_file()
    assert dataclasses.asdict(VideoUNet.from_pretrained(target / "keyframe").config) == \
        dataclasses.asdict(VideoUNet.from_pretrained(pipeline_dir / "keyframe").config)

    # without --keep-previous a new run of the stage replaces its record
    _keyframe_run(tmp_path / "r3", target, seed=3, lr=2e-5)
    _ship(tmp_path / "r3", target, "--base", target)
    metrics = json.loads((target / "training_metrics.json").read_text())
    assert metrics["keyframe_object"]["start"]["config"]["seed"] == 3
    assert "keyframe_object_round2" not in metrics and metrics["keyframe_object_round1"]["start"]["config"]["seed"] == 1


def test_ship_errors_name_what_is_missing(pipeline_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="run directory not found"):
        ship_pipeline(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no keyframe_object/model or keyframe_cond/model or keyframe/model"):
        ship_pipeline(tmp_path / "empty", tmp_path / "out")
    assert cli_main(["ship", str(tmp_path / "empty"), str(tmp_path / "out"), "--base", str(pipeline_dir),
                     "--wall", "x_wall_s=soon"]) == 2
    assert "--wall x_wall_s: seconds must be a number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    _keyframe_run(tmp_path / "cut", pipeline_dir, seed=1, lr=1e-4)  # a run cut before its first log
    metrics = tmp_path / "cut" / "keyframe_object" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    assert cli_main(["ship", str(tmp_path / "cut"), str(tmp_path / "out"), "--base", str(pipeline_dir)]) == 2
    assert "metrics.jsonl: no start record or no step record" in capsys.readouterr().err
    metrics.unlink()  # no metrics: the base's schedule
    assert cli_main(["ship", str(tmp_path / "cut"), str(tmp_path / "out"), "--base", str(pipeline_dir)]) == 0


def test_average_weights_interpolates_two_trainings_and_refuses_two_models(pipeline_dir, tmp_path, capsys):
    a = VideoUNet.from_pretrained(pipeline_dir / "keyframe")
    later = _keyframe_run(tmp_path / "run", pipeline_dir, seed=3, lr=1e-4)  # a perturbed copy, as a later round
    assert average_main([f"{pipeline_dir / 'keyframe'}:0.75", f"{tmp_path / 'run' / 'keyframe_object' / 'model'}:0.25",
                         "-o", str(tmp_path / "avg")]) == 0
    out = load_file(tmp_path / "avg" / "model.safetensors")
    for k, v in a.state_dict().items():
        torch.testing.assert_close(out[k], 0.75 * v + 0.25 * later[k])
        assert torch.equal(out[k], torch.lerp(v, later[k], 0.25))  # bit for bit what shipped (lerp, alpha 0.25)
    assert VideoUNet.from_pretrained(tmp_path / "avg").config == a.config

    other = VideoUNet(dataclasses.replace(a.config, cross_attention_dim=a.config.cross_attention_dim * 2))
    other.save_pretrained(tmp_path / "other")
    assert average_main([f"{pipeline_dir / 'keyframe'}:0.5", f"{tmp_path / 'other'}:0.5", "-o",
                         str(tmp_path / "bad")]) == 2
    assert "different configs" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert average_main([f"{pipeline_dir / 'keyframe'}:0.5", f"{pipeline_dir / 'keyframe'}:0.25", "-o",
                         str(tmp_path / "bad")]) == 2
    assert "sum to 1" in capsys.readouterr().err


def test_average_of_three_is_the_weighted_sum():
    states = [{"w": torch.full((3,), float(i))} for i in (1, 2, 4)]
    out = average_state_dicts(states, [0.5, 0.25, 0.25])
    torch.testing.assert_close(out["w"], torch.full((3,), 0.5 * 1 + 0.25 * 2 + 0.25 * 4))
    with pytest.raises(ValueError, match="different tensors"):
        average_state_dicts([{"w": torch.zeros(1)}, {"v": torch.zeros(1)}], [0.5, 0.5])
