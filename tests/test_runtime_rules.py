"""Runtime rules that need no model: the ambiguous-bright fraction of a tile."""

from __future__ import annotations

import numpy as np
import pytest

from kumo_edge.config import sensor_profile
from kumo_edge.runtime import ambiguous_bright, ambiguous_mask, ambiguous_masks


def test_ambiguous_bright_counts_bright_white_pixels_the_detector_cannot_call() -> None:
    bands = sensor_profile("rgbn").bands
    cube = np.full((1, 4, 2, 3), 0.05, np.float32)  # dark ground
    cube[0, :, 0, :] = 0.6  # a bright white row: snow or cloud
    cube[0, :, 1, 2] = [0.1, 0.2, 0.6, 0.5]  # bright but red: not white
    p = np.zeros((1, 4, 2, 3), np.float32)
    p[0, 0] = 1.0
    cloud = np.array([[0.5, 0.95, 0.3], [0.5, 0.5, 0.5]], np.float32)  # P(cloud) per pixel
    p[0, 1], p[0, 0] = cloud, 1.0 - cloud
    # row 0: 0.5 and 0.3 are undecided, 0.95 is a call; row 1: dark, or not white
    assert ambiguous_bright(cube, p, bands).tolist() == [2 / 6]
    valid = np.ones((1, 2, 3), bool)
    valid[0, 0, 0] = False
    assert ambiguous_bright(cube, p, bands, valid).tolist() == [1 / 5]
    # no visible band, no answer
    nir = sensor_profile("rgbn").bands.subset([3])
    assert ambiguous_bright(cube[:, 3:], p, nir).tolist() == [0.0]


def test_ambiguous_bright_flags_cloud_calls_on_snow_like_pixels_where_swir_exists() -> None:
    """With SWIR-1, a bright white pixel called cloud is ambiguous when it is as dark in the SWIR
    as snow or ice (NDSI >= 0.4), not when it stays bright there (a water cloud); without SWIR the
    same call is left alone."""
    swir6 = sensor_profile("rgbn-swir").bands  # blue, green, red, NIR, SWIR-1, SWIR-2
    cube = np.full((1, 6, 1, 3), 0.7, np.float32)  # three bright white pixels
    cube[0, 4:, 0, 0] = 0.15  # ice-like: NDSI (0.7 - 0.15) / 0.85 = 0.65
    cube[0, 4:, 0, 1] = 0.45  # water-cloud-like: NDSI 0.22
    cube[0, 4:, 0, 2] = 0.15  # ice-like, but the detector calls it clear
    p = np.zeros((1, 4, 1, 3), np.float32)
    p[0, 2] = [0.95, 0.95, 0.05]  # P(thick)
    p[0, 0] = 1.0 - p[0, 2]
    assert ambiguous_bright(cube, p, swir6).tolist() == [1 / 3]
    rgbn = sensor_profile("rgbn").bands
    assert ambiguous_bright(cube[:, :4], p, rgbn).tolist() == [0.0]


@pytest.mark.parametrize("profile", ["satellogic-hsi", "rgbn", "rgb", "rgbn-swir"])
def test_one_pass_ambiguous_masks_equal_the_per_tile_rule(profile: str) -> None:
    """The stream's one-pass kernel gives :func:`ambiguous_mask` pixel for pixel, on tiles that
    reach every branch: doubtful and sure calls, bright and dark, white and coloured, snow-like
    in the SWIR or not, pixels on the thresholds themselves."""
    bands = sensor_profile(profile).bands
    rng = np.random.default_rng(7)
    n, c = 3, len(bands)
    grey = rng.uniform(0.0, 0.9, (n, 1, 48, 48)).astype(np.float32)
    tint = rng.uniform(0.85, 1.15, (n, c, 48, 48)).astype(np.float32)
    tint[:, :, :16] = rng.uniform(0.2, 1.8, (n, c, 16, 48))  # coloured rows
    cube = grey * tint
    cube[:, :, 40:] = rng.uniform(0.0, 0.2, (n, c, 8, 48))  # dark rows: no doubt is bright
    cube[0, :, 20, :4] = np.float32(0.3)  # bright exactly at the threshold, white
    p = rng.dirichlet(np.ones(4), (n, 48, 48)).astype(np.float32).transpose(0, 3, 1, 2).copy()
    p[:, 1, 30:36] += 1.5  # sure cloud calls (snow-like where the SWIR is dark)
    p /= p.sum(1, keepdims=True)
    p[0, 1, 21, :4], p[0, 2, 21, :4] = np.float32(0.2), np.float32(0.0)  # P(cloud) on the edge
    ref = np.stack([ambiguous_mask(x, q, bands) for x, q in zip(cube, p, strict=True)])
    assert ref.any() and not ref.all()
    assert np.array_equal(ambiguous_masks(cube, p, bands), ref)
    # the input's own snow-like pixels (where the models' bands have no SWIR): more doubt
    snowy = rng.random((n, 48, 48)) < 0.5
    ref_s = np.stack([ambiguous_mask(*a) for a in zip(cube, p, [bands] * n, snowy, strict=True)])
    assert (ref_s >= ref).all()
    if c <= 6:  # (32 randomly tinted bands leave no pixel white)
        assert (ref_s & ~ref).any()
    assert np.array_equal(ambiguous_masks(cube, p, bands, snowy), ref_s)


