"""The Frechet distance (FID/FVD core) against closed forms and scipy's sqrtm."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from magicvideo.frechet import feature_statistics, frechet_distance, frechet_distance_of_features, psd_sqrt


def random_psd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


def scipy_reference(mu1, s1, mu2, s2):
    """The usual FID code path: general sqrtm of the product, real part."""
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_one_dimensional_gaussians_match_the_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[0.25]]) == pytest.approx(9.0 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [2, 16, 64])
def test_full_covariances_match_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_psd(rng, d), random_psd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_reference(mu1, s1, mu2, s2), rel=1e-7)


def test_rank_deficient_covariances_stay_real_and_nonnegative():
    rng = np.random.default_rng(1)
    s = random_psd(rng, 32, rank=5)  # fewer samples than dimensions, as with small FID sets
    mu = rng.standard_normal(32)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)
    root = psd_sqrt(s)
    np.testing.assert_allclose(root @ root, s, atol=1e-10)


def test_feature_sets_identical_distributions_are_close_and_shifted_ones_are_not():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4000, 8)), rng.standard_normal((4000, 8))
    same = frechet_distance_of_features(a, b)
    shifted = frechet_distance_of_features(a, b + 1.0)
    assert same < 0.05
    # a shift moves only the mean term (covariances are shift-invariant)
    delta = a.mean(0) - b.mean(0)
    assert shifted - same == pytest.approx(((delta - 1.0) ** 2).sum() - (delta**2).sum(), rel=1e-9)
    assert 7.5 < shifted < 8.5  # |shift|^2 = 8 x 1^2
    mu, sigma = feature_statistics(a)
    np.testing.assert_allclose(sigma, np.cov(a, rowvar=False))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 4)))
