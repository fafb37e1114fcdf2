import numpy as np
import pytest
import scipy.linalg
import torch

from tandem.train.evaluate import frechet_distance, predict


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


class _Probe(torch.nn.Module):
    """Logits that expose the views it was shown: the first pixel, the mean, and a left-right asymmetry."""

    def forward(self, x):
        return torch.stack([x[:, 0, 0, 0], x.mean(dim=(1, 2, 3)), (x[..., 0] - x[..., -1]).mean(dim=(1, 2))], dim=1)


def test_predict_averages_the_four_one_pixel_translations_with_the_image():
    images = torch.arange(2 * 16, dtype=torch.uint8).reshape(2, 1, 4, 4) * 7
    x = images.float() / 255
    plain = predict(_Probe(), images, [0.0], [1.0])
    translated = predict(_Probe(), images, [0.0], [1.0], tta_translate=True)
    # the corner pixel of each view: itself, and each neighbour the four moves bring there (edges reflected)
    corner = (x[:, 0, 0, 0] + x[:, 0, 1, 0] + x[:, 0, 1, 0] + x[:, 0, 0, 1] + x[:, 0, 0, 1]) / 5
    torch.testing.assert_close(plain[:, 0], x[:, 0, 0, 0])
    torch.testing.assert_close(translated[:, 0], corner)


def test_predict_with_flip_and_translation_sees_each_translation_mirrored_too():
    images = torch.randint(0, 255, (3, 2, 5, 5), dtype=torch.uint8)
    both = predict(_Probe(), images, [0.0, 0.0], [1.0, 1.0], tta_flip=True, tta_translate=True)
    # mirrored views cancel the left-right asymmetry exactly when each view has its mirror
    torch.testing.assert_close(both[:, 2], torch.zeros(3), atol=1e-5, rtol=0)
    translated = predict(_Probe(), images, [0.0, 0.0], [1.0, 1.0], tta_translate=True)
    assert translated[:, 2].abs().max() > 1e-3
