"""The detector's second opinion (kumo_edge.trees): features, the flattened trees, the file,
how the opinion combines with the network's, and that it shapes the mask, never the removal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kumo_edge.errors import BandMappingError, ModelContractError
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.trees import (
    CANONICAL,
    FORMAT,
    coarse_canonical,
    combine,
    features,
    load_trees,
    n_features,
    trees_path,
)

RGBN = shipped_models()["rgbn"]["detector"]


def _reference_features(canon, windows, extreme):  # noqa: ANN001, ANN202
    """The features in plain numpy, window by window (numpy's reflect and edge padding)."""

    def box(a, w):  # noqa: ANN001, ANN202
        r = w // 2
        p = np.pad(a, ((0, 0), (r, r), (r, r)), mode="reflect").astype(np.float64)
        h, wd = a.shape[1:]
        return np.stack(
            [[p[:, i : i + w, j : j + w].mean((1, 2)) for j in range(wd)] for i in range(h)]
        ).transpose(2, 0, 1)

    def ext(a, w, fn):  # noqa: ANN001, ANN202
        r = w // 2
        p = np.pad(a, ((0, 0), (r, r), (r, r)), mode="edge")
        h, wd = a.shape[1:]
        return np.stack(
            [[fn(p[:, i : i + w, j : j + w], (1, 2)) for j in range(wd)] for i in range(h)]
        ).transpose(2, 0, 1)

    eps = np.float32(1e-4)
    b, g, r, n = canon[:, 0], canon[:, 1], canon[:, 2], canon[:, 3]
    vis = (b + g + r) / np.float32(3)
    f = [b, g, r, vis, (np.abs(b - vis) + np.abs(g - vis) + np.abs(r - vis)) / (vis + eps),
         (b - r) / (b + r + eps), b - np.float32(0.5) * r, n, (n - r) / (n + r + eps), n / (g + eps)]  # fmt: skip
    for base in (vis, n):
        for w in windows:
            m = box(base, w)
            f += [m, np.sqrt(np.maximum(box(base.astype(np.float64) ** 2, w) - m * m, 0)), base - m]
        f += [ext(base, extreme, np.min), ext(base, extreme, np.max), np.abs(base - box(base, 3))]
    return np.stack(f, 1).astype(np.float32)


def test_features_match_a_window_by_window_reference():
    """The numba kernel (running sums, reflected indices) against plain numpy, on a tile
    smaller than the largest window (indices reflected more than once)."""
    c = np.random.default_rng(0).random((2, 4, 12, 9)).astype(np.float32)
    got = features(c, (3, 9, 31), 5)
    np.testing.assert_allclose(got, _reference_features(c, (3, 9, 31), 5), atol=2e-6)
    assert got.shape[1] == n_features(4, 3)
    assert features(c[:, :3], (3,), 3).shape[1] == n_features(3, 1)


def test_coarse_canonical_is_block_mean_then_band_map_then_clip():
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.1, 1.2, (2, 3, 8, 12)).astype(np.float32)
    m = rng.uniform(0, 1, (4, 3)).astype(np.float32)
    got = coarse_canonical(x, m, 4)
    block = x.reshape(2, 3, 2, 4, 3, 4).mean((3, 5))
    want = np.clip(np.einsum("kc,nchw->nkhw", m, block), 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def _bilinear(coarse: np.ndarray, d: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize by ``d``, edges held (``scipy.ndimage.zoom(order=1,
    mode="nearest", grid_mode=True)``), written out."""
    n, hc, wc = coarse.shape
    c = (np.arange(hc * d) + 0.5) / d - 0.5
    r = (np.arange(wc * d) + 0.5) / d - 0.5
    y0, x0 = np.floor(c).astype(int), np.floor(r).astype(int)
    fy, fx = (c - y0)[:, None], (r - x0)[None, :]
    ya, yb = np.clip(y0, 0, hc - 1), np.clip(y0 + 1, 0, hc - 1)
    xa, xb = np.clip(x0, 0, wc - 1), np.clip(x0 + 1, 0, wc - 1)
    g = coarse
    top = g[:, ya][:, :, xa] * (1 - fx) + g[:, ya][:, :, xb] * fx
    bot = g[:, yb][:, :, xa] * (1 - fx) + g[:, yb][:, :, xb] * fx
    return top * (1 - fy) + bot * fy


def test_combine_resizes_block_values_bilinearly():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(4), (2, 8, 12)).transpose(0, 3, 1, 2).astype(np.float32)
    coarse = rng.random((2, 2, 3)).astype(np.float32)
    a, b = p.copy(), p.copy()
    combine(a, coarse)
    combine(b, _bilinear(coarse, 4).astype(np.float32))
    np.testing.assert_allclose(a, b, atol=1e-6)
    flat = np.full((2, 2, 3), 0.3, np.float32)  # a constant opinion stays constant
    c = p.copy()
    combine(c, flat)
    np.testing.assert_allclose(c[:, 1] + c[:, 2], np.sqrt((p[:, 1] + p[:, 2]) * 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        combine(p.copy(), coarse[:, :, :2])


@pytest.mark.parametrize("pool", ["geometric", "mean"])
def test_combine_pools_the_cloud_probability_and_keeps_the_networks_splits(pool):
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), (3, 5, 5)).transpose(0, 3, 1, 2).astype(np.float32)
    pt = rng.random((3, 5, 5)).astype(np.float32)
    q = p.copy()
    combine(q, pt, pool)
    pc = p[:, 1] + p[:, 2]
    want = np.sqrt(pc * pt) if pool == "geometric" else (pc + pt) / 2
    np.testing.assert_allclose(q.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(q[:, 1] + q[:, 2], want, atol=1e-6)
    np.testing.assert_allclose(q[:, 1] / q[:, 2], p[:, 1] / p[:, 2], rtol=1e-4)
    np.testing.assert_allclose(q[:, 0] / q[:, 3], p[:, 0] / p[:, 3], rtol=1e-4)
    with pytest.raises(ValueError, match="pool must be one of"):
        combine(p.copy(), pt, "max")


def test_shipped_trees_load_and_reproduce_lightgbm():
    """The shipped file walks to the same raw scores as the booster it was flattened from, on
    features of random tiles (export.trees writes both; skipped without lightgbm)."""
    lgb = pytest.importorskip("lightgbm")
    from export import trees as et

    op = load_trees(trees_path(RGBN))
    assert op.meta["format"] == FORMAT and op.meta["view"] == "rgbn"
    rng = np.random.default_rng(3)
    x = rng.random((300, op.n_features)).astype(np.float32)
    y = (x[:, 3] + 0.3 * rng.random(300) > 0.6).astype(float)
    booster = lgb.train(
        {"objective": "cross_entropy", "num_leaves": 16, "max_depth": 4, "verbose": -1,
         "min_data_in_leaf": 5},
        lgb.Dataset(x, y),
        num_boost_round=20,
    )  # fmt: skip
    flat = et.flatten(booster)
    from kumo_edge.trees import _predict

    raw = np.empty(len(x))
    _predict(np.ascontiguousarray(x.T), flat["feat"], flat["thr"], flat["leaf"], raw)
    np.testing.assert_allclose(raw, booster.predict(x, raw_score=True), atol=1e-9)


def _copy_detector(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(RGBN, d / "detector.onnx")
    return d / "detector.onnx"


def test_corrupt_or_inconsistent_tree_file_is_refused_in_one_line(tmp_path):
    det = _copy_detector(tmp_path)
    trees_path(det).write_bytes(b"not a zip")
    with pytest.raises(ModelContractError, match="not a readable tree ensemble"):
        load_model(det)
    with np.load(trees_path(RGBN)) as z:
        d = {k: z[k] for k in z.files}
    d["leaf"] = d["leaf"][:, :-1]  # not 2**D leaves
    np.savez(trees_path(det), **d)
    with pytest.raises(ModelContractError, match="inconsistent tree arrays"):
        load_model(det)
    meta = json.loads(str(d["meta"]))
    meta["format"] = FORMAT + 1
    with np.load(trees_path(RGBN)) as z:
        d = {k: z[k] for k in z.files}
    d["meta"] = np.array(json.dumps(meta))
    np.savez(trees_path(det), **d)
    with pytest.raises(ModelContractError, match="format"):
        load_model(det)
    meta["format"] = FORMAT
    meta["pool"] = "harmonic"  # a pooling rule the runtime does not know
    d["meta"] = np.array(json.dumps(meta))
    np.savez(trees_path(det), **d)
    with pytest.raises(ModelContractError, match="pool 'harmonic'"):
        load_model(det)


def test_trees_beside_a_detector_shape_its_mask_not_its_removal(tmp_path):
    det = _copy_detector(tmp_path)
    plain = load_model(det, threads=1)
    assert plain.trees is None
    shutil.copy(trees_path(RGBN), trees_path(det))
    m = load_model(det, threads=1)
    assert m.trees is not None and len(m.trees.bands) == 4
    x = np.random.default_rng(4).uniform(0.02, 0.6, (1, 4, 64, 64)).astype(np.float32)
    x[..., 20:44, 20:44] = 0.55  # a bright flat patch: the two opinions differ there
    net = plain.detect(x)
    both = m.detect(x)
    np.testing.assert_array_equal(m.removal_probabilities(x), net)
    pt = m.tree_probability(x)
    want = net.copy()
    combine(want, pt)
    np.testing.assert_allclose(both, want, atol=1e-6)
    assert np.abs((both[:, 1] + both[:, 2]) - (net[:, 1] + net[:, 2])).max() > 0.05


def test_stream_output_is_the_networks_and_the_mask_the_combined(tmp_path):
    """Same tiles through the stream's tile step with and without the trees: the removed
    output is identical (the removal is weighted by the network), the probabilities returned
    for the mask are the combined ones."""
    from kumo_edge.runtime import load_models
    from kumo_edge.stream import Report, StreamConfig, process_tiles

    det_path = _copy_detector(tmp_path)
    plain = load_model(det_path, threads=1)
    shutil.copy(trees_path(RGBN), trees_path(det_path))
    with_trees = load_model(det_path, threads=1)
    _, gen, _ = load_models("rgbn", plain.bands, threads=1)
    rng = np.random.default_rng(5)
    x = rng.uniform(0.02, 0.3, (2, 4, 256, 256)).astype(np.float32)
    x[:, :, 60:180, 40:200] = x[:, :, 60:180, 40:200] * 0.6 + 0.35  # a thin cloud
    valid = np.ones((2, 256, 256), bool)
    cfg = StreamConfig()
    out0, p0 = process_tiles(x.copy(), valid, plain, gen, cfg, Report())
    out1, p1 = process_tiles(x.copy(), valid, with_trees, gen, cfg, Report())
    assert np.abs(out0 - x).max() > 0.05  # the removal acted
    np.testing.assert_array_equal(out1, out0)
    assert not np.allclose(p1, p0)
    pt = _bilinear(with_trees.tree_probability(x), 4)
    cloud0, cloud1 = p0[:, 1] + p0[:, 2], p1[:, 1] + p1[:, 2]
    np.testing.assert_allclose(cloud1, np.sqrt(np.clip(cloud0, 0, 1) * pt), atol=1e-5)


def test_the_hsi32_stream_mask_pools_its_spectral_trees_by_the_mean():
    """The stream's tile step takes the pooling rule from the tree file, as ``Model.detect``
    does: the hsi32 mask's P(cloud) is the mean of the network's and the spectral trees'."""
    from kumo_edge.stream import Report, StreamConfig, process_tiles

    m = load_model(shipped_models()["hsi32"]["detector"], threads=1)
    rng = np.random.default_rng(11)
    x = rng.uniform(0.02, 0.4, (1, 32, 64, 64)).astype(np.float32)
    x[..., 16:48, 16:48] = np.linspace(0.9, 0.4, 32)[:, None, None]
    want = m.detect(x.copy())
    _, p = process_tiles(x.copy(), np.ones((1, 64, 64), bool), m, None, StreamConfig(), Report())
    np.testing.assert_allclose(p[:, 1] + p[:, 2], want[:, 1] + want[:, 2], atol=1e-5)


def test_the_trees_read_the_canonical_vnir_bands():
    assert len(CANONICAL) == 4
    op = load_trees(trees_path(RGBN))
    with pytest.raises(BandMappingError):
        op.matrix(CANONICAL.subset(range(3)))  # no NIR band: the rgbn trees cannot be fed
    x = np.zeros((1, 4, 16, 16), np.float32)
    assert (
        features(coarse_canonical(x, op.matrix(CANONICAL), 4), op.windows, op.extreme).shape[1]
        == op.n_features
    )


def test_beside_a_swir_detector_the_spectral_test_keeps_the_last_word(tmp_path):
    """Trees beside the six-band detector: its mask takes their opinion, but the pixels the
    spectral cloud test claims stay cloud (P = 1) in ``detect`` and in the stream's mask, and
    the stream's cleaned output is the same as without the trees."""
    from kumo_edge.runtime import load_models, spectral_cloud_test
    from kumo_edge.stream import Report, StreamConfig, process_tiles

    d = tmp_path / "six"
    d.mkdir()
    det_path = d / "detector.onnx"
    shutil.copy(shipped_models()["swir6"]["detector"], det_path)
    plain = load_model(det_path, threads=1)
    shutil.copy(trees_path(RGBN), trees_path(det_path))
    m = load_model(det_path, threads=1)
    assert m.uses_trees
    rng = np.random.default_rng(6)
    x = np.empty((1, 6, 256, 256), np.float32)
    x[:] = np.array([0.05, 0.07, 0.05, 0.3, 0.15, 0.08], np.float32)[:, None, None]
    x *= rng.uniform(0.8, 1.2, (1, 1, 256, 256)).astype(np.float32)
    # bright, white, bright in the SWIR: the spectral test's cloud
    x[0, :, 96:160, 96:160] = np.array([0.45, 0.42, 0.43, 0.45, 0.35, 0.25])[:, None, None]
    sure = spectral_cloud_test(x, m.bands)
    assert sure[0, 96:160, 96:160].all() and sure.sum() == 64 * 64
    net, both = plain.detect(x), m.detect(x)
    assert (both[:, 1] + both[:, 2])[sure].min() == pytest.approx(1.0)
    outside = ~sure
    assert np.abs((both[:, 1] + both[:, 2]) - (net[:, 1] + net[:, 2]))[outside].max() > 0.01
    _, gen, _ = load_models("swir6", plain.bands, threads=1)
    valid = np.ones((1, 256, 256), bool)
    out0, _ = process_tiles(x.copy(), valid, plain, gen, StreamConfig(), Report())
    out1, p1 = process_tiles(x.copy(), valid, m, gen, StreamConfig(), Report())
    np.testing.assert_array_equal(out1, out0)
    assert (p1[:, 1] + p1[:, 2])[sure].min() == pytest.approx(1.0)
    assert np.abs((p1[:, 1] + p1[:, 2]) - (both[:, 1] + both[:, 2]))[outside].max() < 1e-5


def test_pixel_trees_round_trip_and_read_only_their_bands(tmp_path):
    """Pixel trees (export.trees view ``input``): written and loaded back, they give LightGBM's
    probabilities on reflectance clipped to [0, 1], keep the input's shape, refuse other band
    counts and context tiles, and a file claiming more canonical bands than there are is refused
    in one line (skipped without lightgbm)."""
    pytest.importorskip("lightgbm")
    from export import trees as et
    from kumo_edge.runtime import INPUT_TEST_BANDS

    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (4000, 5)).astype(np.float32)
    y = ((x[:, 4] > 0.3) & (x[:, 0] > 0.4)).astype(float)  # "cloud": bright and SWIR-bright
    booster = et.fit([(x, y)], per_patch=4000)
    op = et.save(booster, tmp_path / "t.npz", "input", {})
    assert op.pixels and op.bands == INPUT_TEST_BANDS and op.down == 1
    cube = rng.uniform(-0.2, 1.3, (5, 7, 9)).astype(np.float32)
    p = op.predict_pixels(cube)
    assert p.shape == (7, 9)
    want = booster.predict(np.clip(cube.reshape(5, -1).T, 0, 1)).reshape(7, 9)
    np.testing.assert_allclose(p, want, atol=1e-6)
    assert p[(cube[4] > 0.35) & (cube[0] > 0.45)].min() > 0.5  # learned what it was shown
    with pytest.raises(ValueError, match="pixel trees of 5 bands"):
        op.predict_pixels(cube[:4])
    with pytest.raises(ValueError, match="context trees"):
        load_trees(trees_path(RGBN)).predict_pixels(cube[:4])
    with np.load(tmp_path / "t.npz") as z:
        d = {k: z[k] for k in z.files}
    meta = json.loads(str(d["meta"]))
    meta["canonical_bands"] = 7
    d["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(ModelContractError, match="not a readable tree ensemble"):
        load_trees(tmp_path / "bad.npz")


def _reference_spectral(coarse):  # noqa: ANN001, ANN202
    mean = coarse.mean(1, keepdims=True)
    return np.concatenate([coarse, coarse / np.maximum(mean, 1e-3), mean], 1)


def test_spectral_features_are_the_bands_their_shape_and_their_mean():
    """Block means of the tiles mapped onto the trees' bands and clipped, the spectrum over
    its mean and the mean, one column per block, tile by tile, row by row."""
    from kumo_edge.trees import spectral_features

    rng = np.random.default_rng(8)
    tiles = rng.uniform(0, 0.9, (2, 6, 8, 12)).astype(np.float32)
    tiles[0, :, :2, :2] = 0.0  # a black block: divided by the floor, not by zero
    tiles[1, :, 2:4, :2] = 1.5  # saturated: clipped before anything else
    matrix = rng.uniform(0, 0.5, (5, 6)).astype(np.float32)
    matrix[matrix < 0.2] = 0.0  # sparse, as resampling matrices are
    f = spectral_features(tiles, matrix, 2)
    assert f.shape == (11, 2 * 4 * 6) and np.isfinite(f).all()
    blocks = tiles.reshape(2, 6, 4, 2, 6, 2).mean((3, 5))
    coarse = np.clip(np.einsum("kc,nchw->nkhw", matrix, blocks), 0, 1)
    want = _reference_spectral(coarse).transpose(1, 0, 2, 3).reshape(11, -1)
    np.testing.assert_allclose(f, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 2"):
        spectral_features(tiles[..., :7], matrix, 2)
    f4 = spectral_features(tiles[..., :8], matrix, 4)  # the generic block loop
    blocks4 = tiles[..., :8].reshape(2, 6, 2, 4, 2, 4).mean((3, 5))
    coarse4 = np.clip(np.einsum("kc,nchw->nkhw", matrix, blocks4), 0, 1)
    want4 = _reference_spectral(coarse4).transpose(1, 0, 2, 3).reshape(11, -1)
    np.testing.assert_allclose(f4, want4, rtol=1e-5, atol=1e-6)


def test_spectral_trees_round_trip_and_read_their_own_bands(tmp_path):
    """Spectral trees (export.trees view ``hsi32``): written and loaded back, they read the
    hsi32 bands as they are (identity map), give LightGBM's probabilities on the block spectra
    of tiles, one per 2 x 2 block, refuse a band set that cannot feed them, and a file that
    lists too few bands is refused in one line (skipped without lightgbm)."""
    pytest.importorskip("lightgbm")
    from export import trees as et
    from export.detector import release_bands

    bands = release_bands("hsi32")
    k = len(bands)
    rng = np.random.default_rng(6)
    # "cloud": a bright flat spectrum; "clear": a sloped one, as bright on average
    n = 6000
    level = rng.uniform(0.1, 0.7, (n, 1))
    slope = np.where(rng.random((n, 1)) < 0.5, 0.0, rng.uniform(0.5, 1.5, (n, 1)))
    spec = (level * (1 + slope * np.linspace(-0.5, 0.5, k)[None])).clip(0, 1).astype(np.float32)
    y = (slope[:, 0] == 0).astype(float)
    x = _reference_spectral(spec[:, :, None, None])[:, :, 0, 0]
    booster = et.fit_spectral(x, y)
    op = et.save(booster, tmp_path / "s.trees.npz", "hsi32", {})
    assert op.spectral and not op.pixels and op.down == et.SPECTRAL_DOWN == 2
    assert op.pool == et.SPECTRAL_POOL == "mean"
    assert op.bands.centers_nm == bands.centers_nm and op.n_features == 2 * k + 1
    m = op.matrix(bands)
    np.testing.assert_array_equal(m, np.eye(k, dtype=np.float32))
    tiles = np.repeat(np.repeat(spec[:32].T.reshape(k, 4, 8)[None], 2, 2), 2, 3)  # (1, k, 8, 16)
    p = op.predict(tiles, m)
    assert p.shape == (1, 4, 8)
    want = booster.predict(x[:32]).reshape(4, 8)
    np.testing.assert_allclose(p[0], want, atol=1e-5)
    assert (p[0].reshape(-1) > 0.5).tolist() == (y[:32] == 1).tolist()  # learned the flatness
    with pytest.raises(BandMappingError):
        op.matrix(CANONICAL)
    with np.load(tmp_path / "s.trees.npz") as z:
        d = {key: z[key] for key in z.files}
    meta = json.loads(str(d["meta"]))
    meta["bands_nm"], meta["fwhm_nm"] = [500.0, 600.0], [10.0, 10.0]
    d["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(ModelContractError, match="not a readable tree ensemble"):
        load_trees(tmp_path / "bad.npz")


def test_the_hsi32_detector_takes_its_spectral_trees_for_its_mask_only():
    """The shipped hsi32 detector loads the spectral trees beside it; they read its 32 bands
    as they are, in 2 x 2 blocks, and its mask is the network's combined with them (the mean
    of the two P(cloud), as the file asks) while the removal's probabilities stay the
    network's; the rgbn detector's context trees keep the geometric mean."""
    assert load_trees(trees_path(RGBN)).pool == "geometric"
    hsi = shipped_models()["hsi32"]["detector"]
    m = load_model(hsi, threads=1)
    assert m.uses_trees and m.trees.spectral and m.trees.down == 2 and m.trees.pool == "mean"
    np.testing.assert_array_equal(m._trees_matrix, np.eye(32, dtype=np.float32))
    rng = np.random.default_rng(9)
    x = rng.uniform(0.02, 0.4, (1, 32, 64, 64)).astype(np.float32)
    x[..., 16:48, 16:48] = np.linspace(0.9, 0.4, 32)[:, None, None]  # bright, blue-sloped
    net = m.run(x)
    pt = m.tree_probability(x)
    assert pt.shape == (1, 32, 32)
    want = net.copy()
    combine(want, pt, "mean")
    got = m.detect(x)
    np.testing.assert_allclose(got, want, atol=1e-6)
    up = np.repeat(np.repeat(pt, 2, 1), 2, 2)  # inside the patch the blocks are alike
    inner = (slice(None), slice(20, 44), slice(20, 44))
    pc = (net[:, 1] + net[:, 2])[inner]
    np.testing.assert_allclose((got[:, 1] + got[:, 2])[inner], (pc + up[inner]) / 2, atol=1e-4)
    np.testing.assert_array_equal(m.removal_probabilities(x), net)
    assert np.abs((want[:, 1] + want[:, 2]) - (net[:, 1] + net[:, 2])).max() > 0.05