def test_shadow_operating_point() -> None:
    import pytest

    from kumo_edge.errors import ModelContractError
    from kumo_edge.runtime import ModelContract, classify

    # per pixel: P(clear), P(thin), P(thick), P(shadow)
    p = np.array(
        [
            [0.60, 0.05, 0.05, 0.30],  # shadow share 1/3
            [0.45, 0.05, 0.05, 0.45],  # a tie: not shadow at 0.5
            [0.30, 0.05, 0.05, 0.60],  # shadow by the larger
            [0.10, 0.30, 0.40, 0.20],  # thick cloud whatever the shadow threshold
        ],
        np.float32,
    ).T
    assert classify(p).tolist() == [0, 0, 3, 2]  # 0.5: the larger of clear and shadow
    assert classify(p, shadow_threshold=0.3).tolist() == [3, 3, 3, 2]
    assert classify(p, shadow_threshold=0.4).tolist() == [0, 3, 3, 2]
    assert classify(p, shadow_threshold=0.7).tolist() == [0, 0, 0, 2]
    bands = sensor_profile("rgbn").bands
    c = ModelContract("detector", "rgbn", bands, 256, 16, 8, {}, ("c", "t", "k", "s"))
    assert c.shadow_threshold == 0.5
    c2 = ModelContract.from_metadata({**c.to_metadata(), "kumo.shadow_threshold": "0.3"})
    assert c2.shadow_threshold == 0.3 and ModelContract.from_metadata(c2.to_metadata()) == c2
    assert any("> 0.3" in ln for ln in c2.describe())
    with pytest.raises(ModelContractError, match="shadow_threshold must lie in"):
        ModelContract.from_metadata({**c.to_metadata(), "kumo.shadow_threshold": "1.2"})


def test_darkness_rule_withdraws_shadow_calls_on_ground_as_bright_as_the_clear() -> None:
    from kumo_edge.errors import ModelContractError
    from kumo_edge.runtime import (
        SHADOW_REFERENCE_PIXELS,
        ModelContract,
        classify,
        shadow_reference_band,
        veto_bright_shadows,
    )

    bands = sensor_profile("rgbn").bands
    assert shadow_reference_band(bands) == 3  # the NIR band
    assert shadow_reference_band(sensor_profile("rgb").bands) == 2  # red, the nearest
    # a 32 x 32 tile: left half called clear (NIR 0.30), right half called shadow, of which the
    # top rows are dark (0.10: shadow) and the bottom rows as bright as the clear (0.30)
    p = np.zeros((2, 4, 32, 32), np.float32)
    p[:, 0], p[:, 3] = 0.9, 0.1
    p[:, 0, :, 16:], p[:, 3, :, 16:] = 0.2, 0.8
    p[:, 1, :2, :2], p[:, 0, :2, :2] = 0.9, 0.0  # a cloud corner, left alone
    p[:, 3, :2, :2] = 0.1
    ref = np.full((2, 32, 32), 0.30, np.float32)
    ref[:, :16, 16:] = 0.10
    valid = np.ones((2, 32, 32), bool)
    valid[1, :, 2:16] = False  # tile 1: too few valid clear pixels to compare with
    before = p.copy()
    n = veto_bright_shadows(p, ref, valid, 0.8)
    assert n == 16 * 16  # the bright half of tile 0's shadow calls
    c = classify(p, axis=1)
    assert (c[0, :16, 16:] == 3).all() and (c[0, 16:, 16:] == 0).all()
    assert (c[0, :2, :2] == 1).all()  # cloud untouched
    np.testing.assert_array_equal(p[1], before[1])  # no reference: calls kept
    assert int(valid[1].sum() - 16 * 32) < SHADOW_REFERENCE_PIXELS
    np.testing.assert_allclose(p.sum(axis=1), before.sum(axis=1))  # probabilities still sum
    q = before.copy()
    assert veto_bright_shadows(q, ref, valid, 0.0) == 0  # 0: no rule
    np.testing.assert_array_equal(q, before)
    # the factor travels in the contract
    c0 = ModelContract("detector", "rgbn", bands, 256, 16, 8, {}, ("c", "t", "k", "s"))
    assert c0.shadow_darker == 0.0 and "kumo.shadow_darker" not in c0.to_metadata()
    c1 = ModelContract.from_metadata({**c0.to_metadata(), "kumo.shadow_darker": "0.8"})
    assert c1.shadow_darker == 0.8 and ModelContract.from_metadata(c1.to_metadata()) == c1
    assert any("darker than 0.8" in ln for ln in c1.describe())
    with pytest.raises(ModelContractError, match="shadow_darker must lie in"):
        ModelContract.from_metadata({**c0.to_metadata(), "kumo.shadow_darker": "-1"})


