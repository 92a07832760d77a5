"""Data: the procedural shapes domain (and, later, real video folders)."""
from .synthetic import (ALL_COMBOS, COLORS, DIRECTIONS, HELD_OUT, SEEN, SHAPES, TEMPLATES, ClipSpec, PromptAttributes,
                        ShapesDataset, make_caption, object_center, parse_prompt, render_at, render_clip, sample_spec,
                        spec_for)

__all__ = ["ALL_COMBOS", "COLORS", "DIRECTIONS", "HELD_OUT", "SEEN", "SHAPES", "TEMPLATES", "ClipSpec", "PromptAttributes",
           "ShapesDataset", "make_caption", "object_center", "parse_prompt", "render_at", "render_clip", "sample_spec", "spec_for"]
