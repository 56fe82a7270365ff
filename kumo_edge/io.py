"""Raster input and output.

Reading: :class:`Raster` opens anything GDAL reads (GeoTIFF, ENVI ``.hdr``/``.img``, ...),
finds the band wavelengths, converts stored values to reflectance and yields the scene as row
strips (windowed reads; the whole scene is never in memory).

Where the wavelengths come from, first found wins:

1. an explicit list given by the caller (``wavelengths=``, CLI ``--wavelengths``);
2. the ENVI header (``wavelength``, ``fwhm``, ``wavelength units``);
3. GDAL's ``IMAGERY`` metadata domain (``CENTRAL_WAVELENGTH_UM``, ``FWHM_UM``);
4. a per-band ``wavelength`` tag in nm (or in ``wavelength_units``) and optional ``fwhm``;
5. a band description that names a wavelength, e.g. ``"B2 blue 482nm"``.

When no FWHM is known it is estimated from the centre spacing: the spacing itself for
contiguous bands (<= 20 nm apart), half of it for sparse multispectral bands.

Reflectance: ``stored * scale + offset`` with scale/offset from the caller, else GDAL band
scale/offset, else the ENVI ``reflectance scale factor``. Floating-point rasters without any
scale are taken as reflectance already; integer rasters without one are refused (a DN is not a
reflectance). Values are checked (no NaN/inf in valid pixels, within [-0.5, 2] after scaling,
else the scale is wrong) and clipped to [0, 1].

No-data: the declared nodata value (any band equal to it makes the pixel invalid), GDAL
mask bands, an alpha band (0 = no data; it is not read as a band of data, whatever the band
count: GDAL itself applies an alpha band as a mask only to files of 2 or 4 bands), and, when
nothing is declared (``nodata="auto"``), pixels whose bands are all exactly 0, the fill value
of Landsat and most L1 products. ``nodata=None`` disables the fill rule; ``nodata=<number>``
or ``"nan"`` overrides the file.

Writing: :class:`GeoTiffWriter` writes tiled, compressed GeoTIFFs strip by strip under a
temporary name and renames it only once every row has been written, keeping CRS, transform,
nodata and wavelengths (as GDAL ``IMAGERY`` metadata and as ``wavelength`` tags in nm).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from .bands import BandSet
from .counts import Counts, check_reflectance
from .errors import (
    BandCountError,
    DataTypeError,
    InvalidDataError,
    MissingWavelengthsError,
    OutputExistsError,
    RasterReadError,
    RasterWriteError,
    ShapeError,
)
from .tiff_rows import TileRows, strip_cuts

logger = logging.getLogger(__name__)

#: Default number of rows per strip.
DEFAULT_STRIP_LINES = 256
#: Tallest block row :meth:`Raster.natural_strips` reads whole.
NATURAL_SPAN_MAX = 1024
#: Lines per strip on the streamed path (``kumo-edge run``/``detect``): small strips keep the
#: float copies small; the file's blocks are still read once each (16 rather than 64 lines:
#: peak RSS 649 -> 572 MB with the one-pass output encoder, 32 bands x 4000 px, 2026-11-30;
#: 8 rather than 16: 422 -> 410 MB from a striped file, 404 -> 394 MB from stdin, at the same
#: speed, 2026-12-05).
STREAM_STRIP_LINES = 8

#: A wavelength named in a band description: "482nm", "482 nm", "376.86 Nanometers" (as GDAL
#: names ENVI bands), or in micrometres, "0.4825 um", "1.61 Micrometers".
_NM_IN_TEXT = re.compile(
    r"(\d{3,5}(?:\.\d+)?)\s*(?:nm|nanometers?)\b"
    r"|(\d(?:\.\d+)?)\s*(?:um|\u00b5m|micrometers?|microns?)\b",
    re.IGNORECASE,
)
_ACCEPTED_KINDS = "biuf"
_UMASK = os.umask(0)
os.umask(_UMASK)

NodataSpec = float | str | None


#: Rows per strip of a streamed output (``GeoTiffWriter(layout="striped")``): the stream's
#: pieces of lines (``kumo_edge.stream.EMIT_LINES``) fill whole strips.
STREAM_ROWS = 8
#: What float outputs declare (and hold) where the input had no data.
FLOAT_NODATA = -9999.0


def _unit_to_nm(
    unit: str | None, values: Sequence[float], like: Sequence[float] | None = None
) -> list[float]:
    """Convert wavelengths (or band widths) to nm from a unit name, or, where the unit is not
    given, guess it from the magnitude of the wavelengths ``like`` (default: ``values``
    themselves). Widths must pass their wavelengths as ``like``: an AVIRIS-NG header lists
    centres in nm and widths of 5-6 nm with no unit, and widths below 30 alone would read as
    micrometres."""
    u = (unit or "").strip().lower()
    if u in ("nanometers", "nanometer", "nm"):
        factor = 1.0
    elif u in ("micrometers", "micrometer", "microns", "micron", "um", "µm"):
        factor = 1000.0
    elif u in ("millimeters", "mm"):
        factor = 1e6
    else:  # unknown: wavelengths below 30 can only be micrometres
        factor = 1000.0 if max(values if like is None else like) < 30 else 1.0
    return [float(v) * factor for v in values]


def _parse_envi_header(path: Path) -> dict[str, str]:
    """Key/value pairs of an ENVI header, braces joined onto one line."""
    text = path.read_text(encoding="utf-8", errors="replace")
    out: dict[str, str] = {}
    key = None
    buf: list[str] = []
    depth = 0
    for line in text.splitlines():
        if key is None:
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
            key, v = k.strip().lower(), v.strip()
            buf, depth = [v], v.count("{") - v.count("}")
        else:
            buf.append(line.strip())
            depth += line.count("{") - line.count("}")
        if depth <= 0:
            out[key] = " ".join(buf).strip().strip("{}").strip()
            key = None
    return out


def _envi_list(value: str) -> list[float]:
    return [float(x) for x in value.replace("\n", " ").split(",") if x.strip()]


def estimate_fwhm(centers: Sequence[float]) -> tuple[float, ...]:
    """FWHM guessed from the centre spacing: contiguous (hyperspectral, gaps <= 20 nm) bands are
    as wide as their spacing; sparse (multispectral) bands are taken as half their spacing."""
    c = np.asarray(centers, dtype=np.float64)
    if c.size == 1:
        return (10.0,)
    order = np.argsort(c)
    gaps = np.diff(c[order])
    left = np.concatenate([[gaps[0]], gaps])
    right = np.concatenate([gaps, [gaps[-1]]])
    est = np.empty_like(c)
    gap = np.minimum(left, right)
    est[order] = np.maximum(np.where(gap <= 20.0, gap, gap / 2.0), 1.0)
    return tuple(float(x) for x in est)


@dataclass
class Strip:
    """A block of consecutive full-width rows.

    Attributes:
        row: Index of the first row in the raster.
        data: ``(bands, n, width)`` float32 reflectance in [0, 1]; invalid pixels are 0.
        valid: ``(n, width)`` bool, True where every band holds data.
    """

    row: int
    data: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]


@contextlib.contextmanager
def _georeferencing_optional() -> Iterator[None]:
    """Quiet rasterio's NotGeoreferencedWarning (a two-line Python warning with a source line):
    a raster without georeferencing is valid input and output (a raw ENVI cube, a pass from
    stdin), and the report and ``kumo-edge info`` state its CRS as absent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def non_finite_message(where: str, stored: npt.NDArray[Any]) -> str:
    """The one-line error for NaN or infinite samples in pixels not marked no-data, ``where``
    (e.g. ``"at row 5"``): ``stored`` are the stored values of those samples, and the message
    names the ``--nodata`` value that marks them (one value marks one kind: NaN, +inf and -inf
    are three), or says the scale took finite values out of float32's range."""
    kinds = [
        (k, v, py)
        for k, v, py, m in (
            ("NaN", "nan", "'nan'", np.isnan(stored)),
            ("+inf", "inf", "float('inf')", np.isposinf(stored)),
            ("-inf", "-inf", "float('-inf')", np.isneginf(stored)),
        )
        if stored.dtype.kind == "f" and m.any()
    ]
    if not kinds:  # finite stored values that the scale took beyond float32
        return f"values {where} overflow float32 after scaling; check --scale/--offset"
    what = " and ".join(k for k, _, _ in kinds)
    if len(kinds) == 1:
        _, v, py = kinds[0]
        return (
            f"{what} values {where} in pixels not marked no-data; "
            f"declare them no-data with --nodata {v} (Python: nodata={py})"
        )
    return (
        f"{what} values {where} in pixels not marked no-data; one --nodata value marks one of "
        "them: replace the others first"
    )


