"""Model directories: ``config.json`` + ``model.safetensors``, written atomically.

Weights are only ever read with safetensors; every error names the file and the problem.
A ``config.json`` is checked value by value before anything is built (types, finite numbers,
sizes in range), and the model is first built on the meta device and matched against the
weights' shapes, so a config that does not fit its weights is an error, not an allocation.
Temporary names and the cleanup after a kill: ``magicvideo.files``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import config_from_dict, config_to_dict
from ..files import aside_path, publish, remove_path, remove_stale_temps, temp_path

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def load_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (pickle, truncated file, missing file) is a
    ValueError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: weights file not found")
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin", ".pkl"):
        raise ValueError(f"{path}: only safetensors weights are loaded (pickle-based {path.suffix} files are refused)")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None


def check_state_dict_keys(
    expected: set[str], found: set[str], source: str, allowed_missing: set[str] = frozenset()
) -> None:
    missing = sorted(expected - found - set(allowed_missing))
    unexpected = sorted(found - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        raise ValueError(f"{source}: weights do not match the model; " + "; ".join(parts))


def _preview(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_checked(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    allowed_missing: set[str] = frozenset(),
) -> None:
    """Load ``state`` into ``model``: key sets and shapes must match (except allowed_missing)."""
    check_state_dict_fits(model, state, source, allowed_missing)
    model.load_state_dict(state, strict=False)


def check_state_dict_fits(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    allowed_missing: set[str] = frozenset(),
) -> None:
    """Key sets and shapes of ``state`` match ``model`` (which may live on the meta device)."""
    own = model.state_dict()
    check_state_dict_keys(set(own), set(state), source, allowed_missing)
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"{source}: tensor shapes do not match the model: {_preview(bad, 6)}")


@contextmanager
def atomic_directory(directory: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``directory`` (``.{name}.tmp-{pid}``); on a clean exit
    it replaces ``directory`` by rename, on any error (or a kill) it is removed and the old one
    stays. Temporaries a killed process left for the same directory are removed first."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory)
    tmp = temp_path(directory)
    remove_path(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    old = None
    if directory.exists():
        old = aside_path(directory)
        remove_path(old)
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old is not None:
        remove_path(old)


@contextmanager
def atomic_file(path: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``.{name}.tmp-{pid}``); on a clean exit it
    replaces ``path`` by rename (``overwrite=False``: refuses if ``path`` appeared meanwhile),
    on any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_path(path)
    remove_path(tmp)
    try:
        yield tmp
        publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


# -- config.json values --------------------------------------------------------------------
MAX_CONFIG_INT = 65536  # widths, heads, frames, levels: anything larger is a typo or a hostile file
MAX_CONFIG_SIZE = 4096  # sizes that set what a pipeline generates (latent or pixel side)
SIZE_FIELDS = ("sample_size", "low_res_size")


def _check_value(key: str, value: Any, kind: Any) -> str | None:
    """Why ``value`` is not a sane ``kind`` (a field's annotation), or None."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check_value(key, value, next(a for a in args if a is not type(None)))
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list) or len(value) > 64:
            return "a list"
        problems = [_check_value(key, v, args[0]) for v in value]
        return next((f"a list, each item {p}" for p in problems if p), None)
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int:
        high = MAX_CONFIG_SIZE if key in SIZE_FIELDS else MAX_CONFIG_INT
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high
        return None if ok else f"an integer from 0 to {high}"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if kind is str:
        return None if isinstance(value, str) else "a string"
    return None


def check_config_values(cls: type, data: Any, source: str) -> None:
    """Every field of a ``config.json`` has its declared type, numbers are finite and sizes in
    range; the error names the file and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in data:
            problem = _check_value(field.name, data[field.name], hints[field.name])
            if problem:
                raise ValueError(f"{source}: {field.name} must be {problem}, got {data[field.name]!r}")


def read_model_config(cls: type, path: Path) -> Any:
    """``config.json`` -> ``cls``, every value checked first (``check_config_values``)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror})") from None
    check_config_values(cls, data, str(path))
    return config_from_dict(cls, data, source=str(path))


def save_model_dir(model: torch.nn.Module, config: Any, directory: str | Path) -> Path:
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
        # safetensors writes 0600; give the file a plain open()'s mode (0666 less the umask, which
        # mkdir applied to the new folder: read without os.umask's process-wide set-and-restore)
        os.chmod(tmp / WEIGHTS_NAME, tmp.stat().st_mode & 0o666)
    return directory


def load_model_dir(model_cls: type, config_cls: type, directory: str | Path, device: str | torch.device = "cpu"):
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: model directory not found")
    config = read_model_config(config_cls, directory / CONFIG_NAME)
    state = load_safetensors(directory / WEIGHTS_NAME, device=device)
    with torch.device("meta"):  # keys and shapes first, without allocating what the config asks for
        shell = model_cls(config)
    check_state_dict_fits(shell, state, str(directory / WEIGHTS_NAME))
    # the file's tensors become the shell's parameters (no random init, no second copy: the
    # weights are the same bytes either way); a model holding tensors the file does not have
    # (non-persistent buffers, tensors kept as attributes) is built for real instead
    own = shell.state_dict()
    for k in state:  # one tensor at a time: a copy made replaces its original at once
        state[k] = _aligned(state[k].to(own[k].dtype))
    shell.load_state_dict(state, strict=False, assign=True)
    if not _has_meta_tensors(shell):
        return shell.eval()
    with torch.device(device):
        model = model_cls(config)
    model.load_state_dict(state, strict=False)
    return model.eval()


def _aligned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` at a 64-byte boundary, where torch allocates its own (copied if the file's
    reader left it off one). CPU kernels (MKL, oneDNN) round differently on misaligned
    weights: a loaded SR stage made frames 1 level off the same weights built in memory, and
    frames would depend on where the allocator happened to put the file's bytes."""
    return tensor if tensor.data_ptr() % 64 == 0 else tensor.clone()


def _has_meta_tensors(model: torch.nn.Module) -> bool:
    """Any parameter, buffer or tensor attribute of ``model`` still on the meta device."""
    for module in model.modules():
        tensors = [*module._parameters.values(), *module._buffers.values(), *vars(module).values()]
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
            return True
    return False


class ModelDirectoryMixin:
    """``save_pretrained`` / ``from_pretrained`` for models built from one frozen config
    dataclass (``config_class``) and stored as config.json + model.safetensors."""

    config_class: type

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_model_dir(self, self.config, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu"):
        """Load a directory written by ``save_pretrained``; errors name the file."""
        return load_model_dir(cls, cls.config_class, directory, device=device)
