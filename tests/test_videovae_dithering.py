"""magicvideo.evaluation.dithering: the consistent-decoder reference blur and the region shares."""
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

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
