"""The sprites domain and its analyzer: determinism, fps-aware motion, the held-out lists,
captions, vocabulary.json, and the analyzer on rendered and on corrupted clips."""
from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch

from magicvideo.analyzers import sprites as analyzer
from magicvideo.data import sprites as sp
from magicvideo.data.synthetic import ShapesDataset


def _font_available() -> bool:
    try:
        sp.emoji_font_path()
        return True
    except sp.EmojiFontMissing:
        return False


needs_font = pytest.mark.skipif(not _font_available(), reason=sp.INSTALL_HINT)


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("skimage", reason="the photo backgrounds come from scikit-image's bundled data")


# -- vocabulary, splits, captions (no font needed) --------------------------------------------------
def test_vocabulary_has_100_named_sprites_in_five_categories():
    assert len(sp.VOCABULARY) >= 100
    assert {s.category for s in sp.VOCABULARY} == set(sp.CATEGORIES)
    assert all(sum(s.category == c for s in sp.VOCABULARY) >= 20 for c in sp.CATEGORIES)
    names = [n for s in sp.VOCABULARY for n in (*s.names, *s.paraphrases)]
    assert len(names) == len(set(names)), "a caption name must name one sprite"
    assert sp.SPRITES["basketball"].names == ("basketball", "basketball and hoop")
    assert sp.SPRITES["cat"].names[0] == "cat" and "kitten" in sp.SPRITES["cat"].paraphrases
    assert "heavy black heart" not in sp.SPRITES["heart"].names  # a misleading Unicode name is not a caption


def test_held_out_pairs_and_still_only_sprites_never_appear_in_training():
    held, still = set(sp.HELD_OUT_PAIRS), set(sp.STILL_ONLY)
    assert {m for _, m in held} == set(sp.MOTIONS)  # every motion is held out with some sprite
    assert held <= set(sp.ALL_PAIRS) and still <= set(sp.SPRITES) and not {s for s, _ in held} & still
    rng = np.random.default_rng(0)
    train = {(s.sprite, s.motion) for s in (sp.sample_spec(rng, "train") for _ in range(3000))}
    assert not train & held and not {s for s, _ in train} & still
    images = {(s.sprite, s.motion) for s in (sp.sample_spec(rng, "images") for _ in range(3000))}
    assert not images & held and still <= {s for s, _ in images}  # image stages see the still-only sprites
    heldout = {(s.sprite, s.motion) for s in (sp.sample_spec(rng, "heldout") for _ in range(300))}
    assert all(p in held or p[0] in still for p in heldout)
    with pytest.raises(ValueError, match="unknown split"):
        sp.sample_spec(rng, "test")


def test_captions_name_what_is_rendered_and_parse_back():
    rng = np.random.default_rng(1)
    specs = [sp.sample_spec(rng, "all") for _ in range(400)]
    assert all(sp.parse_prompt(s.caption) == sp.SpritePrompt(s.sprite, s.motion, s.background) for s in specs)
    assert len({s.caption for s in specs}) > 350  # templates, names and phrases vary
    assert {sp.parse_prompt(s.caption).background for s in specs} == set(sp.BACKGROUNDS)
    assert sp.parse_prompt("a kitten drifting to the right") == sp.SpritePrompt("cat", "right", "black")
    assert sp.parse_prompt("a hot dog moving up on a blue background").sprite == "hot dog"  # not "dog"
    assert sp.parse_prompt("a dog as the camera pans left over a photo of coffee") == \
        sp.SpritePrompt("dog", "pan left", "coffee")
    with pytest.raises(ValueError, match="needs a photo background"):
        sp.spec_for("cat", "pan left", "blue", rng)


