"""Video files: round trips, atomic writes, errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from magicvideo import video_io
from magicvideo.video_io import read_video, write_video


def moving_bar(t=12, h=48, w=64) -> np.ndarray:
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, 10:30, 4 * i : 4 * i + 12] = (255, 128, 0)
    return frames


def test_mp4_round_trip_keeps_frames_and_rate(tmp_path):
    frames = moving_bar()
    write_video(frames, tmp_path / "a.mp4", fps=12)
    back, fps = read_video(tmp_path / "a.mp4")
    assert back.shape == frames.shape and fps == pytest.approx(12)
    assert (tmp_path / "a.mp4").stat().st_mode & 0o044  # readable by others, like any new file
    assert np.abs(back.astype(int) - frames).mean() < 3.0  # H.264 at crf 18: visually lossless


def test_odd_sizes_are_padded_for_yuv420(tmp_path):
    frames = moving_bar(h=33, w=47)
    write_video(frames, tmp_path / "odd.mp4", fps=8)
    back, _ = read_video(tmp_path / "odd.mp4")
    assert back.shape == (12, 34, 48, 3)


def test_gif_and_png_frames(tmp_path):
    frames = moving_bar()
    write_video(frames, tmp_path / "a.gif", fps=10)
    back, fps = read_video(tmp_path / "a.gif")
    assert back.shape == frames.shape and fps == pytest.approx(10)
    assert np.abs(back.astype(int) - frames).max() <= 8  # two flat colors survive the palette
    first = write_video(frames, tmp_path / "seq.png", fps=10)
    assert first.name == "seq_0000.png" and len(list(tmp_path.glob("seq_*.png"))) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reads_a_real_animated_gif():
    import skimage

    gif = Path(skimage.data.__file__).parent / "no_time_for_that_tiny.gif"
    frames, fps = read_video(gif)
    assert frames.ndim == 4 and frames.shape[0] > 1 and fps > 0
    assert frames.std() > 10  # real pixels, not a blank decode


@pytest.mark.parametrize("name, message", [("out.avi", "extension"), ("missing/out.mp4", "does not exist"),
                                           ("out", "extension")])
def test_bad_output_paths(tmp_path, name, message):
    with pytest.raises(ValueError, match=message):
        write_video(moving_bar(), tmp_path / name, fps=8)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def explode(frames, path, fps):
        Path(path).write_bytes(b"half a video")
        raise RuntimeError("disk full")

    monkeypatch.setattr(video_io, "_write_mp4", explode)
    with pytest.raises(RuntimeError):
        write_video(moving_bar(), tmp_path / "x.mp4", fps=8)
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_and_files(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(moving_bar().astype(np.float32), tmp_path / "x.mp4", fps=8)
    with pytest.raises(ValueError, match="fps"):
        write_video(moving_bar(), tmp_path / "x.mp4", fps=0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="junk.mp4"):
        read_video(junk)
    with pytest.raises(ValueError, match="not found"):
        read_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize("name, fps", [("a.mp4", 1e-9), ("a.mp4", 1e9), ("a.mp4", float("nan")),
                                       ("a.mp4", float("inf")), ("a.gif", 60.0)])
def test_frame_rates_a_file_cannot_carry_are_refused(tmp_path, name, fps):
    # 1e-9 used to be written at 24 fps (the rate rounds to 0), 1e9 as an mp4 players cannot decode
    with pytest.raises(ValueError, match="fps must be between 0.1 and"):
        write_video(moving_bar(), tmp_path / name, fps=fps)
    assert list(tmp_path.iterdir()) == []


def test_a_sequence_replaces_every_frame_of_an_earlier_one_or_is_refused(tmp_path):
    write_video(moving_bar(t=12), tmp_path / "seq.png", fps=8)
    write_video(moving_bar(t=3), tmp_path / "seq.png", fps=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq_0000.png", "seq_0001.png", "seq_0002.png"]
    with pytest.raises(ValueError, match="3 file\\(s\\) of it already exist"):
        write_video(moving_bar(t=5), tmp_path / "seq.png", fps=8, overwrite=False)
    assert len(list(tmp_path.iterdir())) == 3


def test_a_file_that_appears_during_the_write_is_kept_without_overwrite(tmp_path, monkeypatch):
    real = video_io._write_mp4

    def meanwhile(frames, path, fps):
        real(frames, path, fps)
        (tmp_path / "x.mp4").write_bytes(b"another run's video")

    monkeypatch.setattr(video_io, "_write_mp4", meanwhile)
    with pytest.raises(ValueError, match="x.mp4: appeared while this run was computing"):
        write_video(moving_bar(), tmp_path / "x.mp4", fps=8, overwrite=False)
    assert (tmp_path / "x.mp4").read_bytes() == b"another run's video"
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]  # and no temporary