def nodata_rule(nodata: NodataSpec, declared: float | None) -> tuple[float | None, bool]:
    """``(value, zero_fill)`` of a no-data setting (``--nodata``) for data that declares
    ``declared`` (None: nothing, as a stream): ``"auto"`` the declared value, else pixels whose
    bands are all 0; None the declared value only; ``"nan"``; or a number."""
    if nodata == "auto":
        return declared, declared is None
    if nodata is None:
        return declared, False
    if isinstance(nodata, str):
        if nodata.lower() != "nan":
            raise ValueError(f"`nodata` must be a number, 'nan', 'auto' or None, got {nodata!r}")
        return float("nan"), False
    return float(nodata), False


def values_valid(
    raw: npt.NDArray[Any], nodata: float | None, zero_fill: bool
) -> npt.NDArray[np.bool_]:
    """``(n, w)`` validity of ``(bands, n, w)`` stored values under :func:`nodata_rule`'s rule:
    a pixel holding ``nodata`` in any band, or (``zero_fill``) 0 in every band, is no data."""
    valid = np.ones(raw.shape[1:], dtype=bool)
    held = holds_nodata(raw, nodata)
    if held is not None:
        valid &= ~held.any(axis=0)
    if zero_fill:
        valid &= (raw != 0).any(axis=0)
    return valid


def holds_nodata(raw: npt.NDArray[Any], nodata: float | None) -> npt.NDArray[np.bool_] | None:
    """Where stored values ``raw`` (any shape) hold ``nodata`` (NaN: where they are NaN);
    None where nothing can: no no-data value, or one the type cannot hold."""
    if nodata is None:
        return None
    if math.isnan(nodata):
        return np.isnan(raw)
    if _representable(nodata, raw.dtype):
        return raw == raw.dtype.type(nodata)
    return None


def fill_values(nodata: float | None, zero_fill: bool, dtype: np.dtype) -> list[float]:
    """The stored values that mark fill: the declared no-data value; else 0 where the fill rule
    is on (a dead detector band, or bands a product zeroes: read as reflectance 0, one such band
    bent the hsi32 bands resampled from it by up to 0.2 reflectance, silently) and NaN in a
    float file."""
    if nodata is not None:
        return [nodata]
    return [0.0] * zero_fill + [float("nan")] * (dtype.kind == "f")


def bands_of_fill(raw: npt.NDArray[Any], fills: Sequence[float]) -> npt.NDArray[np.bool_] | None:
    """Per band of stored values ``raw`` ``(bands, ...)``: whether it holds nothing but the
    ``fills`` values there while the other bands hold data (some pixel of theirs is not fill);
    None where no band does, or half of them or more do (a footprint edge, not bad bands)."""
    marks = [m for m in (holds_nodata(raw, v) for v in fills) if m is not None]
    if not marks:
        return None
    is_fill = np.logical_or.reduce(marks).reshape(raw.shape[0], -1)
    fill = is_fill.all(axis=1)
    if not fill.any() or 2 * int(fill.sum()) >= len(fill) or is_fill[~fill].all():
        return None
    return fill


def fill_bands_message(where: str, fill: npt.NDArray[np.bool_], fills: Sequence[float]) -> str:
    """``"<where>: band(s) N hold(s) only the no-data value (v) ... while the others hold data"``."""
    one = int(fill.sum()) == 1
    return (
        f"{where}: {'band' if one else 'bands'} {_ranges(np.flatnonzero(fill) + 1)} "
        f"{'holds' if one else 'hold'} only the no-data value ("
        + " or ".join(f"{v:g}" for v in fills)
        + ")"
    )


def _ranges(numbers: npt.NDArray[np.integer]) -> str:
    """Sorted band numbers as runs: ``1-5, 9, 12-14``."""
    runs: list[list[int]] = []
    for v in (int(x) for x in numbers):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


#: Files that carry no bad band list and have a fill value (declared, or 0 under the fill rule,
#: or NaN in a float file) are checked for bands of fill (:meth:`Raster._fill_bands_left_out`):
#: with at least this many bands (hyperspectral) such bands are left out, with fewer only named.
FILL_BAND_MIN_COUNT = 20


def _good_bands(bbl: str, count: int, path: Path) -> tuple[int, ...] | None:
    """1-based indexes of the bands a bad band list keeps (``bbl``: 1 good, 0 bad, comma-
    separated: an ENVI header's, or the per-band ``bbl`` metadata items of a GeoTIFF joined),
    or None where it keeps every band; a list of the wrong length, or one that keeps none, is
    ignored with a warning."""
    try:
        flags = [float(v) for v in _envi_list(bbl)]
    except ValueError:
        logger.warning("%s: unparseable bad band list `bbl`; every band read", path)
        return None
    if len(flags) != count:
        logger.warning(
            "%s: bad band list `bbl` lists %d bands for %d; every band read",
            path,
            len(flags),
            count,
        )
        return None
    keep = tuple(i + 1 for i, f in enumerate(flags) if f != 0)
    if not keep:
        logger.warning("%s: bad band list `bbl` marks every band bad; every band read", path)
        return None
    return None if len(keep) == count else keep


def _tag_band(tags: dict[str, str]) -> tuple[float, float | None]:
    """A band's centre and width in nm from its metadata items (keys lower-cased): ``wavelength``
    with ``wavelength_units`` (or ``wavelength_unit``; nm where neither is given), and ``fwhm``
    in the same unit, or ``bandwidth`` with ``bandwidth_unit``. Raises ValueError where a value
    is not a number."""
    unit = tags.get("wavelength_units", tags.get("wavelength_unit", "nm"))
    raw = float(tags["wavelength"])
    wl = _unit_to_nm(unit, [raw])[0]
    if "fwhm" in tags:
        return wl, _unit_to_nm(unit, [float(tags["fwhm"])], like=[raw])[0]
    if "bandwidth" in tags:
        return wl, _unit_to_nm(
            tags.get("bandwidth_unit", unit), [float(tags["bandwidth"])], like=[raw]
        )[0]
    return wl, None


