"""Model directories: ``config.json`` + ``model.safetensors``, written atomically.

Weights are only ever read with safetensors; every error names the file and the problem.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import config_to_dict, read_config_file

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
    own = model.state_dict()
    check_state_dict_keys(set(own), set(state), source, allowed_missing)
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"{source}: tensor shapes do not match the model: {_preview(bad, 6)}")
    model.load_state_dict(state, strict=False)


@contextmanager
def atomic_directory(directory: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``directory``; on a clean exit it replaces
    ``directory`` by rename, on any error (or a kill) it is removed and the old one stays."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    usual_permissions(tmp, directory=True)
    for f in tmp.rglob("*"):
        usual_permissions(f, directory=f.is_dir())
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` by
    rename, on any error the temporary file is removed and ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        usual_permissions(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def usual_permissions(path: Path, directory: bool = False) -> None:
    """mkdtemp / mkstemp make 0700 / 0600 entries; give them what a plain mkdir / open would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def save_model_dir(model: torch.nn.Module, config: Any, directory: str | Path) -> Path:
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
    return directory


def load_model_dir(model_cls: type, config_cls: type, directory: str | Path, device: str | torch.device = "cpu"):
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: model directory not found")
    config = read_config_file(config_cls, directory / CONFIG_NAME)
    state = load_safetensors(directory / WEIGHTS_NAME, device=device)
    with torch.device(device):
        model = model_cls(config)
    load_state_dict_checked(model, state, str(directory / WEIGHTS_NAME))
    return model.eval()


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
