"""numba kernels for :mod:`kumo_edge.clouds`: 2-D Perlin gradient noise and its fractal sum
(fBm). Unchecked: validate in the public front."""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(inline="always")
def _fade(t):
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


@nb.njit(inline="always")
def _grad(h, x, y):
    # eight unit-ish gradient directions
    k = h & 7
    if k == 0:
        return x + y
    if k == 1:
        return -x + y
    if k == 2:
        return x - y
    if k == 3:
        return -x - y
    if k == 4:
        return 1.4142135 * x
    if k == 5:
        return -1.4142135 * x
    if k == 6:
        return 1.4142135 * y
    return -1.4142135 * y


@nb.njit(inline="always")
def perlin(perm, x, y):
    """Perlin noise at (x, y); perm is a 512-entry doubled permutation. Range about [-1, 1]."""
    xf = math.floor(x)
    yf = math.floor(y)
    xi = int(xf) & 255
    yi = int(yf) & 255
    x -= xf
    y -= yf
    u = _fade(x)
    v = _fade(y)
    aa = perm[perm[xi] + yi]
    ab = perm[perm[xi] + yi + 1]
    ba = perm[perm[xi + 1] + yi]
    bb = perm[perm[xi + 1] + yi + 1]
    x1 = _grad(aa, x, y) + u * (_grad(ba, x - 1.0, y) - _grad(aa, x, y))
    x2 = _grad(ab, x, y - 1.0) + u * (_grad(bb, x - 1.0, y - 1.0) - _grad(ab, x, y - 1.0))
    return (x1 + v * (x2 - x1)) * 0.7071


@nb.njit(parallel=True, cache=True)
def fbm(perm, row0, col0, rows, cols, step, scale, octaves, persistence, lacunarity, shifts, out):
    """out[r, c] = sum_o persistence^o * perlin(freq_o * p + shift_o), p = (row0 + r*step, col0 + c*step) / scale,
    normalised by the sum of amplitudes. Coordinates are global, so any window of the field can
    be evaluated on its own and matches the whole field."""
    norm = 0.0
    amp = 1.0
    for _o in range(octaves):
        norm += amp
        amp *= persistence
    for r in nb.prange(rows):
        y = (row0 + r * step) / scale
        for c in range(cols):
            x = (col0 + c * step) / scale
            total = 0.0
            amp = 1.0
            freq = 1.0
            for o in range(octaves):
                total += amp * perlin(perm, x * freq + shifts[o, 1], y * freq + shifts[o, 0])
                amp *= persistence
                freq *= lacunarity
            out[r, c] = total / norm


def permutation(seed):
    rng = np.random.default_rng(seed)
    p = rng.permutation(256).astype(np.int64)
    return np.concatenate([p, p])
