"""Configuration: sensor profiles, loaded from TOML into frozen dataclasses.

Profiles ship in ``kumo_edge/data/sensors.toml``; users may load their own file with
:func:`load_profiles`. Every profile validates itself on construction.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .bands import BandSet
from .errors import ConfigError

#: Tiles per inference call in the stream. Memory grows with it while speed does not: 32 bands x
#: 4000 px, worst case, 10k lines on the 2-core development CPU: batch 1/2/4/8 -> real-time factor
#: 2.87/3.00/3.01/2.52, peak RSS 449/484/600/788 MB (bench/results/stream_batches_*.json).
DEFAULT_BATCH = 2


@dataclass(frozen=True)
class SensorProfile:
    """A pushbroom sensor: its band set, swath and line rate.

    Args:
        name: Profile key, e.g. ``"satellogic-hsi"``.
        description: One line for humans.
        bands: The sensor's band set.
        width_px: Cross-track pixels per line (> 0).
        lines_per_s: Lines per second (ground speed / GSD, > 0).
        bit_depth: Bits per stored sample (1..32).
        gsd_m: Ground sampling distance in metres (> 0).
    """

    name: str
    description: str
    bands: BandSet
    width_px: int
    lines_per_s: float
    bit_depth: int
    gsd_m: float

    def __post_init__(self) -> None:
        if self.width_px <= 0:
            raise ConfigError(f"profile {self.name!r}: `width_px` must be > 0, got {self.width_px}")
        if self.lines_per_s <= 0:
            raise ConfigError(
                f"profile {self.name!r}: `lines_per_s` must be > 0, got {self.lines_per_s}"
            )
        if not 1 <= self.bit_depth <= 32:
            raise ConfigError(
                f"profile {self.name!r}: `bit_depth` must be 1..32, got {self.bit_depth}"
            )
        if self.gsd_m <= 0:
            raise ConfigError(f"profile {self.name!r}: `gsd_m` must be > 0, got {self.gsd_m}")

    @property
    def samples_per_s(self) -> float:
        """Samples per second (bands x width x line rate)."""
        return len(self.bands) * self.width_px * self.lines_per_s


def _profile_from_table(name: str, t: dict[str, Any]) -> SensorProfile:
    try:
        if "segment" in t:
            bands: BandSet | None = None
            for seg in t["segment"]:
                part = BandSet.uniform(
                    seg["start_nm"], seg["stop_nm"], int(seg["count"]), seg.get("fwhm_nm")
                )
                bands = part if bands is None else bands.concat(part)
            assert bands is not None
        else:
            bands = BandSet(
                tuple(t["wavelength_nm"]), tuple(t["fwhm_nm"]), tuple(t.get("names", ()))
            )
        return SensorProfile(
            name=name,
            description=str(t.get("description", "")),
            bands=bands,
            width_px=int(t["width_px"]),
            lines_per_s=float(t["lines_per_s"]),
            bit_depth=int(t["bit_depth"]),
            gsd_m=float(t["gsd_m"]),
        )
    except KeyError as exc:
        raise ConfigError(f"profile {name!r} lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"profile {name!r} is invalid: {exc}") from None


def load_profiles(path: str | Path | None = None) -> dict[str, SensorProfile]:
    """Read sensor profiles from a TOML file (default: the shipped ``sensors.toml``)."""
    if path is None:
        text = (
            resources.files("kumo_edge").joinpath("data/sensors.toml").read_text(encoding="utf-8")
        )
        source = "the shipped sensors.toml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read sensor profiles {path}: {exc.strerror}") from None
        source = str(path)
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    return {name: _profile_from_table(name, t) for name, t in tables.items()}


@cache
def _shipped() -> dict[str, SensorProfile]:
    return load_profiles()


def sensor_profile(name: str) -> SensorProfile:
    """A shipped sensor profile by name, e.g. ``sensor_profile("satellogic-hsi")``."""
    profiles = _shipped()
    if name not in profiles:
        raise ConfigError(
            f"unknown sensor profile {name!r}; choose one of: {', '.join(sorted(profiles))}"
        )
    return profiles[name]


def profile_names() -> list[str]:
    """Names of the shipped sensor profiles."""
    return sorted(_shipped())