def test_darkness_rule_takes_its_reference_at_the_balanced_point_when_the_mask_calls_little_clear() -> (
    None
):
    """At a permissive shadow point (the shipped 0.075) a tile of clear ground can be nearly
    all "shadow", leaving no clear pixels to compare with: the reference is then the valid
    pixels where P(clear) >= P(shadow), and the bright calls go as before."""
    from kumo_edge.runtime import classify, veto_bright_shadows

    p = np.zeros((1, 4, 32, 32), np.float32)
    p[0, 0], p[0, 3] = 0.8, 0.2  # clear at 0.5, "shadow" at 0.075
    p[0, 0, :8], p[0, 3, :8] = 0.1, 0.9  # the top rows: shadow at both points
    ref = np.full((1, 32, 32), 0.30, np.float32)
    ref[0, :8] = 0.10  # ... and dark
    valid = np.ones((1, 32, 32), bool)
    cls = classify(p, axis=1, shadow_threshold=0.075)
    assert (cls == 3).all()  # no clear call at the mask's point
    n = veto_bright_shadows(p, ref, valid, 0.7, shadow_threshold=0.075, classes=cls)
    assert n == 24 * 32 and (cls[0, :8] == 3).all() and (cls[0, 8:] == 0).all()
    q = np.zeros_like(p)
    q[0, 0], q[0, 3] = 0.3, 0.7  # nothing clear at either point: no reference, calls kept
    cq = classify(q, axis=1, shadow_threshold=0.075)
    assert veto_bright_shadows(q, ref, valid, 0.7, shadow_threshold=0.075, classes=cq) == 0


def test_no_shadow_call_stands_in_a_tile_without_cloud() -> None:
    from kumo_edge.runtime import (
        SHADOW_MIN_CLOUD,
        classify,
        shadow_rules,
        veto_cloudless_shadows,
    )

    # three 20 x 20 tiles, each with a shadow-called block; cloud called on 60 pixels (15 %),
    # 20 pixels (5 %), and 60 pixels of which 40 lie outside the valid footprint (5 % valid)
    p = np.zeros((3, 4, 20, 20), np.float32)
    p[:, 0] = 1.0
    p[:, 0, 10:, 10:], p[:, 3, 10:, 10:] = 0.3, 0.7
    p[0, 0, :3, :], p[0, 1, :3, :] = 0.0, 1.0
    p[1, 0, :1, :], p[1, 1, :1, :] = 0.0, 1.0
    p[2, 0, :3, :], p[2, 1, :3, :] = 0.0, 1.0
    valid = np.ones((3, 20, 20), bool)
    valid[2, 1:3, :] = False
    assert 0.05 < SHADOW_MIN_CLOUD <= 0.15
    before = p.copy()
    n = veto_cloudless_shadows(p, valid)
    assert n == 2 * 100  # tiles 1 and 2 lose their 100 shadow calls
    c = classify(p, axis=1)
    assert (c[0, 10:, 10:] == 3).all()
    assert (c[1:, 10:, 10:] == 0).all()
    assert (c[:, :1] == 1).all()  # cloud calls never move
    np.testing.assert_allclose(p.sum(axis=1), before.sum(axis=1))
    # with the darkness rule behind it (off here): the same withdrawals, classes updated in place
    q = before.copy()
    cls = classify(q, axis=1)
    assert shadow_rules(q, None, valid, 0.0, classes=cls) == 200
    np.testing.assert_array_equal(cls, c)


