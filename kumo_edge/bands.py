"""Band sets and spectral resampling.

A :class:`BandSet` is an ordered list of spectral bands, each a centre wavelength and a full
width at half maximum (FWHM), both in nanometres. Spectral resampling turns a cube in one band
set into a cube in another with a fixed linear map (a ``(n_target, n_source)`` matrix), so it is
a single matrix product per pixel and streams strip by strip.

How each target band is built (see :func:`resampling_matrix`):

* **Integration** (dense sources, e.g. AVIRIS 198 bands -> 32 bands, or -> RGB): the target
  band's spectral response is a Gaussian with the target FWHM; the target value is the
  Gaussian-weighted mean of the source bands, each weighted by the spectral interval it
  samples (so gaps such as removed water-absorption bands are handled). It is used when the
  source samples the target response densely: source centres lie strictly on each side of the
  target centre within one target FWHM, at least three lie within 1.5 FWHM, and none of those
  is wider than the target band (a sparse source band that merely sits at the target centre is
  taken as it is, not mixed with its neighbours).
* **Nearest band** (sparse sources, multispectral -> multispectral, e.g. Landsat-8 OLI ->
  Sentinel-2 MSI blue/green/red/NIR): the target takes the nearest source band, provided its
  centre lies within ``tolerance_nm`` of the target centre and it is at most
  ``max_width_ratio`` times as wide as the target band (a broad band cannot stand in for a
  narrow one). Otherwise :class:`~kumo_edge.errors.BandMappingError` names the band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import _band_kernels as _bk
from .errors import BandCountError, BandMappingError, ShapeError

#: Default tolerance (nm) between a target centre and the nearest source centre.
DEFAULT_TOLERANCE_NM = 30.0
#: A source band may be at most this many times wider (FWHM) than the target it stands in for.
DEFAULT_MAX_WIDTH_RATIO = 3.0
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class BandSet:
    """An ordered set of spectral bands.

    Args:
        centers_nm: Centre wavelength of each band in nm, all > 0.
        fwhm_nm: Full width at half maximum of each band in nm, all > 0, same length.
        names: Optional band names (e.g. ``"B2"``); empty strings when unknown.
    """

    centers_nm: tuple[float, ...]
    fwhm_nm: tuple[float, ...]
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        centers = tuple(float(c) for c in self.centers_nm)
        fwhm = tuple(float(f) for f in self.fwhm_nm)
        names = tuple(str(n) for n in self.names) if self.names else ("",) * len(centers)
        if not centers:
            raise BandCountError("a band set needs at least one band")
        if len(fwhm) != len(centers):
            raise BandCountError(
                f"`fwhm_nm` has {len(fwhm)} values but `centers_nm` has {len(centers)}; give one FWHM per band"
            )
        if len(names) != len(centers):
            raise BandCountError(f"`names` has {len(names)} values for {len(centers)} bands")
        if not all(np.isfinite(c) and c > 0 for c in centers):
            raise ValueError(f"`centers_nm` must be finite and positive, got {centers}")
        if not all(np.isfinite(f) and f > 0 for f in fwhm):
            raise ValueError(f"`fwhm_nm` must be finite and positive, got {fwhm}")
        object.__setattr__(self, "centers_nm", centers)
        object.__setattr__(self, "fwhm_nm", fwhm)
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return len(self.centers_nm)

    @property
    def centers(self) -> npt.NDArray[np.float64]:
        """Centre wavelengths in nm, shape ``(n,)``."""
        return np.asarray(self.centers_nm, dtype=np.float64)

    @property
    def fwhm(self) -> npt.NDArray[np.float64]:
        """FWHM in nm, shape ``(n,)``."""
        return np.asarray(self.fwhm_nm, dtype=np.float64)

    @classmethod
    def uniform(
        cls, start_nm: float, stop_nm: float, count: int, fwhm_nm: float | None = None
    ) -> BandSet:
        """``count`` bands with centres evenly spaced from ``start_nm`` to ``stop_nm``.

        ``fwhm_nm`` defaults to the centre spacing (contiguous bands).
        """
        if count < 1:
            raise BandCountError(f"`count` must be >= 1, got {count}")
        centers = np.linspace(start_nm, stop_nm, count)
        if fwhm_nm is None:
            fwhm_nm = float(centers[1] - centers[0]) if count > 1 else 10.0
        return cls(tuple(np.round(centers, 3)), (float(fwhm_nm),) * count)

    def concat(self, other: BandSet) -> BandSet:
        """This band set followed by ``other``."""
        return BandSet(
            self.centers_nm + other.centers_nm,
            self.fwhm_nm + other.fwhm_nm,
            self.names + other.names,
        )

    def subset(self, indices: Sequence[int]) -> BandSet:
        """The bands at ``indices``, in that order."""
        idx = list(indices)
        return BandSet(
            tuple(self.centers_nm[i] for i in idx),
            tuple(self.fwhm_nm[i] for i in idx),
            tuple(self.names[i] for i in idx),
        )

    def describe(self) -> list[str]:
        """One human-readable line per band."""
        return [
            f"{i + 1:>3} {n or '-':<8} {c:8.1f} nm  fwhm {f:6.1f} nm"
            for i, (n, c, f) in enumerate(
                zip(self.names, self.centers_nm, self.fwhm_nm, strict=True)
            )
        ]


def _sampling_widths(
    centers: npt.NDArray[np.float64], fwhm: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Spectral interval each source band samples: half the distance to each neighbour,
    capped by its own FWHM (so a band next to a gap does not claim the gap)."""
    order = np.argsort(centers)
    c = centers[order]
    f = fwhm[order]
    left = np.empty_like(c)
    right = np.empty_like(c)
    left[1:] = np.diff(c) / 2
    right[:-1] = np.diff(c) / 2
    left[0] = f[0] / 2
    right[-1] = f[-1] / 2
    width = np.minimum(left, f / 2) + np.minimum(right, f / 2)
    out = np.empty_like(width)
    out[order] = width
    return out


