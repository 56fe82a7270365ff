"""numba kernels behind :mod:`kumo_edge.runtime`. Unchecked: validate in the public front."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(inline="always")
def _widen_rows(src, e, ev, od):
    """e[k] = src[k] resized x2 along columns, for every row k of the 2-D plane ``src``;
    ``ev``/``od`` are scratch rows of src's width. The even and odd outputs are formed in
    contiguous loops that vectorise, then interleaved.

    ``up2`` here and below is bilinear x2 resizing with half-pixel centres (PyTorch
    ``interpolate(scale_factor=2, mode="bilinear", align_corners=False)``, ONNX ``Resize`` with
    ``half_pixel``): output column 2m reads 0.75 * column m + 0.25 * column m-1, column 2m+1
    reads 0.75 * column m + 0.25 * column m+1, edges clamped; the same along rows."""
    hh, wh = src.shape
    a = np.float32(0.75)
    q = np.float32(0.25)
    for k in range(hh):
        d = src[k]
        ev[0] = d[0]
        for m in range(1, wh):
            ev[m] = a * d[m] + q * d[m - 1]
        for m in range(wh - 1):
            od[m] = a * d[m] + q * d[m + 1]
        od[wh - 1] = d[wh - 1]
        ek = e[k]
        for m in range(wh):
            ek[2 * m] = ev[m]
            ek[2 * m + 1] = od[m]


@nb.njit(inline="always")
def _row_pair(r, hh):
    """Half-resolution rows blended (0.75, 0.25) into output row ``r``."""
    k = r // 2
    k2 = k - 1 if r % 2 == 0 else k + 1
    return k, min(max(k2, 0), hh - 1)


@nb.njit(parallel=True, cache=True)
def residual_tail(x, delta, out):
    """out = clip(x + up2(delta), 0, 1) in one pass.

    x, out: (N, C, H, W) float32; delta: (N, C, H/2, W/2) float32; ``up2`` as in
    :func:`_widen_rows`, computed separably: each half-resolution row is widened once (:func:`_widen_rows`), then
    each output row blends two widened rows, adds ``x`` and clips in one contiguous loop that
    vectorises (measured on one core, 32 x 256 x 256: 0.48 ms against 1.3 ms pixel by pixel).
    """
    n, c, h, w = x.shape
    hh = delta.shape[2]
    wh = delta.shape[3]
    a = np.float32(0.75)
    q = np.float32(0.25)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        e = np.empty((hh, w), dtype=np.float32)
        _widen_rows(delta[i, b], e, np.empty(wh, np.float32), np.empty(wh, np.float32))
        for r in range(h):
            k, k2 = _row_pair(r, hh)
            e1 = e[k]
            e2 = e[k2]
            xr = x[i, b, r]
            orow = out[i, b, r]
            for col in range(w):
                orow[col] = min(max(xr[col] + a * e1[col] + q * e2[col], zero), one)


@nb.njit(parallel=True, cache=True)
def upsample2(src, out):
    """out = up2(src), no clipping. src (N, C, h, w) float32, out (N, C, 2h, 2w) float32."""
    n, c, h2, w2 = out.shape
    hh = src.shape[2]
    wh = src.shape[3]
    a = np.float32(0.75)
    q = np.float32(0.25)
    for job in nb.prange(n * c):
        i = job // c
        b = job % c
        e = np.empty((hh, w2), dtype=np.float32)
        _widen_rows(src[i, b], e, np.empty(wh, np.float32), np.empty(wh, np.float32))
        for r in range(h2):
            k, k2 = _row_pair(r, hh)
            e1 = e[k]
            e2 = e[k2]
            orow = out[i, b, r]
            for col in range(w2):
                orow[col] = a * e1[col] + q * e2[col]


@nb.njit(inline="always")
def _visible_row(cube, i, r, vis, mean, dev):
    """Row ``r`` of tile ``i``: the mean of the visible bands ``vis`` into ``mean`` and the sum
    of their absolute deviations from it into ``dev`` (both (W,) float32), band by band in
    float32 as numpy's reductions over bands run."""
    w = mean.shape[0]
    zero = np.float32(0.0)
    mean[:] = zero
    dev[:] = zero
    for j in range(vis.shape[0]):
        v = cube[i, vis[j], r]
        for x in range(w):
            mean[x] += v[x]
    kk = np.float32(vis.shape[0])
    for x in range(w):
        mean[x] /= kk
    for j in range(vis.shape[0]):
        v = cube[i, vis[j], r]
        for x in range(w):
            dev[x] += abs(v[x] - mean[x])


