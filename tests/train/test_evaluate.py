import numpy as np
import pytest
import scipy.linalg

from tandem.train.evaluate import frechet_distance


def frechet_distance_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """FID's reference formula with scipy.linalg.sqrtm."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def test_frechet_distance_matches_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(loc=0.5, size=(400, 16)) @ rng.normal(size=(16, 16))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance_scipy(a, b), rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    a = np.random.default_rng(1).normal(size=(300, 8))
    assert abs(frechet_distance(a, a)) < 1e-8
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)  # ||mu shift||^2


def test_frechet_distance_with_fewer_samples_than_dimensions_stays_real():
    rng = np.random.default_rng(2)
    value = frechet_distance(rng.normal(size=(20, 64)), rng.normal(size=(20, 64)))
    assert np.isfinite(value) and value > 0
