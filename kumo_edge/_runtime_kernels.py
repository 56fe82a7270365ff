"""numba kernels behind :mod:`kumo_edge.runtime`. Unchecked: validate in the public front."""

from __future__ import annotations

import numba as nb


@nb.njit(parallel=True, cache=True, fastmath=False)
def residual_tail(x, delta, out):
    """out = clip(x + up2(delta), 0, 1) in one pass.

    x, out: (N, C, H, W) float32; delta: (N, C, H/2, W/2) float32. ``up2`` is bilinear x2
    resizing with half-pixel centres (PyTorch ``interpolate(scale_factor=2, mode="bilinear",
    align_corners=False)``, ONNX ``Resize`` with ``half_pixel``): output row 2k reads
    0.75 * row k + 0.25 * row k-1, row 2k+1 reads 0.75 * row k + 0.25 * row k+1, edges clamped;
    the same along columns.
    """
    n, c, h, w = x.shape
    hh = delta.shape[2]
    wh = delta.shape[3]
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        for r in range(h):
            k = r // 2
            k2 = k - 1 if r % 2 == 0 else k + 1
            if k2 < 0:
                k2 = 0
            if k2 > hh - 1:
                k2 = hh - 1
            for col in range(w):
                m = col // 2
                m2 = m - 1 if col % 2 == 0 else m + 1
                if m2 < 0:
                    m2 = 0
                if m2 > wh - 1:
                    m2 = wh - 1
                v = 0.5625 * delta[i, b, k, m] + 0.1875 * delta[i, b, k, m2] + 0.1875 * delta[i, b, k2, m] + 0.0625 * delta[i, b, k2, m2]
                y = x[i, b, r, col] + v
                if y < 0.0:
                    y = 0.0
                elif y > 1.0:
                    y = 1.0
                out[i, b, r, col] = y


@nb.njit(parallel=True, cache=True)
def upsample2(src, out):
    """out = up2(src): bilinear x2 with half-pixel centres (as ``residual_tail``), no clipping.

    src (N, C, h, w) float32, out (N, C, 2h, 2w) float32.
    """
    n, c, h2, w2 = out.shape
    hh = src.shape[2]
    wh = src.shape[3]
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        for r in range(h2):
            k = r // 2
            k2 = k - 1 if r % 2 == 0 else k + 1
            if k2 < 0:
                k2 = 0
            if k2 > hh - 1:
                k2 = hh - 1
            for col in range(w2):
                m = col // 2
                m2 = m - 1 if col % 2 == 0 else m + 1
                if m2 < 0:
                    m2 = 0
                if m2 > wh - 1:
                    m2 = wh - 1
                out[i, b, r, col] = 0.5625 * src[i, b, k, m] + 0.1875 * src[i, b, k, m2] + 0.1875 * src[i, b, k2, m] + 0.0625 * src[i, b, k2, m2]
