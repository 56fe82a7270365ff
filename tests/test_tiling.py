"""numba tiling kernels against plain-numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from kumo_edge.errors import DataTypeError, ShapeError
from kumo_edge.tiling import (
    GridBlender,
    axis_origins,
    axis_weights,
    blend_tiles,
    blend_weights,
    extract_tiles,
    footprint_tiles,
    inference_origins,
    tile_image,
)

from conftest import rotated_footprint


def _best_grid_numpy(valid: np.ndarray, size: int, stride: int) -> tuple[int, set[tuple[int, int]]]:
    """Brute force: every grid offset, every tile checked pixel by pixel."""
    h, w = valid.shape
    best, best_set = -1, set()
    for oy in range(stride):
        for ox in range(stride):
            tiles = {
                (y, x)
                for y in range(oy, h - size + 1, stride)
                for x in range(ox, w - size + 1, stride)
                if valid[y : y + size, x : x + size].all()
            }
            if len(tiles) > best:
                best, best_set = len(tiles), tiles
    return best, best_set


@pytest.mark.parametrize("seed", range(6))
def test_footprint_grid_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(40, 90, size=2)
    valid = rotated_footprint(h, w, float(rng.uniform(-30, 30)), float(rng.uniform(0.02, 0.15)))
    valid[rng.random((h, w)) < 0.002] = False  # a few scattered holes
    size = int(rng.integers(6, 16))
    stride = size if seed % 2 else int(rng.integers(3, size))
    g = footprint_tiles(valid, size, stride)
    best, _ = _best_grid_numpy(valid, size, stride)
    assert len(g) == best
    for y, x in g.origins:
        assert valid[y : y + size, x : x + size].all()
        assert (y - g.offset[0]) % stride == 0 and (x - g.offset[1]) % stride == 0
    assert g.counts.max() == best


def test_footprint_rotated_scene_counts() -> None:
    valid = rotated_footprint(700, 800, 14.0, 0.08)
    g = footprint_tiles(valid, 128)
    best, tiles = _best_grid_numpy(valid, 128, 128)
    assert len(g) == best >= 12
    assert {tuple(o) for o in g.origins.tolist()} <= {
        (y, x) for y in range(700) for x in range(800)
    }


def test_footprint_input_checks() -> None:
    with pytest.raises(ShapeError):
        footprint_tiles(np.ones((2, 3, 4), bool), 2)
    with pytest.raises(DataTypeError):
        footprint_tiles(np.ones((10, 10), np.float32), 2)
    with pytest.raises(ValueError, match="stride"):
        footprint_tiles(np.ones((10, 10), bool), 4, 0)


def test_axis_origins_cover_and_align() -> None:
    o = axis_origins(1000, 256, 16)
    assert o[0] == 0 and o[-1] == 1000 - 256
    assert (np.diff(o)[:-1] == 224).all() and np.diff(o)[-1] <= 224
    assert axis_origins(100, 256, 16).tolist() == [0]
    assert axis_origins(256, 256, 16).tolist() == [0]
    with pytest.raises(ValueError, match="halo"):
        axis_origins(500, 64, 32)


def test_extract_matches_numpy(rng: np.random.Generator) -> None:
    img = rng.random((5, 300, 420), dtype=np.float32)
    origins = inference_origins(300, 420, 64, 8)
    tiles = extract_tiles(img, origins, 64)
    ref = np.stack([img[:, y : y + 64, x : x + 64] for y, x in origins])
    np.testing.assert_array_equal(tiles, ref)


def test_extract_checks() -> None:
    img = np.zeros((2, 50, 50), np.float32)
    with pytest.raises(ShapeError, match="does not fit"):
        extract_tiles(img, np.array([[0, 40]]), 16)
    with pytest.raises(DataTypeError, match="float32"):
        extract_tiles(img.astype(np.float64), np.array([[0, 0]]), 16)
    with pytest.raises(ShapeError, match="out"):
        extract_tiles(img, np.array([[0, 0]]), 16, out=np.empty((2, 2, 16, 16), np.float32))


def test_blend_weights_partition_of_unity() -> None:
    size, halo = 64, 8
    w = blend_weights(size, halo)[size // 2]  # 1-D profile (the centre row is 1 x profile)
    step = size - 2 * halo
    # two neighbours overlapping by 2*halo: their 1-D tapers sum to one across the overlap
    np.testing.assert_allclose(w[step:] + w[: size - step], 1.0, atol=1e-6)
    assert w.min() > 0 and w[size // 2] == 1.0


def test_blend_reconstructs_image_without_seams(rng: np.random.Generator) -> None:
    img = rng.random((3, 333, 290), dtype=np.float32)
    tiles, origins, shape = tile_image(img, 96, 12)
    out = blend_tiles(tiles, origins, *shape, 12)
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_blend_matches_numpy_reference(rng: np.random.Generator) -> None:
    rows, cols, size, halo = 150, 170, 48, 6
    origins = inference_origins(rows, cols, size, halo)
    tiles = rng.random((len(origins), 2, size, size), dtype=np.float32)
    out = blend_tiles(tiles, origins, rows, cols, halo)
    # reference: accumulate unnormalised weights and divide by their sum
    w = blend_weights(size, halo).astype(np.float64)
    acc = np.zeros((2, rows, cols))
    ws = np.zeros((rows, cols))
    for t, (y, x) in zip(tiles, origins, strict=True):
        acc[:, y : y + size, x : x + size] += w * t
        ws[y : y + size, x : x + size] += w
    np.testing.assert_allclose(out, acc / ws, rtol=1e-5, atol=1e-6)
    # effective weights sum to one: blending constant tiles gives the constant
    const = blend_tiles(np.full_like(tiles, 0.25), origins, rows, cols, halo)
    np.testing.assert_allclose(const, 0.25, rtol=1e-6)


def test_small_image_is_padded_not_refused(rng: np.random.Generator) -> None:
    img = rng.random((4, 100, 100), dtype=np.float32)
    tiles, origins, shape = tile_image(img, 256, 16)
    assert tiles.shape == (1, 4, 256, 256) and shape == (256, 256)
    np.testing.assert_array_equal(tiles[0, :, :100, :100], img)
    np.testing.assert_array_equal(tiles[0, :, 100:, :100][:, :10], img[:, 98:88:-1])  # reflection
    out = blend_tiles(tiles, origins, *shape, 16)[:, :100, :100]
    np.testing.assert_allclose(out, img, atol=1e-6)
    one_row = tile_image(img[:, :1], 32, 4)[0]
    assert one_row.shape == (4, 4, 32, 32)


def test_axis_weights_sum_to_one() -> None:
    starts = axis_origins(500, 64, 8)
    w = axis_weights(500, starts, 64, 8)
    total = np.zeros(500)
    for s, row in zip(starts, w, strict=True):
        total[s : s + 64] += row
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)


def test_blender_checks() -> None:
    b = GridBlender(40, 40, 16, 2)
    n = len(b.origins)
    with pytest.raises(ShapeError):
        b.blend(np.zeros((n, 2, 8, 8), np.float32))
    with pytest.raises(DataTypeError):
        b.blend(np.zeros((n, 2, 16, 16), np.float64))
    with pytest.raises(ShapeError, match="row starts"):
        GridBlender(40, 40, 16, 2, row_starts=np.array([0, 30]))
    tiles = np.zeros((n, 1, 16, 16), np.float32)
    with pytest.raises(ShapeError, match="full row-major grid"):
        blend_tiles(tiles, b.origins[::-1], 40, 40, 2)


@pytest.mark.parametrize("per_unit", [32768.0, 30000.0])
def test_quantize_rounds_as_the_float64_rule(rng: np.random.Generator, per_unit: float) -> None:
    """The ring's quantiser gives floor(float64(v * s) * per_unit + 0.5) clipped to [0, 65535]
    bit for bit, in its float32 path (a power-of-two ``per_unit``, where adding 0.5 in float32
    could round up) and its float64 one, at the values where rounding is decided: half steps,
    one ulp either side of them, tiny values, negatives and values past the top."""
    from kumo_edge import _tiling_kernels as _tk

    k = rng.integers(0, 65536, (2, 30, 64)).astype(np.float64)
    half = ((k + 0.5) / per_unit).astype(np.float32)
    x = np.concatenate(
        [
            half,
            np.nextafter(half, np.float32(0)),
            np.nextafter(half, np.float32(3)),
            (rng.random((2, 30, 64)) * 4 / per_unit).astype(np.float32),  # near 0
            rng.uniform(-1, 3, (2, 30, 64)).astype(np.float32),
        ],
        axis=1,
    )
    # just under half a step: 0.5 - 2**-25 steps, + 0.5 in float32 rounds up to a whole step
    under = np.nextafter(np.float32(0.5 / per_unit), np.float32(0))
    x[0, 1, :5] = [under, np.nextafter(under, np.float32(0)), -0.0, 1e-45, 3e38]  # row scale 1
    s = np.float32(1.0)
    rows = np.full(x.shape[1], s, np.float32)
    rows[::3] = np.float32(0.7)  # a blend's normalisation on some rows
    got = np.empty(x.shape, np.uint16)
    _tk.quantize(x, rows, per_unit, got)
    v = (x * rows[None, :, None]).astype(np.float32).astype(np.float64)
    ref = np.floor(np.clip(v * per_unit + 0.5, 0.0, 65535.0)).astype(np.uint16)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("step", [1 / 32768, 1e-4, 2.0])
def test_extract_and_dequantize_uint16_equal_the_float64_product(
    rng: np.random.Generator, step: float
) -> None:
    """uint16 counts times ``step`` as float32: the float32 path the kernels take for a
    power-of-two step (the stream's ring) and the float64 one for others give what numpy's
    float64 product rounded to float32 gives, bit for bit."""
    from kumo_edge import _tiling_kernels as _tk

    img = rng.integers(0, 65536, (3, 40, 50), dtype=np.uint16)
    origins = np.array([[0, 3], [20, 30], [24, 34]])
    tiles = extract_tiles(img, origins, 16, step=step)
    ref = np.stack([img[:, y : y + 16, x : x + 16] * step for y, x in origins]).astype(np.float32)
    assert np.array_equal(tiles, ref)
    out = np.empty(img.shape, np.float32)
    _tk.dequantize(img, step, out)
    assert np.array_equal(out, (img * step).astype(np.float32))


def test_ring_kernels_write_and_read_the_window_their_offsets_name(
    rng: np.random.Generator,
) -> None:
    """The stream passes the line ring whole with a window's offsets (a view would be typed
    non-contiguous by numba, and its row loops would not vectorise): with offsets, quantise,
    quantise-from-counts and dequantise touch exactly that window, with the values they give
    on the window as a view."""
    from kumo_edge import _tiling_kernels as _tk

    c, n, w = 3, 12, 40
    ring = rng.integers(0, 65536, (c, 20, w + 7), dtype=np.uint16)
    lines = rng.uniform(-0.1, 1.2, (c, n, w)).astype(np.float32)
    scale = rng.uniform(0.5, 1.0, 5).astype(np.float32)  # lines 4..8 into ring rows 9..13
    want = ring.copy()
    _tk.quantize(np.ascontiguousarray(lines[:, 4:9]), scale, 32768.0, want[:, 9:14, :w])
    got = ring.copy()
    _tk.quantize(lines, scale, 32768.0, got, 4, 9, 0)
    assert np.array_equal(got, want) and not np.array_equal(got, ring)
    got = ring.copy()
    _tk.quantize(lines, scale, 32768.0, got, 4, 9, 7)  # a column offset too
    want = ring.copy()
    _tk.quantize(np.ascontiguousarray(lines[:, 4:9]), scale, 32768.0, want[:, 9:14, 7:])
    assert np.array_equal(got, want)

    raw = rng.integers(0, 12000, (c, n, w), dtype=np.uint16)
    valid = rng.random((n, w)) > 0.2
    sc = np.full(c, 1e-4, np.float32)
    off = np.zeros(c, np.float32)
    want = ring.copy()
    _tk.quantize_counts(
        np.ascontiguousarray(raw[:, 2:7]), np.ascontiguousarray(valid[2:7]), sc, off, 32768.0,
        want[:, 0:5, :w],
    )  # fmt: skip
    got = ring.copy()
    _tk.quantize_counts(raw, np.ascontiguousarray(valid[2:7]), sc, off, 32768.0, got, 2, 0)
    assert np.array_equal(got, want) and not np.array_equal(got, ring)

    out = np.empty((c, 6, w), np.float32)
    _tk.dequantize(ring, 1 / 32768, out, 11)
    assert np.array_equal(out, (ring[:, 11:17, :w] / np.float32(32768)).astype(np.float32))


@pytest.mark.parametrize("halo", [4, 10])  # stride 24 and 12 of a 32-px tile (carry rows < and > s)
def test_blend_batch_matches_window_accumulation_bitwise(halo: int) -> None:
    """The stream's fused blend of one batch against what it replaced: a zeroed window, the
    pending columns added, the tiles accumulated, the carry added, then routed to the ring,
    the carry and the next pending columns."""
    from kumo_edge import _tiling_kernels as tk
    from kumo_edge.tiling import axis_origins, axis_weights, taper

    rng = np.random.default_rng(5)
    t, c, width = 32, 3, 90
    s = t - 2 * halo
    starts = axis_origins(width, t, halo)
    wx = axis_weights(width, starts, t, halo)
    wy = taper(t, halo).astype(np.float32)
    inv = (1.0 / (wy[:s] + rng.random(s).astype(np.float32))).astype(np.float32)
    j, b = 1, 2  # the second batch of two tiles: columns of the first wait as pending
    xs = starts[j : j + b]
    x0, x_end = int(xs[0]), int(xs[-1]) + t
    x_next = int(starts[j + b])
    f = x_next - x0
    n_pend = int(starts[j - 1]) + t - x0
    tiles = rng.random((b, c, t, t), dtype=np.float32)
    pending = rng.random((c, t, n_pend), dtype=np.float32)
    carry = rng.random((c, t - s, width), dtype=np.float32)
    ring = np.zeros((c, t, width), np.uint16)
    # reference
    win = np.zeros((c, t, x_end - x0), np.float32)
    win[:, :, :n_pend] += pending
    tk.accumulate_row(
        win, tiles, (xs - x0).astype(np.int64), wy, np.ascontiguousarray(wx[j : j + b])
    )
    ref_carry = carry.copy()
    win[:, : t - s, :f] += ref_carry[:, :, x0:x_next]
    ref_carry[:, :, x0:x_next] = win[:, s:, :f]
    ref_ring = ring.copy()
    tk.quantize(win[:, :s, :f], inv, 32768.0, ref_ring[:, :s, x0:x_next])
    # fused
    nxt = np.empty((c, t, x_end - x_next), np.float32)
    tk.blend_batch(
        tiles, (xs - x0).astype(np.int64), wy, np.ascontiguousarray(wx[j : j + b]), pending,
        carry, inv, 32768.0, ring, nxt, s, x0,
    )  # fmt: skip
    np.testing.assert_array_equal(ring, ref_ring)
    np.testing.assert_array_equal(carry, ref_carry)
    np.testing.assert_array_equal(nxt, win[:, :, f:])
    assert ring[:, :s, x0:x_next].any()


def test_all_finite_finds_every_kind_of_non_finite_value_in_strided_views() -> None:
    from kumo_edge import _tiling_kernels as tk

    x = np.random.default_rng(1).random((3, 8, 20), dtype=np.float32)
    assert tk.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[2, 5, 19] = bad
        assert not tk.all_finite(y)
        assert tk.all_finite(y[:, :, :19]) and tk.all_finite(y[:, ::2])
        assert not tk.all_finite(y[:, 1::2])
