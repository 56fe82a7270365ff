"""Image-quality and detection metrics, defined once (see ``REFERENCE.md``).

Cubes are ``(bands, rows, cols)`` float reflectance in [0, 1] unless ``data_range`` says
otherwise. Optional ``mask`` arguments are ``(rows, cols)`` bool selecting the pixels scored.

* PSNR in dB with ``data_range`` 1 for reflectance.
* SSIM per band with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over
  the valid (unpadded) window centres; it matches ``skimage.metrics.structural_similarity``
  with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.
* SAM: mean spectral angle in degrees between predicted and true pixel spectra.
* Detection: confusion counts of a boolean prediction against boolean truth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from .errors import ShapeError

_EPS = 1e-12


def _pair(
    pred: npt.NDArray, true: npt.NDArray, *, cube: bool = True
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if pred.shape != true.shape:
        raise ShapeError(f"`pred` has shape {pred.shape} but `true` has {true.shape}")
    if cube and pred.ndim != 3:
        raise ShapeError(f"expected (bands, rows, cols) cubes, got shape {pred.shape}")
    return np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)


def _pixels(
    a: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.float64]:
    if mask is None:
        return a.reshape(a.shape[0], -1)
    if mask.shape != a.shape[1:]:
        raise ShapeError(f"`mask` has shape {mask.shape} but the cube's pixels are {a.shape[1:]}")
    return a[:, mask]


def mae(pred: npt.NDArray, true: npt.NDArray, mask: npt.NDArray[np.bool_] | None = None) -> float:
    """Mean absolute error over bands and (masked) pixels."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(_pixels(p, mask) - _pixels(t, mask))))


def psnr(
    pred: npt.NDArray,
    true: npt.NDArray,
    data_range: float = 1.0,
    mask: npt.NDArray[np.bool_] | None = None,
) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical inputs)."""
    p, t = _pair(pred, true)
    mse = float(np.mean((_pixels(p, mask) - _pixels(t, mask)) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def sam(pred: npt.NDArray, true: npt.NDArray, mask: npt.NDArray[np.bool_] | None = None) -> float:
    """Mean spectral angle in degrees between pixel spectra (pixels where either spectrum is all
    zero are skipped)."""
    p, t = _pair(pred, true)
    p, t = _pixels(p, mask), _pixels(t, mask)
    num = np.sum(p * t, axis=0)
    den = np.linalg.norm(p, axis=0) * np.linalg.norm(t, axis=0)
    ok = den > _EPS
    if not ok.any():
        return 0.0
    cos = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return float(np.degrees(np.mean(np.arccos(cos))))


def _gaussian_kernel(sigma: float, truncate: float = 3.5) -> npt.NDArray[np.float64]:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter(img: npt.NDArray[np.float64], k: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Separable filter with symmetric (scipy 'reflect') boundaries, same size as ``img``."""
    r = k.size // 2
    pad = np.pad(img, r, mode="symmetric")
    rows = np.zeros((pad.shape[0], img.shape[1]))
    for i, w in enumerate(k):
        rows += w * pad[:, i : i + img.shape[1]]
    out = np.zeros(img.shape)
    for i, w in enumerate(k):
        out += w * rows[i : i + img.shape[0], :]
    return out


def ssim_band(
    pred: npt.NDArray, true: npt.NDArray, data_range: float = 1.0, sigma: float = 1.5
) -> float:
    """SSIM of one ``(rows, cols)`` band (Gaussian window; see the module docstring)."""
    p, t = _pair(pred, true, cube=False)
    if p.ndim != 2:
        raise ShapeError(f"expected a (rows, cols) band, got shape {p.shape}")
    win = 2 * int(3.5 * sigma + 0.5) + 1
    if min(p.shape) < win:
        raise ShapeError(f"SSIM needs bands of at least {win} x {win} pixels, got {p.shape}")
    k = _gaussian_kernel(sigma)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mx, my = _filter(p, k), _filter(t, k)
    vx = _filter(p * p, k) - mx * mx
    vy = _filter(t * t, k) - my * my
    cxy = _filter(p * t, k) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    r = (win - 1) // 2
    return float(s[r:-r, r:-r].mean())


def ssim(pred: npt.NDArray, true: npt.NDArray, data_range: float = 1.0) -> float:
    """Mean over bands of :func:`ssim_band`."""
    p, t = _pair(pred, true)
    return float(np.mean([ssim_band(p[b], t[b], data_range) for b in range(p.shape[0])]))


@dataclass(frozen=True)
class Detection:
    """Confusion counts and derived scores of a binary detection."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else math.nan

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else math.nan

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else math.nan

    @property
    def false_positive_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = dict(asdict(self))
        for k in ("accuracy", "precision", "recall", "f1", "iou", "false_positive_rate"):
            out[k] = getattr(self, k)
        return out


def detection(
    pred: npt.NDArray, true: npt.NDArray, mask: npt.NDArray[np.bool_] | None = None
) -> Detection:
    """Confusion counts of boolean ``pred`` against boolean ``true`` (same shape), over ``mask``."""
    if pred.shape != true.shape:
        raise ShapeError(f"`pred` has shape {pred.shape} but `true` has {true.shape}")
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(true, dtype=bool)
    if mask is not None:
        if mask.shape != p.shape:
            raise ShapeError(f"`mask` has shape {mask.shape} but `pred` has {p.shape}")
        p, t = p[mask], t[mask]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size - tp - fp - fn)
    return Detection(tp, fp, tn, fn)


def calibration(
    prob: npt.NDArray[np.floating], truth: npt.NDArray[np.bool_], bins: int = 10
) -> dict[str, object]:
    """Reliability of a probability: expected calibration error (ECE: the bin-size-weighted mean
    gap between the mean predicted probability and the observed frequency, over ``bins`` equal
    bins of [0, 1]) and the reliability curve (per non-empty bin: mean probability, observed
    frequency, count)."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    if p.shape != t.shape:
        raise ShapeError(f"`prob` has {p.size} values but `truth` has {t.size}")
    k = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(k, minlength=bins)
    sp = np.bincount(k, weights=p, minlength=bins)
    st = np.bincount(k, weights=t.astype(np.float64), minlength=bins)
    ok = n > 0
    mean_p, freq = sp[ok] / n[ok], st[ok] / n[ok]
    ece = float(np.sum(n[ok] * np.abs(mean_p - freq)) / max(p.size, 1))
    return {
        "ece": ece,
        "curve": [
            {"p": float(a), "observed": float(b), "n": int(c)}
            for a, b, c in zip(mean_p, freq, n[ok], strict=True)
        ],
    }