@nb.njit(parallel=True, cache=True)
def ambiguous(cube, probs, vis, green, swir, snowy, p_lo, p_hi, ndsi, bright, white, scratch, out):
    """out[i, r, x]: :func:`kumo_edge.runtime.ambiguous_mask` of every tile in one pass, row by
    row: the detector's doubt first, the visible mean and whiteness only on rows that have a
    doubtful pixel (band by band along the row, so the loops read contiguous memory).

    cube (N, C, H, W) and probs (N, 4, H, W) float32; vis (K,) int64 the visible bands (K > 0);
    green, swir band indices (-1: none); snowy (N, H, W) bool, the input's snow-like pixels, or
    (0, 0, 0) for none; the thresholds as float32, as numpy compares float32
    arrays with Python floats; scratch (N * H, 2, W) float32 (no allocation in the threads).
    Sums run band by band in float32, as numpy's reductions over bands do, so the results are
    the same."""
    n, _, h, w = cube.shape
    snow = green >= 0 and swir >= 0
    given = snowy.shape[0] > 0
    tiny = np.float32(1e-6)
    zero = np.float32(0.0)
    for job in nb.prange(n * h):
        i = job // h
        r = job % h
        o = out[i, r]
        p1 = probs[i, 1, r]
        p2 = probs[i, 2, r]
        doubt = False
        for x in range(w):
            p = p1[x] + p2[x]
            amb = p >= p_lo and p <= p_hi
            if snow and p > p_hi:
                g = cube[i, green, r, x]
                s1 = cube[i, swir, r, x]
                amb = amb or ((g - s1) >= ndsi * (g + s1) and g + s1 > zero)
            if given and p > p_hi:
                amb = amb or snowy[i, r, x]
            o[x] = amb
            doubt |= amb
        if not doubt:
            continue
        mean = scratch[job, 0]
        dev = scratch[job, 1]
        _visible_row(cube, i, r, vis, mean, dev)
        for x in range(w):
            o[x] = o[x] and mean[x] >= bright and dev[x] / max(mean[x], tiny) < white


@nb.njit(parallel=True, cache=True)
def spectral_test(cube, vis, green, swir, nir, bright, white, ndsi, nir_swir, scratch, out):
    """out[i, r, x]: :func:`kumo_edge.runtime.spectral_cloud_test` of every tile in one pass,
    row by row (band by band along the row, so the loops read contiguous memory): visible mean
    above ``bright``, whiteness below ``white`` and, with a green and a SWIR-1 band, NDSI at
    most ``ndsi`` and, with a NIR band too, NIR above ``nir_swir`` x SWIR-1.

    cube (N, C, H, W) float32; vis (K,) int64 (K > 0); green, swir, nir band indices (-1:
    none); thresholds float32; scratch (N * H, 2, W) float32. Sums run band by band in float32
    and the NDSI is divided as numpy does, so the results are numpy's."""
    n, _, h, w = cube.shape
    snow = green >= 0 and swir >= 0
    rock = snow and nir >= 0
    tiny = np.float32(1e-6)
    for job in nb.prange(n * h):
        i = job // h
        r = job % h
        o = out[i, r]
        mean = scratch[job, 0]
        dev = scratch[job, 1]
        _visible_row(cube, i, r, vis, mean, dev)
        for x in range(w):
            c = mean[x] > bright and dev[x] / max(mean[x], tiny) < white
            if c and snow:
                g = cube[i, green, r, x]
                s1 = cube[i, swir, r, x]
                c = (g - s1) / max(g + s1, tiny) <= ndsi
                if c and rock:
                    c = cube[i, nir, r, x] > nir_swir * s1
            o[x] = c


@nb.njit(parallel=True, cache=True)
def move_calls(probs, where, to_cloud, unless):
    """In place on ``probs`` (N, 4, H, W), where ``where`` (N, H, W): with ``to_cloud``, the
    clear and shadow probability moved to thick cloud (:func:`kumo_edge.runtime.
    force_spectral_clouds`); else, where P(thin) + P(thick) is below ``unless``, that
    probability moved to clear and shadow in the ratio of the two, to clear where both are 0
    (:func:`kumo_edge.runtime.clear_cloud_calls`)."""
    n, _, h, w = probs.shape
    zero = probs.dtype.type(0)
    for job in nb.prange(n * h):
        i = job // h
        r = job % h
        m = where[i, r]
        p0, p1, p2, p3 = probs[i, 0, r], probs[i, 1, r], probs[i, 2, r], probs[i, 3, r]
        for x in range(w):
            if not m[x]:
                continue
            if to_cloud:
                p2[x] += p0[x] + p3[x]
                p0[x] = zero
                p3[x] = zero
                continue
            cloud = p1[x] + p2[x]
            if cloud >= unless:
                continue
            rest = p0[x] + p3[x]
            if rest > zero:
                to_clear = p0[x] / rest
                p0[x] += cloud * to_clear
                p3[x] += cloud * (1 - to_clear)
            else:
                p0[x] += cloud
            p1[x] = zero
            p2[x] = zero


