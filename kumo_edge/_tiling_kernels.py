"""numba kernels behind :mod:`kumo_edge.tiling`. They take arrays and scalars only and check
nothing: validate in the public front.

Windows of a larger array (the stream's line ring and carry) are passed whole, with the offsets
of the window, not as a view of it: numba types a view of some rows or columns as
non-contiguous (layout ``A``), and the row loops of a kernel given one did not vectorise (the
stream's 32-band x 4000-px ring, 2026-12-07: quantising a 64-line strip into it 6.2 ms through
a view against 1.6-2.0 ms through the whole ring with offsets; the same values), whereas a row
sliced inside the kernel from a contiguous array is contiguous."""

from __future__ import annotations

import math

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
def blend_grid(tiles, ys, xs, wy, wx, out):
    """Blend a product grid of tiles with separable, pre-normalised weights.

    tiles (K*M, C, T, T) row-major over ys (K,) x xs (M,); wy (K, T), wx (M, T) normalised so
    that the weights covering any pixel sum to one; out (C, H, W) is overwritten. Each output
    row belongs to one thread and is zeroed, then accumulated while it is in cache.
    """
    c = out.shape[0]
    h = out.shape[1]
    t = wx.shape[1]
    k_n = ys.shape[0]
    m_n = xs.shape[0]
    for y in nb.prange(h):
        wrow = np.empty(t, dtype=np.float32)
        first = True
        for k in range(k_n):
            r = y - ys[k]
            if r < 0 or r >= t:
                continue
            a = wy[k, r]
            if first:  # the first tile row to cover y: clear the output row once
                for b in range(c):
                    out[b, y, :] = 0.0
                first = False
            for m in range(m_n):
                x0 = xs[m]
                i = k * m_n + m
                for x in range(t):
                    wrow[x] = a * wx[m, x]
                for b in range(c):
                    dst = out[b, y, x0 : x0 + t]
                    src = tiles[i, b, r]
                    for x in range(t):
                        dst[x] += wrow[x] * src[x]
        if first:
            for b in range(c):
                out[b, y, :] = 0.0


@nb.njit(parallel=True, cache=True)
def accumulate_row(acc, tiles, xs, wy, wx):
    """acc[:, r, x0 + x] += wy[r] * wx[m, x] * tiles[m, :, r, x] for tiles starting at columns xs.

    acc (C, T, W) float32, tiles (M, C, T, T), xs (M,), wy (T,), wx (M, T). Rows run in
    parallel; each row's thread handles every tile, so overlapping tiles do not race.
    """
    c = acc.shape[0]
    t = tiles.shape[2]
    m_n = xs.shape[0]
    for r in nb.prange(t):
        wrow = np.empty(t, dtype=np.float32)
        a = wy[r]
        for m in range(m_n):
            x0 = xs[m]
            for x in range(t):
                wrow[x] = a * wx[m, x]
            for b in range(c):
                dst = acc[b, r, x0 : x0 + t]
                src = tiles[m, b, r]
                for x in range(t):
                    dst[x] += wrow[x] * src[x]


# -- the stream's uint16 line ring ------------------------------------------------------------
@nb.njit(inline="always")
def _q(v, per_unit):
    """round(v * per_unit) clipped to [0, 65535]: floor(y + 0.5), written as a clamp and a
    truncation (equal for y >= 0) so that the loops vectorise."""
    u = min(max(np.float64(v) * per_unit + 0.5, 0.0), 65535.0)
    return np.uint16(np.int64(u))


@nb.njit(parallel=True, cache=True)
def quantize(src, row_scale, per_unit, dst, src_row=0, dst_row=0, dst_col=0):
    """dst[b, dst_row + r, dst_col + x] = round(src[b, src_row + r, x] * row_scale[r] *
    per_unit) clipped to uint16, for the ``R = len(row_scale)`` rows and the ``W`` columns of
    ``src`` (C, >= R, W). ``row_scale`` normalises blended rows on the way (ones for plain input
    lines). Windows are given as the whole array and their offsets (module docstring).

    One job per row and band; in float32 where ``per_unit`` is a power of two (the product is
    then exact in float32, and the rounding is done without adding 0.5, which float32 could
    round up: the same values as the float64 path; 32 bands x 64 rows x 4000 px 2.2 -> 0.6 ms,
    2026-12-05, into a contiguous array; on 2026-12-07's host 1.6-2.0 ms, into the stream's
    ring whole or a contiguous array alike), else in float64."""
    c = src.shape[0]
    rows = row_scale.shape[0]
    w = src.shape[2]
    p32 = np.float32(per_unit)
    exact = _power_of_two(per_unit)
    for job in nb.prange(rows * c):
        r = job // c
        b = job % c
        _quantize_row(
            src[b, src_row + r], row_scale[r], per_unit, p32, exact,
            dst[b, dst_row + r, dst_col : dst_col + w],
        )  # fmt: skip


