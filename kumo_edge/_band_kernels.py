"""numba kernels behind :mod:`kumo_edge.bands`. They take arrays and scalars only and check
nothing: validate in the public front."""

from __future__ import annotations

import numba as nb

#: Pixels per parallel job of :func:`resample_sparse`: a job's source and target rows stay in
#: the cache while each target band gathers its few source bands.
CHUNK = 4096


@nb.njit(parallel=True, cache=True)
def resample_sparse(src, starts, cols, weights, out):
    """out[k] = sum of weights[j] * src[cols[j]] over j in starts[k]:starts[k + 1].

    src (C, N) float32, out (K, N) float32 (overwritten); the matrix's nonzero weights row by
    row (compressed sparse rows: ``starts`` (K + 1,), ``cols``/``weights`` per nonzero). Each
    job handles a chunk of pixels for every target band, summing in source-band order."""
    n = src.shape[1]
    k_n = out.shape[0]
    for c in nb.prange((n + CHUNK - 1) // CHUNK):
        i0 = c * CHUNK
        i1 = min(i0 + CHUNK, n)
        for k in range(k_n):
            dst = out[k, i0:i1]
            dst[:] = 0.0
            for j in range(starts[k], starts[k + 1]):
                w = weights[j]
                s = src[cols[j], i0:i1]
                for i in range(i1 - i0):
                    dst[i] += w * s[i]
