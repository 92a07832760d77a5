"""magicvideo.evaluation: the dithering probe's consistent-decoder reference blur and region
shares, the check report every evaluation ends with, and the --out check before any work."""
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from magicvideo.evaluation import applications, cascade, dithering, keyframes
from magicvideo.evaluation.common import report_checks
from magicvideo.evaluation.dithering import gaussian_blur, region_shares


@pytest.mark.parametrize("sigma", [0.45, 0.52, 1.3])
def test_blur_matches_scipy(sigma):
    frames = torch.rand(2, 3, 12, 10, dtype=torch.float64)
    ours = gaussian_blur(frames, sigma).numpy()
    ref = gaussian_filter(frames.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=4.0)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_region_shares():
    truth = np.zeros((1, 2, 8, 8, 3), np.uint8)
    truth[0, 0, 2, 2], truth[0, 1, 2, 3] = 100, 100  # one pixel moves right
    decoded = truth.copy()
    decoded[0, 1, 2, 3] = 90  # on the moving pixels: error 10 in the change
    decoded[0, 1, 2, 5] = 10  # 2 px from them: near
    decoded[0, 1, 7, 7] = 10  # far
    shares = region_shares(decoded, truth)
    assert shares["moving"] == pytest.approx(1 / 3) and shares["near"] == pytest.approx(1 / 3)
    assert shares["far"] == pytest.approx(1 / 3) and shares["moving_pixels"] == pytest.approx(2 / 64)
    decoded[0, 1, 2, 6] = 10  # 3 px away: far
    assert region_shares(decoded, truth)["far"] == pytest.approx(2 / 4)


def test_report_checks_prints_each_check_and_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "figures.json"
    checks = [("psnr (dB)", 41.2, ">=", 40.0), ("drop (dB)", 0.5, "<=", 0.3)]
    assert report_checks(checks, {"psnr": 41.2, "n": np.int64(3)}, str(out)) is False  # one missed
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("ok") and lines[1].endswith("MISSED")
    assert json.loads(out.read_text()) == {"psnr": 41.2, "n": 3.0}
    assert report_checks(checks[:1], {}) is True
    with pytest.raises(ValueError, match="op must be"):
        report_checks([("x", 1.0, "<", 2.0)], {})


@pytest.mark.parametrize("module", [keyframes, cascade, applications, dithering])
def test_evaluations_refuse_a_bad_out_path_before_loading_anything(module, tmp_path, capsys):
    for bad in (str(tmp_path / "figures.txt"), str(tmp_path / "missing" / "figures.json")):
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--pipeline", str(tmp_path / "no_pipeline"), "--out", bad])
        assert exit_info.value.code == 2 and "must be a .json file in an existing folder" in capsys.readouterr().err