def shift_georeferencing(geo: dict[str, Any], rows: int) -> dict[str, Any]:
    """:attr:`Raster.georeferencing` of a raster for the raster that starts ``rows`` lines
    lower (a piece of a pass: :func:`kumo_edge.pipeline.run_stream`): its transform, its
    ground control points' rows and its RPCs' line offset moved."""
    out = dict(geo)
    if geo.get("transform") is not None:
        out["transform"] = geo["transform"] * Affine.translation(0, rows)
    if geo.get("gcps"):
        from rasterio.control import GroundControlPoint

        points, crs = geo["gcps"]
        out["gcps"] = (
            [
                GroundControlPoint(
                    row=p.row - rows, col=p.col, x=p.x, y=p.y, z=p.z, id=p.id, info=p.info
                )
                for p in points
            ],
            crs,
        )
    if geo.get("rpcs") is not None:
        from rasterio.rpc import RPC

        out["rpcs"] = RPC(**{**geo["rpcs"].to_dict(), "line_off": geo["rpcs"].line_off - rows})
    return out


def _bare_wavelengths(descriptions: Sequence[str]) -> tuple[float, ...] | None:
    """Band descriptions that are each a bare number, as wavelengths in nm: all within 300-3,000
    (nm) or all within 0.3-3 and not all whole (micrometres); else None (band numbers 1, 2, 3
    are no wavelengths)."""
    try:
        v = [float(d) for d in descriptions]
    except ValueError:
        return None
    if v and all(300.0 <= x <= 3000.0 for x in v):
        return tuple(v)
    # micrometres: not all whole numbers (descriptions 1, 2, 3 number the bands)
    if v and all(0.3 <= x <= 3.0 for x in v) and not all(x.is_integer() for x in v):
        return tuple(1000.0 * x for x in v)
    return None


def _gdal_name(name: str) -> bool:
    """Whether ``name`` is a GDAL dataset name rather than a file path: a subdataset
    (``HDF5:"scene.he5"://...``, ``NETCDF:...``, ``GPKG:...``) or a virtual file (``/vsizip/...``)."""
    return name.startswith("/vsi") or re.match(r"[A-Z][A-Z0-9_]+:", name) is not None


def _find_envi_header(path: Path) -> Path | None:
    for cand in (path.with_suffix(".hdr"), Path(str(path) + ".hdr")):
        if cand.is_file():
            return cand
    return None