def test_vocabulary_json_lists_sprites_backgrounds_and_motions(tmp_path):
    path = sp.write_vocabulary(tmp_path)
    vocab = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == "vocabulary.json" and len(vocab["sprites"]) == len(sp.VOCABULARY)
    cat = next(s for s in vocab["sprites"] if s["names"][0] == "cat")
    assert cat["char"] == "🐱" and cat["category"] == "animals" and cat["heldout_motions"] == ["right"]
    assert {s["names"][0] for s in vocab["sprites"] if s["split"] == "still-only"} == set(sp.STILL_ONLY)
    assert set(vocab["backgrounds"]) == set(sp.BACKGROUNDS) and set(vocab["motions"]) == set(sp.MOTIONS)


def test_missing_font_is_one_line_that_says_how_to_install(monkeypatch):
    monkeypatch.setenv(sp.FONT_ENV, "/nonexistent/NotoColorEmoji.ttf")
    with pytest.raises(sp.EmojiFontMissing, match="apt-get install fonts-noto-color-emoji") as err:
        sp.emoji_font_path()
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)


# -- rendering ------------------------------------------------------------------------------------
@needs_font
def test_dataset_is_deterministic_per_index_like_shapes(photos):
    assert inspect.signature(sp.SpritesDataset).parameters.keys() == inspect.signature(ShapesDataset).parameters.keys()
    a, b = sp.SpritesDataset(seed=3), sp.SpritesDataset(seed=3)
    assert torch.equal(a[5]["video"], b[5]["video"]) and a[5]["caption"] == b[5]["caption"]
    assert not torch.equal(a[5]["video"], a[6]["video"])
    assert not torch.equal(a[5]["video"], sp.SpritesDataset(seed=4)[5]["video"])
    item = a[0]
    assert item["video"].shape == (3, 16, 64, 64) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1 and item["fps"] in (4.0, 8.0, 16.0)
    assert sp.parse_prompt(item["caption"]).sprite == item["sprite"]


@needs_font
def test_sprite_and_photo_window_stay_inside_for_the_longest_clip(photos):
    rng = np.random.default_rng(2)
    t = np.linspace(0, sp.MAX_DURATION_S, 9)
    for _ in range(400):
        spec = sp.sample_spec(rng, "all")
        cx, cy, side = sp.sprite_track(spec, t, 64).T
        assert (side > 0).all() and (cx - side / 2 >= 0).all() and (cx + side / 2 <= 64).all()
        assert (cy - side / 2 >= 0).all() and (cy + side / 2 <= 64).all()
        if spec.background in sp.PHOTOS:
            room_x, room_y = sp._photo_room(spec.background)
            step = spec.speed * sp.MAX_DURATION_S
            assert -1e-9 <= spec.view[0] and spec.view[0] + (step if spec.motion == "pan right" else 0) <= room_x + 1e-9
            assert spec.view[0] - (step if spec.motion == "pan left" else 0) >= -1e-9
            assert -1e-9 <= spec.view[1] - (step if spec.motion == "pan up" else 0)
            assert spec.view[1] + (step if spec.motion == "pan down" else 0) <= room_y + 1e-9
    frames = sp.render_clip(sp.spec_for("cat", "left", "black", rng), 16, 4.0, 64)
    assert frames.dtype == np.uint8 and frames.shape == (16, 64, 64, 3)
    assert np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]]).max() == 0
    with pytest.raises(ValueError, match="longer than"):
        sp.render_clip(sp.spec_for("cat", "left", "black", rng), 18, 4.0, 64)


@needs_font
@pytest.mark.parametrize("motion, background", [("right", "black"), ("zoom in", "green"), ("pan up", "coffee")])
def test_lower_fps_moves_further_per_frame(motion, background, photos):
    """Speeds are per second: the same clip at 4 fps moves 4x as far per frame as at 16 fps,
    in the ground truth and as the analyzer reads it from the pixels."""
    spec = sp.spec_for("apple", motion, background, np.random.default_rng(3))
    slow, fast = (sp.sprite_track(spec, np.arange(16) / fps, 64) for fps in (16.0, 4.0))
    axis = {"right": 0, "zoom in": 2}.get(motion)
    if axis is not None:
        assert np.diff(fast[:, axis]).mean() / np.diff(slow[:, axis]).mean() == pytest.approx(4.0, rel=1e-6)
    read = [analyzer.analyze_video(sp.render_clip(spec, 16, fps, 64), identify_sprite=False) for fps in (16.0, 4.0)]
    measure = {"right": "displacement", "zoom in": "zoom", "pan up": "pan_speed"}[motion]
    slow_value, fast_value = (getattr(a, measure) for a in read)
    if measure == "zoom":  # relative size change over the whole clip, about 4x the growth at 4 fps
        assert fast_value / slow_value > 2.5
    else:
        assert fast_value / slow_value == pytest.approx(4.0, rel=0.1)
    assert all((a.pan if motion.startswith("pan") else a.motion) == motion for a in read)