def resampling_matrix(
    source: BandSet,
    target: BandSet,
    *,
    tolerance_nm: float = DEFAULT_TOLERANCE_NM,
    max_width_ratio: float = DEFAULT_MAX_WIDTH_RATIO,
) -> npt.NDArray[np.float32]:
    """The linear map from ``source`` bands to ``target`` bands.

    Args:
        source: Band set of the input cube.
        target: Band set wanted.
        tolerance_nm: Nearest-band mapping: largest centre distance accepted.
        max_width_ratio: Nearest-band mapping: largest source/target FWHM ratio accepted.

    Returns:
        ``(len(target), len(source))`` float32 matrix whose rows sum to 1.

    Raises:
        BandMappingError: A target band has no source band within reach.
    """
    sc, sf = source.centers, source.fwhm
    widths = _sampling_widths(sc, sf)
    m = np.zeros((len(target), len(source)), dtype=np.float64)
    for t, (c, f) in enumerate(zip(target.centers, target.fwhm, strict=True)):
        # dense: source centres strictly on both sides within one FWHM, at least three within
        # 1.5 FWHM, none wider than the target (a source exactly at the centre does not count
        # for both sides: that is a sparse source which happens to match)
        below = (sc < c) & (sc >= c - f)
        above = (sc > c) & (sc <= c + f)
        near = np.abs(sc - c) <= 1.5 * f
        dense = bool(
            below.any() and above.any() and np.count_nonzero(near) >= 3 and np.all(sf[near] <= f)
        )
        if dense:
            sigma = f * _FWHM_TO_SIGMA
            w = np.exp(-0.5 * ((sc - c) / sigma) ** 2) * widths
            w[np.abs(sc - c) > 3 * sigma] = 0.0
            m[t] = w / w.sum()
            continue
        i = int(np.argmin(np.abs(sc - c)))
        name = target.names[t] or f"band {t + 1}"
        if abs(sc[i] - c) > tolerance_nm:
            raise BandMappingError(
                f"target {name} at {c:.0f} nm has no source band within {tolerance_nm:.0f} nm "
                f"(nearest is {sc[i]:.0f} nm); the input lacks this part of the spectrum"
            )
        if sf[i] > max_width_ratio * f:
            raise BandMappingError(
                f"target {name} at {c:.0f} nm (fwhm {f:.0f} nm) would come from source band at {sc[i]:.0f} nm "
                f"(fwhm {sf[i]:.0f} nm), more than {max_width_ratio:g}x wider; the input is too coarse spectrally"
            )
        m[t, i] = 1.0
    return m.astype(np.float32)


def resample(
    cube: npt.NDArray[np.floating],
    matrix: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Apply a resampling matrix to a cube.

    Args:
        cube: ``(n_source, ...)`` float array (e.g. ``(band, row, col)``) of reflectance.
        matrix: ``(n_target, n_source)`` from :func:`resampling_matrix`.

    Returns:
        ``(n_target, ...)`` float32 array.

    Raises:
        BandCountError: The cube's band count is not the matrix's source count.
    """
    if cube.ndim < 1:
        raise ShapeError("`cube` must have a band axis first")
    if cube.shape[0] != matrix.shape[1]:
        raise BandCountError(
            f"`cube` has {cube.shape[0]} bands but the resampling matrix expects {matrix.shape[1]}"
        )
    flat = np.ascontiguousarray(cube, dtype=np.float32).reshape(cube.shape[0], -1)
    # Pure selections (nearest-band rows) are copies, not products: cheaper and exact.
    if np.all((matrix == 0) | (matrix == 1)) and np.all(matrix.sum(1) == 1):
        out = flat[np.argmax(matrix, axis=1)]
    else:
        # Each target band takes a few source bands (5-39 of EnMAP's or PRISMA's 224-237):
        # only those are read. Against a BLAS product on 256 lines x 2,000 px: EnMAP -> hsi32
        # 29 against 77 ms, PRISMA -> rgbn 10 against 45 ms (2 cores), and BLAS threads that
        # linger contend with the models' (the same product in the input's SWIR tests cost the
        # stream 20 %).
        rows, cols = np.nonzero(matrix)
        starts = np.searchsorted(rows, np.arange(matrix.shape[0] + 1)).astype(np.int64)
        out = np.empty((matrix.shape[0], flat.shape[1]), np.float32)
        _bk.resample_sparse(
            flat, starts, cols.astype(np.int64), matrix[rows, cols].astype(np.float32), out
        )
    return out.reshape((matrix.shape[0],) + cube.shape[1:])


def band_indices(sub: BandSet, of: BandSet, tol_nm: float = 0.5) -> list[int] | None:
    """Where each band of ``sub`` is in ``of`` (same centre and FWHM within ``tol_nm``), or
    None where one is missing: ``sub`` read out of ``of`` by selection, no resampling."""
    out = []
    for c, w in zip(sub.centers_nm, sub.fwhm_nm, strict=True):
        hit = [
            i
            for i, (c2, w2) in enumerate(zip(of.centers_nm, of.fwhm_nm, strict=True))
            if abs(c2 - c) <= tol_nm and abs(w2 - w) <= tol_nm
        ]
        if not hit:
            return None
        out.append(hit[0])
    return out
