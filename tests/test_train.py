"""The training loop: exact resume, atomic checkpoints, non-finite losses, EMA."""
from __future__ import annotations

import json

import pytest
import torch

from magicvideo import train as train_mod
from magicvideo.train import NonFiniteLossError, Stage, TrainConfig, train


def toy_stage(bad_steps=frozenset(), crash_at=None) -> Stage:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    true_w = torch.tensor([[1.0, -2.0, 0.5]])

    def make_batch(step, batch_size, positions=None):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(batch_size, 3, generator=g)[list(positions or range(batch_size))]
        return x, x @ true_w.T

    def loss(batch, gen):
        x, y = batch
        value = torch.nn.functional.mse_loss(model(x) + 0.01 * torch.randn(y.shape, generator=gen), y)
        if loss.step == crash_at:
            raise KeyboardInterrupt("killed")
        if loss.step in bad_steps:
            value = value * float("nan")
        loss.step += 1
        return value, {}

    loss.step = 0

    def save(m, directory):
        directory.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(directory / "model.safetensors"))

    return Stage("toy", model, loss, make_batch, save)


CFG = TrainConfig(steps=40, batch_size=8, lr=1e-2, warmup_steps=5, checkpoint_every=10, log_every=5, ema_decay=0.9)


def weights(stage):
    return {k: v.clone() for k, v in stage.model.state_dict().items()}


def test_resume_continues_exactly(tmp_path):
    straight = toy_stage()
    train(straight, CFG, tmp_path / "a", progress=False)

    with pytest.raises(KeyboardInterrupt):  # killed at step 25, last checkpoint at step 20
        train(toy_stage(crash_at=25), CFG, tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 20
    resumed = toy_stage()
    train(resumed, CFG, tmp_path / "b", resume=True, progress=False)
    for k, v in weights(straight).items():
        assert torch.equal(v, weights(resumed)[k]), k
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "step" in x] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_loss_goes_down(tmp_path):
    stage = toy_stage()
    train(stage, CFG, tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert lines[-1]["loss"] < 0.5 * lines[0]["loss"]


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    stage = toy_stage()
    train(stage, TrainConfig(**{**CFG.__dict__, "steps": 10}), tmp_path, progress=False)
    before = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    calls = {"n": 0}
    real = train_mod.save_file

    def failing(tensors, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real(tensors, path)

    monkeypatch.setattr(train_mod, "save_file", failing)
    with pytest.raises(OSError):
        train(toy_stage(), CFG, tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == before
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")]


def test_nonfinite_losses_are_skipped_and_counted(tmp_path):
    stage = toy_stage(bad_steps={3, 7, 8})
    train(stage, TrainConfig(**{**CFG.__dict__, "steps": 20}), tmp_path, progress=False)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["nonfinite_total"] == 3
    assert all(torch.isfinite(p).all() for p in stage.model.parameters())


def test_persistent_nonfinite_losses_stop_with_a_good_checkpoint(tmp_path):
    stage = toy_stage(bad_steps=set(range(12, 100)))
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 50, "max_nonfinite": 5})
    with pytest.raises(NonFiniteLossError, match="5 non-finite losses in a row"):
        train(stage, cfg, tmp_path, progress=False)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 16
    resumed = toy_stage()
    train_mod.load_checkpoint(tmp_path, resumed.model, None, torch.optim.AdamW(resumed.model.parameters()))
    assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_final_model_is_the_ema(tmp_path):
    plain, averaged = toy_stage(), toy_stage()
    train(plain, TrainConfig(**{**CFG.__dict__, "ema_decay": 0.0}), tmp_path / "a", progress=False)
    train(averaged, CFG, tmp_path / "b", progress=False)
    from safetensors.torch import load_file

    ckpt_live = load_file(str(tmp_path / "b" / "checkpoint" / "model.safetensors"))
    final = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    ema = load_file(str(tmp_path / "b" / "checkpoint" / "ema.safetensors"))
    assert all(torch.equal(final[k], ema[k]) for k in final)
    assert any(not torch.equal(final[k], ckpt_live[k]) for k in final)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("no", torch.float32)])
def test_mixed_precision_runs_the_loss_under_autocast_and_keeps_float32_weights(tmp_path, precision, dtype):
    import dataclasses

    seen = []
    stage = toy_stage()
    inner = stage.loss

    def loss(batch, gen):
        seen.append(stage.model(batch[0]).dtype)  # a Linear under CPU autocast gives bfloat16
        return inner(batch, gen)

    stage.loss = loss
    train(stage, dataclasses.replace(CFG, mixed_precision=precision), tmp_path, progress=False)
    assert set(seen) == {dtype}
    assert all(p.dtype == torch.float32 for p in stage.model.parameters())
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert lines[-1]["loss"] < 0.5 * lines[0]["loss"]


def test_bad_config_and_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="no checkpoint"):
        train(toy_stage(), CFG, tmp_path, resume=True, progress=False)


@pytest.mark.skipif(not __import__("shutil").which("g++"), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path):
    import dataclasses

    eager, compiled = toy_stage(), toy_stage()
    train(eager, CFG, tmp_path / "eager", progress=False)
    train(compiled, dataclasses.replace(CFG, compile=True), tmp_path / "compiled", progress=False)
    for k, v in weights(eager).items():
        assert torch.allclose(v, weights(compiled)[k], atol=1e-5), k


def test_stop_at_ends_the_run_early_and_resume_goes_on(tmp_path):
    """--stop-at: the run ends after step N with a checkpoint and the EMA model there, the
    learning-rate schedule of the full run, and --resume finishes it exactly."""
    straight = toy_stage()
    train(straight, CFG, tmp_path / "a", progress=False)
    cut = TrainConfig(**{**CFG.__dict__, "stop_at": 25})
    first = toy_stage()
    train(first, cut, tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 25
    assert (tmp_path / "b" / "model" / "model.safetensors").is_file()
    def records(run):
        return {x["step"]: x for x in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
                if "step" in x}

    assert max(records("b")) == 25 and records("b")[25]["lr"] == records("a")[25]["lr"]  # the 40-step schedule
    resumed = toy_stage()
    train(resumed, CFG, tmp_path / "b", resume=True, progress=False)
    for k, v in weights(straight).items():
        assert torch.equal(v, weights(resumed)[k]), k
    with pytest.raises(ValueError, match="past stop_at=20"):
        train(toy_stage(), TrainConfig(**{**CFG.__dict__, "stop_at": 20}), tmp_path / "b", resume=True, progress=False)
    with pytest.raises(ValueError, match="stop_at must be in"):
        TrainConfig(steps=10, stop_at=11)


def test_to_device_moves_every_tensor_of_a_nested_batch_and_keeps_the_rest():
    batch = {"latents": torch.zeros(2, 3), "caption": ["a", "b"], "pair": (torch.ones(1), 5), "cond": None}
    moved = train_mod.to_device(batch, torch.device("meta"))
    assert moved["latents"].device.type == "meta" and moved["pair"][0].device.type == "meta"
    assert moved["caption"] == ["a", "b"] and moved["pair"][1] == 5 and moved["cond"] is None
    assert isinstance(moved["pair"], tuple)


@pytest.mark.parametrize("name, message", [("tpu", "cpu, cuda or cuda:N"), ("cuda:99", "cuda:99")])
def test_resolve_device_names_what_is_wrong(name, message):
    assert train_mod.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=message):
        train_mod.resolve_device(name)
