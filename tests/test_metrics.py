"""Metrics against scikit-image where it has an equivalent, and against hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from kumo_edge import metrics
from kumo_edge.errors import ShapeError


@pytest.fixture
def pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    true = rng.random((4, 48, 52))
    pred = np.clip(true + rng.normal(0, 0.04, true.shape), 0, 1)
    return pred, true


def test_psnr_matches_skimage(pair) -> None:  # noqa: ANN001
    pred, true = pair
    assert metrics.psnr(pred, true) == pytest.approx(
        peak_signal_noise_ratio(true, pred, data_range=1.0), rel=1e-12
    )
    assert metrics.psnr(true, true) == math.inf


def test_ssim_matches_skimage(pair) -> None:  # noqa: ANN001
    pred, true = pair
    ref = np.mean(
        [
            structural_similarity(
                true[b],
                pred[b],
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for b in range(4)
        ]
    )
    assert metrics.ssim(pred, true) == pytest.approx(ref, rel=1e-9)
    assert metrics.ssim(true, true) == pytest.approx(1.0)
    with pytest.raises(ShapeError, match="at least 11"):
        metrics.ssim_band(np.zeros((5, 5)), np.zeros((5, 5)))


def test_mae_and_masks(pair) -> None:  # noqa: ANN001
    pred, true = pair
    assert metrics.mae(pred, true) == pytest.approx(np.abs(pred - true).mean())
    mask = np.zeros(true.shape[1:], bool)
    mask[:10] = True
    mse = mean_squared_error(true[:, :10], pred[:, :10])
    assert metrics.psnr(pred, true, mask=mask) == pytest.approx(10 * math.log10(1 / mse))


def test_sam_angles() -> None:
    a = np.zeros((3, 1, 2))
    b = np.zeros((3, 1, 2))
    a[:, 0, 0], b[:, 0, 0] = (1, 0, 0), (0, 1, 0)  # 90 degrees
    a[:, 0, 1], b[:, 0, 1] = (1, 1, 0), (2, 2, 0)  # 0 degrees (scale does not matter)
    assert metrics.sam(a, b) == pytest.approx(45.0)
    assert metrics.sam(a[:, :, 1:], b[:, :, 1:]) == pytest.approx(0.0, abs=1e-4)


def test_detection_counts() -> None:
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 1]], bool)
    true = np.array([[1, 0, 0, 1], [1, 0, 0, 0]], bool)
    d = metrics.detection(pred, true)
    assert (d.tp, d.fp, d.tn, d.fn) == (2, 2, 3, 1)
    assert d.accuracy == pytest.approx(5 / 8)
    assert d.precision == pytest.approx(0.5) and d.recall == pytest.approx(2 / 3)
    assert d.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert d.iou == pytest.approx(2 / 5)
    assert d.false_positive_rate == pytest.approx(2 / 5)
    m = metrics.detection(pred, true, mask=np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool))
    assert (m.tp, m.fp, m.tn, m.fn) == (1, 1, 0, 0)


def test_shape_mismatch() -> None:
    with pytest.raises(ShapeError):
        metrics.psnr(np.zeros((3, 4, 4)), np.zeros((3, 4, 5)))


def test_calibration_error_and_curve() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    calibrated = rng.random(p.size) < p
    c = metrics.calibration(p, calibrated)
    assert c["ece"] < 0.01 and len(c["curve"]) == 10
    # always sure of cloud, right half of the time: ECE 0.5
    assert metrics.calibration(np.ones(1000), np.arange(1000) % 2 == 0)["ece"] == pytest.approx(0.5)
    # over-confident: probabilities pushed towards 0/1 from calibrated ones -> larger ECE
    sharp = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    assert metrics.calibration(sharp, calibrated)["ece"] > 0.1
