"""numba kernels behind :mod:`kumo_edge.runtime`. Unchecked: validate in the public front."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(inline="always")
def _up2_at(src, i, b, r, col):
    """Value at output (r, col) of bilinear x2 resizing of src[i, b] with half-pixel centres
    (PyTorch ``interpolate(scale_factor=2, mode="bilinear", align_corners=False)``, ONNX
    ``Resize`` with ``half_pixel``): output row 2k reads 0.75 * row k + 0.25 * row k-1, row 2k+1
    reads 0.75 * row k + 0.25 * row k+1, edges clamped; the same along columns."""
    hh = src.shape[2]
    wh = src.shape[3]
    k = r // 2
    k2 = k - 1 if r % 2 == 0 else k + 1
    if k2 < 0:
        k2 = 0
    if k2 > hh - 1:
        k2 = hh - 1
    m = col // 2
    m2 = m - 1 if col % 2 == 0 else m + 1
    if m2 < 0:
        m2 = 0
    if m2 > wh - 1:
        m2 = wh - 1
    return (
        0.5625 * src[i, b, k, m]
        + 0.1875 * src[i, b, k, m2]
        + 0.1875 * src[i, b, k2, m]
        + 0.0625 * src[i, b, k2, m2]
    )


@nb.njit(parallel=True, cache=True)
def residual_tail(x, delta, out):
    """out = clip(x + up2(delta), 0, 1) in one pass.

    x, out: (N, C, H, W) float32; delta: (N, C, H/2, W/2) float32; ``up2`` as :func:`_up2_at`
    (computed separably: each output row blends two half-resolution rows once, then columns).
    """
    n, c, h, w = x.shape
    hh = delta.shape[2]
    wh = delta.shape[3]
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        v = np.empty(wh, dtype=np.float32)
        for r in range(h):
            k = r // 2
            k2 = k - 1 if r % 2 == 0 else k + 1
            k2 = min(max(k2, 0), hh - 1)
            for m in range(wh):
                v[m] = 0.75 * delta[i, b, k, m] + 0.25 * delta[i, b, k2, m]
            for m in range(wh):
                left = v[max(m - 1, 0)]
                right = v[min(m + 1, wh - 1)]
                for col, other in ((2 * m, left), (2 * m + 1, right)):
                    y = x[i, b, r, col] + 0.75 * v[m] + 0.25 * other
                    if y < 0.0:
                        y = 0.0
                    elif y > 1.0:
                        y = 1.0
                    out[i, b, r, col] = y


@nb.njit(parallel=True, cache=True)
def upsample2(src, out):
    """out = up2(src), no clipping. src (N, C, h, w) float32, out (N, C, 2h, 2w) float32."""
    n, c, h2, w2 = out.shape
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        for r in range(h2):
            for col in range(w2):
                out[i, b, r, col] = _up2_at(src, i, b, r, col)