def _shadow_rules_numpy(probs, ref, valid, darker, cls, min_cloud, min_ref, on_valid=None):
    """The two shadow rules written plainly in numpy, tile by tile: the reference the one-pass
    kernel behind :func:`kumo_edge.runtime.shadow_rules` must agree with."""
    n = 0
    for i in range(len(cls)):
        p0, p3, c = probs[i, 0], probs[i, 3], cls[i]
        n_valid = int(valid[i].sum())
        if n_valid and ((c == 1) | (c == 2))[valid[i]].sum() < min_cloud * n_valid:
            go = c == 3
        elif darker:
            clear = (c == 0) & valid[i]
            if clear.sum() < min_ref:
                clear = ((c == 0) | ((c == 3) & (p0 >= p3))) & valid[i]
            if clear.sum() < min_ref:
                continue
            go = (c == 3) & (ref[i] >= np.float32(darker) * np.median(ref[i][clear]))
        else:
            continue
        p0[go] += p3[go]
        p3[go] = 0.0
        c[go] = 0
        n += int(go.sum())
        if on_valid is not None:
            on_valid[i] = int((go & valid[i]).sum())
    return n


@pytest.mark.parametrize("seed", range(4))
def test_shadow_rules_in_one_pass_equal_the_plain_numpy_rules(seed: int) -> None:
    """Random tiles at every operating point: the same calls withdrawn, probabilities and classes
    bitwise the same (ties in the reference, even and odd clear counts, tiles with too few clear
    pixels, tiles without cloud)."""
    from kumo_edge.runtime import SHADOW_MIN_CLOUD, SHADOW_REFERENCE_PIXELS, classify, shadow_rules

    rng = np.random.default_rng(seed)
    for trial in range(40):
        n, t = int(rng.integers(1, 4)), int(rng.choice([16, 24, 48]))
        p = rng.random((n, 4, t, t), dtype=np.float32) ** rng.uniform(0.3, 3, (1, 4, 1, 1))
        p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
        ref = rng.random((n, t, t), dtype=np.float32)
        if trial % 2:
            ref = (np.round(ref * 20) / 20).astype(np.float32)  # ties around the median
        valid = rng.random((n, t, t)) > rng.uniform(0, 0.6)
        darker = float(rng.choice([0.0, 0.7, 1.0, 1.2]))  # 1: pixels at the median
        thr, st = float(rng.choice([0.3, 0.5, 0.7])), float(rng.choice([0.05, 0.5]))
        a, b = p.copy(), p.copy()
        ca, cb = classify(a, thr, 1, st), classify(b, thr, 1, st)
        gv, wv = np.full(n, -1, np.int64), np.zeros(n, np.int64)
        got = shadow_rules(a, ref, valid, darker, thr, st, classes=ca, withdrawn_valid=gv)
        want = _shadow_rules_numpy(
            b, ref, valid, darker, cb, SHADOW_MIN_CLOUD, SHADOW_REFERENCE_PIXELS, wv
        )
        assert got == want
        np.testing.assert_array_equal(gv, wv)  # per tile, the calls withdrawn on valid pixels
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ca, cb)


def test_the_kernels_median_is_numpys_float32_median() -> None:
    """Odd and even counts, ties, one value: bitwise numpy's median (the darkness rule compares
    against it)."""
    from kumo_edge._runtime_kernels import _median

    rng = np.random.default_rng(7)
    for m in [1, 2, 3, 4, 5, 256, 257, 1000, 4097]:
        for ties in (False, True):
            v = rng.random(m, dtype=np.float32)
            if ties:
                v = (np.round(v * 7) / 7).astype(np.float32)
            want = np.median(v)
            got = _median(v.copy())
            assert np.float32(got) == want and np.float32(got).tobytes() == want.tobytes()


