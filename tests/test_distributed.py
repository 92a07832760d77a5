"""Data-parallel training (torchrun, gloo on CPU) and exact resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from magicvideo.models.io import load_safetensors
from magicvideo.train import Stage, TrainConfig, train


def linear_stage() -> Stage:
    """A noise-free linear regression: its mean loss splits exactly over micro-batches."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    true_w = torch.tensor([[1.0, -2.0, 0.5]])

    def make_batch(step, batch_size, positions=None):
        x = torch.randn(batch_size, 3, generator=torch.Generator().manual_seed(step))[list(positions or range(batch_size))]
        return x, x @ true_w.T + 0.3

    def loss(batch, gen):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y), {}

    def save(m, directory):
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(directory / "model.safetensors"))

    return Stage("linear", model, loss, make_batch, save)


def weights(directory) -> dict[str, torch.Tensor]:
    return load_safetensors(directory / "model.safetensors")


def test_micro_batches_accumulate_the_global_gradient(tmp_path):
    common = dict(steps=6, batch_size=8, lr=0.05, ema_decay=0.0, warmup_steps=1, grad_clip=100.0)
    whole = weights(train(linear_stage(), TrainConfig(**common), tmp_path / "a", progress=False))
    pieces = weights(train(linear_stage(), TrainConfig(**common, micro_batches=4), tmp_path / "b", progress=False))
    for k in whole:
        torch.testing.assert_close(pieces[k], whole[k], atol=1e-6, rtol=0)
    assert not torch.equal(whole["weight"], linear_stage().model.weight.detach())  # it did train


def test_micro_batches_must_divide_the_batch():
    with pytest.raises(ValueError, match="micro_batches must divide"):
        TrainConfig(batch_size=6, micro_batches=4)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "magicvideo.cli", "train", "--stage", "vae", "--steps", "3", "--batch-size", "4",
            "--lr", "1e-3", "-q", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_torchrun_two_processes_equal_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "magicvideo.cli"]
    subprocess.run(torchrun + _cli("-o", str(tmp_path / "ddp"))[3:], check=True, env=_env(), timeout=600,
                   capture_output=True)
    subprocess.run(_cli("-o", str(tmp_path / "one"), "--micro-batches", "2"), check=True, env=_env(), timeout=600)
    subprocess.run(_cli("-o", str(tmp_path / "whole"), "--micro-batches", "1"), check=True, env=_env(), timeout=600)
    ddp, one, whole = (weights(tmp_path / name / "checkpoint") for name in ("ddp", "one", "whole"))
    assert max((ddp[k] - one[k]).abs().max().item() for k in ddp) <= 1e-6
    # the VAE loss normalises by the batch's object weights, so cutting the batch changes it a little
    assert max((whole[k] - one[k]).abs().max().item() for k in one) > 1e-6

    def last(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[0]), json.loads(lines[-1])

    (start_ddp, end_ddp), (start_one, end_one) = last("ddp"), last("one")
    assert start_ddp["processes"] == 2 and start_one["processes"] == 1
    assert end_ddp["loss"] == pytest.approx(end_one["loss"], abs=1e-6)  # the logged loss is the global one


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    args = ["--steps", "10", "--checkpoint-every", "3"]
    cmd = [sys.executable, "-m", "magicvideo.cli", "train", "--stage", "vae", "--batch-size", "2", "-q", *args]
    subprocess.run(cmd + ["-o", str(tmp_path / "straight")], check=True, env=_env(), timeout=600)

    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["-o", str(run)], env=_env())
    state = run / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = json.loads(state.read_text())["step"]
    assert 6 <= step < 10
    subprocess.run(cmd + ["-o", str(run), "--resume"], check=True, env=_env(), timeout=600)
    straight, resumed = weights(tmp_path / "straight" / "model"), weights(run / "model")
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