@nb.njit(inline="always")
def _quantize_row(src, s, per_unit, p32, exact, dst):
    """dst = round(src * s * per_unit) clipped to [0, 65535] for one row (see :func:`quantize`)."""
    if exact:
        lo = np.float32(0.0)
        hi = np.float32(65535.0)
        half = np.float32(0.5)
        for x in range(src.shape[0]):
            y = min(max(src[x] * s * p32, lo), hi)  # exact: p32 is a power of two
            t = np.float32(np.int32(y))  # floor (y >= 0); y - t is exact
            dst[x] = np.uint16(np.int32(t) + np.int32(y - t >= half))
    else:
        for x in range(src.shape[0]):
            dst[x] = _q(src[x] * s, per_unit)


@nb.njit(parallel=True, cache=True)
def blend_batch(tiles, xs, wy, wx, pending, carry, inv, per_unit, ring, new_pending, s, col):
    """One batch of the stream's tile row, blended and routed in one pass per band (see
    ``kumo_edge.stream.StreamProcessor._tile_row``): the window of columns the batch covers is
    the columns the previous batch left ``pending`` (C, T, P), plus each tile of ``tiles``
    (M, C, T, T; starting at window columns ``xs``) weighted ``wy[r] * wx[m, x]`` in order,
    plus, on its first ``T - s`` rows, the columns ``[col, col + F)`` of ``carry`` (C, T - s,
    >= col + F; whole, module docstring) of the tile row above; its first F columns (the
    window, to the last tile's end, less ``new_pending``'s) are final: rows ``[0, s)`` go,
    times ``inv[r]``, quantised to those columns of ``ring`` (C, >= s, >= col + F; whole; as
    :func:`quantize`), rows ``[s, T)`` replace those of ``carry``; the columns from F on go to
    ``new_pending`` (C, T, window - F). The same float32 operations in the same order as
    accumulating into a zeroed window (:func:`accumulate_row`), then adding the carry, so the
    same values, without the window (32 bands: 16 MB zeroed and read three times per batch).
    Bands run in parallel; within a band rows run in order, so the carry rows a band reads
    (``[0, T - s)``) are read before it writes rows ``r - s`` for ``r >= s``."""
    c = tiles.shape[1]
    t = tiles.shape[2]
    m_n = xs.shape[0]
    width = xs[m_n - 1] + t  # the window: to the last tile's end
    f = width - new_pending.shape[2]
    n_pend = pending.shape[2]
    p32 = np.float32(per_unit)
    exact = _power_of_two(per_unit)
    zero = np.float32(0.0)
    for b in nb.prange(c):
        v = np.empty(width, np.float32)
        wrow = np.empty(t, np.float32)
        for r in range(t):
            for x in range(width):
                v[x] = zero
            pr = pending[b, r]
            for x in range(n_pend):
                v[x] += pr[x]
            a = wy[r]
            for m in range(m_n):
                x0 = xs[m]
                for x in range(t):
                    wrow[x] = a * wx[m, x]
                src = tiles[m, b, r]
                for x in range(t):
                    v[x0 + x] += wrow[x] * src[x]
            if r < t - s:
                cr = carry[b, r, col : col + f]
                for x in range(f):
                    v[x] += cr[x]
            if r < s:
                _quantize_row(v[:f], inv[r], per_unit, p32, exact, ring[b, r, col : col + f])
            if r >= s:
                cw = carry[b, r - s, col : col + f]
                for x in range(f):
                    cw[x] = v[x]
            npr = new_pending[b, r]
            for x in range(width - f):
                npr[x] = v[f + x]


@nb.njit(parallel=True, cache=True)
def counts_stats(raw, valid, scale, offset, noise, out):
    """Per band ``b``: out[b] = (min, max, number below ``noise``) of the reflectance
    ``float32(raw) * scale[b] + offset[b]`` over the pixels ``valid`` (C, R, W) marks; min/max
    are +inf/-inf where none is valid. Each band's rows in one job (no shared sums)."""
    c, rows, w = raw.shape
    inf = np.float32(np.inf)
    for b in nb.prange(c):
        s = scale[b]
        o = offset[b]
        lo = np.empty(w, np.float32)  # per column, so that the loop vectorises (no branches)
        hi = np.empty(w, np.float32)
        neg = np.zeros(w, np.int32)
        lo[:] = inf
        hi[:] = -inf
        for r in range(rows):
            src = raw[b, r]
            vr = valid[r]
            for x in range(w):
                v = np.float32(src[x]) * s + o
                ok = vr[x]
                lo[x] = min(lo[x], v if ok else inf)
                hi[x] = max(hi[x], v if ok else -inf)
                neg[x] += np.int32(ok and v < noise)
        out[b, 0] = lo.min()
        out[b, 1] = hi.max()
        out[b, 2] = neg.sum()


