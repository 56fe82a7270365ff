"""The hyperspectral scene catalogue: every clear hyperspectral crop in ../shared/data, with its
file, layout, reflectance scale, wavelengths and where the wavelengths come from.

Wavelength provenance, per scene (recorded in model cards):

* ``given``: the data set states them (HYDICE, ROSIS in ``wavelengths.json``: nominal grids).
* ``derived``: computed from a published description (Jasper Ridge: a uniform 380-2500 nm grid
  over the kept channel numbers; SAMSON: a uniform 401-889 nm grid).
* ``inferred``: the AVIRIS crops of the ABU set lost their band lists. :func:`infer_aviris`
  places them on the 1992 AVIRIS channel table (``aviris_1992_calibration_92AV3C.spc``): the
  kept channels run in table order, and the index offset is fixed by the sharpest absorption
  feature in every airborne reflectance product, the residual oxygen A band at 760.5 nm (the
  deepest one-channel dip of the scene's mean spectrum between 700 and 830 nm). The fit is
  checked against a second, independent feature, the 940 nm water-vapour band; the distance
  between where the table puts that dip and 940 nm is recorded as the uncertainty. Beyond the
  first water-absorption gap (~1350 nm) the removed channels are not known, so only the channels
  before it get wavelengths; a model that needs the SWIR cannot use these crops (refused, not
  guessed).

The AVIRIS-NG chunks are at-sensor radiance (not reflectance) and 10 x 10 / 25 x 30 px, smaller
than one training tile: catalogued as excluded, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from export.data import SHARED, Scene
from kumo_edge.bands import BandSet
from kumo_edge.errors import KumoError

HS = "hyperspectral"
#: Where the oxygen A band is (nm), and the water-vapour band used to check the fit.
O2A_NM = 760.5
H2O_NM = 940.0


@dataclass(frozen=True)
class Entry:
    """One catalogued crop.

    Attributes:
        name: Scene name (splits, cards).
        path: File, relative to ../shared/data.
        sensor: Instrument and place.
        layout: How the cube is stored (``mat:data`` rows x cols x bands; ``mat:Y`` bands x
            pixels column-major; ``mat:SamSon``).
        scale: Stored value -> reflectance factor.
        gsd_m: Ground sample distance (approximate, for the shadow geometry).
        provenance: ``given``, ``derived`` or ``inferred`` (see the module docstring).
        licence: What may be done with it.
    """

    name: str
    path: str
    sensor: str
    layout: str
    scale: float
    gsd_m: float
    provenance: str
    licence: str


_AVIRIS_ABU = [
    ("aviris_airport_1", "abu-airport-1.mat", "Los Angeles"),
    ("aviris_airport_2", "abu-airport-2.mat", "Los Angeles"),
    ("aviris_airport_3", "abu-airport-3.mat", "Los Angeles"),
    ("aviris_airport_4", "abu-airport-4.mat", "Gulfport"),
    ("aviris_beach_1", "abu-beach-1.mat", "Cat Island"),
    ("aviris_beach_3", "abu-beach-3.mat", "Bay Champagne"),
    ("aviris_urban_1", "abu-urban-1.mat", "Texas coast"),
    ("aviris_urban_3", "abu-urban-3.mat", "Gainesville"),
    ("aviris_urban_4", "abu-urban-4.mat", "Los Angeles"),
    ("aviris_urban_5", "abu-urban-5.mat", "Los Angeles"),
]
_NASA = "NASA/JPL open data (may be shipped)"
_RESEARCH = "research use (train and test; never shipped)"

CATALOGUE: tuple[Entry, ...] = (
    *(
        Entry(n, f"{HS}/aviris_abu/{f}", f"AVIRIS, {p}", "mat:data", 1e-4, 7.5, "inferred", _NASA)
        for n, f, p in _AVIRIS_ABU
    ),
    Entry(
        "aviris_urban_2",
        f"{HS}/abu-urban-2.mat",
        "AVIRIS, coastal urban",
        "mat:data",
        1e-4,
        7.5,
        "inferred",
        _NASA,
    ),
    Entry(
        "jasper_ridge",
        f"{HS}/jasper_ridge/jasperRidge2_R198__MeiShaohui.mat",
        "AVIRIS, Jasper Ridge",
        "mat:Y",
        1e-4,
        20.0,
        "derived",
        _NASA,
    ),
    Entry(
        "samson",
        f"{HS}/samson/Samson.mat",
        "SAMSON airborne imager",
        "mat:SamSon",
        0.5,  # stored 0..1 by its maximum: x0.5 puts its 99th percentile near 0.3 reflectance
        3.0,
        "derived",
        _RESEARCH,
    ),
    Entry(
        "hydice_urban",
        f"{HS}/HYDICE_data.mat",
        "HYDICE, Urban",
        "mat:data",
        1e-3,
        2.0,
        "given",
        _RESEARCH,
    ),
    Entry(
        "rosis_beach",
        f"{HS}/abu-beach-4.mat",
        "ROSIS, Pavia",
        "mat:data",
        1.0,
        1.3,
        "given",
        _RESEARCH,
    ),
)
#: Catalogued but not used, with the reason.
EXCLUDED = {
    f"{HS}/aviris_ng/ang20160910t185702_2rdn_img": "at-sensor radiance, 10 x 10 px: smaller than a tile",
    f"{HS}/aviris_ng/ang20170323t202244_rdn_7000-7010": "at-sensor radiance, 10 lines: smaller than a tile",
}


def _load_raw(entry: Entry, root: Path) -> npt.NDArray[np.float32]:
    """``(bands, rows, cols)`` float32 reflectance of a catalogued crop."""
    from scipy.io import loadmat  # the ground/training side only

    path = root / entry.path
    if not path.is_file():
        raise KumoError(f"{path}: catalogued scene file not found")
    kind, key = entry.layout.split(":")
    arr = loadmat(path)[key]
    if key == "Y":  # (bands, pixels), pixels column-major over a square crop
        n = int(round(np.sqrt(arr.shape[1])))
        cube = arr.reshape(arr.shape[0], n, n, order="F")
    else:
        cube = np.transpose(arr, (2, 0, 1))
    return np.clip(cube.astype(np.float32) * np.float32(entry.scale), 0.0, 1.0)


@dataclass(frozen=True)
class Inference:
    """How an AVIRIS crop's channels were placed on the 1992 table."""

    offset: int  # table index = crop index + offset
    o2a_index: int
    h2o_index: int
    h2o_nm: float  # where the fit puts the water-vapour dip
    uncertainty_nm: float
    kept: int  # channels before the first water gap that got a wavelength

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def aviris_table(root: Path = SHARED) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Centres and FWHM (nm) of the 220 channels of the 1992 AVIRIS calibration table."""
    f = root / HS / "aviris_abu" / "aviris_1992_calibration_92AV3C.spc"
    t = np.loadtxt(f, skiprows=2)
    return t[:, 0], t[:, 1]


def _dip(mean: npt.NDArray[np.float64], lo: int, hi: int) -> int:
    """Index of the deepest one-channel dip of ``mean`` in ``[lo, hi)``."""
    i = np.arange(max(lo, 1), min(hi, len(mean) - 1))
    depth = (mean[i] - 0.5 * (mean[i - 1] + mean[i + 1])) / np.maximum(mean[i], 1e-6)
    return int(i[np.argmin(depth)])


def infer_aviris(cube: npt.NDArray[np.float32], root: Path = SHARED) -> tuple[BandSet, Inference]:
    """Wavelengths of an AVIRIS crop's channels before the first water gap (module docstring)."""
    centres, fwhm = aviris_table(root)
    # extend the table below 400 nm with its first spacing (modern AVIRIS starts near 365 nm)
    pad = 8
    step = centres[1] - centres[0]
    ext_c = np.concatenate([centres[0] - step * np.arange(pad, 0, -1), centres])
    ext_f = np.concatenate([np.full(pad, fwhm[0]), fwhm])
    mean = cube.reshape(cube.shape[0], -1).mean(1).astype(np.float64)
    # a first guess puts crop index i at table index i - 3 (the ABU crops start ~370 nm)
    guess = lambda nm: int(np.argmin(np.abs(ext_c - nm))) - pad + 3  # noqa: E731
    o2 = _dip(mean, guess(700), guess(830))
    offset = int(np.argmin(np.abs(ext_c - O2A_NM))) - o2
    h2o = _dip(mean, o2 + 12, o2 + 26)
    h2o_nm = float(ext_c[h2o + offset])
    # channels up to the first water gap (~1330 nm): the fit does not reach past it
    kept = int(np.searchsorted(ext_c, 1330.0)) - offset
    kept = min(kept, cube.shape[0])
    if offset < 0 or kept < 10:
        raise KumoError("AVIRIS wavelength inference failed: no oxygen A band where expected")
    c = ext_c[offset : offset + kept]
    f = ext_f[offset : offset + kept]
    bands = BandSet(tuple(np.round(c, 2)), tuple(np.round(f, 2)))
    unc = max(abs(h2o_nm - H2O_NM), 0.5 * step)
    return bands, Inference(offset - pad, o2, h2o, h2o_nm, round(unc, 1), kept)