class Raster:
    """A raster opened for strip-wise reading.

    Args:
        path: Any raster GDAL reads.
        wavelengths: Band centres in nm, overriding the file's metadata (one per band).
        fwhm: Band FWHM in nm (one per band); estimated from spacing when unknown.
        scale: Multiplier from stored value to reflectance (scalar or one per band).
        offset: Added after scaling (scalar or one per band).
        nodata: ``"auto"`` (declared nodata, else all-zero fill), ``None`` (declared only),
            a number, or ``"nan"``.

    Raises:
        RasterReadError: The file is missing, unreadable or not a raster.
        DataTypeError: The stored type is not integer or floating point.
        BandCountError: Explicit wavelengths/scales do not match the band count.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        wavelengths: Sequence[float] | None = None,
        fwhm: Sequence[float] | None = None,
        scale: float | Sequence[float] | None = None,
        offset: float | Sequence[float] | None = None,
        nodata: NodataSpec = "auto",
    ) -> None:
        spec = os.fspath(path)
        self.path = Path(spec)
        if not self.path.exists() and not _gdal_name(spec):
            raise RasterReadError(f"{self.path}: no such file")
        try:
            # GDAL decompresses the blocks of one read on every core (the stream reads a whole
            # block row of a tiled input at a time, between model runs, when the cores are
            # free: 0.63 -> 0.45 s per 256-line block row of a 32-band x 4000-px deflate
            # GeoTIFF, 2 threads, the other core busy, 2026-11-30). Given when opening, so it
            # applies to this read-only dataset only: on written datasets GDAL's worker
            # threads would swallow write errors (a full disk would go unnoticed).
            threads = os.environ.get("GDAL_NUM_THREADS") or str(max(1, os.cpu_count() or 1))
            with rasterio.Env(GDAL_NUM_THREADS=threads), _georeferencing_optional():
                # the name as given: a GDAL subdataset name is no path (Path() would fold the
                # '//' of an HDF5 one)
                self._ds = rasterio.open(spec)
        except (RasterioError, OSError) as exc:
            raise RasterReadError(
                f"{self.path}: cannot be read as a raster ({_short(exc)})"
            ) from None
        try:
            self._setup(wavelengths, fwhm, scale, offset, nodata)
        except BaseException:
            self._ds.close()
            raise

    # -- set-up -----------------------------------------------------------------------------
    def _setup(self, wavelengths, fwhm, scale, offset, nodata) -> None:  # noqa: ANN001
        ds = self._ds
        if ds.count == 0:  # a container (HDF5, NetCDF, a SAFE folder, a GeoPackage)
            subs = list(ds.subdatasets)
            raise RasterReadError(
                f"{self.path}: holds no raster bands of its own"
                + (
                    f" but {len(subs)} subdatasets; give one of them as the input, e.g. "
                    + ", ".join(repr(v) for v in subs[:3])
                    + (", ..." if len(subs) > 3 else "")
                    if subs
                    else ""
                )
            )
        self.width: int = ds.width
        self.height: int = ds.height
        self.count: int = ds.count
        #: 1-based indexes of the file's bands this raster reads (None: all): a bad band list
        #: (``bbl``, 0 = bad: water-vapour bands, detector edges; an ENVI header's, or per-band
        #: metadata items, as the EnMAP-Box writes them) leaves its bad
        #: bands out, so their fill values neither mark pixels as no data nor fail the
        #: reflectance checks, and no model resamples from them
        self.band_indexes: tuple[int, ...] | None = None
        self.crs = ds.crs
        self.transform = ds.transform
        self.dtype = np.dtype(ds.dtypes[0])
        if len(set(ds.dtypes)) != 1:
            raise DataTypeError(
                f"{self.path}: bands have mixed dtypes {sorted(set(ds.dtypes))}; convert to one type"
            )
        if self.dtype.kind not in _ACCEPTED_KINDS:
            raise DataTypeError(
                f"{self.path}: stored type {self.dtype} is not supported; use an integer or floating-point raster"
            )
        self.descriptions: tuple[str, ...] = tuple(d or "" for d in ds.descriptions)
        hdr = _find_envi_header(self.path) if ds.driver == "ENVI" else None
        self._envi = _parse_envi_header(hdr) if hdr else {}
        self._file_count = ds.count
        bbl = self._envi.get("bbl")
        band_bbl = [ds.tags(b).get("bbl") for b in range(1, ds.count + 1)]
        if bbl is None and ds.count and all(v is not None for v in band_bbl):
            bbl = ",".join(str(v) for v in band_bbl)  # per-band items, as the EnMAP-Box writes
        self.nodata, self.zero_fill = nodata_rule(nodata, ds.nodata)
        #: The file's alpha band (1-based; 0 = no data), as ``gdalwarp -dstalpha`` adds one:
        #: a mask, not a band of data (None: none)
        alphas = [b for b, ci in enumerate(ds.colorinterp, start=1) if ci == ColorInterp.alpha]
        self._alpha_band: int | None = alphas[-1] if alphas else None
        if bbl is not None:
            self.band_indexes = _good_bands(bbl, ds.count, self.path)
        elif self.nodata is not None or self.zero_fill or self.dtype.kind == "f":
            # multispectral files are only warned about: each of their bands matters
            self.band_indexes = self._fill_bands_left_out(ds.count >= FILL_BAND_MIN_COUNT)
        if alphas:
            if len(alphas) == ds.count:
                raise RasterReadError(f"{self.path}: holds only alpha bands, no data")
            keep = self.band_indexes or range(1, ds.count + 1)
            self.band_indexes = tuple(i for i in keep if i not in alphas)
        if self.band_indexes is not None:
            self.count = len(self.band_indexes)
            self.descriptions = tuple(self.descriptions[i - 1] for i in self.band_indexes)

        self.band_set: BandSet | None
        self.wavelength_source: str
        self.band_set, self.wavelength_source = self._find_bands(wavelengths, fwhm)

        self.scale, self.offset, self.scale_source = self._find_scale(scale, offset)

        flags = ds.mask_flag_enums[0] if ds.count else []
        self._mask_band = (
            self._alpha_band is None  # read as itself (valid_of): the same, for any band count
            and any(f in (MaskFlags.per_dataset, MaskFlags.alpha) for f in flags)
            and not any(f == MaskFlags.nodata for f in flags)
        )

    def _fill_bands_left_out(self, leave_out: bool = True) -> tuple[int, ...] | None:
        """Without a bad band list: the bands to read, where some hold nothing but the no-data
        value across a sample near the middle of the file (one stored block's first row) while
        the others hold data there (a product's
        water-vapour bands filled with no data, its ``bbl`` lost in a conversion: read as data,
        they would make every pixel no data, or, as NaN in a float file that declares no
        no-data value, fail it; a dead detector band of zeros under the fill rule, read as
        reflectance 0, would bend the bands resampled from it); None where there are none.
        Logged; without ``leave_out`` (files of fewer than :data:`FILL_BAND_MIN_COUNT` bands)
        such bands are only named in a warning, and every band is read."""
        fills = fill_values(self.nodata, self.zero_fill, self.dtype)
        # the first row of the block row holding the middle line, read as the stream reads
        # (a row of 224-band tiles decompressed whole is 117 MB at 1,000 px: read through GDAL
        # it raised a pass's peak memory by as much, and by 40 MB for one tile); where the file
        # is not one the tile reader takes, one stored block's worth across the middle
        bh, bw = self._ds.block_shapes[0]
        r0 = (self.height // 2) // bh * bh
        try:
            tiles = TileRows.open(self._ds)  # not the cached property: the bands may change
            if tiles is not None:
                strips = tiles.strips(1, r0, r0 + 1)
                try:
                    row = next(strips)[1][:, 0, :]
                finally:
                    strips.close()
            else:
                c0 = (self.width // 2) // bw * bw
                row = self._ds.read(window=Window(c0, r0, min(bw, self.width - c0), 1))[:, 0, :]
        except (RasterioError, OSError, ValueError, zlib.error):
            # the reads that follow say what is wrong with the file; GDAL's error of this one
            # is cleared, or the next call into GDAL raises it (a truncated file's colour
            # interpretation did)
            lib = _gdal()
            if lib is not None:
                lib.CPLErrorReset()
            return None
        fill = bands_of_fill(row, fills)
        if fill is None:
            return None
        logger.warning(
            "%s across row %d while the others hold data: %s",
            fill_bands_message(self.path.name, fill, fills),
            r0,
            "read as bad bands (list them in a bad band list `bbl` to say so)"
            if leave_out
            else "a dead or empty band? Read as it is (bands of a multispectral file are never "
            "left out; check the file)",
        )
        return tuple(int(i) + 1 for i in np.flatnonzero(~fill)) if leave_out else None

    def _of_bands_read(
        self, wl: list[float], fwhm: Sequence[float] | None
    ) -> tuple[list[float], Sequence[float] | None]:
        """Wavelengths (and widths) given for every band of the file, as those of the bands
        read (:attr:`band_indexes`); the widths taken along only with the wavelengths and where
        they too are given for every band; otherwise both as they are."""
        if self.band_indexes is None or len(wl) != self._file_count:
            return wl, fwhm
        wl = [wl[i - 1] for i in self.band_indexes]
        if fwhm is not None and len(fwhm) == self._file_count:
            fwhm = [fwhm[i - 1] for i in self.band_indexes]
        return wl, fwhm

    def _find_bands(self, wavelengths, fwhm) -> tuple[BandSet | None, str]:  # noqa: ANN001
        n = self.count
        names = tuple(d.split()[0] if d else "" for d in self.descriptions)
        if wavelengths is not None:
            wl, fwhm = self._of_bands_read([float(w) for w in wavelengths], fwhm)
            if len(wl) != n:
                raise BandCountError(
                    f"`wavelengths` has {len(wl)} values but {self.path.name} has {n} bands"
                )
            fw = [float(f) for f in fwhm] if fwhm is not None else list(estimate_fwhm(wl))
            if len(fw) != n:
                raise BandCountError(
                    f"`fwhm` has {len(fw)} values but {self.path.name} has {n} bands"
                )
            return BandSet(tuple(wl), tuple(fw), names), "caller"
        if fwhm is not None:
            raise ValueError("`fwhm` needs `wavelengths` too")
        # 2. ENVI header
        if "wavelength" in self._envi:
            unit = self._envi.get("wavelength units")
            raw = _envi_list(self._envi["wavelength"])
            wl = _unit_to_nm(unit, raw)
            fw = (
                _unit_to_nm(unit, _envi_list(self._envi["fwhm"]), like=raw)
                if "fwhm" in self._envi
                else None
            )
            wl, fw = self._of_bands_read(wl, fw)
            if len(wl) == n and (fw is None or len(fw) == n):
                return BandSet(tuple(wl), tuple(fw or estimate_fwhm(wl)), names), "ENVI header"
            logger.warning(
                "%s: ENVI header lists %d wavelengths for %d bands; ignored", self.path, len(wl), n
            )
        # 3. GDAL IMAGERY domain
        ds = self._ds
        imag = [ds.tags(b, ns="IMAGERY") for b in self._indexes]
        if all("CENTRAL_WAVELENGTH_UM" in t for t in imag):
            wl = [float(t["CENTRAL_WAVELENGTH_UM"]) * 1000.0 for t in imag]
            if all("FWHM_UM" in t for t in imag):
                fw = [float(t["FWHM_UM"]) * 1000.0 for t in imag]
            else:
                fw = list(estimate_fwhm(wl))
            return BandSet(tuple(wl), tuple(fw), names), "GDAL IMAGERY metadata"
        # 4. per-band wavelength tags (any case: GDAL's Sentinel-2 driver writes WAVELENGTH,
        # WAVELENGTH_UNIT and BANDWIDTH)
        tags = [{k.lower(): v for k, v in ds.tags(b).items()} for b in self._indexes]
        if all("wavelength" in t for t in tags):
            try:
                pairs = [_tag_band(t) for t in tags]
                wl = [w for w, _ in pairs]
                widths = [f for _, f in pairs if f is not None]
                fw = widths if len(widths) == len(wl) else list(estimate_fwhm(wl))
                return BandSet(tuple(wl), tuple(fw), names), "band wavelength tags"
            except ValueError:
                logger.warning("%s: unparseable `wavelength` band tags; ignored", self.path)
        # 5. band descriptions
        found = [_NM_IN_TEXT.search(d) for d in self.descriptions]
        if n and all(found):
            wl = [
                float(m.group(1)) if m.group(1) else 1000.0 * float(m.group(2)) for m in found if m
            ]
            return BandSet(tuple(wl), estimate_fwhm(wl), names), "band descriptions"
        # 6. band descriptions that are bare numbers, all of them wavelengths in nm (300-3,000)
        # or all in micrometres (0.3-3): as arrays with a wavelength coordinate are often saved
        bare = _bare_wavelengths(self.descriptions)
        if n and bare is not None:
            return BandSet(bare, estimate_fwhm(bare), ()), "band descriptions (numbers)"
        return None, "none"

    def _find_scale(self, scale, offset):  # noqa: ANN001, ANN202
        n = self.count

        def per_band(v: float | Sequence[float], what: str) -> npt.NDArray[np.float64]:
            arr = np.atleast_1d(np.asarray(v, dtype=np.float64))
            if arr.size == 1:
                arr = np.repeat(arr, n)
            if arr.size != n:
                raise BandCountError(
                    f"`{what}` has {arr.size} values but {self.path.name} has {n} bands"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"`{what}` must be finite, got {v}")
            return arr

        if scale is not None or offset is not None:
            return (
                per_band(1.0 if scale is None else scale, "scale"),
                per_band(0.0 if offset is None else offset, "offset"),
                "caller",
            )
        ds = self._ds
        scales = [ds.scales[i - 1] for i in self._indexes]
        offsets = [ds.offsets[i - 1] for i in self._indexes]
        if any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets):
            return per_band(scales, "scale"), per_band(offsets, "offset"), "GDAL scale/offset"
        if "reflectance scale factor" in self._envi:
            f = float(self._envi["reflectance scale factor"])
            return (
                per_band(1.0 / f, "scale"),
                per_band(0.0, "offset"),
                "ENVI reflectance scale factor",
            )
        if self.dtype.kind == "f":
            return (
                per_band(1.0, "scale"),
                per_band(0.0, "offset"),
                "none (float, taken as reflectance)",
            )
        return None, None, "none"

    @property
    def mask_source(self) -> str | None:
        """What marks no data besides the no-data value: ``"alpha band N"`` (the file's band
        number), ``"GDAL mask band"``, or None."""
        if self._alpha_band is not None:
            return f"alpha band {self._alpha_band}"
        return "GDAL mask band" if self._mask_band else None

    @property
    def georeferencing(self) -> dict[str, Any]:
        """What places the file, as :class:`GeoTiffWriter` takes it: ``crs``, ``transform``,
        ``gcps`` and ``rpcs`` (the last two None where absent)."""
        return {"crs": self.crs, "transform": self.transform, "gcps": self.gcps, "rpcs": self.rpcs}

    @property
    def gcps(self) -> tuple[list[Any], Any] | None:
        """Ground control points and their CRS, where the file has them (else None)."""
        points, crs = self._ds.gcps
        return (points, crs) if points else None

    @property
    def rpcs(self) -> Any:  # noqa: ANN401 - rasterio's RPC, or None
        """Rational polynomial coefficients, where the file has them."""
        return self._ds.rpcs

    @property
    def _indexes(self) -> range | tuple[int, ...]:
        """1-based indexes of the bands read (:attr:`band_indexes`, or all)."""
        return range(1, self._file_count + 1) if self.band_indexes is None else self.band_indexes

    # -- public -----------------------------------------------------------------------------
    @property
    def bands(self) -> BandSet:
        """The band set; raises :class:`MissingWavelengthsError` when the file has none."""
        if self.band_set is None:
            from .config import profile_names, sensor_profile

            fits = [n for n in profile_names() if len(sensor_profile(n).bands) == self.count]
            profile = f"--profile {' or '.join(fits)} (Python: profile=...), " if fits else ""
            raise MissingWavelengthsError(
                f"{self.path.name} carries no band wavelengths; supply them with {profile}"
                "--wavelengths (Python: wavelengths=[...]), an ENVI header `wavelength = {...}`, "
                "GDAL IMAGERY CENTRAL_WAVELENGTH_UM band metadata, or a per-band `wavelength` "
                "tag in nm"
            )
        return self.band_set

    @property
    def driver(self) -> str:
        """GDAL driver short name, e.g. ``"GTiff"``."""
        return str(self._ds.driver)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        return tuple(self._ds.bounds)  # type: ignore[return-value]

    @property
    def declared_nodata(self) -> float | None:
        """The nodata value the file declares (before any override)."""
        return self._ds.nodata

    @property
    def profile(self) -> dict[str, Any]:
        """CRS, transform and size, for writers."""
        return {
            "crs": self.crs,
            "transform": self.transform,
            "width": self.width,
            "height": self.height,
        }

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_raw(
        self, row: int, nrows: int, col: int = 0, ncols: int | None = None
    ) -> npt.NDArray[Any]:
        """Stored values of a window, ``(bands, nrows, ncols)`` in the file's dtype."""
        ncols = self.width - col if ncols is None else ncols
        if (
            row < 0
            or col < 0
            or nrows < 0
            or ncols < 0
            or row + nrows > self.height
            or col + ncols > self.width
        ):
            raise ShapeError(
                f"window rows {row}:{row + nrows}, cols {col}:{col + ncols} lies outside "
                f"{self.path.name} ({self.height} x {self.width})"
            )
        try:
            return self._ds.read(
                indexes=None if self.band_indexes is None else list(self.band_indexes),
                window=Window(col, row, ncols, nrows),
            )
        except (RasterioError, OSError) as exc:
            raise RasterReadError(
                f"{self.path}: reading rows {row}-{row + nrows - 1} failed, the file may be truncated or corrupt ({_short(exc)})"
            ) from None

    def valid_of(self, raw: npt.NDArray[Any], row: int = 0, col: int = 0) -> npt.NDArray[np.bool_]:
        """``(n, w)`` bool validity of a raw window read at (row, col)."""
        valid = values_valid(raw, self.nodata, self.zero_fill)
        if self._mask_band or self._alpha_band is not None:
            window = Window(col, row, raw.shape[2], raw.shape[1])
            try:
                if self._alpha_band is not None:
                    m = self._ds.read(self._alpha_band, window=window)
                else:
                    m = self._ds.read_masks(1, window=window)
            except (RasterioError, OSError) as exc:
                raise RasterReadError(
                    f"{self.path}: reading the mask band failed ({_short(exc)})"
                ) from None
            valid &= m > 0
        return valid

    def to_reflectance(
        self, raw: npt.NDArray[Any], valid: npt.NDArray[np.bool_], row: int = 0
    ) -> npt.NDArray[np.float32]:
        """Stored values -> float32 reflectance in [0, 1]; invalid pixels become 0.

        Raises:
            InvalidDataError: No scale for integer data, NaN/inf in valid pixels, or values far
                outside the reflectance range (a wrong scale).
        """
        if raw.dtype.kind in "iu":
            return self.counts(raw, valid, row).reflectance()
        self._require_scale()
        out = raw.astype(np.float32, copy=True)
        out *= self.scale.astype(np.float32)[:, None, None]
        out += self.offset.astype(np.float32)[:, None, None]
        out[:, ~valid] = 0.0
        if self.dtype.kind == "f":
            bad = ~np.isfinite(out)
            if bad.any():
                r = int(np.argwhere(bad.any(axis=(0, 2)))[0, 0]) + row
                raise InvalidDataError(
                    f"{self.path.name}: " + non_finite_message(f"at row {r}", raw[bad])
                )
        check_reflectance(out, valid, self._rows_what(row, out.shape[1]))
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def counts(
        self, raw: npt.NDArray[np.integer], valid: npt.NDArray[np.bool_], row: int = 0
    ) -> Counts:
        """Stored integer values of a full-width window read at ``row``, unconverted, with the
        file's scale and offset (:class:`kumo_edge.counts.Counts`)."""
        self._require_scale()
        return Counts(
            raw,
            valid,
            self.scale.astype(np.float32),
            self.offset.astype(np.float32),
            self._rows_what(row, raw.shape[1]),
        )

    def _require_scale(self) -> None:
        if self.scale is None or self.offset is None:
            raise InvalidDataError(
                f"{self.path.name} stores {self.dtype} values with no scale/offset metadata; give the "
                "conversion to reflectance with --scale/--offset (e.g. --scale 1e-4 for reflectance x 10000)"
            )

    def _rows_what(self, row: int, n: int) -> str:
        return f"{self.path.name}: rows {row}-{row + n - 1} after scaling ({self.scale_source})"

    def read_strip(self, row: int, nrows: int) -> Strip:
        """Rows ``row .. row + nrows - 1`` as reflectance (see :class:`Strip`)."""
        raw = self.read_raw(row, nrows)
        valid = self.valid_of(raw, row)
        return Strip(row, self.to_reflectance(raw, valid, row), valid)

    @functools.cached_property
    def tile_rows(self) -> TileRows | None:
        """A reader of this file's rows a few at a time per tile (:mod:`kumo_edge.tiff_rows`),
        where its layout allows one (a tiled GeoTIFF of integers, uncompressed or deflate), else
        None (nor where only some bands are read, :attr:`band_indexes`)."""
        if self.band_indexes is not None:
            return None
        try:
            return TileRows.open(self._ds)
        except (RasterioError, OSError, ValueError):
            return None

    @property
    def block_rows(self) -> int:
        """Rows per stored block (the tile height of a tiled file, the rows per strip of a
        striped one)."""
        return int(self._ds.block_shapes[0][0])

    def natural_strips(self, lines: int, rows: tuple[int, int] | None = None) -> Iterator[Strip]:
        """The scene (or its lines ``rows = (first, stop)``) as strips of ``lines`` rows, each
        stored block read (and decompressed) exactly once: where blocks are taller than
        ``lines`` (a tiled file), one block row is read as stored values and converted ``lines``
        rows at a time, so that GDAL's block cache never has to hold it. Strips start where
        they would in a read of the whole scene (the first one may be shorter)."""
        for a, sub, valid in self._natural_windows(lines, rows):
            strip = Strip(a, self.to_reflectance(sub, valid, a), valid)
            del sub  # a view keeps the whole block row alive
            yield strip

    def natural_counts(self, lines: int, rows: tuple[int, int] | None = None) -> Iterator[Counts]:
        """As :meth:`natural_strips`, but the stored integer values unconverted
        (:meth:`counts`), half the size of float32 reflectance or less. Integer files only."""
        if self.dtype.kind not in "iu":
            raise DataTypeError(f"{self.path.name} stores {self.dtype} values, not integer counts")
        self._require_scale()
        for a, sub, valid in self._natural_windows(lines, rows):
            # a copy: a view would keep the whole block row alive while the strip waits in a
            # queue, and two block rows would be held when the next one is read
            counts = self.counts(sub.copy(), valid, a)
            del sub
            yield counts

    def _natural_windows(
        self, lines: int, rows: tuple[int, int] | None
    ) -> Iterator[tuple[int, npt.NDArray[Any], npt.NDArray[np.bool_]]]:
        """``(row, raw, valid)`` of the strips of :meth:`natural_strips`; ``raw`` is a view of
        the block row read, valid until the next item is asked for."""
        if lines < 1:
            raise ValueError(f"`lines` must be >= 1, got {lines}")
        first, stop = rows or (0, self.height)
        if not 0 <= first < stop <= self.height:
            raise ValueError(f"rows {first}-{stop} are not inside {self.height} lines")
        # a block row is read whole; a file stored as one huge strip is read ``lines`` at a time
        span = self.block_rows if lines < self.block_rows <= NATURAL_SPAN_MAX else lines
        if span > lines and self.tile_rows is not None:  # a tiled file: a few rows per tile
            try:
                for a, sub in self.tile_rows.strips(lines, first, stop):
                    yield a, sub, self.valid_of(sub, a)
            except (OSError, zlib.error, ValueError) as exc:
                raise RasterReadError(
                    f"{self.path}: reading rows from {first} failed, the file may be truncated or corrupt ({_short(exc)})"
                ) from None
            return
        for row in range(first // span * span, stop, span):
            lo, hi = max(row, first), min(row + span, stop)
            raw = self.read_raw(lo, hi - lo)
            for a, b in strip_cuts(row, lo, hi, lines):  # strip boundaries of a whole read
                sub = raw[:, a - lo : b - lo]
                yield a, sub, self.valid_of(sub, a)
                del sub
            # freed before the next block row is read (else two are held, 125 MB at 32 bands
            # x 4000 px x 256 rows)
            del raw

    def strips(self, lines: int = DEFAULT_STRIP_LINES) -> Iterator[Strip]:
        """The scene as consecutive strips of ``lines`` rows (the last may be shorter)."""
        if lines < 1:
            raise ValueError(f"`lines` must be >= 1, got {lines}")
        for row in range(0, self.height, lines):
            yield self.read_strip(row, min(lines, self.height - row))

    def raw_strips(
        self, lines: int = DEFAULT_STRIP_LINES
    ) -> Iterator[tuple[int, npt.NDArray[Any], npt.NDArray[np.bool_]]]:
        """``(row, raw, valid)`` for consecutive strips of stored values."""
        if lines < 1:
            raise ValueError(f"`lines` must be >= 1, got {lines}")
        for row in range(0, self.height, lines):
            raw = self.read_raw(row, min(lines, self.height - row))
            yield row, raw, self.valid_of(raw, row)

    def valid_mask(self, lines: int = DEFAULT_STRIP_LINES) -> npt.NDArray[np.bool_]:
        """``(height, width)`` bool validity of the whole scene, read strip by strip."""
        out = np.empty((self.height, self.width), dtype=bool)
        for row, _raw, valid in self.raw_strips(lines):
            out[row : row + valid.shape[0]] = valid
        return out


def open_raster(path: str | os.PathLike[str], **kwargs: Any) -> Raster:
    """Open a raster for reading; see :class:`Raster` for the keyword arguments."""
    return Raster(path, **kwargs)


def _representable(value: float, dtype: np.dtype) -> bool:
    if dtype.kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def _short(exc: BaseException) -> str:
    """First line of an exception's message, preferring the GDAL error that caused it."""
    while exc.__cause__ is not None and str(exc).startswith("Read failed"):
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_output_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; check that its folder exists and can be
    written to."""
    p = Path(path)
    if p.is_dir():
        raise RasterWriteError(f"{p} is a folder; give a file name")
    if p.exists() and not overwrite:
        raise OutputExistsError(
            f"{p} exists; pass --overwrite (Python: overwrite=True) to replace it"
        )
    if not p.parent.exists():
        raise RasterWriteError(f"{p.parent}: the output folder does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise RasterWriteError(f"{p.parent}: the output folder is not writable (permission denied)")
    return p


#: Name endings of raster and image formats other than GeoTIFF: an output named so would be a
#: GeoTIFF under another format's name (written as such before, silently).
OTHER_FORMATS = frozenset(
    ".png .jpg .jpeg .jp2 .j2k .gif .bmp .webp .img .hdr .bil .bsq .bip .envi .nc .h5 .hdf "
    ".he5 .vrt .asc .kea .zarr .ecw .sid".split()
)


def check_geotiff_name(path: str | os.PathLike[str]) -> None:
    """Refuse an output name of another raster or image format (:data:`OTHER_FORMATS`): the
    outputs are GeoTIFFs."""
    suffix = Path(path).suffix.lower()
    if suffix in OTHER_FORMATS:
        raise RasterWriteError(
            f"{path}: outputs are written as GeoTIFF, not {suffix[1:].upper()}; name it .tif"
        )


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_outputs(
    outputs: dict[str, str | os.PathLike[str] | None],
    inputs: Sequence[str | os.PathLike[str]],
    overwrite: bool,
    geotiffs: Sequence[str] = ("OUTPUT", "--mask"),
) -> dict[str, Path]:
    """Check every output path before any work: each writable (:func:`check_output_path`),
    all different from each other and from every input (an input is never written, even with
    ``overwrite``); stale temporary files of killed runs beside them are removed
    (:func:`remove_stale_partials`), and those named in ``geotiffs`` GeoTIFF names
    (:func:`check_geotiff_name`). ``outputs``: option name -> path (None: not asked for)."""
    paths = {k: Path(v) for k, v in outputs.items() if v is not None}
    for k in geotiffs:
        if k in paths:
            check_geotiff_name(paths[k])
    for k, p in paths.items():
        for i in inputs:
            if str(i) != "-" and _same(p, Path(i)):
                raise RasterWriteError(f"{k} {p} is the input file; the input is never overwritten")
    names = list(paths)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _same(paths[a], paths[b]):
                raise RasterWriteError(
                    f"{a} and {b} are the same file ({paths[a]}); give each its own"
                )
    for p in paths.values():
        check_output_path(p, overwrite)
        remove_stale_partials(p)
    return paths


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.kumo{os.getpid()}."


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie. A run killed with its process group
    (a batch's workers) stays a zombie until its parent or init reaps it, and in a container
    whose first process does not reap, that is never: its files would never count as left."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust the signal test
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")  # the state after "(comm)"


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the temporary files a killed run left beside ``path`` (``.<name>.kumo<pid>.*``
    whose process no longer runs); returns what was removed."""
    gone = []
    for f in path.parent.glob(f".{glob.escape(path.name)}.kumo*"):
        m = re.match(rf"\.{re.escape(path.name)}\.kumo(\d+)\.", f.name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or process_running(pid):
            continue  # another run's file
        try:
            f.unlink()
            gone.append(f)
            logger.warning("removed %s, left by a run that was killed", f)
        except OSError:
            pass
    return gone


@functools.cache
def set_block_cache(nbytes: int) -> bool:
    """Bound GDAL's block cache for this process (``GDALSetCacheMax64``), unless the user set
    ``GDAL_CACHEMAX``; returns whether it was set. The streamed file path reads each block once
    (:meth:`Raster.natural_strips`) and writes strips once (``layout="striped"``), so it needs
    next to no cache; GDAL's default (5 % of RAM) lets a long pass grow by gigabytes."""
    if os.environ.get("GDAL_CACHEMAX"):
        return False
    lib = _gdal()
    if lib is None:
        return False
    try:
        lib.GDALSetCacheMax64.argtypes = [ctypes.c_int64]
        lib.GDALSetCacheMax64(int(nbytes))
        return True
    except AttributeError:
        return False


@functools.cache
def _gdal() -> Any:  # noqa: ANN401
    """GDAL's C library as rasterio loaded it (ctypes), or None where it cannot be found (looked
    up once: it is called around every write)."""
    path = None
    try:
        with open("/proc/self/maps") as f:
            path = next((ln.split()[-1] for ln in f if "libgdal" in ln and ".so" in ln), None)
    except OSError:
        pass
    path = path or ctypes.util.find_library("gdal")
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.CPLGetLastErrorType.restype = ctypes.c_int
        lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
        return lib
    except (OSError, AttributeError):
        return None


def space_hint(path: Path) -> str:
    """``"; disk full"``-like context for a failed write, where the disk is (nearly) full."""
    try:
        free = shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return ""
    return f"; the disk is full ({free / 2**20:.0f} MB free)" if free < 64 * 2**20 else ""


class _GdalFailure:
    """Raises OSError when GDAL signalled a failure inside the block. A full disk shows up only
    there: GDAL's write and close calls can return normally while its block cache fails to
    reach the file, which would leave a truncated file looking complete."""

    def __enter__(self) -> None:
        self._env = rasterio.Env()  # GDAL's messages go to logging, not to stderr
        self._env.__enter__()
        if (lib := _gdal()) is not None:
            lib.CPLErrorReset()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._env.__exit__(exc_type, *exc)
        lib = _gdal()
        if exc_type is None and lib is not None and lib.CPLGetLastErrorType() >= 3:  # CE_Failure
            raise OSError((lib.CPLGetLastErrorMsg() or b"GDAL error").decode(errors="replace"))


class GeoTiffWriter:
    """Write a GeoTIFF strip by strip, atomically.

    The file is written under a temporary name in the destination folder and renamed to
    ``path`` by :meth:`close` once every row has been written; on an error (or a missing row)
    the temporary file is deleted and nothing appears at ``path``.

    Args:
        path: Destination ``.tif``.
        width, height, count: Raster size and band count.
        dtype: Stored type (e.g. ``"float32"``, ``"uint8"``, ``"uint16"``).
        crs, transform: Georeferencing (``None`` for none).
        gcps, rpcs: Ground control points ``(points, crs)`` and rational polynomial
            coefficients of an input that is not rectified (rasterio's ``gcps`` and ``rpcs``),
            carried over so that the output can be placed as the input can.
        nodata: Nodata value to declare, or ``None``.
        bands: Band set to record (``IMAGERY`` metadata + ``wavelength`` tags), or ``None``.
        descriptions: Band descriptions.
        tags: Dataset-level tags.
        band_tags: Extra per-band tags, one dict per band.
        scales, offsets: GDAL scale/offset to declare.
        overwrite: Replace an existing file.
        compress: GDAL compression (``"deflate"``, ``"zstd"`` (level 1), ``"lzw"``, ``"none"``).
        blocksize: Tile size (multiple of 16).
        layout: ``"tiled"`` (blocks of ``blocksize``) or ``"striped"`` (strips of
            :data:`STREAM_ROWS` rows, the layout for writing as lines stream in).
        colormap: Colour table of a single-band byte raster: ``{value: (r, g, b, a)}``.
        categories: Class names by value (0, 1, ...) of a single-band raster, written to the
            GDAL sidecar ``<path>.aux.xml`` (where GDAL and QGIS read them) when the file is
            finished.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        count: int,
        dtype: str | np.dtype,
        crs: Any = None,
        transform: Any = None,
        gcps: Any = None,
        rpcs: Any = None,
        nodata: float | None = None,
        bands: BandSet | None = None,
        descriptions: Sequence[str] | None = None,
        tags: dict[str, Any] | None = None,
        band_tags: Sequence[dict[str, Any]] | None = None,
        scales: Sequence[float] | None = None,
        offsets: Sequence[float] | None = None,
        overwrite: bool = False,
        compress: str = "deflate",
        blocksize: int = 256,
        photometric: str | None = None,
        colormap: dict[int, tuple[int, int, int, int]] | None = None,
        categories: Sequence[str] | None = None,
        layout: str = "tiled",
    ) -> None:
        check_geotiff_name(path)
        self.path = check_output_path(path, overwrite)
        self.categories = list(categories) if categories else None
        if width < 1 or height < 1 or count < 1:
            raise ShapeError(f"cannot write a {count} x {height} x {width} raster")
        if bands is not None and len(bands) != count:
            raise BandCountError(f"`bands` has {len(bands)} bands but the raster has {count}")
        self.width, self.height, self.count = width, height, count
        self.dtype = np.dtype(dtype)
        fd, tmp = tempfile.mkstemp(
            prefix=_partial_prefix(self.path), suffix=".partial", dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._rows = np.zeros(height, dtype=bool)
        self._closed = False
        if layout not in ("tiled", "striped"):
            raise ValueError(f"`layout` must be 'tiled' or 'striped', got {layout!r}")
        block = (
            blocksize if layout == "tiled" and width >= blocksize and height >= blocksize else None
        )
        kwargs: dict[str, Any] = dict(
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=self.dtype.name,
            crs=crs,
            # GCPs replace a geotransform (GDAL clears one with a warning)
            transform=None if gcps is not None and gcps[0] else transform,
            nodata=nodata,
            BIGTIFF="IF_SAFER",
        )
        if compress and compress.lower() != "none":
            kwargs["compress"] = compress
            if compress.lower() == "zstd":
                kwargs["zstd_level"] = 1  # measured 6x faster than deflate, same size (uint16)
            # compressed in this thread: GDAL's worker threads (NUM_THREADS, or the
            # GDAL_NUM_THREADS a user may set) swallow write errors, a full disk included
            kwargs["num_threads"] = "1"
            if self.dtype.kind == "f":
                kwargs["predictor"] = 3
            elif self.dtype.itemsize > 1:
                kwargs["predictor"] = 2
        if block:
            kwargs.update(tiled=True, blockxsize=block, blockysize=block)
        elif layout == "striped":
            # strips of STREAM_ROWS rows: written once each, in order, as lines finish; GDAL
            # never reads a half-written block back (no block cache needed for the output)
            kwargs.update(tiled=False, blockysize=min(STREAM_ROWS, height))
        if photometric:
            kwargs["photometric"] = photometric
        if count > 1:
            kwargs["interleave"] = "pixel" if count <= 4 else "band"
        try:
            with _georeferencing_optional():  # a stream from stdin has none
                self._ds = rasterio.open(self._tmp, "w", **kwargs)
            if gcps is not None and gcps[0]:  # (points, crs): an unrectified input's
                self._ds.gcps = gcps
            if rpcs is not None:
                self._ds.rpcs = rpcs
            if bands is not None:
                for b, (c, f) in enumerate(
                    zip(bands.centers_nm, bands.fwhm_nm, strict=True), start=1
                ):
                    self._ds.update_tags(
                        b,
                        ns="IMAGERY",
                        CENTRAL_WAVELENGTH_UM=f"{c / 1000:.6g}",
                        FWHM_UM=f"{f / 1000:.6g}",
                    )
                    self._ds.update_tags(
                        b, wavelength=f"{c:.6g}", fwhm=f"{f:.6g}", wavelength_units="nm"
                    )
            if descriptions is not None:
                for b, d in enumerate(descriptions, start=1):
                    self._ds.set_band_description(b, d)
            if tags:
                self._ds.update_tags(**{k: str(v) for k, v in tags.items()})
            for b, t in enumerate(band_tags or (), start=1):
                self._ds.update_tags(b, **{k: str(v) for k, v in t.items()})
            if colormap:
                self._ds.write_colormap(1, colormap)
            if scales is not None:
                self._ds.scales = tuple(scales)
            if offsets is not None:
                self._ds.offsets = tuple(offsets)
        except (RasterioError, OSError) as exc:
            self._discard()
            raise RasterWriteError(f"{self.path}: cannot create ({_short(exc)})") from None

    def write(self, data: npt.NDArray[Any], row: int) -> None:
        """Write ``(count, n, width)`` data at rows ``row .. row + n - 1``."""
        if self._closed:
            raise RasterWriteError(f"{self.path}: writer already closed")
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3 or data.shape[0] != self.count or data.shape[2] != self.width:
            raise ShapeError(
                f"strip has shape {data.shape}; expected ({self.count}, n, {self.width}) for {self.path.name}"
            )
        n = data.shape[1]
        if row < 0 or row + n > self.height:
            raise ShapeError(
                f"rows {row}:{row + n} lie outside {self.path.name} (height {self.height})"
            )
        if data.dtype != self.dtype:
            if self.dtype.kind in "iu" and data.dtype.kind == "f":
                raise DataTypeError(
                    f"strip is {data.dtype} but {self.path.name} stores {self.dtype}; convert first"
                )
            data = data.astype(self.dtype)
        try:
            with _GdalFailure():
                self._ds.write(data, window=Window(0, row, self.width, n))
        except (RasterioError, OSError) as exc:
            self.abort()
            raise RasterWriteError(
                f"{self.path}: write failed ({_short(exc)}){space_hint(self.path)}"
            ) from None
        self._rows[row : row + n] = True

    @property
    def complete(self) -> bool:
        """True once every row has been written."""
        return bool(self._rows.all())

    def close(self) -> Path:
        """Finish the file and move it to its final name.

        Raises:
            RasterWriteError: Rows are missing or the file could not be finished; nothing is left
                at ``path``.
        """
        if self._closed:
            return self.path
        if not self.complete:
            missing = int((~self._rows).sum())
            self.abort()
            raise RasterWriteError(
                f"{self.path}: {missing} of {self.height} rows were never written; output discarded"
            )
        try:
            with _GdalFailure():  # the last blocks reach the file here
                self._ds.close()
            os.chmod(self._tmp, 0o666 & ~_UMASK)
            aux = Path(str(self.path) + ".aux.xml")
            if self.categories:
                tmp_aux = Path(str(self._tmp) + ".aux.xml")
                tmp_aux.write_text(_category_xml(self.categories))
                os.replace(tmp_aux, aux)
            elif aux.exists():
                aux.unlink()  # a sidecar of the file this one replaces would describe it wrongly
            os.replace(self._tmp, self.path)
        except (RasterioError, OSError) as exc:
            self._discard()
            raise RasterWriteError(f"{self.path}: cannot finish the file ({_short(exc)})") from None
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard the output."""
        if self._closed:
            return
        self._closed = True
        try:
            self._ds.close()
        except Exception:  # noqa: BLE001 - already failing; the file is deleted anyway
            pass
        self._discard()

    def _discard(self) -> None:
        self._closed = True
        for p in (self._tmp, Path(str(self._tmp) + ".aux.xml")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> GeoTiffWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _category_xml(names: Sequence[str]) -> str:
    """GDAL PAM sidecar naming the classes of band 1."""
    from xml.sax.saxutils import escape

    cats = "".join(f"      <Category>{escape(n)}</Category>\n" for n in names)
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{cats}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


class WriterGroup:
    """Outputs that are finished together or discarded together: on leaving the ``with`` block
    normally every writer is closed (renamed into place); on an exception every one is aborted."""

    def __init__(self, *writers: GeoTiffWriter | None) -> None:
        self.writers = [w for w in writers if w is not None]

    def add(self, writer: GeoTiffWriter | None) -> GeoTiffWriter | None:
        if writer is not None:
            self.writers.append(writer)
        return writer

    def __enter__(self) -> WriterGroup:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                for w in self.writers:
                    w.close()
            except BaseException:
                for w in self.writers:
                    w.abort()
                raise
        else:
            for w in self.writers:
                w.abort()


def write_geotiff(path: str | os.PathLike[str], data: npt.NDArray[Any], **kwargs: Any) -> Path:
    """Write a whole ``(bands, rows, cols)`` array atomically; kwargs as :class:`GeoTiffWriter`."""
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ShapeError(f"`data` must be (bands, rows, cols), got shape {data.shape}")
    with GeoTiffWriter(
        path,
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=kwargs.pop("dtype", data.dtype),
        **kwargs,
    ) as w:
        w.write(data, 0)
    return Path(path)


__all__ = [
    "DEFAULT_STRIP_LINES",
    "GeoTiffWriter",
    "Raster",
    "WriterGroup",
    "Strip",
    "bands_of_fill",
    "check_geotiff_name",
    "check_output_path",
    "fill_bands_message",
    "fill_values",
    "open_raster",
    "write_geotiff",
]
