"""The shapes domain: determinism, geometry, fps-aware motion, held-out split, captions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from magicvideo.data import (ALL_COMBOS, COLORS, HELD_OUT, SEEN, TEMPLATES, ShapesDataset, make_caption,
                             object_center, parse_prompt, render_clip, sample_spec, spec_for)


def test_dataset_is_deterministic_per_index():
    a, b = ShapesDataset(seed=3), ShapesDataset(seed=3)
    assert torch.equal(a[5]["video"], b[5]["video"]) and a[5]["caption"] == b[5]["caption"]
    assert not torch.equal(a[5]["video"], a[6]["video"])
    item = a[0]
    assert item["video"].shape == (3, 16, 64, 64) and item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["fps"] in (4.0, 8.0, 16.0)


def test_object_stays_inside_the_frame_for_the_longest_clip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        frames = render_clip(sample_spec(rng, "all"), 16, 4.0, 64)
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert border.max() == 0


def test_lower_fps_moves_further_per_frame():
    rng = np.random.default_rng(1)
    spec = spec_for("red", "square", "right", rng)
    slow = object_center(spec, np.arange(16) / 16.0, 64)
    fast = object_center(spec, np.arange(16) / 4.0, 64)
    ratio = np.diff(fast[:, 0]).mean() / np.diff(slow[:, 0]).mean()
    assert ratio == pytest.approx(4.0, rel=0.05)
    frames = render_clip(spec, 16, 4.0, 64)
    x = (frames.max(-1).astype(float) * np.arange(64)[None, None, :]).sum((1, 2)) / frames.max(-1).sum((1, 2))
    assert np.all(np.diff(x) > 0)  # rendered object really moves right


def test_interior_pixels_have_the_exact_color():
    rng = np.random.default_rng(2)
    for color in COLORS:
        frames = render_clip(spec_for(color, "square", "up", rng), 4, 8.0, 64)
        bright = frames.reshape(-1, 3)[frames.reshape(-1, 3).max(1) == 255]
        assert len(bright) > 20
        assert (bright == np.array(COLORS[color])).all(axis=1).mean() > 0.99


def test_held_out_combinations_never_appear_in_training():
    assert len(SEEN) == 88 and len(HELD_OUT) == 8 and set(SEEN) | set(HELD_OUT) == set(ALL_COMBOS)
    assert {c for c, _, _ in HELD_OUT} == set(COLORS)
    rng = np.random.default_rng(3)
    seen = {(s.color, s.shape, s.direction) for s in (sample_spec(rng, "train") for _ in range(2000))}
    assert not seen & set(HELD_OUT)
    assert len(seen) == 88
    ds = ShapesDataset(split="heldout", length=50)
    assert all((ds[i]["color"], ds[i]["shape"], ds[i]["direction"]) in HELD_OUT for i in range(20))


def test_captions_round_trip_through_the_prompt_parser():
    rng = np.random.default_rng(4)
    for combo in ALL_COMBOS:
        for template in range(len(TEMPLATES)):
            attrs = parse_prompt(make_caption(*combo, rng, template=template))
            assert (attrs.color, attrs.shape, attrs.direction) == combo
    free = parse_prompt("A Blue disc rising slowly")
    assert (free.color, free.shape, free.direction) == ("blue", "circle", "up")
    assert parse_prompt("something else entirely") == parse_prompt("")


def test_bad_inputs_are_value_errors():
    rng = np.random.default_rng(5)
    spec = sample_spec(rng)
    for kwargs, message in [({"num_frames": 0, "fps": 8.0}, "num_frames"), ({"num_frames": 4, "fps": 0.0}, "fps"),
                            ({"num_frames": 33, "fps": 4.0}, "leave the frame")]:
        with pytest.raises(ValueError, match=message):
            render_clip(spec, **kwargs)
    with pytest.raises(ValueError, match="purple"):
        spec_for("purple", "circle", "up", rng)
    with pytest.raises(ValueError, match="split"):
        sample_spec(rng, "test")
