"""numba kernels behind :mod:`kumo_edge.tiling`. They take arrays and scalars only and check
nothing: validate in the public front."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def integral_invalid(valid):  # (H, W) uint8 -> (H+1, W+1) int64 count of invalid pixels
    h, w = valid.shape
    s = np.zeros((h + 1, w + 1), dtype=np.int64)
    for y in range(h):
        run = 0
        for x in range(w):
            run += 1 - valid[y, x]
            s[y + 1, x + 1] = s[y, x + 1] + run
    return s


@nb.njit(parallel=True, cache=True)
def offset_counts(s, size, stride):
    """counts[oy, ox] = number of fully valid size x size tiles on the grid with that offset."""
    h = s.shape[0] - 1
    w = s.shape[1] - 1
    counts = np.zeros((stride, stride), dtype=np.int64)
    for oy in nb.prange(stride):
        for y in range(oy, h - size + 1, stride):
            for x in range(0, w - size + 1):
                bad = s[y + size, x + size] - s[y, x + size] - s[y + size, x] + s[y, x]
                if bad == 0:
                    counts[oy, x % stride] += 1
    return counts


@nb.njit(cache=True)
def grid_origins(s, size, stride, oy, ox):
    """(N, 2) int64 (row, col) of the fully valid tiles on the grid with offset (oy, ox)."""
    h = s.shape[0] - 1
    w = s.shape[1] - 1
    n = 0
    out = np.empty(((h // stride + 1) * (w // stride + 1), 2), dtype=np.int64)
    for y in range(oy, h - size + 1, stride):
        for x in range(ox, w - size + 1, stride):
            bad = s[y + size, x + size] - s[y, x + size] - s[y + size, x] + s[y, x]
            if bad == 0:
                out[n, 0] = y
                out[n, 1] = x
                n += 1
    return out[:n]


@nb.njit(parallel=True, cache=True)
def extract(img, ys, xs, size, out):
    """out[i] = img[:, ys[i]:ys[i]+size, xs[i]:xs[i]+size] for a (C, H, W) image."""
    c = img.shape[0]
    for i in nb.prange(ys.shape[0]):
        y0 = ys[i]
        x0 = xs[i]
        for b in range(c):
            for r in range(size):
                out[i, b, r, :] = img[b, y0 + r, x0 : x0 + size]


@nb.njit(parallel=True, cache=True)
def accumulate(acc, wsum, tiles, ys, xs, weight):
    """acc[:, y, x] += weight * tile, wsum[y, x] += weight, for every tile; rows in parallel.

    acc is (C, H, W), wsum (H, W), tiles (N, C, T, T), weight (T, T). Tiles may overlap:
    each output row belongs to one thread, so there is no race.
    """
    c = acc.shape[0]
    h = acc.shape[1]
    t = weight.shape[0]
    n = ys.shape[0]
    for y in nb.prange(h):
        for i in range(n):
            r = y - ys[i]
            if r < 0 or r >= t:
                continue
            x0 = xs[i]
            for x in range(t):
                wgt = weight[r, x]
                wsum[y, x0 + x] += wgt
                for b in range(c):
                    acc[b, y, x0 + x] += wgt * tiles[i, b, r, x]


@nb.njit(parallel=True, cache=True)
def normalise(acc, wsum, out):
    """out = acc / wsum (where wsum > 0, else 0)."""
    c = acc.shape[0]
    h = acc.shape[1]
    w = acc.shape[2]
    for y in nb.prange(h):
        for x in range(w):
            s = wsum[y, x]
            inv = 1.0 / s if s > 0 else 0.0
            for b in range(c):
                out[b, y, x] = acc[b, y, x] * inv
