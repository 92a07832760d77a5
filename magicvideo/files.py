"""Output files: the overwrite policy, temporary names, and what a kill leaves behind.

Every file or folder magicvideo writes is first written beside its target under the name
``.{name}.tmp-{pid}`` and renamed onto the target when complete, so a failure, Ctrl-C or
SIGTERM never leaves a partial output under the real name (the temporary is removed on the
way out). A SIGKILL or a power cut can leave the temporary itself; the next write to the same
target removes the temporaries of that target whose process is gone. A folder being replaced
is first moved aside as ``.{name}.old-{pid}``, cleaned the same way.

Policy for the command line: an existing output is refused unless ``--overwrite`` is given,
and the target's folder must accept a new file (checked by creating one) before any compute.
No torch here: the CLI runs these checks before loading anything.
"""
from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

OVERWRITE_HINT = "pass --overwrite to replace it"


def temp_path(target: Path) -> Path:
    """Where ``target`` is written before it is renamed into place: predictable per target
    and process, so that a later run can find and remove what a killed one left."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def aside_path(target: Path) -> Path:
    """Where a folder being replaced waits until its successor is in place."""
    return target.with_name(f".{target.name}.old-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OverflowError, ValueError):
        return False
    return True


def remove_path(path: Path) -> None:
    """Remove a file, a link or a whole folder, whatever ``path`` is; missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporaries (and folders moved aside) of ``target`` left by processes that
    no longer run (a SIGKILL mid-write); returns what was removed."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)")
    parent = target.parent
    removed = []
    try:
        names = [e.name for e in os.scandir(parent) if e.name.startswith(f".{target.name}.")]
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match and int(match[1]) != os.getpid() and not _process_alive(int(match[1])):
            remove_path(parent / name)
            removed.append(parent / name)
    return removed


def check_json_numbers(data: Any, source: str, prefix: str = "") -> None:
    """Every number in a JSON structure is finite (Python's json reads NaN, Infinity and 1e999);
    the error names the file and the key path (``defaults.guidance``)."""
    if isinstance(data, dict):
        for key, value in data.items():
            check_json_numbers(value, source, f"{prefix}{key}.")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_json_numbers(value, source, f"{prefix}{i}.")
    elif isinstance(data, float) and not math.isfinite(data):
        raise ValueError(f"{source}: {prefix.rstrip('.')} must be a finite number, got {data}")


def probe_writable(target: Path) -> None:
    """Create and remove a file where ``target``'s temporary will go: a folder that cannot take
    a new file (read-only, no permission, full) is named now rather than after the compute."""
    probe = temp_path(target)
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:  # this process is writing it right now: the folder takes files
        return
    except OSError as err:
        raise ValueError(f"{target}: cannot write in {target.parent or '.'} ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_new_output(target: Path, overwrite: bool, existing: list[Path] | None = None) -> None:
    """The overwrite policy: ``target`` (or any of ``existing``, paths that count as it, such
    as the frames of a sequence) may already exist only when ``overwrite``."""
    found = existing if existing is not None else ([target] if os.path.lexists(target) else [])
    if found and not overwrite:
        what = f"{target}: already exists" if found == [target] else \
            f"{target}: {len(found)} file(s) of it already exist ({found[0].name}{' ...' if len(found) > 1 else ''})"
        raise ValueError(f"{what}; {OVERWRITE_HINT}")


def check_parent_directory(target: Path) -> None:
    """The folder an output goes to exists and is a folder; errors name the output."""
    parent = Path(target).parent
    if not parent.is_dir():
        raise ValueError(f"{target}: directory {parent} does not exist" if not parent.exists() else
                         f"{target}: {parent} is not a directory")


def prepare_output(target: str | Path, overwrite: bool, existing: list[Path] | None = None) -> Path:
    """Before any compute: ``target``'s folder exists and accepts a new file, ``target`` is not
    a folder, and it is new unless ``overwrite``. Stale temporaries of it are removed."""
    target = Path(target)
    check_parent_directory(target)
    if target.is_dir():
        raise ValueError(f"{target}: is a directory")
    check_new_output(target, overwrite, existing)
    remove_stale_temps(target)
    probe_writable(target)
    return target


def publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished temporary ``tmp`` onto ``target``. Without ``overwrite`` a file that
    appeared at ``target`` during the compute is not replaced (a hard link fails if the name
    exists; filesystems without hard links get a check just before the rename)."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise ValueError(f"{target}: appeared while this run was computing; {OVERWRITE_HINT}") from None
    except OSError:
        if os.path.lexists(target):
            raise ValueError(f"{target}: appeared while this run was computing; {OVERWRITE_HINT}") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def probe_folder_for(target: Path) -> None:
    """A folder output (``target`` and any missing parents are made later): the nearest
    existing folder above it accepts a new entry."""
    target = Path(target)
    above = target.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ValueError(f"{target}: {above} is not a folder")
    probe_writable(above / target.name)


RUN_ENTRIES = ("checkpoint", "model", "metrics.jsonl", "samples")  # what train.train writes into a run folder


def check_run_directory(out: str | Path, resume: bool, overwrite: bool) -> list[Path]:
    """A training run goes into a new or empty folder; a folder holding a run is continued with
    ``resume`` or started again with ``overwrite`` (returns the old run's entries, to be removed
    before the first step); a non-empty folder that is not a run is refused either way. Hidden
    entries (a killed write's temporaries) do not count."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a run folder")
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    if resume or not entries:
        return []
    run = [name for name in entries if name in RUN_ENTRIES]
    if not run:
        raise ValueError(f"{out}: not empty and not a training run ({', '.join(entries[:3])}"
                         f"{' ...' if len(entries) > 3 else ''}); train into a new or empty folder")
    if not overwrite:
        raise ValueError(f"{out}: holds a training run ({', '.join(run)}); --resume continues it, --overwrite "
                         f"starts it again from step 0")
    return [out / name for name in run]
