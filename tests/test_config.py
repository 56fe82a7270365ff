from __future__ import annotations

from pathlib import Path

import pytest

from kumo_edge.config import load_profiles, profile_names, sensor_profile
from kumo_edge.errors import ConfigError


def test_required_profiles_ship() -> None:
    names = set(profile_names())
    assert {
        "satellogic-hsi",
        "enmap",
        "prisma",
        "hyperscout2",
        "hypso1",
        "sentinel2-msi",
        "landsat8-oli",
        "rgbn",
        "rgb",
    } <= names


def test_reference_profile_figures() -> None:
    p = sensor_profile("satellogic-hsi")
    assert len(p.bands) == 32
    assert p.bands.centers[0] == 450 and p.bands.centers[-1] == 850
    assert (p.width_px, p.lines_per_s, p.bit_depth) == (4000, 284.0, 16)
    assert p.samples_per_s == pytest.approx(36.35e6, rel=1e-3)


@pytest.mark.parametrize(
    "name,count,lo,hi",
    [
        ("enmap", 224, 420, 2450),
        ("prisma", 237, 400, 2505),
        ("hypso1", 120, 400, 800),
        ("hyperscout2", 45, 450, 1000),
    ],
)
def test_hyperspectral_profiles(name: str, count: int, lo: float, hi: float) -> None:
    b = sensor_profile(name).bands
    assert len(b) == count
    assert b.centers.min() == lo and b.centers.max() == hi


def test_unknown_profile_lists_choices() -> None:
    with pytest.raises(ConfigError, match="satellogic-hsi"):
        sensor_profile("nope")


def test_bad_profile_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(
        "[x]\nwidth_px = 10\nlines_per_s = 1\nbit_depth = 12\ngsd_m = 10\nwavelength_nm = [500]\n"
    )
    with pytest.raises(ConfigError, match="fwhm_nm"):
        load_profiles(p)
    p.write_text(
        "[x]\nwidth_px = -1\nlines_per_s = 1\nbit_depth = 12\ngsd_m = 10\nwavelength_nm = [500]\nfwhm_nm = [10]\n"
    )
    with pytest.raises(ConfigError, match="width_px"):
        load_profiles(p)
    p.write_text("[x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profiles(p)
