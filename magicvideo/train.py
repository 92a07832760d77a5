"""One training loop for every stage.

A stage is (trainable model, loss, batch maker) plus how to save the result: see
``stages/``. This loop owns what is the same everywhere: AdamW, EMA weights, gradient
clipping, skipping non-finite losses, JSONL metrics, periodic samples, and checkpoints.

Checkpoints are directories written atomically (temp dir + rename): a kill at any moment
leaves the previous checkpoint intact. Batches and noise are pure functions of
(seed, step), so ``--resume`` continues exactly where the run stopped.

Data parallelism: the global batch of a step is cut into ``micro_batches`` equal pieces, each
with its own items and its own noise generator, both functions of (seed, step, piece). Under
``torchrun`` (``WORLD_SIZE`` > 1) every process computes the gradients of its share of the
pieces, the gradients are summed over processes (one flat all-reduce), and every process
takes the same optimizer step; rank 0 alone writes metrics, checkpoints and the model. A run
with P processes and ``micro_batches = M`` gives the weights of one process with the same M.

Devices: ``resolve_device`` turns ``--device`` into a torch device (a clear error when it is
not there); the loop trains where the stage put its model (stages move their batches there
with ``to_device``). Gradients are summed with NCCL when that is a GPU, with gloo otherwise.
``mixed_precision="bf16"`` runs the stage's loss under ``torch.autocast`` in bfloat16
(weights, gradients, optimizer state and EMA stay float32); ``compile=True`` compiles the
model with ``torch.compile``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .files import check_run_directory, remove_path
from .models.io import atomic_directory, load_safetensors

CHECKPOINT_DIR = "checkpoint"
MIXED_PRECISION = ("no", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    ema_decay: float = 0.999  # 0 disables EMA
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25
    sample_every: int = 0  # 0: only at the end
    checkpoint_every: int = 500
    max_nonfinite: int = 20  # consecutive non-finite losses before giving up
    micro_batches: int = 0  # pieces the global batch is cut into; 0 = one per process
    mixed_precision: str = "no"  # "bf16": forward and backward under bfloat16 autocast
    compile: bool = False  # torch.compile the model (GPU: faster steps after a slow first one)
    # end this run after step N (checkpoint and model written there; the learning-rate schedule
    # still spans `steps`, and --resume goes on): a job cut to fit a time limit; 0 = run to `steps`
    stop_at: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batches < 0 or (self.micro_batches and self.batch_size % self.micro_batches):
            raise ValueError(f"micro_batches must divide batch_size {self.batch_size}, got {self.micro_batches}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.stop_at <= self.steps:
            raise ValueError(f"stop_at must be in [0, steps={self.steps}], got {self.stop_at}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")


@dataclass
class Stage:
    """What a stage gives the loop."""

    name: str
    model: torch.nn.Module  # the trainable module; its state_dict is what is checkpointed
    loss: Callable[[Any, torch.Generator], tuple[torch.Tensor, dict[str, float]]]
    # (step, batch_size, positions) -> the items at ``positions`` (a range; None = all) of the
    # step's global batch; deterministic
    make_batch: Callable[[int, int, range | None], Any]
    save: Callable[[torch.nn.Module, Path], None]  # write the final (EMA) model directory
    sample: Callable[[torch.nn.Module, Path], None] | None = None  # write preview(s) to a path stem
    describe: dict[str, Any] = field(default_factory=dict)  # recorded in the metrics file


class NonFiniteLossError(RuntimeError):
    pass


def _ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype.is_floating_point:
                ema[name].lerp_(p, 1 - decay)
            else:
                ema[name].copy_(p)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as flat tensors (safetensors) + JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in tensors.items():
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for flat, value in meta["scalars"].items():
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(out: Path, step: int, model, ema, opt, counters: dict[str, Any]) -> Path:
    target = out / CHECKPOINT_DIR
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        if ema is not None:
            save_file({k: v.contiguous().cpu() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
        tensors, meta = _optimizer_tensors(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": meta, **counters}, indent=1))
    return target


def load_checkpoint(out: Path, model, ema, opt) -> dict[str, Any]:
    ckpt = out / CHECKPOINT_DIR
    state_file = ckpt / "state.json"
    if not state_file.is_file():
        raise ValueError(f"{out}: no checkpoint to resume from ({state_file} missing)")
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{state_file}: corrupt ({err})") from None
    model.load_state_dict(load_safetensors(ckpt / "model.safetensors"))
    if ema is not None:
        ema_state = load_safetensors(ckpt / "ema.safetensors")
        for k in ema:
            ema[k].copy_(ema_state[k])
    _restore_optimizer(opt, load_safetensors(ckpt / "optimizer.safetensors"), state["optimizer"])
    return state


def resolve_device(name: str) -> torch.device:
    """``--device``: cpu, cuda or cuda:N; a clear error when it is not there. Under torchrun,
    plain "cuda" means this process's GPU (``LOCAL_RANK``)."""
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU")
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if name == "cuda" else name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(device)
    return device


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in a batch (nested dicts, lists, tuples) moved to ``device``; the rest as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def distributed_context(device: torch.device = torch.device("cpu")) -> tuple[int, int]:
    """(rank, world size). Under torchrun (``WORLD_SIZE`` > 1) joins the process group
    unless the caller already did: NCCL for GPU training, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _piece_generator(seed: int, step: int, piece: int) -> torch.Generator:
    """Noise of one piece of one step; piece 0 is the generator of a one-piece run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + piece * 1_000_000_007)


