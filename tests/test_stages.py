"""Every training stage runs end to end through the CLI and leaves loadable models."""
from __future__ import annotations

import json

import pytest
import torch

from magicvideo import VideoUNet, VideoVAE
from magicvideo.cli import main
from magicvideo.models.encoders import image_condition, load_encoder
from magicvideo.pipeline import MagicVideoPipeline
from magicvideo.sampling import SamplingOptions
from magicvideo.stages import StageOptions


def test_vae_lit_keyframe_chain(tmp_path):
    common = ["--steps", "2", "--batch-size", "2", "-q", "--checkpoint-every", "1"]
    assert main(["train", "--stage", "vae", "-o", str(tmp_path / "vae"), *common]) == 0
    assert main(["train", "--stage", "lit", "-o", str(tmp_path / "lit"), *common]) == 0
    vae = VideoVAE.from_pretrained(tmp_path / "vae" / "model")
    assert vae.config.scaling_factor != 0.18215  # set from the data: unit-variance latents
    kf = ["--vae", str(tmp_path / "vae" / "model"), "--encoder", str(tmp_path / "lit" / "model")]
    assert main(["train", "--stage", "keyframe", "--condition", "image", "-o", str(tmp_path / "kf0"), *kf,
                 "--pool-clips", "3", "--unet", "temporal_conv_op=conv1d", "--unet", "attention_layout=sequential",
                 *common]) == 0
    assert main(["train", "--stage", "keyframe", "--condition", "text", "-o", str(tmp_path / "kf"), *kf,
                 "--init-from", str(tmp_path / "kf0" / "model"), "--mixed-precision", "bf16", *common]) == 0
    start = json.loads((tmp_path / "kf" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["condition"] == "text" and start["init_from"].endswith("model")
    assert start["config"]["mixed_precision"] == "bf16"
    unet = VideoUNet.from_pretrained(tmp_path / "kf" / "model")
    assert (unet.config.temporal_conv_op, unet.config.attention_layout) == ("conv1d", "sequential")  # --unet, kept
    pipe = MagicVideoPipeline(unet, vae, load_encoder(tmp_path / "lit" / "model"), defaults=SamplingOptions(steps=2))
    assert pipe("a red circle moving right", num_frames=4, progress=False).frames.shape == (4, 64, 64, 3)
    assert (tmp_path / "kf" / "samples" / "final.gif").is_file()


@pytest.mark.parametrize("args, message", [
    (["--unet", "attention_heads=3"], "not a VideoUNetConfig field"),
    (["--unet", "temporal_conv_op=lstm"], "temporal_conv_op must be one of"),
    (["--unet", "temporal_conv_op=conv1d", "--init-from", "somewhere"], "cannot be combined with --init-from"),
    (["--init-image-from", "somewhere", "--init-from", "elsewhere"], "cannot be combined with --init-from"),
    (["--init-image-from", "nowhere"], "nowhere/model.safetensors: weights file not found"),
])
def test_unet_overrides_are_checked(tmp_path, capsys, args, message):
    from magicvideo.pipeline import DEFAULT_PIPELINE

    kf = ["--vae", str(DEFAULT_PIPELINE / "vae"), "--encoder", str(DEFAULT_PIPELINE / "encoder")]
    assert main(["train", "--stage", "keyframe", "-o", str(tmp_path / "run"), *kf, "--steps", "1", *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_init_image_from_is_refused_by_the_other_stages(tmp_path, capsys):
    assert main(["train", "--stage", "sr", "-o", str(tmp_path / "run"), "--steps", "1", "--init-image-from", "x"]) == 2
    assert "only the keyframe stage" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_keyframe_stage_needs_a_vae(tmp_path, capsys):
    assert main(["train", "--stage", "keyframe", "-o", str(tmp_path), "--steps", "1"]) == 2
    assert "--vae" in capsys.readouterr().err


def test_a_missing_gpu_is_a_one_line_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["train", "--stage", "sr", "-o", str(tmp_path), "--steps", "1", "--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert main(["train", "--stage", "sr", "-o", str(tmp_path), "--steps", "1", "--device", "tpu"]) == 2
    assert "cpu, cuda or cuda:N" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint").exists()


def test_image_condition_averages_frame_embeddings():
    class Probe:
        def encode_image(self, images):  # one token = mean pixel value of each image
            return images.mean(dim=(1, 2, 3)).view(-1, 1, 1)

    video = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 16, 1, 1).expand(2, 3, 16, 2, 2)
    tokens = image_condition(Probe(), video, frames_used=4)
    # frames 0, 5, 10, 15 of each clip
    assert torch.allclose(tokens.view(2), torch.tensor([7.5, 23.5]))


def test_every_stage_the_cli_offers_is_built_and_nothing_else():
    from magicvideo.config import STAGES
    from magicvideo.stages import BUILDERS, build_stage

    assert tuple(BUILDERS) == STAGES
    with pytest.raises(ValueError, match="unknown stage 'audio'"):
        build_stage("audio", StageOptions())


def test_training_modules_do_not_import_each_other_in_a_circle():
    """latent_cache and train are below the stages: they import nothing from them."""
    import ast
    from pathlib import Path

    import magicvideo

    root = Path(magicvideo.__file__).parent
    for module in ("latent_cache.py", "train.py", "diffusion.py"):
        for node in ast.walk(ast.parse((root / module).read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or "", *(alias.name for alias in node.names)]
                assert not any("stages" in name.split(".") for name in names), f"{module}: {ast.unparse(node)}"


def test_stage_options_are_validated():
    with pytest.raises(ValueError, match="condition"):
        StageOptions(condition="audio")
    with pytest.raises(ValueError, match="align_weight"):
        StageOptions(align_weight=-1.0)


def test_align_weight_reaches_the_lit_loss():
    # the same tower (seeded) on the same batch: the weight adds weight * (1 - caption cosine)
    from magicvideo.stages import build_stage

    runs = {}
    for weight in (0.0, 3.0):
        stage = build_stage("lit", StageOptions(align_weight=weight))
        value, logs = stage.loss(stage.make_batch(0, 4), torch.Generator().manual_seed(0))
        runs[weight] = (value.item(), logs["caption_cos"])
        assert stage.describe["align_weight"] == weight
    assert runs[0.0][1] == pytest.approx(runs[3.0][1], abs=1e-6)
    assert runs[3.0][0] - runs[0.0][0] == pytest.approx(3.0 * (1 - runs[0.0][1]), rel=1e-4, abs=1e-5)


def test_object_weights_cover_the_object_and_a_margin():
    from magicvideo.stages import object_weights

    frames = torch.full((1, 3, 16, 16), -1.0)
    frames[0, 0, 6:9, 6:9] = 1.0  # a red 3x3 object
    w = object_weights(frames, weight=9.0, margin=2)[0, 0]
    assert w[7, 7] == 10.0 and w[4, 4] == 10.0 and w[10, 10] == 10.0  # object and 2 px around it
    assert w[3, 7] == 1.0 and w[11, 11] == 1.0 and w[0, 0] == 1.0
    assert int((w == 10.0).sum()) == 7 * 7


def test_latent_object_weights_find_what_differs_from_the_background():
    from magicvideo.stages import latent_object_weights

    latents = torch.randn(1, 4, 1, 1, 1).expand(1, 4, 2, 16, 16).clone()  # flat background
    latents[0, :, 0, 5:7, 5:7] += torch.tensor([3.0, -2.0, 1.0, 0.5])[:, None, None]  # frame 0: a 2x2 object
    latents[0, :, 0, 12, 2] += 0.2  # a faint speck, under a quarter of the object's difference
    latents[0, :, 1, 9, 9] -= 4.0  # frame 1: a one-pixel object elsewhere
    w = latent_object_weights(latents, weight=4.0)[0, 0]
    assert int((w[0] == 5.0).sum()) == 4 * 4 and bool((w[0, 4:8, 4:8] == 5.0).all())  # object + 1 px around
    assert w[0, 12, 2] == 1.0 and w[0, 0, 0] == 1.0
    assert int((w[1] == 5.0).sum()) == 3 * 3 and w[1, 9, 9] == 5.0  # each frame its own object
    assert bool((latent_object_weights(latents, weight=0.0) == 1.0).all())


def test_clip_pool_cache_is_reused_only_when_it_matches(tmp_path, monkeypatch, capsys):
    from magicvideo import latent_cache, stages
    from magicvideo.config import VideoVAEConfig
    from magicvideo.latent_cache import read_latent_cache
    from magicvideo.models.encoders import MiniLMLiTEncoder

    VideoVAE(VideoVAEConfig()).save_pretrained(tmp_path / "vae")
    MiniLMLiTEncoder().save_pretrained(tmp_path / "enc")
    calls = []
    real = latent_cache.encode_clip_batch
    monkeypatch.setattr(latent_cache, "encode_clip_batch",
                        lambda batch, *a, **k: calls.append(len(batch["caption"])) or real(batch, *a, **k))
    cache = tmp_path / "pool"
    opts = StageOptions(vae=str(tmp_path / "vae"), encoder=str(tmp_path / "enc"), pool_clips=3, pool_cache=str(cache))
    first = stages.keyframe_stage(opts).make_batch(0, 2)
    assert calls == [3] and len(read_latent_cache(cache)["caption"]) == 3  # a latent-cache directory
    second = stages.keyframe_stage(StageOptions(**{**opts.__dict__, "condition": "image"})).make_batch(0, 2)
    assert calls == [3]  # read from the cache, not re-encoded
    assert torch.equal(first["latents"], second["latents"]) and first["caption"] == second["caption"]
    assert second["image_cond"].shape == (2, 1, 384)
    fewer = stages.keyframe_stage(StageOptions(**{**opts.__dict__, "pool_clips": 2})).make_batch(0, 2)
    assert calls == [3] and set(fewer["caption"]) <= set(read_latent_cache(cache)["caption"][:2])
    stages.keyframe_stage(StageOptions(**{**opts.__dict__, "seed": 1})).make_batch(0, 2)  # other clips
    assert calls == [3, 3] and "re-encoding" in capsys.readouterr().out
    no_cache = stages.keyframe_stage(StageOptions(**{**opts.__dict__, "seed": 1, "pool_cache": None})).make_batch(0, 2)
    again = stages.keyframe_stage(StageOptions(**{**opts.__dict__, "seed": 1})).make_batch(0, 2)
    assert calls == [3, 3, 3] and torch.equal(no_cache["latents"], again["latents"])  # in memory = the cache
    junk = tmp_path / "pool.safetensors"
    junk.write_bytes(b"not a cache")
    with pytest.raises(ValueError, match="pool.safetensors: not a clip-pool cache directory"):
        stages.keyframe_stage(StageOptions(**{**opts.__dict__, "pool_cache": str(junk)}))
    assert junk.read_bytes() == b"not a cache"  # never overwritten


@pytest.mark.parametrize("value", ["1", "-0.5", "x"])
def test_cli_rejects_a_bad_frame_noise_correlation(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--stage", "keyframe", "-o", str(tmp_path), "--frame-noise-correlation", value])
    assert exit_info.value.code == 2 and "--frame-noise-correlation" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_videovae_stage_trains_only_the_temporal_layers(tmp_path):
    from magicvideo.config import VideoVAEConfig

    torch.manual_seed(0)
    VideoVAE(VideoVAEConfig()).save_pretrained(tmp_path / "vae")
    assert main(["train", "--stage", "videovae", "-o", str(tmp_path / "vv"), "--vae", str(tmp_path / "vae"),
                 "--steps", "3", "--batch-size", "1", "--lr", "1e-2", "--ema-decay", "0", "-q"]) == 0
    before = VideoVAE.from_pretrained(tmp_path / "vae").state_dict()
    after = VideoVAE.from_pretrained(tmp_path / "vv" / "model").state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("temporal_layers.") for k in changed)
    assert any(k.endswith("to_out.0.weight") for k in changed)  # the zero-init output left zero
    assert (tmp_path / "vv" / "samples" / "final.gif").is_file()


def test_vae_init_from_finetunes_only_the_decoder(tmp_path):
    """The latent space of the initial VAE is kept: same encoder, same latents, same scaling."""
    from magicvideo.config import VideoVAEConfig

    torch.manual_seed(0)
    VideoVAE(VideoVAEConfig(scaling_factor=0.5)).save_pretrained(tmp_path / "vae")
    assert main(["train", "--stage", "vae", "-o", str(tmp_path / "ft"), "--init-from", str(tmp_path / "vae"),
                 "--steps", "3", "--batch-size", "2", "--lr", "1e-2", "--ema-decay", "0", "-q"]) == 0
    before, after = VideoVAE.from_pretrained(tmp_path / "vae"), VideoVAE.from_pretrained(tmp_path / "ft" / "model")
    old, new = before.state_dict(), after.state_dict()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed and all(k.startswith(("vae.decoder.", "vae.post_quant_conv.")) for k in changed)
    assert after.config == before.config  # scaling factor not re-estimated
    video = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(before.encode(video), after.encode(video))
        assert not torch.allclose(before.decode(before.encode(video)), after.decode(after.encode(video)))


def test_videovae_stage_needs_a_vae(tmp_path, capsys):
    assert main(["train", "--stage", "videovae", "-o", str(tmp_path), "--steps", "1"]) == 2
    assert "--vae" in capsys.readouterr().err
