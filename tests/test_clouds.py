from __future__ import annotations

import numpy as np
import pytest

from kumo_edge.bands import BandSet
from kumo_edge.clouds import CloudField, CloudParams, synthesize
from kumo_edge.config import sensor_profile
from kumo_edge.errors import BandCountError, ConfigError, DataTypeError, InvalidDataError

HSI = sensor_profile("satellogic-hsi").bands


def _clear(rows: int = 200, cols: int = 240, bands: BandSet = HSI) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    spatial = 0.12 + 0.05 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    spectral = np.linspace(0.6, 1.8, len(bands))[:, None, None]
    return (spatial[None] * spectral).astype(np.float32)


def test_deterministic_and_seeded() -> None:
    clear = _clear()
    a = synthesize(clear, HSI, seed=3)
    b = synthesize(clear, HSI, seed=3)
    c = synthesize(clear, HSI, seed=4)
    np.testing.assert_array_equal(a.cloudy, b.cloudy)
    assert np.abs(a.tau550 - c.tau550).max() > 0.1


@pytest.mark.parametrize("cover", [0.1, 0.4, 0.8])
def test_cover_is_controlled(cover: float) -> None:
    r = synthesize(
        _clear(300, 300), HSI, CloudParams(cover=cover, cloud_tau=1e-6, shadows=False), seed=1
    )
    assert abs(r.cloud.mean() - cover) < 0.08


def test_clear_sky_changes_nothing() -> None:
    clear = _clear()
    r = synthesize(clear, HSI, CloudParams(cover=0.0), seed=1)
    np.testing.assert_array_equal(r.cloudy, clear)
    assert not r.cloud.any() and not r.shadow.any()


def test_thin_cloud_is_more_transparent_in_the_infrared() -> None:
    clear = _clear()
    r = synthesize(clear, HSI, CloudParams(cover=0.6, thickness=0.3, shadows=False), seed=2)
    thin = r.cloud & ~r.thick
    assert thin.mean() > 0.2
    change = np.abs(r.cloudy - clear)[:, thin].mean(axis=1)
    assert change[-1] < 0.7 * change[0]  # 850 nm vs 450 nm
    assert np.all(np.diff(change) < 1e-4)  # monotonic with wavelength (clear is smooth here)
    # with a flat spectral exponent the advantage disappears
    flat = synthesize(
        clear, HSI, CloudParams(cover=0.6, thickness=0.3, shadows=False, angstrom=0.0), seed=2
    )
    t_flat = np.abs(flat.cloudy - clear)[:, thin]
    assert abs(t_flat[-1].mean() - change[-1]) > 0.005


def test_thick_cloud_hides_the_surface() -> None:
    clear = _clear()
    r = synthesize(clear, HSI, CloudParams(cover=0.5, thickness=4.0, shadows=False), seed=5)
    assert r.thick.mean() > 0.1
    # where thick, the cloudy signal barely depends on the surface: close to the cloud albedo
    assert r.cloudy[:, r.thick].mean() > 0.6


def test_shadow_falls_away_from_the_sun() -> None:
    p = CloudParams(
        cover=0.3,
        thickness=2.0,
        sun_azimuth_deg=90.0,
        sun_elevation_deg=45.0,
        cloud_height_m=600.0,
        gsd_m=30.0,
    )
    dr, dc = p.shadow_offset_px
    assert (dr, dc) == (0, 20)  # sun in the east: the cloud that shades a pixel lies 20 px east
    clear = _clear(200, 300)
    r = synthesize(clear, HSI, p, seed=8)
    f = CloudField(p, 200, 300, 8)
    tau_east = f.tau550(0, 200, dc, 300)
    assert r.shadow.any()
    assert (tau_east[r.shadow] > 0.05).all()
    dark = r.cloudy[:, r.shadow].mean()
    assert dark < clear[:, r.shadow].mean() * 0.8
    # under a spectrally grey cloud (angstrom 0), shadows keep more light in the blue (diffuse
    # sky light is bluer) than in the NIR
    grey = synthesize(clear, HSI, CloudParams(**{**p.to_dict(), "angstrom": 0.0}), seed=8)
    ratio = (grey.cloudy / np.maximum(clear, 1e-6))[:, grey.shadow].mean(axis=1)
    assert ratio[0] > ratio[-1] + 0.02


def test_strip_by_strip_equals_whole() -> None:
    clear = _clear(230, 180)
    p = CloudParams(cover=0.5)
    whole = synthesize(clear, HSI, p, seed=11)
    f = CloudField(p, 230, 180, 11)
    parts = [f.apply(clear[:, r : r + 70], HSI, row0=r) for r in range(0, 230, 70)]
    np.testing.assert_array_equal(np.concatenate([x.cloudy for x in parts], axis=1), whole.cloudy)
    np.testing.assert_array_equal(np.concatenate([x.shadow for x in parts], axis=0), whole.shadow)


def test_valid_mask_and_class_mask() -> None:
    clear = _clear()
    valid = np.ones(clear.shape[1:], bool)
    valid[:, :30] = False
    clear[:, ~valid] = 0
    r = synthesize(clear, HSI, CloudParams(cover=0.9), seed=1, valid=valid)
    assert (r.cloudy[:, ~valid] == 0).all() and not r.cloud[~valid].any()
    m = r.class_mask(valid)
    assert (m[~valid] == 0).all()
    assert set(np.unique(m[valid])) <= {1, 2, 3, 4}
    assert ((m == 3) == r.thick).all()


def test_any_band_set() -> None:
    for name in ("rgb", "rgbn", "enmap"):
        b = sensor_profile(name).bands
        r = synthesize(_clear(64, 64, b), b, seed=0)
        assert r.cloudy.shape == (len(b), 64, 64) and r.cloudy.dtype == np.float32
        assert 0 <= r.cloudy.min() and r.cloudy.max() <= 1


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="cover"):
        CloudParams(cover=1.5)
    with pytest.raises(BandCountError):
        synthesize(_clear(), sensor_profile("rgb").bands)
    with pytest.raises(DataTypeError):
        synthesize(_clear().astype(np.float64), HSI)
    bad = _clear()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        synthesize(bad, HSI)