def _all_reduce(value: torch.Tensor, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return value


def _sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients over processes in one flat all-reduce."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    # a parameter no process used keeps grad None (AdamW skips it, as in one process)
    used = _all_reduce(torch.tensor([float(p.grad is not None) for p in params], device=params[0].device), op="max")
    live = [p for p, u in zip(params, used.tolist()) if u]
    if not live:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in live]
    flat = _all_reduce(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for p, g in zip(live, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def _broadcast_state(model: torch.nn.Module, ema: dict[str, torch.Tensor] | None) -> None:
    """Every process starts from rank 0's weights."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    with torch.no_grad():
        for tensor in [*model.state_dict().values(), *(ema.values() if ema is not None else [])]:
            dist.broadcast(tensor, src=0)


def train(stage: Stage, cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          overwrite: bool = False) -> Path:
    """Train ``stage`` for ``cfg.steps`` steps into ``out``; returns the final model directory.
    ``out`` must be new or empty, or hold a run: continued with ``resume``, started again with
    ``overwrite`` (see ``files.check_run_directory``)."""
    out = Path(out)
    model = stage.model.train()
    device = next(model.parameters()).device
    rank, world = distributed_context(device)
    pieces = cfg.micro_batches or world
    if cfg.batch_size % pieces:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible into {pieces} micro-batches "
                         f"({world} processes)")
    if pieces % world:
        raise ValueError(f"{pieces} micro-batches cannot be shared evenly by {world} processes")
    size = cfg.batch_size // pieces
    mine = [p for p in range(pieces) if p % world == rank]
    main_process = rank == 0
    if main_process:
        for old in check_run_directory(out, resume, overwrite):
            remove_path(old)
    out.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"stage {stage.name}: nothing to train")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.ema_decay > 0 else None
    counters = {"nonfinite_total": 0, "nonfinite_run": 0}
    start = 0
    if resume:
        state = load_checkpoint(out, model, ema, opt)
        start = state["step"]
        counters = {k: state.get(k, 0) for k in counters}
    end = cfg.stop_at or cfg.steps
    if start > end:
        raise ValueError(f"{out / CHECKPOINT_DIR} is at step {start}, past stop_at={end}")
    _broadcast_state(model, ema)
    if cfg.compile:
        model.compile()  # in place: the stage's loss keeps calling the same module object
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16")
    metrics_path = out / "metrics.jsonl"
    if main_process and resume and metrics_path.exists():  # drop records of steps that are about to be redone
        kept = [line for line in metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= start]
        metrics_path.write_text("".join(line + "\n" for line in kept))
    metrics_file = metrics_path.open("a") if main_process else open(os.devnull, "w")
    if start == 0:
        metrics_file.write(json.dumps({"event": "start", "stage": stage.name, "config": asdict(cfg),
                                       "processes": world, **stage.describe}) + "\n")

    def lr_at(step: int) -> float:  # linear warmup, then cosine to 10%
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress_frac = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress_frac, 1.0))))

    t0, window = time.time(), []
    bar = tqdm(range(start, end), desc=f"train {stage.name}", disable=not (progress and main_process),
               initial=start, total=cfg.steps)
    try:
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            total, logs, finite = torch.zeros((), device=device), {}, True
            for piece in mine:  # gradient accumulation over this process's pieces
                batch = stage.make_batch(step, cfg.batch_size, range(piece * size, (piece + 1) * size))
                with autocast:
                    loss, piece_logs = stage.loss(batch, _piece_generator(cfg.seed, step, piece))
                loss = loss.float()
                if not torch.isfinite(loss):
                    finite = False
                    break
                (loss / pieces).backward()
                total += loss.detach() / pieces
                for k, v in piece_logs.items():
                    logs[k] = logs.get(k, 0.0) + v / len(mine)
            # every process skips the step when one of them saw a non-finite loss
            finite = bool(_all_reduce(torch.tensor(0.0 if finite else 1.0, device=device), op="max") == 0)
            if not finite:
                counters["nonfinite_total"] += 1
                counters["nonfinite_run"] += 1
                opt.zero_grad(set_to_none=True)
                if counters["nonfinite_run"] >= cfg.max_nonfinite:
                    if main_process:
                        save_checkpoint(out, step, model, ema, opt, counters)
                    raise NonFiniteLossError(
                        f"stage {stage.name}: {counters['nonfinite_run']} non-finite losses in a row at step {step}; "
                        f"stopped, last good weights are in {out / CHECKPOINT_DIR} (try a lower --lr)"
                    )
                continue
            counters["nonfinite_run"] = 0
            _sum_gradients(params)
            loss = _all_reduce(total)  # the global batch's loss
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if ema is not None:
                _ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
            window.append({"loss": loss.item(), "grad_norm": float(grad_norm), **logs})
            done = step + 1
            if done % cfg.log_every == 0 or done == end:
                avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                record = {"step": done, "lr": lr_at(step), "elapsed_s": round(time.time() - t0, 1),
                          "nonfinite_total": counters["nonfinite_total"], **{k: round(v, 6) for k, v in avg.items()}}
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{avg['loss']:.4f}")
                window = []
            if not main_process:
                continue
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end:
                save_checkpoint(out, done, model, ema, opt, counters)
            if stage.sample is not None and cfg.sample_every and done % cfg.sample_every == 0 and done < end:
                _sample(stage, model, ema, out / "samples" / f"step_{done:06d}")
        if main_process:
            save_checkpoint(out, end, model, ema, opt, counters)
    finally:
        metrics_file.close()
    if not main_process:
        return out / "model"
    final = _final_model(model, ema)
    stage.save(final, out / "model")
    if stage.sample is not None:
        _sample(stage, model, ema, out / "samples" / "final")
    return out / "model"


def _final_model(model: torch.nn.Module, ema: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    if ema is not None:
        model.load_state_dict(ema)
    return model.eval()


def _sample(stage: Stage, model, ema, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    if ema is None:
        stage.sample(model.eval(), stem)
        model.train()
        return
    live = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema)
    stage.sample(model.eval(), stem)
    model.load_state_dict(live)
    model.train()
