"""The fused residual tail against a plain-numpy bilinear reference (no torch needed)."""

from __future__ import annotations

import numpy as np

from kumo_edge import _runtime_kernels as rk


def _up2_numpy(a: np.ndarray) -> np.ndarray:
    """Bilinear x2 with half-pixel centres along the last two axes (edges clamped)."""

    def axis(a: np.ndarray, ax: int) -> np.ndarray:
        n = a.shape[ax]
        src = (np.arange(2 * n) + 0.5) / 2 - 0.5
        lo = np.clip(np.floor(src).astype(int), 0, n - 1)
        hi = np.clip(lo + 1, 0, n - 1)
        f = np.clip(src - np.floor(src), 0, 1)
        f[src < 0] = 0.0
        shape = [1] * a.ndim
        shape[ax] = -1
        return np.take(a, lo, axis=ax) * (1 - f).reshape(shape) + np.take(
            a, hi, axis=ax
        ) * f.reshape(shape)

    return axis(axis(a, -2), -1)


def test_residual_tail_matches_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 16, 24), dtype=np.float32)
    d = (rng.random((2, 3, 8, 12), dtype=np.float32) - 0.5) * 0.6
    out = np.empty_like(x)
    rk.residual_tail(x, d, out)
    ref = np.clip(x + _up2_numpy(d.astype(np.float64)), 0, 1)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0  # clipping happened on both sides


def test_upsample2_matches_reference_and_keeps_probabilities_normalised() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 8, 12)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = np.empty((2, 4, 16, 24), np.float32)
    rk.upsample2(p.astype(np.float32), out)
    np.testing.assert_allclose(out, _up2_numpy(p.astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)


def test_classify_kernel_gives_the_numpy_rule_bitwise() -> None:
    """The numba classify against the numpy rule, with probabilities on and around every
    threshold (ties included), for both layouts the runtime uses: tiles ``(N, 4, H, W)`` along
    axis 1 and a strided slice of lines ``(4, n, W)`` along axis 0."""
    from kumo_edge.runtime import _classify_planes, classify

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4) * 0.7, size=(3, 40, 50)).astype(np.float32)  # (3, 40, 50, 4)
    p = np.ascontiguousarray(np.moveaxis(p, -1, 1))
    # exact ties of the cloud sum, of thin against thick and of shadow against clear
    p[0, 1, :5, :] = 0.25
    p[0, 2, :5, :] = 0.25
    p[1, :, :5, :] = np.float32(0.3)
    p[1, 3, 5:9, :] = p[1, 0, 5:9, :] * 4
    for ct, st in [(0.5, 0.5), (0.35, 0.05), (0.62, 0.9), (0.5, 0.2)]:
        got = classify(p, ct, 1, st)
        want = _classify_planes(np.moveaxis(p, 1, 0), ct, st)
        np.testing.assert_array_equal(got, want)
        lines = np.ascontiguousarray(np.moveaxis(p, 1, 0)).reshape(4, -1, 50)[:, 7:31]
        assert not lines.flags.c_contiguous
        np.testing.assert_array_equal(classify(lines, ct, 0, st), _classify_planes(lines, ct, st))
    assert set(np.unique(classify(p, 0.5, 1, 0.5))) == {0, 1, 2, 3}