@nb.njit(cache=True)  # serial: as a parallel kernel, calling it raised the stream's peak 21 MB
def fill_invalid(tiles, valid):
    """In place: each invalid pixel of ``tiles`` (N, C, H, W) takes the values of its row
    mirrored about the nearest valid pixel (the left one on a tie), or of that pixel where the
    mirrored one is not valid, so texture continues across a no-data edge; a row with none
    takes the filled row nearest to it (the upper one on a tie). Tiles with no valid pixel, or
    no invalid one, are left as they are. ``valid`` (N, H, W)."""
    n, c, h, w = tiles.shape
    for i in range(n):
        v = valid[i]
        total = 0
        for r in range(h):
            for x in range(w):
                total += v[r, x]
        if total == 0 or total == h * w:
            continue
        src = np.empty(w, np.int64)
        rows = np.full(h, -1, np.int64)  # a row with a valid pixel: itself, else -1
        for r in range(h):
            last = -1
            for x in range(w):  # nearest valid to the left
                if v[r, x]:
                    last = x
                src[x] = last
            if last < 0:
                continue
            rows[r] = r
            nxt = -1
            for x in range(w - 1, -1, -1):  # ... or to the right, where nearer
                if v[r, x]:
                    nxt = x
                elif nxt >= 0 and (src[x] < 0 or nxt - x < x - src[x]):
                    src[x] = nxt
            for x in range(w):
                if not v[r, x]:
                    m = 2 * src[x] - x  # mirrored about the nearest valid pixel
                    if 0 <= m < w and v[r, m]:
                        src[x] = m
            for x in range(w):
                if not v[r, x]:
                    for b in range(c):
                        tiles[i, b, r, x] = tiles[i, b, r, src[x]]
        for r in range(h):
            if rows[r] >= 0:
                continue
            best = -1
            for d in range(1, h):
                if r - d >= 0 and rows[r - d] == r - d:
                    best = r - d
                    break
                if r + d < h and rows[r + d] == r + d:
                    best = r + d
                    break
            for b in range(c):
                for x in range(w):
                    tiles[i, b, r, x] = tiles[i, b, best, x]


@nb.njit(parallel=True, cache=True)
def classify(p, cloud_t, one_minus_st, st, out):
    """:func:`kumo_edge.runtime.classify` on float32 probabilities ``p`` ``(N, 4, H, W)`` (the
    class axis second, as the detector's batches have it; any strides, but a view with the
    class axis moved is typed non-contiguous and its loops do not vectorise: 0.44 against
    0.06-0.09 ms per pair of 256-px tiles, 2026-12-07) into ``out`` ``(N, H, W)`` uint8, with
    the same float32 operations in the same order (bitwise the same classes): cloud where
    ``p1 + p2 >= cloud_t`` (thick where ``p2 > p1``), else shadow where
    ``p3 * (1 - st) > p0 * st``, else clear."""
    n, _, h, w = p.shape
    for r in nb.prange(n * h):
        i = r // h
        y = r - i * h
        for x in range(w):
            p1 = p[i, 1, y, x]
            p2 = p[i, 2, y, x]
            if p1 + p2 >= cloud_t:
                out[i, y, x] = 2 if p2 > p1 else 1
            elif p[i, 3, y, x] * one_minus_st > p[i, 0, y, x] * st:
                out[i, y, x] = 3
            else:
                out[i, y, x] = 0


#: Columns of :func:`tile_counts`.
N_VALID, N_CLEAR, N_THIN, N_THICK, N_SHADOW = 0, 1, 2, 3, 4
N_AMBIGUOUS, N_CLOUD_NOT_AMBIGUOUS, N_REMOVAL_SHADOW = 5, 6, 7


@nb.njit(parallel=True, cache=True)
def tile_counts(cls, valid, amb, probs, one_minus_rt, rt, also_clear, out):
    """Per tile ``i`` of ``(N, H, W)`` classes into ``out[i]`` (int64, the columns above),
    counting valid pixels only: all of them, each class 0-3, the ambiguous ones (``amb``), the
    cloud calls (1, 2) not ambiguous, and the removal's shadow: shadow calls (with
    ``also_clear`` also clear calls) where ``p3 * (1 - rt) > p0 * rt`` (float32, as
    :func:`kumo_edge.runtime.shadow_over_clear`) with P(clear), P(shadow) from ``probs``
    ``(N, 4, H, W)`` (C-contiguous: one compiled signature for any batch). One pass for the
    counts the stream took in eight numpy reductions per batch."""
    n, h, w = cls.shape
    for i in nb.prange(n):
        c = np.zeros(8, np.int64)
        for y in range(h):
            for x in range(w):
                if not valid[i, y, x]:
                    continue
                k = cls[i, y, x]
                c[0] += 1
                if k < 4:
                    c[1 + k] += 1
                if amb[i, y, x]:
                    c[5] += 1
                elif k == 1 or k == 2:
                    c[6] += 1
                shadow = k == 3 or (also_clear and k == 0)
                if shadow and probs[i, 3, y, x] * one_minus_rt > probs[i, 0, y, x] * rt:
                    c[7] += 1
        out[i] = c