def _derived_bands(entry: Entry, root: Path, n: int) -> BandSet:
    if entry.name == "jasper_ridge":
        t = np.loadtxt(root / HS / "jasper_ridge" / "jasper_198_derived_nm.txt", comments="#")
        c = t[:, 1]
    else:
        c = np.loadtxt(root / HS / "samson" / "samson_156_derived_nm.txt", comments="#")
    if len(c) != n:
        raise KumoError(f"{entry.name}: {len(c)} wavelengths for {n} bands")
    step = float(np.median(np.diff(c)))
    return BandSet(tuple(np.round(c, 2)), (step,) * n)


def load_entry(entry: Entry, root: Path = SHARED) -> Scene:
    """A catalogued crop as a clear :class:`~export.data.Scene`; ``scene.meta`` records the
    wavelength provenance (and, for inferred ones, the fit)."""
    cube = _load_raw(entry, root)
    meta: dict = {"provenance": entry.provenance, "scale": entry.scale, "licence": entry.licence}
    if entry.provenance == "inferred":
        bands, inf = infer_aviris(cube, root)
        cube = cube[: inf.kept]
        meta["inference"] = inf.to_dict()
        meta["uncertainty_nm"] = inf.uncertainty_nm
    elif entry.provenance == "derived":
        bands = _derived_bands(entry, root, cube.shape[0])
        meta["uncertainty_nm"] = 10.0  # a uniform grid over a real instrument: ~1 channel
    else:
        w = json.loads((root / HS / "wavelengths.json").read_text())[Path(entry.path).name]
        bands = BandSet(tuple(w["wavelength_nm"]), (float(w["fwhm_nm"]),) * cube.shape[0])
        meta["uncertainty_nm"] = 5.0
    valid = np.isfinite(cube).all(0) & (cube.max(0) > 0)
    cube = np.ascontiguousarray(cube)
    return Scene(
        entry.name, cube, bands, valid, entry.gsd_m, f"{entry.sensor} ({entry.path})", meta
    )


def hyperspectral_corpus(root: Path = SHARED, names: list[str] | None = None) -> list[Scene]:
    """Every catalogued hyperspectral crop (or those named), loaded."""
    if not (root / HS).is_dir():
        raise KumoError(f"{root / HS} not found; the hyperspectral corpus lives in ../shared/data")
    known = {e.name: e for e in CATALOGUE}
    for n in names or []:
        if n not in known:
            raise KumoError(f"unknown scene {n!r}; the catalogue has {', '.join(known)}")
    return [load_entry(known[n], root) for n in (names or list(known))]


def card_rows(scenes: list[Scene]) -> list[dict]:
    """One record per scene for a model card: name, sensor, size, wavelength provenance."""
    return [
        {
            "scene": s.name,
            "source": s.source,
            "size": list(s.cube.shape),
            "wavelengths": s.meta.get("provenance", "given"),
            "range_nm": [
                round(float(s.bands.centers.min()), 1),
                round(float(s.bands.centers.max()), 1),
            ],
            "uncertainty_nm": s.meta.get("uncertainty_nm"),
            "licence": s.meta.get("licence", ""),
        }
        for s in scenes
    ]