@nb.njit(parallel=True, cache=True)
def quantize_counts(raw, valid, scale, offset, per_unit, dst, src_row=0, dst_row=0):
    """dst[b, dst_row + r, x] = the ring counts (as :func:`quantize`) of the reflectance
    ``clip(float32(raw[b, src_row + r, x]) * scale[b] + offset[b], 0, 1)`` where ``valid[r, x]``,
    else 0, for the rows and columns of ``valid`` (R, W): stored integer values straight into
    the line ring, the same values as a float32 strip made by
    ``kumo_edge.io.Raster.to_reflectance`` and then quantised, without that strip. ``raw`` and
    ``dst`` given whole (module docstring)."""
    c = raw.shape[0]
    rows, w = valid.shape
    p32 = np.float32(per_unit)
    exact = _power_of_two(per_unit)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for job in nb.prange(rows * c):
        r = job // c
        b = job % c
        s = scale[b]
        o = offset[b]
        src = raw[b, src_row + r]
        vr = valid[r]
        row = np.empty(w, np.float32)
        for x in range(w):
            v = np.float32(src[x]) * s + o
            row[x] = min(max(v, zero), one) if vr[x] else zero
        _quantize_row(row, one, per_unit, p32, exact, dst[b, dst_row + r, :w])


@nb.njit(parallel=True, cache=True)
def extract_dequantized(img, ys, xs, size, step, out):
    """out[i] = img[:, ys[i]:ys[i]+size, xs[i]:xs[i]+size] * step for a (C, H, W) uint16 image.

    One job per tile and band, row slices that vectorise; in float32 where ``step`` is a power
    of two (then ``float32(u) * float32(step)`` is exact, the same values as the float64
    product; 32 bands x 2 tiles of 256 px: 0.6 ms against 3.4 ms in float64, 2026-12-05),
    else in float64."""
    c = img.shape[0]
    n = ys.shape[0]
    s32 = np.float32(step)
    exact = _power_of_two(step)
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        y0 = ys[i]
        x0 = xs[i]
        for r in range(size):
            _dequantize_row(img[b, y0 + r, x0 : x0 + size], step, s32, exact, out[i, b, r])


@nb.njit(parallel=True, cache=True)
def dequantize(src, step, dst, src_row=0):
    """dst[b, r, x] (float32) = src[b, src_row + r, x] (uint16) * step for every row and column
    of ``dst`` (C, R, W); ``src`` (C, >= src_row + R, >= W) given whole (module docstring); in
    float32 where ``step`` is a power of two, as :func:`extract_dequantized`."""
    c, rows, w = dst.shape
    s32 = np.float32(step)
    exact = _power_of_two(step)
    for job in nb.prange(rows * c):
        r = job // c
        b = job % c
        _dequantize_row(src[b, src_row + r, :w], step, s32, exact, dst[b, r])


@nb.njit(inline="always")
def _dequantize_row(src, step, s32, exact, dst):
    """dst = src * step for one row: in float32 (``s32``) where ``exact`` (a power-of-two
    step), else in float64, rounded to float32."""
    if exact:
        for x in range(src.shape[0]):
            dst[x] = np.float32(src[x]) * s32
    else:
        for x in range(src.shape[0]):
            dst[x] = np.float32(src[x] * step)


@nb.njit(inline="always")
def _power_of_two(v):
    """Whether the float ``v`` > 0 is an exact power of two (scaling by it is exact)."""
    m, _ = math.frexp(v)
    return v > 0.0 and m == 0.5


@nb.njit(parallel=True, cache=True)
def encode_u16(src, mask, per_unit, nodata, dst):
    """dst (uint16) = src (float32) * per_unit rounded half to even and clipped to [0, 65534],
    ``nodata`` where ``mask`` (R, W) is 0; (C, R, W) arrays, no temporary."""
    c, rows, w = src.shape
    hi = np.float32(65534.0)
    zero = np.float32(0.0)
    for r in nb.prange(rows):
        for b in range(c):
            for x in range(w):
                if mask[r, x] == 0:
                    dst[b, r, x] = nodata
                else:
                    v = np.rint(src[b, r, x] * per_unit)
                    dst[b, r, x] = np.uint16(min(max(v, zero), hi))


@nb.njit(parallel=True, cache=True)
def all_finite(a):
    """Whether every value of the float (C, R, W) array ``a`` (any strides) is finite: one
    pass, no temporary (``np.isfinite(a).all()`` makes a bool array as large as ``a``)."""
    c, rows, w = a.shape
    bad = 0
    for job in nb.prange(c * rows):
        row = a[job // rows, job % rows]
        n = 0
        for x in range(w):
            v = row[x]
            n += not (v - v == 0.0)  # inf - inf and nan - nan are nan
        bad += n
    return bad == 0