@nb.njit(cache=True)
def _withdraw(p0, p3, c, v, r, thr, every):
    """P(shadow) -> P(clear) and the class to clear on the shadow calls of one tile: every one
    (``every``), or those whose ``r`` reaches ``thr``; returns how many, and how many of them
    are valid (``v``)."""
    h, w = c.shape
    k = 0
    kv = 0
    for y in range(h):
        for x in range(w):
            if c[y, x] == 3 and (every or r[y, x] >= thr):
                p0[y, x] += p3[y, x]
                p3[y, x] = 0.0
                c[y, x] = 0
                k += 1
                if v[y, x]:
                    kv += 1
    return k, kv


@nb.njit(cache=True)
def _median(v):
    """numpy's median of the float32 values ``v`` (reordered in place): the middle value, or the
    mean of the two middle values rounded to float32 as numpy's float32 median is."""
    m = v.shape[0]
    hi = _select(v, m // 2)
    if m % 2:
        return hi
    lo = v[0]
    for j in range(1, m // 2):  # the largest of the lower half: the other middle value
        lo = max(lo, v[j])
    return np.float32((np.float64(lo) + np.float64(hi)) / 2.0)


@nb.njit(cache=True)
def _select(v, k):
    """The ``k``-th smallest of ``v`` (Hoare's quickselect, middle pivot), leaving the ``k``
    smallest in ``v[:k]``."""
    lo, hi = 0, v.shape[0] - 1
    while lo < hi:
        pivot = v[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while v[i] < pivot:
                i += 1
            while v[j] > pivot:
                j -= 1
            if i <= j:
                v[i], v[j] = v[j], v[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return v[k]


@nb.njit(parallel=True, cache=True)
def shadow_vetoes(probs, cls, ref, valid, min_cloud, darker, min_ref, withdrawn, withdrawn_valid):
    """The mask's two shadow rules, in place, one tile per job: ``probs`` (N, 4, H, W) float32
    and ``cls`` (N, H, W) uint8 (its classes) are updated, ``withdrawn[i]`` counts tile i's
    shadow calls withdrawn and ``withdrawn_valid[i]`` those of them on valid pixels (what a
    count of valid shadow calls made before loses: :func:`tile_counts` need not run again).

    No cloud, no shadow: in a tile whose cloud calls are fewer than ``min_cloud`` times its
    valid pixels, every shadow call goes. Then, with ``darker`` > 0, the darkness rule: a
    shadow call whose ``ref`` (N, H, W) float32 reaches ``darker`` times the median of ``ref``
    over the tile's valid clear calls (or, where those are fewer than ``min_ref``, over the
    valid pixels called clear or called shadow with P(clear) >= P(shadow); still fewer: no
    rule) goes. The median is numpy's (the mean of the two middle values for an even count,
    rounded to float32 as numpy's float32 median is), so the calls are those of the numpy
    rules in :mod:`kumo_edge.runtime`."""
    n, _, h, w = probs.shape
    d32 = np.float32(darker)
    for i in nb.prange(n):
        c = cls[i]
        v = valid[i]
        p0 = probs[i, 0]
        p3 = probs[i, 3]
        n_valid = 0
        n_cloud = 0
        n_shadow = 0
        n_clear = 0
        for y in range(h):
            for x in range(w):
                k = c[y, x]
                if k == 3:
                    n_shadow += 1
                if v[y, x]:
                    n_valid += 1
                    if k == 1 or k == 2:
                        n_cloud += 1
                    elif k == 0:
                        n_clear += 1
        withdrawn[i] = 0
        withdrawn_valid[i] = 0
        if n_shadow == 0:
            continue
        if n_valid > 0 and n_cloud < min_cloud * n_valid:
            withdrawn[i], withdrawn_valid[i] = _withdraw(p0, p3, c, v, ref[i], d32, True)
            continue
        if darker <= 0.0:
            continue
        r = ref[i]
        wide = n_clear < min_ref  # too few clear calls: the balanced point's clear
        buf = np.empty(h * w, np.float32)
        m = 0
        for y in range(h):
            for x in range(w):
                k = c[y, x]
                if v[y, x] and (k == 0 or (wide and k == 3 and p0[y, x] >= p3[y, x])):
                    buf[m] = r[y, x]
                    m += 1
        if m < min_ref:
            continue
        thr = d32 * _median(buf[:m])
        withdrawn[i], withdrawn_valid[i] = _withdraw(p0, p3, c, v, r, thr, False)
