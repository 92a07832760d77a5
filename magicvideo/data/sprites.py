"""The "sprites" domain: named colour emoji on real photographs, moving, zooming, or filmed by
a panning camera. Procedural text-video clips with texture and an open vocabulary.

Objects are glyphs of the Noto Color Emoji font (OFL; Debian ``fonts-noto-color-emoji``),
rendered once at the bitmap font's only size (109 pt, a 136x128 bitmap) and resampled with
antialiasing at sub-pixel positions. Backgrounds are black, a named flat colour, or one of
scikit-image's bundled photographs. Speeds are in *frame widths per second*, so a clip
sampled at a lower fps moves further per frame, as in the shapes domain. Every clip is a pure
function of a seed.

Layout: ``render_clip`` returns uint8 ``(T, H, W, 3)``; ``SpritesDataset`` items hold
``video`` as float ``(3, F, H, W)`` in [-1, 1] (the models' layout), with the same arguments
as ``ShapesDataset``.

Motions (``MOTIONS``): the object moves left/right/up/down; grows ("zoom in") or shrinks
("zoom out") about a fixed centre; or stays where it is in the frame while the camera pans
left/right/up/down over a photo (the camera follows the object, so the *background* moves:
panning left shows what lies left, the photo slides right across the frame).

Splits: ``HELD_OUT_PAIRS`` (sprite, motion) are never trained; ``STILL_ONLY`` sprites never
appear in a training clip but do in the ``images`` split that the image stages (vae, lit, sr)
draw single frames from. ``train`` is everything else; ``heldout`` is both lists.

Why one file of ~600 lines: it is one contract (vocabulary -> caption grammar -> clip spec ->
renderer), and the 124-entry vocabulary table alone is a quarter of it; the analyzer
(``magicvideo/analyzers/sprites.py``) and the vocabulary writer read it as a unit.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# -- the font ---------------------------------------------------------------------------------
FONT_ENV = "MAGICVIDEO_EMOJI_FONT"
FONT_PATHS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",  # Debian / Ubuntu
              "/usr/share/fonts/noto/NotoColorEmoji.ttf",  # Arch
              "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",  # Fedora
              "/System/Library/Fonts/Apple Color Emoji.ttc")  # not Noto: looked for last, never shipped
FONT_SIZE = 109  # CBDT bitmap font: the only size it has (a 136x128 bitmap per glyph)
INSTALL_HINT = (f"the sprites domain needs the Noto Color Emoji font: apt-get install fonts-noto-color-emoji, "
                f"or set {FONT_ENV}=/path/to/NotoColorEmoji.ttf")


class EmojiFontMissing(ValueError):
    """The Noto Color Emoji font is not installed (a ValueError: the CLI prints one line)."""


def emoji_font_path() -> Path:
    """``$MAGICVIDEO_EMOJI_FONT``, else what fontconfig resolves "Noto Color Emoji" to, else a
    known install path. Raises ``EmojiFontMissing`` with the install line."""
    env = os.environ.get(FONT_ENV)
    if env:
        if not Path(env).is_file():
            raise EmojiFontMissing(f"{FONT_ENV}={env}: no such file ({INSTALL_HINT})")
        return Path(env)
    if shutil.which("fc-match"):
        try:
            found = subprocess.run(["fc-match", "-f", "%{file}", "Noto Color Emoji"], capture_output=True, text=True,
                                   timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        if "emoji" in Path(found).name.lower() and Path(found).is_file():  # fc-match falls back to any font
            return Path(found)
    for path in FONT_PATHS[:3]:
        if Path(path).is_file():
            return Path(path)
    raise EmojiFontMissing(INSTALL_HINT)


# -- the vocabulary ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Sprite:
    char: str
    names: tuple[str, ...]  # caption names, the everyday one first; names[0] is the sprite's key
    category: str
    paraphrases: tuple[str, ...] = ()  # other words for it, never in a training caption (evaluation)

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def unicode_name(self) -> str:
        return unicodedata.name(self.char).lower()


def _entry(char: str, category: str, everyday: str | None = None, unicode_ok: bool = True,
           paraphrases: tuple[str, ...] = ()) -> Sprite:
    """Caption names: the everyday name (when the Unicode one is odd or long), then the
    Unicode name lower-cased unless it misleads (``unicode_ok=False``: "heavy black heart" is red)."""
    official = unicodedata.name(char).lower()
    names = [everyday] if everyday else []
    if unicode_ok and official not in names:
        names.append(official)
    return Sprite(char, tuple(names), category, paraphrases)


_A, _F, _V, _S, _T = "animals", "food", "vehicles", "sports", "things"
VOCABULARY: tuple[Sprite, ...] = (
    # animals (26)
    _entry("🐱", _A, "cat", paraphrases=("kitten", "kitty")), _entry("🐶", _A, "dog", paraphrases=("puppy",)),
    _entry("🐭", _A, "mouse"), _entry("🐰", _A, "rabbit", paraphrases=("bunny",)), _entry("🦊", _A, "fox"),
    _entry("🐻", _A, "bear"), _entry("🐼", _A, "panda"), _entry("🐨", _A), _entry("🐯", _A, "tiger"),
    _entry("🦁", _A, "lion"), _entry("🐮", _A, "cow"), _entry("🐷", _A, "pig", paraphrases=("piglet",)),
    _entry("🐸", _A, "frog"), _entry("🐵", _A, "monkey"), _entry("🐔", _A, paraphrases=("hen",)),
    _entry("🐧", _A), _entry("🦆", _A), _entry("🦉", _A), _entry("🦄", _A, "unicorn"),
    _entry("🐝", _A, "bee", paraphrases=("bumblebee",)), _entry("🦋", _A), _entry("🐌", _A),
    _entry("🐢", _A, paraphrases=("tortoise",)), _entry("🐙", _A), _entry("🐳", _A, "whale"), _entry("🐘", _A),
    # food (26)
    _entry("🍎", _F, "apple"), _entry("🍐", _F), _entry("🍊", _F, paraphrases=("mandarin",)), _entry("🍋", _F),
    _entry("🍌", _F), _entry("🍉", _F), _entry("🍇", _F), _entry("🍓", _F), _entry("🍒", _F), _entry("🍑", _F),
    _entry("🍍", _F), _entry("🥝", _F, "kiwi"), _entry("🥑", _F), _entry("🍆", _F, "eggplant"), _entry("🥕", _F),
    _entry("🌽", _F, "corn"), _entry("🥦", _F), _entry("🍄", _F), _entry("🧀", _F, "cheese"),
    _entry("🍔", _F, paraphrases=("burger",)), _entry("🍟", _F, "fries", paraphrases=("chips",)),
    _entry("🍕", _F, "pizza"), _entry("🌭", _F), _entry("🍩", _F, paraphrases=("donut",)),
    _entry("🎂", _F, "cake"), _entry("🍦", _F, "ice cream"),
    # vehicles (22)
    _entry("🚗", _V, "car"), _entry("🚕", _V, paraphrases=("cab",)), _entry("🚌", _V), _entry("🚑", _V),
    _entry("🚒", _V, "fire truck"), _entry("🚓", _V), _entry("🚚", _V, "truck"), _entry("🚜", _V),
    _entry("🏎", _V, "race car"), _entry("🏍", _V, "motorcycle", paraphrases=("motorbike",)),
    _entry("🚲", _V, paraphrases=("bike",)), _entry("🛴", _V, "kick scooter"), _entry("🚂", _V, "train"),
    _entry("🚁", _V), _entry("✈", _V, paraphrases=("plane", "jet")), _entry("🛸", _V, "ufo"),
    _entry("⛵", _V, paraphrases=("yacht",)), _entry("🚤", _V), _entry("🛶", _V), _entry("🛵", _V, "moped"),
    _entry("🚋", _V, "tram"), _entry("🛻", _V),
    # sports (22)
    _entry("⚽", _S), _entry("🏀", _S, "basketball"), _entry("🏈", _S), _entry("🥎", _S),
    _entry("🎾", _S, "tennis racket"), _entry("🏐", _S),
    _entry("🏓", _S, "ping pong paddle"), _entry("🏸", _S, "badminton racket"), _entry("🥊", _S),
    _entry("🥅", _S), _entry("⛳", _S, "golf flag", unicode_ok=False), _entry("🏒", _S, "hockey stick"),
    _entry("🏏", _S, "cricket bat"), _entry("🥏", _S, "frisbee"), _entry("🎳", _S, "bowling pins", unicode_ok=False),
    _entry("🏆", _S), _entry("🥇", _S, "gold medal"), _entry("🛹", _S),
    _entry("🎯", _S, "dartboard", unicode_ok=False, paraphrases=("target",)), _entry("🏹", _S), _entry("⛸", _S),
    _entry("🪁", _S),
    # things (28): objects, instruments, plants, symbols
    _entry("🎈", _T), _entry("🎁", _T, "gift", paraphrases=("package",)), _entry("🔔", _T), _entry("🔑", _T),
    _entry("🔨", _T), _entry("💡", _T, "light bulb", paraphrases=("lamp",)), _entry("📚", _T),
    _entry("✏", _T), _entry("🔒", _T, paraphrases=("padlock",)), _entry("⏰", _T),
    _entry("💻", _T, "laptop"), _entry("🎸", _T), _entry("🎺", _T), _entry("🥁", _T, "drum"),
    _entry("☂", _T), _entry("🌵", _T), _entry("🌻", _T), _entry("🌹", _T),
    _entry("🌲", _T, "pine tree", paraphrases=("fir tree",)), _entry("🍁", _T),
    _entry("⭐", _T, "star", unicode_ok=False), _entry("🌈", _T), _entry("❤", _T, "heart", unicode_ok=False),
    _entry("🔥", _T, paraphrases=("flames",)), _entry("💎", _T, "gem", paraphrases=("diamond",)), _entry("👑", _T),
    _entry("👟", _T, "sneaker", paraphrases=("running shoe",)), _entry("🏠", _T, "house", paraphrases=("home",)),
)
CATEGORIES = (_A, _F, _V, _S, _T)
SPRITES: dict[str, Sprite] = {s.name: s for s in VOCABULARY}
assert len(SPRITES) == len(VOCABULARY), "sprite keys (names[0]) must be unique"
_PLURAL = {"grapes", "cherries", "fries", "french fries", "books", "bowling pins"}
_YOU_SOUND = ("unicorn", "ufo")  # "a unicorn", not "an unicorn"

# -- backgrounds ------------------------------------------------------------------------------
FLAT_COLORS: dict[str, tuple[int, int, int]] = {
    "blue": (40, 80, 200), "green": (40, 150, 60), "red": (200, 40, 40), "yellow": (230, 210, 50),
    "purple": (120, 60, 170), "pink": (240, 150, 190), "grey": (128, 128, 128), "brown": (120, 80, 40),
}
# skimage.data function -> caption words. All ship inside scikit-image (no download). Left out:
# chelsea and cat (their subject is a cat, a sprite's name),
# the microscopy and retina images (no everyday name).
PHOTOS: dict[str, str] = {
    "astronaut": "an astronaut", "coffee": "coffee", "rocket": "a rocket launch", "camera": "a photographer",
    "hubble_deep_field": "deep space", "grass": "grass", "gravel": "gravel", "brick": "a brick wall",
    "moon": "the moon", "coins": "coins",
}
BACKGROUNDS = ("black", *FLAT_COLORS, *PHOTOS)
PHOTO_VIEW = 0.55  # the frame shows this fraction of the photo's shorter side

# -- motions ----------------------------------------------------------------------------------
MOVES = ("left", "right", "up", "down")
ZOOMS = ("zoom in", "zoom out")
PANS = ("pan left", "pan right", "pan up", "pan down")
MOTIONS = MOVES + ZOOMS + PANS
_UNIT = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}  # y grows downward

SIZE_RANGE = (0.25, 0.34)  # sprite side (its square box), fraction of the frame side
SPEED_RANGE = (0.07, 0.14)  # frame widths per second: of travel, of the side's growth, of the pan
ZOOM_IN_START = (0.18, 0.26)  # starting side of a growing sprite (ends <= 0.82 after MAX_DURATION_S)
ZOOM_OUT_END = (0.14, 0.22)  # side a shrinking sprite reaches after MAX_DURATION_S
MAX_DURATION_S = 4.0  # the longest clip (16 frames at 4 fps) stays inside the frame / the photo
MARGIN = 0.02

# Never trained: every motion at least once, every category at least twice.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("cat", "right"), ("apple", "left"), ("car", "up"), ("soccer ball", "down"),
    ("guitar", "left"), ("frog", "down"), ("pizza", "zoom in"), ("house", "zoom in"),
    ("basketball", "zoom out"), ("elephant", "zoom out"), ("bus", "pan left"), ("penguin", "pan right"),
    ("banana", "pan up"), ("heart", "pan down"), ("airplane", "right"),
)
# Never in a training clip; seen only as single frames by the image stages (vae, lit, sr).
STILL_ONLY: tuple[str, ...] = ("koala", "pineapple", "helicopter", "trophy", "sunflower")

ALL_PAIRS = tuple((s, m) for s in SPRITES for m in MOTIONS)
TRAIN_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS and p[0] not in STILL_ONLY)
IMAGE_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)
HELDOUT_PAIRS = tuple(p for p in ALL_PAIRS if p in HELD_OUT_PAIRS or p[0] in STILL_ONLY)
SPLITS = {"train": TRAIN_PAIRS, "images": IMAGE_PAIRS, "heldout": HELDOUT_PAIRS, "all": ALL_PAIRS}

# -- captions ---------------------------------------------------------------------------------
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moving left", "sliding to the left", "drifting leftward", "going left"),
    "right": ("moving right", "sliding to the right", "drifting rightward", "going right"),
    "up": ("moving up", "rising", "drifting upward", "going up"),
    "down": ("moving down", "falling", "drifting downward", "going down"),
    "zoom in": ("growing", "getting bigger", "zooming in", "growing larger"),
    "zoom out": ("shrinking", "getting smaller", "zooming out", "shrinking away"),
    "pan left": ("as the camera pans left", "with the camera panning left", "while the camera pans to the left"),
    "pan right": ("as the camera pans right", "with the camera panning right", "while the camera pans to the right"),
    "pan up": ("as the camera pans up", "with the camera panning up", "as the camera tilts upward"),
    "pan down": ("as the camera pans down", "with the camera panning down", "as the camera tilts downward"),
}
BACKGROUND_PHRASES = {
    "black": ("", " on black", " on a black background"),
    "flat": (" on a {} background", " against a {} background", " on {}"),
    "photo": (" over a photo of {}", " in front of a photo of {}", " against a picture of {}"),
}
TEMPLATES = ("{object} {motion}{background}", "{object}{background}, {motion}", "{bare} {motion}{background}")


@dataclass(frozen=True)
class SpriteClipSpec:
    sprite: str  # key into SPRITES
    motion: str  # one of MOTIONS
    background: str  # one of BACKGROUNDS
    size: float  # sprite side at t=0, fraction of the frame side
    speed: float  # frame widths per second (travel, growth of the side, or pan)
    start: tuple[float, float]  # sprite centre at t=0, fractions of the frame (x, y)
    view: tuple[float, float]  # photo window's top-left at t=0, in window sides (0, 0 for plain backgrounds)
    caption: str


@dataclass(frozen=True)
class SpritePrompt:
    sprite: str | None
    motion: str | None
    background: str | None


def _check(sprite: str, motion: str, background: str) -> None:
    if sprite not in SPRITES:
        raise ValueError(f"unknown sprite {sprite!r}; choose one of the {len(SPRITES)} in SPRITES (e.g. 'cat')")
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of {list(MOTIONS)}")
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; choose one of {list(BACKGROUNDS)}")
    if motion in PANS and background not in PHOTOS:
        raise ValueError(f"{motion!r} needs a photo background (a pan over {background!r} shows nothing move)")


def _with_article(name: str) -> str:
    if name in _PLURAL:
        return name
    return ("an " if name[0] in "aeiou" and not name.startswith(_YOU_SOUND) else "a ") + name


def make_caption(sprite: str, motion: str, background: str, rng: np.random.Generator,
                 template: int | None = None, name: str | None = None) -> str:
    """A caption from a random template, sprite name, motion phrase and background phrase
    (or the given ``template`` index and caption ``name``)."""
    _check(sprite, motion, background)
    name = name or SPRITES[sprite].names[rng.integers(len(SPRITES[sprite].names))]
    motion_text = MOTION_PHRASES[motion][rng.integers(len(MOTION_PHRASES[motion]))]
    kind = "black" if background == "black" else "flat" if background in FLAT_COLORS else "photo"
    phrases = BACKGROUND_PHRASES[kind]
    words = PHOTOS.get(background, background)
    background_text = phrases[rng.integers(len(phrases))].format(words)
    text = TEMPLATES[rng.integers(len(TEMPLATES)) if template is None else template]
    return text.format(object=_with_article(name), bare=name, motion=motion_text, background=background_text)


def _names_longest_first() -> list[tuple[str, str]]:
    pairs = [(n, s.name) for s in VOCABULARY for n in (*s.names, *s.paraphrases)]
    return sorted(pairs, key=lambda p: -len(p[0]))


_MOTION_WORDS = [  # pans first: "the camera panning left" is not the object moving left
    (r"(?:pans?|panning|tilting|tilts?) (?:to the )?left(?:ward)?", "pan left"),
    (r"(?:pans?|panning|tilting|tilts?) (?:to the )?right(?:ward)?", "pan right"),
    (r"(?:pans?|panning|tilting|tilts?) up(?:ward)?", "pan up"),
    (r"(?:pans?|panning|tilting|tilts?) down(?:ward)?", "pan down"),
    (r"zoom(?:s|ing)? in|grow(?:s|ing)?|getting bigger|enlarg\w*|expand\w*", "zoom in"),
    (r"zoom(?:s|ing)? out|shrink(?:s|ing)?|getting smaller", "zoom out"),
    (r"to the left|leftwards?|left", "left"), (r"to the right|rightwards?|right", "right"),
    (r"upwards?|up|rising|rises", "up"), (r"downwards?|down|falling|falls", "down"),
]


def parse_prompt(text: str) -> SpritePrompt:
    """Recover (sprite, motion, background) from a caption or free text; paraphrases count
    ("a kitten" is the cat). A prompt that names no background means black."""
    low = " ".join(text.lower().split())
    background_part = low
    background = "black"
    for key, words in PHOTOS.items():
        bare = re.sub(r"^(?:an?|the) ", "", words)
        if re.search(rf"(?:photo|picture|image) of (?:an? |the )?{re.escape(bare)}\b", low):
            background = key
            background_part = low.replace(bare, " ")  # "a rocket launch" names no sprite
            break
    else:
        color = next((c for c in FLAT_COLORS if re.search(rf"\b(?:on|against) (?:an? )?{c}\b", low)), None)
        background = color or "black"
    sprite = next((key for name, key in _names_longest_first()
                   if re.search(rf"\b{re.escape(name)}s?\b", background_part)), None)
    motion = next((m for pattern, m in _MOTION_WORDS if re.search(rf"\b(?:{pattern})\b", low)), None)
    return SpritePrompt(sprite, motion, background)


def _photo_room(background: str) -> tuple[float, float]:
    """How far the photo window can move (in window sides) in x and y."""
    h, w = _photo(background).shape[:2]
    window = PHOTO_VIEW * min(h, w)
    return (w - window) / window, (h - window) / window


def spec_for(sprite: str, motion: str, background: str, rng: np.random.Generator, template: int | None = None,
             name: str | None = None) -> SpriteClipSpec:
    """A random size, speed, start and photo window for a given (sprite, motion, background);
    the object (and the photo window) stay inside for MAX_DURATION_S seconds."""
    _check(sprite, motion, background)
    speed = float(rng.uniform(*SPEED_RANGE))
    travel = speed * MAX_DURATION_S
    if motion in ZOOMS:
        size = (float(rng.uniform(*ZOOM_IN_START)) if motion == "zoom in"
                else float(rng.uniform(*ZOOM_OUT_END)) + travel)
        largest = size + travel if motion == "zoom in" else size
        half = largest / 2 + MARGIN
        x, y = (float(rng.uniform(min(half, 0.5), max(1 - half, 0.5))) for _ in range(2))
    else:
        size = float(rng.uniform(*SIZE_RANGE))
        lo, hi = size / 2 + MARGIN, 1 - size / 2 - MARGIN
        vx, vy = _UNIT[motion] if motion in MOVES else (0.0, 0.0)

        def along(v: float) -> float:  # start so that start + v * travel stays in [lo, hi]
            return float(rng.uniform(lo, hi - travel)) if v > 0 else float(rng.uniform(lo + travel, hi))

        x = along(vx) if vx else float(rng.uniform(lo, hi))
        y = along(vy) if vy else float(rng.uniform(lo, hi))
    view = (0.0, 0.0)
    if background in PHOTOS:
        room_x, room_y = _photo_room(background)
        px, py = _UNIT[motion.split()[1]] if motion in PANS else (0.0, 0.0)

        def window(v: float, room: float) -> float:
            if v == 0:
                return float(rng.uniform(0, room))
            return float(rng.uniform(0, room - travel)) if v > 0 else float(rng.uniform(travel, room))

        view = (window(px, room_x), window(py, room_y))
    caption = make_caption(sprite, motion, background, rng, template, name)
    return SpriteClipSpec(sprite, motion, background, size, speed, (x, y), view, caption)


def sample_spec(rng: np.random.Generator, split: str = "train") -> SpriteClipSpec:
    """A random (sprite, motion) pair of ``split``; pans get a photo, the rest black, a flat
    colour or a photo, a third each."""
    pairs = SPLITS.get(split)
    if pairs is None:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    sprite, motion = pairs[rng.integers(len(pairs))]
    if motion in PANS:
        background = list(PHOTOS)[rng.integers(len(PHOTOS))]
    else:
        kind = rng.integers(3)
        choices = ["black"] if kind == 0 else list(FLAT_COLORS) if kind == 1 else list(PHOTOS)
        background = choices[rng.integers(len(choices))]
    return spec_for(sprite, motion, background, rng)


# -- rendering --------------------------------------------------------------------------------
_SPRITE_MARGIN = 32  # transparent source pixels around each glyph (2 at the smallest pyramid level)
_LEVELS = 4  # pyramid levels: each frame resamples from the one within 2x of the target size


@functools.lru_cache(maxsize=None)
def _font():
    from PIL import ImageFont

    return ImageFont.truetype(str(emoji_font_path()), FONT_SIZE)


@functools.lru_cache(maxsize=None)
def sprite_image(name: str, level: int = 0):
    """The sprite as a premultiplied-alpha PIL image ("RGBa"): the glyph cropped to its
    alpha box and centred in a transparent square (its *side* is the box's longer edge) with
    a margin; ``level`` k is that image reduced 2^k times (a pyramid, so that resampling to a
    small size reads few pixels). Returns (image, side, margin), both in the image's pixels."""
    from PIL import Image, ImageDraw

    if name not in SPRITES:
        raise ValueError(f"unknown sprite {name!r}")
    if level:
        image, side, margin = sprite_image(name, 0)
        k = 2**level
        return image.resize((image.width // k, image.height // k), Image.BOX), side / k, margin / k
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((4, 4), SPRITES[name].char, font=_font(), embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"sprite {name!r}: the font {emoji_font_path()} has no colour glyph for "
                         f"U+{ord(SPRITES[name].char):04X}")
    glyph = canvas.crop(box)
    side = max(glyph.size)
    size = -(-(side + 2 * _SPRITE_MARGIN) // 2**_LEVELS) * 2**_LEVELS  # divisible at every level
    square = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    margin = (size - side) // 2  # where the side's square starts, both axes
    square.paste(glyph, (margin + (side - glyph.width) // 2, margin + (side - glyph.height) // 2))
    return square.convert("RGBa"), float(side), float(margin)


def render_sprite(name: str, cx: float, cy: float, side: float, height: int, width: int | None = None):
    """The sprite's square box of ``side`` pixels centred at (cx, cy) pixels, resampled with
    antialiasing at that sub-pixel position. Returns (premultiplied rgb (h, w, 3) float32 in
    [0, 1], alpha (h, w), top, left): the patch covering the box, clipped to the frame."""
    from PIL import Image

    width = width or height
    left, top = cx - side / 2, cy - side / 2
    x0, y0 = max(int(np.floor(left)), 0), max(int(np.floor(top)), 0)
    x1, y1 = min(int(np.ceil(left + side)), width), min(int(np.ceil(top + side)), height)
    if x1 <= x0 or y1 <= y0 or not side > 0:
        return np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32), 0, 0
    full_side = sprite_image(name, 0)[1]
    level = int(np.clip(np.floor(np.log2(max(full_side / side, 1.0))), 0, _LEVELS))
    image, source_side, margin = sprite_image(name, level)
    scale = source_side / side  # source pixels per frame pixel
    if scale + 1 > margin:  # a sprite a few pixels wide: the box reaches past the margin, widen it
        from PIL import ImageOps

        pad = int(np.ceil(scale + 1 - margin))
        image, margin = ImageOps.expand(image, border=pad, fill=0), margin + pad
    box = ((x0 - left) * scale + margin, (y0 - top) * scale + margin,
           (x1 - left) * scale + margin, (y1 - top) * scale + margin)
    patch = np.asarray(image.resize((x1 - x0, y1 - y0), Image.BICUBIC, box=box), dtype=np.float32) / 255.0
    return patch[..., :3], patch[..., 3], y0, x0


def composite(frame: np.ndarray, name: str, cx: float, cy: float, side: float) -> np.ndarray:
    """The sprite drawn over ``frame`` (float (H, W, 3) in [0, 1], modified in place)."""
    rgb, alpha, top, left = render_sprite(name, cx, cy, side, frame.shape[0], frame.shape[1])
    h, w = alpha.shape
    region = frame[top : top + h, left : left + w]
    region *= 1.0 - alpha[..., None]
    region += rgb
    return frame


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) photograph from scikit-image's bundled data (grey ones as RGB)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose one of {list(PHOTOS)}")
    try:
        import skimage.data
    except ImportError:
        raise ValueError("the sprites domain's photo backgrounds need scikit-image: pip install scikit-image") from None
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _photo_at(name: str, resolution: int):
    """The photo as a PIL image scaled so that a frame's window is 2 * resolution pixels wide
    (each frame is then a 2x antialiased reduction at a sub-pixel offset)."""
    from PIL import Image

    image = _photo(name)
    factor = 2 * resolution / (PHOTO_VIEW * min(image.shape[:2]))
    size = (max(round(image.shape[1] * factor), 2 * resolution), max(round(image.shape[0] * factor), 2 * resolution))
    return Image.fromarray(image).resize(size, Image.BICUBIC, reducing_gap=3.0)


def _background(spec: SpriteClipSpec, t: np.ndarray, resolution: int) -> np.ndarray:
    """float32 (T, H, W, 3) in [0, 1]."""
    from PIL import Image

    out = np.zeros((len(t), resolution, resolution, 3), np.float32)
    if spec.background in FLAT_COLORS:
        out[:] = np.asarray(FLAT_COLORS[spec.background], np.float32) / 255.0
    elif spec.background in PHOTOS:
        photo, window = _photo_at(spec.background, resolution), 2 * resolution
        px, py = _UNIT[spec.motion.split()[1]] if spec.motion in PANS else (0.0, 0.0)
        xs = (spec.view[0] + px * spec.speed * t) * window
        ys = (spec.view[1] + py * spec.speed * t) * window
        done: dict[tuple[float, float], np.ndarray] = {}
        for i, (x, y) in enumerate(zip(xs, ys)):
            key = (float(x), float(y))
            if key not in done:  # a still background is resampled once
                box = (x, y, x + window, y + window)  # a 2x reduction: triangle filter, antialiased
                view = photo.resize((resolution, resolution), Image.BILINEAR, box=box)
                done[key] = np.asarray(view, np.float32) / 255
            out[i] = done[key]
    return out


def sprite_track(spec: SpriteClipSpec, t_seconds: float | np.ndarray, resolution: int) -> np.ndarray:
    """Ground truth (T, 3): the sprite box's centre x, y and side, in pixels, at time t."""
    t = np.atleast_1d(np.asarray(t_seconds, dtype=np.float64))
    vx, vy = _UNIT[spec.motion] if spec.motion in MOVES else (0.0, 0.0)
    growth = {"zoom in": 1.0, "zoom out": -1.0}.get(spec.motion, 0.0)
    cx = (spec.start[0] + vx * spec.speed * t) * resolution
    cy = (spec.start[1] + vy * spec.speed * t) * resolution
    side = (spec.size + growth * spec.speed * t) * resolution
    return np.stack([cx, cy, side], axis=-1)


def render_at(spec: SpriteClipSpec, t_seconds: float | np.ndarray, resolution: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3): the scene at the given times (seconds from the clip's start)."""
    if resolution < 16:
        raise ValueError(f"resolution must be >= 16, got {resolution}")
    t = np.atleast_1d(np.asarray(t_seconds, dtype=np.float64))
    frames = _background(spec, t, resolution)
    for frame, (cx, cy, side) in zip(frames, sprite_track(spec, t, resolution)):
        composite(frame, spec.sprite, cx, cy, side)
    return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)


def render_clip(spec: SpriteClipSpec, num_frames: int, fps: float, resolution: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3): frame i shows the scene at time i / fps."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if (num_frames - 1) / fps > MAX_DURATION_S + 1e-9:
        raise ValueError(f"{num_frames} frames at {fps} fps last longer than {MAX_DURATION_S} s: "
                         "the object would leave the frame")
    return render_at(spec, np.arange(num_frames) / fps, resolution)


class SpritesDataset(torch.utils.data.Dataset):
    """Map-style, deterministic: item i is the same clip for the same seed. Same arguments
    and item layout as ``ShapesDataset``; items also name ``sprite``, ``motion`` and
    ``background``. ``split="images"`` adds the STILL_ONLY sprites (for the image stages)."""

    def __init__(self, num_frames: int = 16, resolution: int = 64, fps_choices: tuple[float, ...] = (4.0, 8.0, 16.0),
                 split: str = "train", seed: int = 0, length: int = 10_000):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        if not fps_choices or min(fps_choices) <= 0:
            raise ValueError(f"fps_choices must be positive, got {fps_choices}")
        if (num_frames - 1) / min(fps_choices) > MAX_DURATION_S:
            raise ValueError(f"{num_frames} frames at {min(fps_choices)} fps exceed {MAX_DURATION_S} s")
        self.num_frames, self.resolution, self.fps_choices = num_frames, resolution, tuple(fps_choices)
        self.split, self.seed, self.length = split, seed, length
        sprite_image(VOCABULARY[0].name)  # no font: fail here, with the install line, not inside a DataLoader

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        spec = sample_spec(rng, self.split)
        fps = float(self.fps_choices[rng.integers(len(self.fps_choices))])
        frames = render_clip(spec, self.num_frames, fps, self.resolution)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return {"video": video, "caption": spec.caption, "fps": fps,
                "sprite": spec.sprite, "motion": spec.motion, "background": spec.background}


# -- vocabulary.json --------------------------------------------------------------------------
def vocabulary() -> dict:
    """Everything a prompt can name: per sprite its character, caption names, paraphrases,
    category, split (train / still-only) and held-out motions; backgrounds; motions."""
    held = {}
    for sprite, motion in HELD_OUT_PAIRS:
        held.setdefault(sprite, []).append(motion)
    return {
        "domain": "sprites",
        "font": "Noto Color Emoji (SIL Open Font License)",
        "sprites": [{"char": s.char, "codepoint": f"U+{ord(s.char):04X}", "names": list(s.names),
                     "paraphrases": list(s.paraphrases), "category": s.category,
                     "split": "still-only" if s.name in STILL_ONLY else "train",
                     "heldout_motions": held.get(s.name, [])} for s in VOCABULARY],
        "backgrounds": {"black": "no background named, or 'on black'",
                        **{c: f"on a {c} background" for c in FLAT_COLORS},
                        **{p: f"over a photo of {w} (skimage.data.{p})" for p, w in PHOTOS.items()}},
        "motions": {m: list(MOTION_PHRASES[m]) for m in MOTIONS},
        "templates": list(TEMPLATES),
        "speed_frame_widths_per_second": list(SPEED_RANGE),
    }


def write_vocabulary(path: str | os.PathLike) -> Path:
    """Write ``vocabulary()`` as JSON to ``path`` (a file, or a directory that gets
    ``vocabulary.json``). Needs no font."""
    path = Path(path)
    if path.is_dir():
        path = path / "vocabulary.json"
    path.write_text(json.dumps(vocabulary(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
