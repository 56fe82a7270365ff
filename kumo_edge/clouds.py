"""Synthetic thin-to-thick clouds and their shadows, for any band set.

The model (all parameters in :class:`CloudParams`):

1. **Optical thickness field.** A fractal sum (fBm) of 2-D Perlin noise, ``n(row, col)``,
   ``octaves`` octaves, largest features about ``feature_px`` pixels. The threshold ``n0`` is the
   ``1 - cover`` quantile of ``n`` (estimated on a coarse grid over the whole scene), so about a
   fraction ``cover`` of the scene is under cloud. The optical thickness at 550 nm is
   ``tau550 = thickness * clip((n - n0) / (n99 - n0), 0, 1) ** gamma`` (``n99``: the 99.9 %
   quantile): zero outside clouds, thin at their edges, ``thickness`` at their cores.
2. **Spectral optical depth.** ``tau(lambda) = tau550 * (lambda / 550 nm) ** -angstrom``: the cloud
   grows more transparent towards the infrared (``angstrom`` ~1-2 for haze and thin cloud of
   small particles, ~0 for thick water cloud of large droplets).
3. **Cloud over the surface** (Beer-Lambert on the sun-surface-sensor path, air mass
   ``m = 1/cos(sun zenith) + 1/cos(view zenith)``, then the cloud's own reflectance):
   ``t = exp(-m * tau(lambda))``; ``observed = surface * t + albedo(lambda) * (1 - t)`` with
   ``albedo(lambda) = cloud_albedo * whiteness(lambda)``: flat in the VNIR, lower in the water/ice
   absorption bands near 1.45, 1.65, 1.9 and 2.2 um.
4. **Shadow.** The cloud at height ``cloud_height_m`` shades the ground ``H / tan(elevation)``
   metres from its footprint, away from the sun (azimuth clockwise from north; rows run south,
   columns east). Ground illumination there keeps the diffuse sky light and loses direct sun:
   ``surface *= f_d + (1 - f_d) * exp(-tau_sun(lambda) / cos(sun zenith))``, with
   ``f_d(lambda) = diffuse_fraction * (lambda / 550) ** -sky_exponent`` (sky light is bluer;
   ``sky_exponent`` 2 by default).
   The surface is shaded first, then the cloud above the pixel is composited.

Band values are evaluated at band centres. Truth layers: ``tau550`` (float32), ``cloud`` (bool,
``tau550 >= cloud_tau``), ``thick`` (bool, two-way transmittance at 550 nm below
``thick_transmittance``: the surface contributes too little to recover), and ``shadow`` (bool,
direct+diffuse illumination at 550 nm below ``shadow_threshold`` and no cloud on the pixel).

Everything is seeded and deterministic, and evaluated by window in global coordinates, so a
scene can be synthesised strip by strip (:class:`CloudField`) with the same result as whole.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from . import _noise_kernels as _k
from .bands import BandSet
from .errors import BandCountError, ConfigError, DataTypeError, ShapeError

_WHITENESS_NM = np.array(
    [300, 1000, 1250, 1380, 1450, 1550, 1650, 1800, 1900, 2050, 2200, 2500], float
)
_WHITENESS = np.array([1.0, 1.0, 0.95, 0.8, 0.7, 0.8, 0.75, 0.65, 0.5, 0.6, 0.55, 0.45], float)


@dataclass(frozen=True)
class CloudParams:
    """Parameters of the cloud model (see the module docstring)."""

    cover: float = 0.4
    thickness: float = 1.5
    gamma: float = 1.5
    feature_px: float = 96.0
    octaves: int = 6
    persistence: float = 0.5
    angstrom: float = 1.0
    cloud_albedo: float = 0.85
    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = 50.0
    view_zenith_deg: float = 0.0
    cloud_height_m: float = 2000.0
    gsd_m: float = 30.0
    diffuse_fraction: float = 0.15
    sky_exponent: float = 2.0
    cloud_tau: float = 0.02
    thick_transmittance: float = 0.2
    shadow_threshold: float = 0.9
    shadows: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("cover", 0.0 <= self.cover <= 1.0, "in [0, 1]"),
            ("thickness", self.thickness >= 0, ">= 0"),
            ("gamma", self.gamma > 0, "> 0"),
            ("feature_px", self.feature_px >= 1, ">= 1"),
            ("octaves", 1 <= self.octaves <= 12, "in 1..12"),
            ("persistence", 0 < self.persistence < 1, "in (0, 1)"),
            ("angstrom", 0 <= self.angstrom <= 4, "in [0, 4]"),
            ("cloud_albedo", 0 < self.cloud_albedo <= 1, "in (0, 1]"),
            ("sun_elevation_deg", 0 < self.sun_elevation_deg <= 90, "in (0, 90]"),
            ("view_zenith_deg", 0 <= self.view_zenith_deg < 80, "in [0, 80)"),
            ("cloud_height_m", self.cloud_height_m >= 0, ">= 0"),
            ("gsd_m", self.gsd_m > 0, "> 0"),
            ("diffuse_fraction", 0 <= self.diffuse_fraction < 1, "in [0, 1)"),
            ("sky_exponent", 0 <= self.sky_exponent <= 6, "in [0, 6]"),
            ("cloud_tau", self.cloud_tau > 0, "> 0"),
            ("thick_transmittance", 0 < self.thick_transmittance < 1, "in (0, 1)"),
            ("shadow_threshold", 0 < self.shadow_threshold < 1, "in (0, 1)"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(
                    f"cloud parameter `{name}` must be {rule}, got {getattr(self, name)}"
                )

    @property
    def air_mass(self) -> float:
        """Two-way air mass ``1/cos(sun zenith) + 1/cos(view zenith)``."""
        return 1.0 / math.sin(math.radians(self.sun_elevation_deg)) + 1.0 / math.cos(
            math.radians(self.view_zenith_deg)
        )

    @property
    def shadow_offset_px(self) -> tuple[int, int]:
        """``(drow, dcol)`` from a shaded pixel to the cloud that shades it (towards the sun)."""
        length = self.cloud_height_m / math.tan(math.radians(self.sun_elevation_deg)) / self.gsd_m
        az = math.radians(self.sun_azimuth_deg)
        return int(round(-math.cos(az) * length)), int(round(math.sin(az) * length))

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass
class CloudResult:
    """A cloudy cube and its truth layers.

    Attributes:
        cloudy: ``(bands, rows, cols)`` float32 reflectance in [0, 1].
        tau550: ``(rows, cols)`` float32 cloud optical thickness at 550 nm.
        cloud: ``(rows, cols)`` bool, cloud on the pixel.
        thick: ``(rows, cols)`` bool, cloud too thick to see through (subset of ``cloud``).
        shadow: ``(rows, cols)`` bool, cloud shadow on a cloud-free pixel.
    """

    cloudy: npt.NDArray[np.float32]
    tau550: npt.NDArray[np.float32]
    cloud: npt.NDArray[np.bool_]
    thick: npt.NDArray[np.bool_]
    shadow: npt.NDArray[np.bool_]
    #: ``t550`` two-way transmittance at 550 nm, ``illum550`` ground illumination at 550 nm
    #: (1 outside shadows), both ``(rows, cols)`` float32: the parameters a physics remover
    #: estimates.
    extra: dict = field(default_factory=dict)

    def class_mask(self, valid: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.uint8]:
        """uint8 classes: 0 no data, 1 clear, 2 thin cloud, 3 thick cloud, 4 cloud shadow."""
        out = np.ones(self.tau550.shape, dtype=np.uint8)
        out[self.shadow] = 4
        out[self.cloud] = 2
        out[self.thick] = 3
        if valid is not None:
            out[~valid] = 0
        return out


class CloudField:
    """A seeded cloud field over a ``rows x cols`` scene, evaluated window by window.

    Args:
        params: Model parameters.
        rows, cols: Scene size (sets the cover threshold; windows may reach outside it).
        seed: Random seed; the same seed, size and parameters give the same clouds.
    """

    def __init__(self, params: CloudParams, rows: int, cols: int, seed: int = 0) -> None:
        if rows < 1 or cols < 1:
            raise ShapeError(f"scene must be at least 1 x 1, got {rows} x {cols}")
        self.params = params
        self.rows, self.cols = rows, cols
        rng = np.random.default_rng(seed)
        self._perm = _k.permutation(rng.integers(0, 2**63 - 1))
        self._shifts = rng.uniform(0, 256, size=(params.octaves, 2))
        step = max(1, int(math.sqrt(rows * cols / 250_000)))  # <= ~250k samples for the quantiles
        sample = self._noise(0, 0, (rows + step - 1) // step, (cols + step - 1) // step, step)
        if params.cover <= 0:
            self.n0 = np.inf
        elif params.cover >= 1:
            self.n0 = -np.inf
        else:
            self.n0 = float(np.quantile(sample, 1.0 - params.cover))
        self.n99 = float(np.quantile(sample, 0.999))
        if not self.n99 > self.n0 and np.isfinite(self.n0):
            self.n99 = self.n0 + 1e-3

    def _noise(
        self, row0: int, col0: int, rows: int, cols: int, step: int = 1
    ) -> npt.NDArray[np.float32]:
        out = np.empty((rows, cols), dtype=np.float32)
        p = self.params
        _k.fbm(
            self._perm,
            float(row0),
            float(col0),
            rows,
            cols,
            float(step),
            p.feature_px,
            p.octaves,
            p.persistence,
            2.0,
            self._shifts,
            out,
        )
        return out

    def tau550(
        self, row0: int, rows: int, col0: int = 0, cols: int | None = None
    ) -> npt.NDArray[np.float32]:
        """``(rows, cols)`` optical thickness at 550 nm of a window (global coordinates)."""
        cols = self.cols - col0 if cols is None else cols
        p = self.params
        if self.n0 == np.inf or p.thickness == 0:
            return np.zeros((rows, cols), dtype=np.float32)
        n = self._noise(row0, col0, rows, cols)
        if self.n0 == -np.inf:
            u = np.clip((n - n.min()) / max(float(self.n99 - n.min()), 1e-6), 0.05, 1.0)
        else:
            u = np.clip((n - self.n0) / (self.n99 - self.n0), 0.0, 1.0)
        return (p.thickness * u**p.gamma).astype(np.float32)

    def apply(
        self,
        clear: npt.NDArray[np.float32],
        bands: BandSet,
        row0: int = 0,
        col0: int = 0,
        valid: npt.NDArray[np.bool_] | None = None,
    ) -> CloudResult:
        """Put this field's clouds and shadows over a window of clear reflectance.

        Args:
            clear: ``(bands, rows, cols)`` float32 reflectance in [0, 1].
            bands: Band set of ``clear``.
            row0, col0: Position of the window in the scene.
            valid: Optional ``(rows, cols)`` bool; invalid pixels are left unchanged (0).

        Returns:
            The cloudy window and its truth layers.
        """
        _check_cube(clear, bands)
        p = self.params
        _, rows, cols = clear.shape
        lam = bands.centers.astype(np.float32)[:, None, None]
        spectral = (lam / 550.0) ** (-p.angstrom)
        tau = self.tau550(row0, rows, col0, cols)
        out = clear.copy()
        shadow = np.zeros((rows, cols), dtype=bool)
        illum550 = np.ones((rows, cols), dtype=np.float32)
        if p.shadows and p.cloud_height_m > 0:
            dr, dc = p.shadow_offset_px
            tau_sun = self.tau550(row0 + dr, rows, col0 + dc, cols)
            mu_s = math.sin(math.radians(p.sun_elevation_deg))
            fd = np.clip(p.diffuse_fraction * (lam / 550.0) ** -p.sky_exponent, 0.0, 0.95)
            illum = fd + (1.0 - fd) * np.exp(-tau_sun[None] * spectral / mu_s)
            out *= illum.astype(np.float32)
            fd550 = min(p.diffuse_fraction, 0.95)
            illum550 = fd550 + (1.0 - fd550) * np.exp(-tau_sun / mu_s)
            shadow = illum550 < p.shadow_threshold
        t = np.exp(-p.air_mass * tau[None] * spectral).astype(np.float32)
        t550 = np.exp(-p.air_mass * tau).astype(np.float32)
        albedo = (p.cloud_albedo * np.interp(bands.centers, _WHITENESS_NM, _WHITENESS)).astype(
            np.float32
        )[:, None, None]
        out = out * t + albedo * (1.0 - t)
        cloud = tau >= p.cloud_tau
        thick = np.exp(-p.air_mass * tau) < p.thick_transmittance
        shadow &= ~cloud
        if valid is not None:
            out[:, ~valid] = clear[:, ~valid]
            for m in (cloud, thick, shadow):
                m &= valid
        np.clip(out, 0.0, 1.0, out=out)
        extra = {"t550": t550, "illum550": np.asarray(illum550, np.float32)}
        return CloudResult(
            out.astype(np.float32, copy=False), tau, cloud, thick & cloud, shadow, extra
        )


def _check_cube(clear: npt.NDArray, bands: BandSet) -> None:
    if not isinstance(clear, np.ndarray) or clear.ndim != 3:
        raise ShapeError(
            f"`clear` must be a (bands, rows, cols) array, got {getattr(clear, 'shape', type(clear).__name__)}"
        )
    if clear.dtype != np.float32:
        raise DataTypeError(f"`clear` must be float32 reflectance, got {clear.dtype}")
    if clear.shape[0] != len(bands):
        raise BandCountError(
            f"`clear` has {clear.shape[0]} bands but `bands` describes {len(bands)}"
        )


def synthesize(
    clear: npt.NDArray[np.float32],
    bands: BandSet,
    params: CloudParams | None = None,
    seed: int = 0,
    valid: npt.NDArray[np.bool_] | None = None,
) -> CloudResult:
    """Clouds and shadows over a whole clear cube.

    Args:
        clear: ``(bands, rows, cols)`` float32 reflectance in [0, 1] (checked for NaN).
        bands: Its band set.
        params: Cloud model parameters (defaults: :class:`CloudParams`).
        seed: Random seed.
        valid: Optional ``(rows, cols)`` bool valid-data mask.
    """
    _check_cube(clear, bands)
    if not np.isfinite(clear).all():
        from .errors import InvalidDataError

        raise InvalidDataError(
            "`clear` contains NaN or infinite values; mask them as no-data first"
        )
    params = params or CloudParams()
    f = CloudField(params, clear.shape[1], clear.shape[2], seed)
    return f.apply(clear, bands, valid=valid)