def test_shadow_rules_refuse_arrays_that_do_not_match() -> None:
    """The kernel indexes without bounds checks: shapes and dtypes are checked in front of it."""
    from kumo_edge.errors import ShapeError
    from kumo_edge.runtime import classify, shadow_rules

    p = np.full((2, 4, 8, 8), 0.25, np.float32)
    cls = classify(p, axis=1)
    ok = np.ones((2, 8, 8), bool)
    with pytest.raises(ShapeError, match="reference band"):
        shadow_rules(p, np.ones((2, 4, 4), np.float32), ok, 0.7, classes=cls)
    with pytest.raises(ShapeError, match="valid"):
        shadow_rules(p, np.ones((2, 8, 8), np.float32), ok[:1], 0.7, classes=cls)
    with pytest.raises(ShapeError, match="float32"):
        shadow_rules(p.astype(np.float64), None, ok, 0.0)
    with pytest.raises(ShapeError, match="C-contiguous"):
        shadow_rules(p.transpose(0, 1, 3, 2), None, ok, 0.0)


def test_input_flags_read_the_inputs_own_swir() -> None:
    """:func:`input_flags` on a six-band input for four-band models: a bright white pixel
    bright in the SWIR is cloud, a snow pixel is snow-like (and spared where asked), dark
    vegetation is neither; a SWIR band without data (zeros) tells nothing; no tests where the
    models have SWIR of their own or the input has none."""
    from kumo_edge.runtime import (
        INPUT_CLOUD,
        INPUT_SNOWY,
        SPARE,
        input_flags,
        input_test_matrix,
    )

    six, rgbn = sensor_profile("rgbn-swir").bands, sensor_profile("rgbn").bands
    cloud = [0.60, 0.60, 0.60, 0.62, 0.50, 0.40]
    snow = [0.85, 0.85, 0.83, 0.78, 0.06, 0.04]
    veg = [0.04, 0.08, 0.05, 0.35, 0.18, 0.09]
    x = np.array([cloud, snow, veg], np.float32).T[:, None, :]  # (6, 1, 3)
    tm = input_test_matrix(six, rgbn)
    assert tm is not None
    f = input_flags(x, six, True, tm)[0]
    assert f.tolist() == [INPUT_CLOUD, INPUT_SNOWY | SPARE, 0]
    assert input_flags(x, six, False, tm)[0].tolist() == [INPUT_CLOUD, INPUT_SNOWY, 0]
    dead = x.copy()
    dead[4:] = 0.0  # SWIR without data
    assert input_flags(dead, six, False, tm)[0].tolist() == [0, 0, 0]
    assert input_test_matrix(six, six) is None  # the models test their own SWIR
    assert input_test_matrix(rgbn, rgbn) is None  # nothing to read
    assert input_flags(x[:4], rgbn, True, None) is None


def test_the_inputs_pixel_trees_clear_what_they_are_sure_of() -> None:
    """With the shipped input trees, :func:`input_flags` marks ``INPUT_CLEAR`` exactly where
    they give P(cloud) < ``INPUT_CLEAR_P`` (read on blocks of ``INPUT_TREES_BLOCK`` pixels
    along each line) and SWIR-1 has data: snow under forest (bright in
    the visible, dark in SWIR-1: what the four-band detector called cloud on a real Landsat-8
    patch) is clear, a water cloud bright in the SWIR is not, and a SWIR band without data
    (zeros) tells nothing."""
    from kumo_edge.runtime import (
        INPUT_CLEAR,
        INPUT_CLEAR_P,
        INPUT_TEST_BANDS,
        INPUT_TREES_BLOCK,
        input_flags,
        input_test_matrix,
        input_trees,
    )

    op = input_trees()
    assert op is not None and op.pixels and op.bands == INPUT_TEST_BANDS
    six, rgbn = sensor_profile("rgbn-swir").bands, sensor_profile("rgbn").bands
    forest_snow = [0.32, 0.29, 0.31, 0.35, 0.07, 0.06]
    cloud = [0.60, 0.60, 0.60, 0.62, 0.50, 0.40]
    x = np.array([forest_snow, cloud], np.float32).T[:, None, :].repeat(INPUT_TREES_BLOCK, 2)
    tm = input_test_matrix(six, rgbn)
    f = input_flags(x, six, False, tm, op)[0]
    assert (f & INPUT_CLEAR).tolist() == [INPUT_CLEAR] * INPUT_TREES_BLOCK + [0] * INPUT_TREES_BLOCK
    assert not (input_flags(x, six, False, tm)[0] & INPUT_CLEAR).any()  # no trees
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 0.9, (6, 40, 50)).astype(np.float32)
    many[4:, :5] = 0.0  # SWIR without data in a few rows
    # the trees read the means of blocks of INPUT_TREES_BLOCK pixels along each line
    canon = np.einsum("kc,chw->khw", tm, many)
    b = INPUT_TREES_BLOCK
    padded = np.concatenate([canon, np.repeat(canon[:, :, -1:], -50 % b, axis=2)], axis=2)
    blocks = padded.reshape(5, 40, -1, b).mean(3)
    p = np.repeat(op.predict_pixels(blocks), b, axis=1)[:, :50]
    want = (p < INPUT_CLEAR_P) & (many[4] > 0)
    assert 0 < want.sum() < want.size
    got = (input_flags(many, six, False, tm, op) & INPUT_CLEAR) > 0
    np.testing.assert_array_equal(got, want)


