from __future__ import annotations

import numpy as np
import pytest

from kumo_edge.bands import BandSet, resample, resampling_matrix
from kumo_edge.config import sensor_profile
from kumo_edge.errors import BandCountError, BandMappingError


def test_bandset_validates() -> None:
    with pytest.raises(BandCountError, match="fwhm_nm"):
        BandSet((500.0, 600.0), (10.0,))
    with pytest.raises(ValueError, match="positive"):
        BandSet((500.0, -1.0), (10.0, 10.0))
    with pytest.raises(BandCountError):
        BandSet((), ())


def test_uniform_spacing() -> None:
    b = BandSet.uniform(450, 850, 32)
    assert len(b) == 32
    assert b.centers[0] == 450 and b.centers[-1] == 850
    assert b.fwhm[0] == pytest.approx(400 / 31, rel=1e-3)


def test_hyperspectral_to_32_bands_integrates() -> None:
    aviris = BandSet.uniform(400, 2500, 198, 10.0)
    target = sensor_profile("satellogic-hsi").bands
    m = resampling_matrix(aviris, target)
    assert m.shape == (32, 198)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-5)
    # integration, not selection: every row mixes several source bands
    assert (np.count_nonzero(m, axis=1) >= 3).all()
    # a linear spectrum is reproduced at the target centres (symmetric Gaussian weights)
    spectrum = (0.1 + 1e-4 * (aviris.centers - 400)).astype(np.float32)
    out = resample(spectrum[:, None, None].repeat(2, 1).repeat(3, 2), m)
    np.testing.assert_allclose(out[:, 0, 0], 0.1 + 1e-4 * (target.centers - 400), atol=2e-4)


def test_resampling_skips_gap_in_source() -> None:
    # water-absorption gap 1350-1450 nm: no target weight leaks across it from far bands
    src = BandSet.uniform(400, 1340, 95, 10.0).concat(BandSet.uniform(1460, 2500, 105, 10.0))
    tgt = BandSet((1300.0,), (40.0,))
    m = resampling_matrix(src, tgt)
    assert m[0, src.centers > 1400].sum() == 0


def test_multispectral_maps_nearest_band_l8_to_s2_rgbn() -> None:
    l8 = sensor_profile("landsat8-oli").bands
    rgbn = sensor_profile("rgbn").bands
    m = resampling_matrix(l8, rgbn)
    chosen = [l8.names[i] for i in m.argmax(1)]
    assert chosen == ["B2", "B3", "B4", "B5"]
    assert set(np.unique(m)) == {0.0, 1.0}
    cube = np.arange(8 * 2 * 2, dtype=np.float32).reshape(8, 2, 2)
    np.testing.assert_array_equal(resample(cube, m), cube[[1, 2, 3, 4]])


def test_missing_nir_is_refused() -> None:
    with pytest.raises(BandMappingError, match="nir at 842 nm"):
        resampling_matrix(sensor_profile("rgb").bands, sensor_profile("rgbn").bands)


def test_broad_band_cannot_fake_hyperspectral() -> None:
    with pytest.raises(BandMappingError, match="wider"):
        resampling_matrix(
            sensor_profile("sentinel2-msi").bands, sensor_profile("satellogic-hsi").bands
        )


def test_tolerance_is_a_parameter() -> None:
    src = BandSet((500.0,), (40.0,))
    tgt = BandSet((540.0,), (40.0,))
    with pytest.raises(BandMappingError, match="within 30 nm"):
        resampling_matrix(src, tgt)
    assert resampling_matrix(src, tgt, tolerance_nm=45)[0, 0] == 1.0


def test_resample_rejects_band_count_mismatch() -> None:
    m = resampling_matrix(sensor_profile("landsat8-oli").bands, sensor_profile("rgb").bands)
    with pytest.raises(BandCountError, match="has 4 bands"):
        resample(np.zeros((4, 2, 2), np.float32), m)


def test_hyperspectral_to_rgb() -> None:
    hs = BandSet.uniform(400, 1000, 61, 10.0)
    m = resampling_matrix(hs, sensor_profile("rgb").bands)
    flat = np.full((61, 3, 3), 0.3, np.float32)
    np.testing.assert_allclose(resample(flat, m), 0.3, rtol=1e-5)


def test_sparse_source_matching_a_centre_is_not_integrated() -> None:
    # Landsat-7 VNIR -> rgbn -> Landsat-7 VNIR: every band has a counterpart; no band is mixed
    l7 = sensor_profile("landsat7-etm").bands.subset([0, 1, 2, 3])
    rgbn = sensor_profile("rgbn").bands
    for a, b in ((l7, rgbn), (rgbn, l7)):
        m = resampling_matrix(a, b)
        assert set(np.unique(m)) == {0.0, 1.0}


@pytest.mark.parametrize("shape", [(37, 53), (5000,), (0, 7)])
def test_resample_reads_only_the_weighted_bands_and_sums_them_exactly(shape) -> None:  # noqa: ANN001
    # any real-valued matrix, zero rows and negative weights included, over any pixel layout
    # (one chunk, several, none): the float64 product to float32 rounding
    rng = np.random.default_rng(3)
    m = rng.normal(size=(6, 40)).astype(np.float32)
    m[rng.random(m.shape) < 0.8] = 0.0
    m[2] = 0.0
    cube = rng.random((40, *shape), dtype=np.float32)
    out = resample(cube, m)
    ref = np.tensordot(m.astype(np.float64), cube.astype(np.float64), axes=1)
    assert out.dtype == np.float32 and out.shape == (6, *shape)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    assert not out[2].any()
    # a band no weight reads may hold anything: it is never read
    unread = np.flatnonzero(~m.any(0))
    poisoned = cube.copy()
    poisoned[unread] = np.nan
    np.testing.assert_array_equal(resample(poisoned, m), out)