@needs_font
def test_sprites_are_drawn_at_sub_pixel_positions_and_any_size(photos):
    """Antialiased resampling keeps a sprite's coverage as it moves by fractions of a pixel,
    from a few pixels wide (16x16 clips) to larger than the font's bitmap."""
    for side in (2.0, 6.0, 23.0, 180.0):
        covers = [sp.render_sprite("cat", 100.0 + dx, 100.0 + dy, side, 200)[1].sum() for dx, dy in
                  ((0, 0), (0.25, 0), (0.5, 0.5), (0.75, 0.3))]
        assert np.ptp(covers) < (0.05 if side < 4 else 0.02) * np.mean(covers), (side, covers)  # 8-bit alpha
    assert sp.render_sprite("cat", 100.0, 100.0, 46.0, 200)[1].sum() == pytest.approx(covers[0] * (46 / 180) ** 2,
                                                                                       rel=0.03)
    rng = np.random.default_rng(7)
    for motion in sp.MOTIONS:
        clip = sp.render_clip(sp.spec_for("cat", motion, "coffee", rng), 16, 4.0, 16)
        assert clip.shape == (16, 16, 16, 3)


# -- the analyzer ---------------------------------------------------------------------------------
@needs_font
def test_analyzer_reads_rendered_clips(photos):
    """Ground truth at 64x64, every split, background and fps: >= 95% sprite identity (top-1
    over the whole vocabulary), object motion and camera pan."""
    rng = np.random.default_rng(4)
    analyses, wanted, backgrounds = [], [], []
    for i in range(72):
        spec = sp.sample_spec(rng, "all")
        clip = sp.render_clip(spec, 16, (4.0, 8.0, 16.0)[i % 3], 64)
        analyses.append(analyzer.analyze_video(clip))
        wanted.append(sp.parse_prompt(spec.caption))
        backgrounds.append(analyses[-1].background == spec.background)
    scores = analyzer.score(analyses, wanted)
    assert scores["sprite_acc"] >= 0.95 and scores["motion_acc"] >= 0.95 and scores["pan_acc"] >= 0.95, scores
    assert scores["motion_n"] >= 25 and scores["pan_n"] >= 20
    assert np.mean(backgrounds) >= 0.95
    assert scores["mean_jitter"] < 0.5 and scores["mean_flicker"] < 0.05


@needs_font
def test_analyzer_reads_soft_noisy_clips(photos):
    """A generated clip is softer than a rendered one: blurred (sigma 1 pixel) and noisy
    (sigma 0.02) ground truth is still read (the photo is matched at the video's blur)."""
    from scipy import ndimage

    rng = np.random.default_rng(6)
    analyses, wanted = [], []
    for i in range(30):
        spec = sp.sample_spec(rng, "all")
        clip = sp.render_clip(spec, 16, (4.0, 8.0, 16.0)[i % 3], 64).astype(np.float32) / 255
        soft = ndimage.gaussian_filter(clip, (0, 1.0, 1.0, 0)) + rng.normal(0, 0.02, clip.shape)
        analyses.append(analyzer.analyze_video(np.clip(soft, 0, 1)))
        wanted.append(sp.parse_prompt(spec.caption))
    scores = analyzer.score(analyses, wanted)
    assert scores["sprite_acc"] >= 0.9 and scores["motion_acc"] >= 0.9 and scores["pan_acc"] >= 0.9, scores