def test_snow_too_dark_to_be_cloud() -> None:
    """:func:`dim_snow`: snow in the shade of trees (the spectrum of the L8 Biome forest the
    rgbn mask called cloud) is found; bright snow, an ice cloud, haze over water (not snow-like
    in the NIR), vegetation and a SWIR band without data are not, nor the same forest snow made
    bright; each threshold is the runtime's. :func:`input_flags` marks ``INPUT_DIM_SNOW``
    exactly there on the input's test bands; without a NIR or SWIR band there is no test.
    :func:`clear_mask_calls` clears every cloud call on it, however sure."""
    from kumo_edge.runtime import (
        BRIGHT_REFLECTANCE,
        INPUT_DIM_SNOW,
        clear_mask_calls,
        dim_snow,
        input_flags,
        input_test_matrix,
    )

    six, rgbn = sensor_profile("rgbn-swir").bands, sensor_profile("rgbn").bands
    shade_snow = [0.28, 0.25, 0.26, 0.31, 0.078, 0.063]
    rows = [
        shade_snow,
        [0.85, 0.85, 0.83, 0.78, 0.06, 0.04],  # bright snow
        [0.95, 0.89, 0.92, 0.93, 0.14, 0.17],  # ice cloud
        [0.16, 0.17, 0.15, 0.09, 0.02, 0.01],  # haze over water
        [0.04, 0.08, 0.05, 0.35, 0.18, 0.09],  # vegetation
        shade_snow[:4] + [0.0, 0.0],  # SWIR without data
        [v * 1.2 for v in shade_snow],  # the same snow, bright
    ]
    x = np.array(rows, np.float32).T[:, None, :]
    assert np.mean(x[:3, 0, 6]) > BRIGHT_REFLECTANCE > np.mean(x[:3, 0, 0])
    assert dim_snow(x, six)[0].tolist() == [True] + [False] * 6
    assert dim_snow(x[:4], rgbn) is None
    f = input_flags(x, six, False, input_test_matrix(six, rgbn))
    assert ((f[0] & INPUT_DIM_SNOW) > 0).tolist() == [True] + [False] * 6
    probs = np.zeros((1, 4, 1, 7), np.float32)
    probs[:, 2], probs[:, 0] = 0.99, 0.01
    clear_mask_calls(probs, None, dim_snow(x, six)[None])
    np.testing.assert_allclose(probs[0, 0, 0], [1.0] + [0.01] * 6)


def test_clearing_cloud_calls_in_one_pass_is_the_numpy_rule() -> None:
    """:func:`clear_cloud_calls` on the runtime's float32 probabilities (a numba pass) moves the
    same probability as its numpy form (float64): only where ``clear`` and P(cloud) is below
    ``unless``, to clear and shadow in their ratio, to clear where both are 0."""
    from kumo_edge.runtime import clear_cloud_calls

    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1, 1], size=(3, 40, 50)).transpose(0, 3, 1, 2).astype(np.float32)
    p = np.ascontiguousarray(p)
    p[0, 1, :5] += p[0, 0, :5] + p[0, 3, :5]  # no clear or shadow probability to share with
    p[0, 0, :5] = p[0, 3, :5] = 0
    clear = rng.random((3, 40, 50)) < 0.5
    for unless in (0.5, np.inf):
        a, b = p.copy(), p.astype(np.float64)
        clear_cloud_calls(a, clear, unless)
        clear_cloud_calls(b, clear, unless)
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
        moved = clear & (p[:, 1] + p[:, 2] < unless)
        assert moved.any() and (~moved).any()
        np.testing.assert_array_equal(a[:, 1][moved], 0.0)
        np.testing.assert_array_equal(a[:, 1][~moved], p[:, 1][~moved])
        np.testing.assert_allclose(a[0, 0, :5][moved[0, :5]], 1.0, atol=1e-6)
