"""Deterministic generation as a promise: the same prompt, seed, options, machine and thread
count give a byte-identical output file, for generate, animate, vary and edit through the CLI,
each run in a fresh process, also while another process loads the cores.

The second run also fills every fresh heap block with a byte pattern (glibc's MALLOC_PERTURB_):
a file that depended on leftover memory (as H.264 files did, through x264's macroblock-tree
rate control, before video_io turned it off) differs then. The frames are 64 px wide, a width
at which that happened."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import randomize_
from PIL import Image

from magicvideo.video_io import read_video, write_video

THREADS = "2"  # the same in every run: results are promised per thread count
# every command of one run, in one fresh process, through the CLI's entry point
RUN = """
import sys
from magicvideo.cli import main
pipe, src, img, out = sys.argv[1:]
common = ["--pipeline", pipe, "--steps", "3", "--seed", "7", "-q"]
for args in (["generate", "a red circle moving right", "-o", f"{out}/generate.mp4", "--num-frames", "6"],
             ["animate", img, "-o", f"{out}/animate.mp4", "--num-frames", "6", "--prompt", "a red circle"],
             ["vary", src, "-n", "2", "--strength", "0.6", "-o", f"{out}/vary.mp4"],
             ["edit", src, "a blue square moving up", "--strength", "0.6", "-o", f"{out}/edit.mp4"],
             ["generate", "a green square moving up", "-o", f"{out}/generate.gif", "--num-frames", "4"]):
    assert main([*args, *common]) == 0, args
"""
OUTPUTS = ("generate.mp4", "animate.mp4", "vary_0.mp4", "vary_1.mp4", "edit.mp4", "generate.gif")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny random pipeline making 64 px frames (8 px latents, an f=8 VAE), a source video
    and an image."""
    from magicvideo import VideoUNet, VideoUNetConfig, VideoVAE, VideoVAEConfig
    from magicvideo.data.synthetic import render_clip, spec_for
    from magicvideo.models.encoders import MiniLMLiTEncoder
    from magicvideo.pipeline import MagicVideoPipeline

    torch.manual_seed(0)
    unet = VideoUNet(VideoUNetConfig(block_out_channels=(16, 32), attention_levels=(False, True),
                                     num_attention_heads=(2, 2), sample_size=8, max_frames=8))
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(8, 16, 16, 16), norm_num_groups=8))
    randomize_(unet, seed=3, scale=0.05)  # temporal layers and adaptors away from identity: frames differ
    path = tmp_path_factory.mktemp("determinism")
    MagicVideoPipeline(unet, vae, MiniLMLiTEncoder()).save_pretrained(path / "pipe")
    clip = render_clip(spec_for("red", "square", "right", np.random.default_rng(0)), 6, 8.0, resolution=64)
    write_video(clip, path / "src.mp4", fps=8.0)
    Image.fromarray(clip[0]).save(path / "img.png")
    return path


def run_cli(inputs, out, env: dict[str, str]) -> dict[str, bytes]:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS, **env}
    subprocess.run([sys.executable, "-c", RUN, str(inputs / "pipe"), str(inputs / "src.mp4"), str(inputs / "img.png"),
                    str(out)], env=env, check=True, capture_output=True, timeout=300)
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def test_same_request_same_bytes_in_fresh_processes_also_under_load(inputs, tmp_path):
    first = run_cli(inputs, tmp_path / "quiet", {})
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]  # both cores busy
    try:
        second = run_cli(inputs, tmp_path / "busy", {"MALLOC_PERTURB_": "165"})
    finally:
        for process in load:
            process.kill()
            process.wait()
    differ = [name for name in OUTPUTS if first[name] != second[name]]
    assert not differ, f"{differ} differ between two runs of the same commands"
    # the videos are real: frames that move and variations that differ (an empty file is deterministic too)
    frames = {name: read_video(tmp_path / "quiet" / name)[0] for name in OUTPUTS}
    assert all(len(frames[name]) >= 4 and frames[name].std() > 5 for name in OUTPUTS)
    assert not np.array_equal(frames["vary_0.mp4"], frames["vary_1.mp4"])
