"""Bad input, kills and odd files (issue 26): one table per class of problem, one line per case.

A case is the command line (and the files it starts from), the exit code, words the one-line
message must hold, and files that must not exist afterwards. Cases run ``magicvideo.cli.main``
in-process; the kills run in a subprocess. Checks on arguments must fail before any model
loads: loading one is a test failure here (``no_models``), so most cases take milliseconds.
Every case also checks that no file it started from was changed and that no temporary
(``.NAME.tmp-PID``) is left anywhere.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from magicvideo.cli import main

ROOT = Path(__file__).resolve().parents[1]


# -- files a case starts from ------------------------------------------------------------------
def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels in 100 bytes: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _video(path: Path, frames: int = 4, fps: float = 8.0) -> None:
    from magicvideo.video_io import write_video

    write_video(np.full((frames, 16, 16, 3), 90, np.uint8), path, fps=fps)


SETUPS = {
    "out.mp4": lambda d: (d / "out.mp4").write_bytes(b"an earlier video"),
    "out.gif": lambda d: (d / "out.gif").write_bytes(b"an earlier gif"),
    "seq": lambda d: [(d / f"seq_{i:04d}.png").write_bytes(b"frame") for i in range(6)],
    "seq_3": lambda d: (d / "seq_0003.png").write_bytes(b"frame"),
    "seq_dir": lambda d: (d / "seq_0000.png").mkdir(),
    "out_dir": lambda d: (d / "out.mp4").mkdir(),
    "file": lambda d: (d / "file.txt").write_text("a file"),
    "src": lambda d: _video(d / "src.mp4"),
    "src_link": lambda d: (_video(d / "src.mp4"), os.link(d / "src.mp4", d / "same.mp4")),
    "long_src": lambda d: _video(d / "src.mp4", frames=1025),
    "v_1": lambda d: (_video(d / "src.mp4"), (d / "v_1.mp4").write_bytes(b"variation 1")),
    "report": lambda d: (d / "report.json").write_text("{}"),
    "run": lambda d: ((d / "run" / "checkpoint").mkdir(parents=True), (d / "run" / "metrics.jsonl").write_text("{}\n")),
    "not_run": lambda d: ((d / "mine").mkdir(), (d / "mine" / "thesis.tex").write_text("years of work")),
    "cache": lambda d: ((d / "cache").mkdir(), (d / "cache" / "cache.json").write_text("{}")),
    "huge.png": lambda d: (d / "huge.png").write_bytes(_png_header(9000, 9000)),
    "bomb.png": lambda d: (d / "bomb.png").write_bytes(_png_header(20000, 20000)),
    "text.png": lambda d: (d / "text.png").write_text("not an image"),
    "text.mp4": lambda d: (d / "text.mp4").write_text("not a video"),
    "frame": lambda d: _video(d / "f.png", frames=3),  # f_0000.png ... f_0002.png
}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if "spec" not in p.parts}


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The case's folder (the working directory) with ``spec/``: a pipeline directory holding
    only its JSON files (pipeline.json with an interpolation stage, the keyframe config), all
    the checks before loading read."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec"
    (spec / "keyframe").mkdir(parents=True)
    stages = {s: s for s in ("keyframe", "vae", "encoder", "interpolation")}
    (spec / "pipeline.json").write_text(json.dumps({"stages": stages, "defaults": {"fps": 8.0}}))
    (spec / "keyframe" / "config.json").write_text(json.dumps({"max_frames": 16}))
    return tmp_path


@pytest.fixture
def no_models(monkeypatch):
    """Loading a model or building a training stage fails the test."""
    import magicvideo.stages
    from magicvideo.pipeline import MagicVideoPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(MagicVideoPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(magicvideo.stages, "build_stage", refuse)


def exit_code(argv: list[str]) -> int:
    """``magicvideo ARGV`` in this process: its exit code (argparse's errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def run_case(work: Path, capsys, setup: str, argv: str, code: int, words: str, absent: str = "") -> str:
    for name in setup.split():
        SETUPS[name](work)
    before = _snapshot(work)
    assert exit_code(argv.replace("{spec}", str(work / "spec")).split()) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 0 or len(lines) == 1, err  # one line, no traceback
    for word in words.split("|"):
        assert word in err, (word, err)
    for pattern in absent.split():
        assert not list(work.glob(pattern)), pattern
    if code != 0:
        after = _snapshot(work)
        assert {k: v for k, v in after.items() if k in before} == before  # nothing overwritten
        assert set(after) == set(before), set(after) ^ set(before)  # nothing new
    assert not _temporaries(work)
    return err


# -- 1. existing outputs: refused unless --overwrite ---------------------------------------------
OVERWRITE = [  # setup, argv, exit code, words ("|" between), paths that must not exist afterwards
    ("out.mp4", "generate a_circle -o out.mp4 --pipeline {spec}", 2, "out.mp4: already exists|--overwrite", ""),
    ("out.gif", "animate text.png -o out.gif --pipeline {spec}", 2, "out.gif: already exists|--overwrite", ""),
    ("seq_3", "generate a_circle -o seq.png --pipeline {spec}", 2, "seq.png: 1 file(s) of it already exist|"
                                                               "seq_0003.png|--overwrite", "seq_0000.png"),
    ("seq", "generate a_circle -o seq.png --pipeline {spec}", 2, "6 file(s) of it already exist", ""),
    ("v_1", "vary src.mp4 -n 2 -o v.mp4 --pipeline {spec}", 2, "v_1.mp4: already exists", "v_0.mp4"),
    ("src", "edit src.mp4 a_square -o src.mp4 --pipeline {spec}", 2, "is the input video", ""),
    ("src", "edit src.mp4 a_square -o src.mp4 --overwrite --pipeline {spec}", 2, "is the input video", ""),
    ("src", "edit src.mp4 a_square -o ./spec/../src.mp4 --overwrite --pipeline {spec}", 2, "is the input video", ""),
    ("src_link", "edit src.mp4 a_square -o same.mp4 --overwrite --pipeline {spec}", 2, "is the input video", ""),
    ("src", "vary src.mp4 -n 1 -o src.mp4 --overwrite --pipeline {spec}", 2, "is the input video", ""),
    ("frame", "edit f_0002.png a_square -o f.png --overwrite --pipeline {spec}", 2, "is the input video", ""),
    ("report", "evaluate --out report.json --pipeline {spec}", 2, "report.json: already exists|--overwrite", ""),
    ("cache", "cache-latents -o cache --vae v", 2, "cache: already exists|--overwrite", ""),
    ("not_run", "cache-latents -o mine --vae v --overwrite", 2, "not a latent cache", ""),
    ("run", "train --stage vae -o run", 2, "holds a training run|--resume|--overwrite", ""),
    ("not_run", "train --stage vae -o mine", 2, "not empty and not a training run|thesis.tex", ""),
    ("not_run", "train --stage vae -o mine --overwrite", 2, "not a training run", ""),
    ("file", "train --stage vae -o file.txt", 2, "is a file", ""),
]


@pytest.mark.parametrize("setup, argv, code, words, absent", OVERWRITE, ids=[c[1] for c in OVERWRITE])
def test_existing_outputs_are_refused(work, capsys, no_models, setup, argv, code, words, absent):
    run_case(work, capsys, setup, argv, code, words, absent)


# -- 2. outputs the checks must catch before compute -----------------------------------------------
OUTPUT_PATHS = [
    ("out_dir", "generate a_circle -o out.mp4 --overwrite --pipeline {spec}", 2, "out.mp4: is a directory"),
    ("seq_dir", "generate a_circle -o seq.png --overwrite --pipeline {spec}", 2, "seq_0000.png: is a directory"),
    ("", "generate a_circle -o missing/out.mp4 --pipeline {spec}", 2, "directory missing does not exist"),
    ("file", "generate a_circle -o file.txt/out.mp4 --pipeline {spec}", 2, "file.txt is not a directory"),
    ("", "generate a_circle -o out.avi --pipeline {spec}", 2, "unknown output extension .avi"),
    ("", "generate a_circle -o /sys/out.mp4 --pipeline {spec}", 2, "cannot write in /sys"),
    ("", "generate a_circle -o /sys/seq.png --pipeline {spec}", 2, "cannot write in /sys"),
    ("", "evaluate --out /sys/report.json --pipeline {spec}", 2, "cannot write in /sys"),
    ("", "evaluate --out report.txt --pipeline {spec}", 2, "must be a .json file"),
    ("", "train --stage vae -o /sys/run", 2, "cannot write in /sys"),
    ("", "cache-latents -o /sys/cache --vae v", 2, "cannot write in /sys"),
]


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a folder no process may write in (/sys)")
@pytest.mark.parametrize("setup, argv, code, words", OUTPUT_PATHS, ids=[c[1] for c in OUTPUT_PATHS])
def test_unwritable_outputs_are_named_before_compute(work, capsys, no_models, setup, argv, code, words):
    run_case(work, capsys, setup, argv, code, words)


# -- 3. numbers: finite and in range before any model loads ---------------------------------------
NUMBERS = [  # argv (after the command's required part), words
    ("generate a -o o.mp4 --fps inf", "--fps: must be a finite number"),
    ("generate a -o o.mp4 --fps nan", "--fps: must be a finite number"),
    ("generate a -o o.mp4 --fps 1e9", "--fps: must be between 0.1 and 240"),
    ("generate a -o o.mp4 --fps 1e-9", "--fps: must be between 0.1 and 240"),
    ("generate a -o o.mp4 --fps 0", "--fps: must be > 0"),
    ("generate a -o o.mp4 --fps x", "--fps: not a number"),
    ("generate a -o o.mp4 --fps 100 --pipeline {spec}", "400 fps (100 fps x 4 by the interpolation stage)"),
    ("generate a -o o.gif --fps 20 --pipeline {spec}", "80 fps|a GIF plays 0.1 to 50 fps"),
    ("generate a -o o.gif --fps 60 --no-interpolate --pipeline {spec}", "60 fps; a GIF plays"),
    ("generate a -o o.mp4 --guidance inf", "--guidance: must be a finite number"),
    ("generate a -o o.mp4 --guidance nan", "--guidance: must be a finite number"),
    ("generate a -o o.mp4 --guidance 51", "--guidance: must be <= 50"),
    ("generate a -o o.mp4 --guidance -1", "--guidance: must be >= 0"),
    ("generate a -o o.mp4 --steps 0", "--steps: must be >= 1"),
    ("generate a -o o.mp4 --steps 2.5", "--steps: not an integer"),
    ("generate a -o o.mp4 --steps 5000 --pipeline {spec}", "--steps must be at most 1000"),
    ("generate a -o o.mp4 --seed -1", "--seed: must be an integer from 0 to 2**63 - 1"),
    ("generate a -o o.mp4 --seed 9223372036854775808", "--seed: must be an integer from 0 to 2**63 - 1"),
    ("generate a -o o.mp4 --num-frames 0", "--num-frames: must be >= 1"),
    ("generate a -o o.mp4 --num-frames 1025", "--num-frames: must be <= 1024"),
    ("generate a -o o.mp4 --context-frames 16 --pipeline {spec}", "--context-frames must be below the model's window"),
    ("animate i.png -o o.mp4 --fps -3", "--fps: must be > 0"),
    ("vary v.mp4 -o o.mp4 --strength 1.5", "--strength: must be in [0, 1]"),
    ("vary v.mp4 -o o.mp4 --strength nan", "--strength: must be a finite number"),
    ("edit v.mp4 a -o o.mp4 --strength inf", "--strength: must be a finite number"),
    ("vary v.mp4 -o o.mp4 -n 0", "-n: must be >= 1"),
    ("train --stage vae -o r --lr inf", "--lr: must be a finite number"),
    ("train --stage vae -o r --lr 2", "--lr: must be <= 1"),
    ("train --stage vae -o r --ema-decay 1", "--ema-decay: must be < 1"),
    ("train --stage vae -o r --seed 4294967296", "--seed: must be an integer from 0 to 2**32 - 1"),
    ("train --stage vae -o r --object-weight nan", "--object-weight: must be a finite number"),
    ("train --stage vae -o r --pool-clips -1", "--pool-clips: must be >= 0"),
    ("train --stage vae -o r --micro-batches -2", "--micro-batches: must be >= 0"),
    ("train --stage vae -o r --frame-noise-correlation inf", "must be a finite number"),
    ("train --stage keyframe -o r --unet norm_eps=NaN", "--unet: norm_eps must be a finite number"),
    ("train --stage keyframe -o r --unet max_frames=1e9", "--unet: max_frames must be an integer from 0 to 65536"),
    ("train --stage keyframe -o r --unet block_out_channels=[32,-64]", "--unet: block_out_channels must be a list"),
    ("cache-latents -o c --vae v --workers -1", "--workers: must be >= 0"),
    ("evaluate --num-videos 0", "--num-videos: must be >= 1"),
    ("evaluate --seed -5", "--seed: must be an integer from 0"),
    ("info --frames 100000", "--frames: must be <= 1024"),
]


@pytest.mark.parametrize("argv, words", NUMBERS, ids=[c[0] for c in NUMBERS])
def test_numbers_are_checked_before_any_model_loads(work, capsys, no_models, argv, words):
    run_case(work, capsys, "", argv, 2, words)


def test_the_cli_limits_agree_with_the_library():
    from magicvideo import cli, pipeline
    from magicvideo.diffusion import NoiseSchedule
    from magicvideo.interpolate import FPS_FACTOR

    assert cli.MAX_KEYFRAMES == pipeline.MAX_KEYFRAMES and cli.FPS_FACTOR == FPS_FACTOR
    assert NoiseSchedule().num_train_timesteps == 1000  # what _pipeline_facts assumes when pipeline.json omits it


# -- 4. input files: refused from what is known before decoding -----------------------------------
INPUT_FILES = [
    ("huge.png", "animate huge.png -o o.mp4 --pipeline {spec}", "9000x9000 is 81 megapixels, more than the 64"),
    ("bomb.png", "animate bomb.png -o o.mp4 --pipeline {spec}", "bomb.png: more than 64 megapixels"),
    ("text.png", "animate text.png -o o.mp4 --pipeline {spec}", "text.png: not a readable image"),
    ("", "animate missing.png -o o.mp4 --pipeline {spec}", "missing.png: image file not found"),
    ("text.mp4", "edit text.mp4 a_square -o o.mp4 --pipeline {spec}", "text.mp4: not a readable video"),
    ("long_src", "vary src.mp4 -n 1 -o o.mp4 --pipeline {spec}", "src.mp4: more than 1024 frames"),
    ("src", "vary src.mp4 -n 1 -o o.gif --fps 30 --pipeline {spec}", "120 fps (30 fps x 4"),
    ("src", "vary src.mp4 -n 2 -o o.mp4 --seed 9223372036854775807 --pipeline {spec}", "seeds pass 2**63"),
]


@pytest.mark.parametrize("setup, argv, words", INPUT_FILES, ids=[c[1] for c in INPUT_FILES])
def test_input_files_are_checked_before_decoding_and_loading(work, capsys, no_models, setup, argv, words):
    run_case(work, capsys, setup, argv, 2, words)


# -- 5. numbers inside a pipeline's files ------------------------------------------------------
CONFIG_FILES = [  # file in the pipeline, key ("." for nesting), value, words; JSON as Python's json writes it
    ("pipeline.json", "defaults.guidance", float("inf"), "pipeline.json: defaults.guidance must be a finite number"),
    ("pipeline.json", "defaults.guidance", 1e6, "pipeline.json: defaults: guidance must be a finite number in [0, 50]"),
    ("pipeline.json", "defaults.fps", 1e9, "pipeline.json: defaults: fps must be a finite number in [0.1, 240]"),
    ("pipeline.json", "defaults.fps", 1e-9, "pipeline.json: defaults: fps must be a finite number in [0.1, 240]"),
    ("pipeline.json", "defaults.edit_strength", 2, "defaults: edit_strength must be a finite number in [0, 1]"),
    ("pipeline.json", "schedule.num_train_timesteps", 10**12,
     "pipeline.json: schedule.num_train_timesteps must be an integer from 1 to 100000"),
    ("pipeline.json", "schedule.beta_end", float("nan"), "pipeline.json: schedule.beta_end must be a finite number"),
    ("keyframe/config.json", "default_fps", float("nan"), "keyframe/config.json: default_fps must be a finite number"),
    ("vae/config.json", "scaling_factor", float("inf"), "vae/config.json: scaling_factor must be a finite number"),
    ("vae/config.json", "sample_size", 10**6, "vae/config.json: sample_size must be an integer from 0 to 4096"),
    ("vae/config.json", "block_out_channels", [16, 32000], "vae/model.safetensors: tensor shapes do not match"),
    ("keyframe/config.json", "use_fps_embedding", "yes", "config.json: use_fps_embedding must be true or false"),
]


def _pipeline_with(work: Path, pipeline_dir: Path, file: str, key: str, value) -> Path:
    """A copy of ``pipeline_dir`` whose ``file`` holds ``value`` at ``key`` ("." for nesting)."""
    pipe = work / "pipe"
    shutil.copytree(pipeline_dir, pipe)
    data = json.loads((pipe / file).read_text())
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    (pipe / file).write_text(json.dumps(data))
    return pipe


@pytest.mark.parametrize("file, key, value, words", CONFIG_FILES, ids=[f"{c[0]}:{c[1]}" for c in CONFIG_FILES])
def test_numbers_in_a_pipelines_files_are_named(work, capsys, pipeline_dir, file, key, value, words):
    pipe = _pipeline_with(work, pipeline_dir, file, key, value)
    before = _snapshot(work)
    assert main(["generate", "a red circle", "-o", "out.mp4", "--pipeline", str(pipe), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert _snapshot(work) == before and not _temporaries(work)


PIPELINE_FILE_CASES = [c for c in CONFIG_FILES if c[0] == "pipeline.json"]


@pytest.mark.parametrize("file, key, value, words", PIPELINE_FILE_CASES,
                         ids=[f"{c[0]}:{c[1]}={c[2]}" for c in PIPELINE_FILE_CASES])
def test_the_library_refuses_the_same_pipeline_files(work, pipeline_dir, file, key, value, words):
    # Python and `magicvideo serve` callers load without the CLI's checks: the same words from the loader
    from magicvideo.pipeline import MagicVideoPipeline

    with pytest.raises(ValueError) as err:
        MagicVideoPipeline.from_pretrained(_pipeline_with(work, pipeline_dir, file, key, value))
    assert words in str(err.value) and "\n" not in str(err.value)


# -- 6. dataset folders: nothing read outside, files people make, skips reported once --------------
def _folder(root: Path, files: dict) -> Path:
    """``files``: name -> bytes / text / "->target" (a link) / "video" (a readable clip)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("video"):
            _video(path, frames=int(content[6:] or 6))  # "video" or "video:N" (N frames)
        elif isinstance(content, str) and content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


CSV = "path,caption\r\n"
DATASETS = [  # folder contents, labeled, error words or None, {skipped file: reason words}
    ({"captions.csv": "\ufeff" + CSV + "a.mp4,a clip\r\n", "a.mp4": "video"}, True, None, {}),
    ({"captions.csv": CSV + "a.mp4,a clip\r\npath,caption\r\n", "a.mp4": "video"}, True,
     "captions.csv:3: the header row again", {}),
    ({"captions.csv": "path,caption,caption\r\na.mp4,x,y\r\n", "a.mp4": "video"}, True,
     "captions.csv:1: column(s) caption repeated", {}),
    ({"captions.csv": CSV + "a.mp4,one\r\nb.mp4,two\r\na.mp4,three\r\n", "a.mp4": "video"}, True,
     "captions.csv:4: 'a.mp4' is listed again (first at line 2)", {}),
    ({"captions.csv": CSV + "a.mp4,a red, round thing\r\n", "a.mp4": "video"}, True, "captions.csv:2: 3 fields", {}),
    ({"captions.jsonl": '{"path": "a.mp4", "caption": "x", "caption": "y"}\n', "a.mp4": "video"}, True,
     "captions.jsonl:1: expected|repeated key(s) 'caption'", {}),
    ({"captions.csv": CSV + "link.mp4,a clip\r\n", "link.mp4": "->../outside/b.mp4"}, True,
     "captions.csv:2: path 'link.mp4' is outside the dataset folder", {}),
    ({"a.mp4": "video", "link.mp4": "->../outside/b.mp4", "etc.mp4": "->/etc/hostname"}, False, None,
     {"link.mp4": "outside the dataset folder", "etc.mp4": "outside the dataset folder"}),
    ({"a.mp4": "video", "dangling.mp4": "->nowhere.mp4"}, False, None, {"dangling.mp4": "a link to a missing file"}),
    ({"a.mp4": "video", "sub/b.mp4": "->../a.mp4"}, False, None, {}),  # a link inside the folder is fine
    ({"captions.csv": CSV + "a.mp4,x\r\ngone.mp4,y\r\nnotes.txt,z\r\n", "a.mp4": "video", "notes.txt": "hi",
      "extra.mp4": "video"}, True, None,
     {"gone.mp4": "listed in the captions, not found", "notes.txt": "not a video file", "extra.mp4": "no caption"}),
    ({"only.mp4": "->../outside/b.mp4"}, False, "no videos|skipped 1 of 1 videos: 1 outside the dataset folder", {}),
]


@pytest.mark.parametrize("files, labeled, error, skipped", DATASETS, ids=[str(i) for i in range(len(DATASETS))])
def test_dataset_paths_stay_inside_and_caption_files_are_read_as_written(tmp_path, monkeypatch, files, labeled, error,
                                                                       skipped):
    from magicvideo.data import video_folder
    from magicvideo.data.video_folder import VideoFolderDataset

    _folder(tmp_path / "outside", {"b.mp4": "video"})
    root = _folder(tmp_path / "data", files)
    opened = []
    real_probe = video_folder.probe_video
    monkeypatch.setattr(video_folder, "probe_video", lambda p: (opened.append(p.resolve()), real_probe(p))[1])
    if error is not None:
        with pytest.raises(ValueError) as info:
            VideoFolderDataset(root, num_frames=4, resolution=16, labeled=labeled)
        for word in error.split("|"):
            assert word in str(info.value), str(info.value)
        return
    ds = VideoFolderDataset(root, num_frames=4, resolution=16, labeled=labeled, length=8)
    for i in range(len(ds)):
        ds[i]
    assert {Path(p).name: r for p, r in ds.skipped.items() if Path(p).name in skipped}.keys() == skipped.keys()
    for name, words in skipped.items():
        assert words in next(r for p, r in ds.skipped.items() if Path(p).name == name)
    assert all(p.is_relative_to(root.resolve()) for p in opened)  # nothing outside was ever opened
    assert ds.new_report() == (ds.report() if skipped else None) and ds.new_report() is None  # once


def test_the_skip_report_counts_by_reason(tmp_path):
    from magicvideo.data.video_folder import VideoFolderDataset

    root = _folder(tmp_path / "data", {"a.mp4": "video", "b.mp4": "video", "empty.mp4": b"", "zero.mp4": b"",
                                       "junk.mp4": b"\x00" * 300, "short.mp4": "video:2", "out.mp4": "->/etc/hostname"})
    ds = VideoFolderDataset(root, num_frames=4, resolution=16, labeled=False, length=12)
    for i in range(len(ds)):
        ds[i]
    report = ds.report()
    assert "skipped 5 of 7 videos: 2 empty file, 1 not a readable video, 1 outside the dataset folder, 1 too short" \
        in report, report
    assert ds.new_report() == report and ds.new_report() is None


def test_a_two_step_run_prints_the_skip_report_once(work, capsys):
    data = _folder(work / "data", {"a.mp4": "video", "broken.mp4": b"not a video"})
    # two files, two items a step: before the fix the report came at the end of every pass, twice here
    assert main(["train", "--stage", "vae", "-o", "run", "--data", str(data), "--steps", "2", "--batch-size", "2",
                 "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped 1 of 2 videos: 1 not a readable video") == 1, err


# -- 7. writes that succeed: replace whole, never mix, clean after a kill --------------------------
class FakePipeline:
    """Frames on request, no model: what the output side of the CLI sees."""

    encoder = None

    def __init__(self, frames: int | None = None):
        self.frames = frames

    def _video(self, n, fps):
        from magicvideo.pipeline import VideoOutput

        return VideoOutput(np.full((self.frames or n, 16, 16, 3), 200, np.uint8), fps or 8.0)

    def __call__(self, prompt, num_frames=16, fps=None, **kwargs):
        return self._video(num_frames, fps)

    def edit(self, frames, prompt, fps=None, **kwargs):
        return self._video(len(frames), fps)

    def vary(self, frames, n=1, fps=None, **kwargs):
        return [self._video(len(frames), fps) for _ in range(n)]


@pytest.fixture
def fake_pipeline(monkeypatch):
    from magicvideo.pipeline import MagicVideoPipeline

    monkeypatch.setattr(MagicVideoPipeline, "from_pretrained", lambda *a, **k: FakePipeline())


DEAD_PID = 2**22 + 12345  # above Linux's pid_max: never a running process
WRITES = [  # setup, argv, files that must exist afterwards, files that must not
    ("seq", "generate a -o seq.png --num-frames 3 --no-interpolate --overwrite -q", "seq_0000.png seq_0002.png",
     "seq_0003.png seq_0005.png"),
    ("out.mp4", "generate a -o out.mp4 --num-frames 2 --no-interpolate --overwrite -q", "out.mp4", ""),
    ("src", "edit src.mp4 a -o edited.png --no-interpolate -q", "edited_0003.png src.mp4", "edited_0004.png"),
    ("stale", "generate a -o out.mp4 --num-frames 2 --no-interpolate -q", "out.mp4 .out.mp4.tmp-1",
     f".out.mp4.tmp-{DEAD_PID}"),
    ("stale", "generate a -o seq.png --num-frames 2 --no-interpolate -q", "seq_0001.png .out.mp4.tmp-1",
     f".seq.png.tmp-{DEAD_PID}"),
]
SETUPS["stale"] = lambda d: ((d / f".out.mp4.tmp-{DEAD_PID}").write_bytes(b""), (d / ".out.mp4.tmp-1").write_bytes(b""),
                             (d / f".seq.png.tmp-{DEAD_PID}").mkdir(), (d / f".seq.png.tmp-{DEAD_PID}" / "x").touch())


@pytest.mark.parametrize("setup, argv, present, absent", WRITES, ids=[c[1] for c in WRITES])
def test_writes_replace_whole_and_clean_what_a_kill_left(work, capsys, fake_pipeline, setup, argv, present, absent):
    for name in setup.split():
        SETUPS[name](work)
    assert main(argv.split()) == 0, capsys.readouterr().err
    for name in present.split():
        assert (work / name).exists(), name
    for name in absent.split():
        assert not (work / name).exists(), name
    seqs = {p.name.rsplit("_", 1)[0] for p in work.glob("*_0*.png")}
    for stem in seqs:  # a sequence is one run's frames, numbered from 0 without a gap
        numbers = sorted(int(p.stem.rsplit("_", 1)[1]) for p in work.glob(f"{stem}_*.png"))
        assert numbers == list(range(len(numbers))), (stem, numbers)
        assert all((p.read_bytes() != b"frame") for p in work.glob(f"{stem}_*.png"))


def test_a_folder_removed_during_compute_is_one_line_not_a_traceback(work, capsys, monkeypatch):
    from magicvideo.pipeline import MagicVideoPipeline

    (work / "out").mkdir()

    class Vanishing(FakePipeline):
        def __call__(self, *args, **kwargs):
            shutil.rmtree(work / "out")
            return super().__call__(*args, **kwargs)

    monkeypatch.setattr(MagicVideoPipeline, "from_pretrained", lambda *a, **k: Vanishing())
    assert main(["generate", "a", "-o", "out/clip.mp4", "--no-interpolate", "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "out/clip.mp4: directory out does not exist" in err, err


def test_a_prompt_past_the_tokenizer_limit_is_cut_with_a_warning(work, capsys, pipeline_dir):
    prompt = " ".join(["a red circle moving right"] * 40)  # about 200 tokens; MiniLM reads 128
    assert main(["generate", prompt, "-o", "out.mp4", "--pipeline", str(pipeline_dir), "--num-frames", "2",
                 "--steps", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: the prompt is 202 tokens long; it was cut at 128 tokens" in err, err
    assert main(["generate", "a red circle", "-o", "b.mp4", "--pipeline", str(pipeline_dir), "--num-frames", "2",
                 "--steps", "1", "-q"]) == 0
    assert "warning" not in capsys.readouterr().err


# -- 8. kills: SIGTERM like Ctrl-C, SIGKILL cleaned by the next run -------------------------------
KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time, types
    import numpy as np
    from PIL import Image
    from magicvideo import video_io

    WHEN, SIGNAL = sys.argv[1], getattr(signal, sys.argv[2])

    def kill():
        os.kill(os.getpid(), SIGNAL)
        time.sleep(30)  # SIGTERM / SIGINT raise in here; SIGKILL ends the process here

    class Pipe:  # no torch in this process: a stand-in for magicvideo.pipeline
        encoder = None
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return cls()
        def __call__(self, prompt, num_frames=16, fps=None, **kwargs):
            if WHEN == "compute":
                kill()
            return types.SimpleNamespace(frames=np.zeros((num_frames, 16, 16, 3), np.uint8), fps=fps or 8.0)

    sys.modules["magicvideo.pipeline"] = types.SimpleNamespace(MagicVideoPipeline=Pipe)
    real_encode, real_save = video_io.encode_av, Image.Image.save
    def encode_then_die(frames, path, fps, *args, **kwargs):
        real_encode(frames[:2], path, fps, *args, **kwargs)  # a partial video in the temporary file
        kill()
    def save_then_die(self, *args, **kwargs):
        real_save(self, *args, **kwargs)  # one frame of the sequence in the temporary folder
        kill()
    video_io.encode_av, Image.Image.save = encode_then_die, save_then_die
    from magicvideo.cli import main
    sys.exit(main(sys.argv[3:]))
""")

KILLS = [  # when, signal, output, exit code, words on stderr, leftover temporaries (before the next run)
    ("encode", "SIGTERM", "out.mp4", 143, "terminated (SIGTERM)", 0),
    ("compute", "SIGTERM", "out.mp4", 143, "terminated (SIGTERM)", 0),
    ("encode", "SIGINT", "out.mp4", 130, "interrupted", 0),
    ("encode", "SIGTERM", "seq.png", 143, "terminated (SIGTERM)", 0),
    ("encode", "SIGKILL", "out.mp4", -9, "", 1),
    ("encode", "SIGKILL", "seq.png", -9, "", 1),
]


@pytest.mark.parametrize("when, sig, output, code, words, leftovers", KILLS,
                         ids=[f"{c[1]}-{c[0]}-{c[2]}" for c in KILLS])
def test_kills_leave_nothing_that_outlives_the_next_run(work, capsys, fake_pipeline, when, sig, output, code, words,
                                                        leftovers):
    (work / "keep.mp4").write_bytes(b"an earlier video")
    argv = ["generate", "a", "-o", output, "--num-frames", "4", "--no-interpolate", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT, when, sig, *argv], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and words in result.stderr
    assert code < 0 or len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert len(_temporaries(work)) == leftovers, _temporaries(work)
    assert not list(work.glob("out.mp4")) + list(work.glob("seq_*.png"))  # no partial output under the real name
    assert main(argv) == 0  # the next run to the same target: writes it and removes what the kill left
    assert not _temporaries(work) and (work / "keep.mp4").read_bytes() == b"an earlier video"


def test_train_refuses_a_run_folder_unless_resumed_or_overwritten(tmp_path):
    import torch

    from magicvideo.train import Stage, TrainConfig, train

    def toy() -> Stage:
        model = torch.nn.Linear(2, 1)
        return Stage("toy", model, loss=lambda batch, gen: (((model(batch) - 1) ** 2).mean(), {}),
                     make_batch=lambda step, size, positions=None: torch.ones(size, 2),
                     save=lambda m, path: path.mkdir())

    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=0, checkpoint_every=1)
    run = tmp_path / "run"
    train(toy(), cfg, run, progress=False)
    with pytest.raises(ValueError, match="run: holds a training run .*--resume continues it, --overwrite starts it"):
        train(toy(), cfg, run, progress=False)
    train(toy(), cfg, run, progress=False, overwrite=True)
    starts = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"start"' in line]
    assert len(starts) == 1  # the first run's metrics were removed, not appended to
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty and not a training run"):
        train(toy(), cfg, tmp_path / "mine", progress=False, overwrite=True)