@needs_font
def test_analyzer_disagrees_with_corrupted_clips(photos):
    """Frames out of order, another sprite in the object's place, or a still clip: the
    analysis must not match the caption."""
    rng = np.random.default_rng(5)
    names = list(sp.SPRITES)
    shuffled = replaced = still = 0
    n = 24
    for i in range(n):
        spec = sp.sample_spec(rng, "train")
        fps, wanted = (4.0, 8.0, 16.0)[i % 3], sp.parse_prompt(spec.caption)
        clip = sp.render_clip(spec, 16, fps, 64)
        key = "pan" if spec.motion in sp.PANS else "motion"

        order = rng.permutation(16)
        while (np.diff(order) == 1).all():
            order = rng.permutation(16)
        shuffled += not analyzer.agrees(analyzer.analyze_video(clip[order], identify_sprite=False), wanted)[key]
        other = names[(names.index(spec.sprite) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        swapped = sp.render_clip(dataclasses.replace(spec, sprite=other), 16, fps, 64)
        replaced += not analyzer.agrees(analyzer.analyze_video(swapped), wanted)["sprite"]
        frozen = np.repeat(clip[:1], 16, axis=0)
        still += not analyzer.agrees(analyzer.analyze_video(frozen, identify_sprite=False), wanted)[key]
    assert shuffled >= 0.9 * n and replaced >= 0.9 * n and still == n, (shuffled, replaced, still)


def test_analyzer_rejects_frames_of_the_wrong_shape():
    with pytest.raises(ValueError, match="must be"):
        analyzer.analyze_video(np.zeros((4, 32, 32)))
    with pytest.raises(ValueError, match="square"):
        analyzer.analyze_video(np.zeros((4, 32, 48, 3), np.uint8))


def test_info_prints_a_pipelines_vocabulary(tmp_path, capsys):
    from magicvideo.cli import main

    sp.write_vocabulary(tmp_path)
    assert main(["info", "--pipeline", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"{len(sp.VOCABULARY)} sprites" in text and "🐱  cat" in text and "never trained: right" in text
    assert "over a photo of coffee" in text and "zoom in" in text
    assert main(["info", "--pipeline", str(tmp_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["sprites"]) == len(sp.VOCABULARY)
    (tmp_path / "vocabulary.json").unlink()
    assert main(["info", "--pipeline", str(tmp_path)]) == 2
    assert "no vocabulary.json" in capsys.readouterr().err


# -- the training stages on the sprites domain ------------------------------------------------------
def test_stage_options_name_a_known_domain():
    from magicvideo.stages import StageOptions

    with pytest.raises(ValueError, match="domain must be one of"):
        StageOptions(domain="emoji")
    with pytest.raises(ValueError, match="a video folder replaces the procedural domain"):
        StageOptions(domain="sprites", data="/some/folder")


@needs_font
def test_stages_draw_from_the_sprites_domain(photos):
    """Video stages take training clips; image stages (vae, lit, sr) the images split, which
    shows the still-only sprites; SR pairs are sprites frames at 4x and their area average."""
    from magicvideo.stages import StageOptions, build_stage, sr_frame_pair, training_dataset

    options = StageOptions(domain="sprites", preset="tiny")
    clips, stills = training_dataset(options, num_frames=16), training_dataset(options, num_frames=2, stills=True)
    assert isinstance(clips, sp.SpritesDataset) and (clips.split, stills.split) == ("train", "images")
    assert clips[3]["video"].shape == (3, 16, 64, 64)
    low, high = sr_frame_pair(3, seed=0, low_res=16, scale=4, split="images", domain="sprites")
    assert low.shape == (3, 16, 16) and high.shape == (3, 64, 64)
    assert torch.allclose(low, torch.nn.functional.avg_pool2d(high[None], 4)[0])
    stage = build_stage("vae", options)
    frames = stage.make_batch(0, 2)
    assert frames.shape == (2, 3, 64, 64)
    value, _ = stage.loss(frames, torch.Generator().manual_seed(0))
    assert torch.isfinite(value)
