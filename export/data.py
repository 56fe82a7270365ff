"""Training data: real clear scenes -> valid tiles -> model band set -> synthetic clouds.

A :class:`Scene` is a whole clear cube in memory (training scenes are small; a user's large
raster is read once, strip by strip). :class:`CloudyTiles` draws random fully valid tiles from
a list of scenes, resamples them to the model's band set, augments them (flips, 90-degree
rotations, brightness) and renders clouds and shadows over them on the fly with
:mod:`kumo_edge.clouds` (random cover, thickness, spectral exponent, sun, cloud height), giving
``(cloudy, clear, classes, tau550)``.

Splits are BY SCENE: :func:`split_scenes` assigns whole scenes to train / val / test, so no
tile of a test scene is ever seen in training.

The built-in catalogue (:func:`shared_scenes`) reads ../shared/data: Landsat-7/8 and
Sentinel-2 clear scenes (multispectral), and the HYDICE and ROSIS hyperspectral crops
(wavelengths from ``wavelengths.json``). The AVIRIS crop is left out: its band positions are
unknown (26 bands were removed without a published list), and guessing them would put the
wrong wavelengths under the 32-band model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kumo_edge.bands import BandSet, resample, resampling_matrix
from kumo_edge.clouds import CloudField, CloudParams
from kumo_edge.config import sensor_profile
from kumo_edge.errors import BandMappingError, KumoError
from kumo_edge.io import Raster

logger = logging.getLogger(__name__)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Training class indices (the runtime's mask codes are these + 1, with 0 = no data).
CLASSES = ("clear", "thin", "thick", "shadow")


@dataclass
class Scene:
    """A clear scene in memory.

    Attributes:
        name: Unique name (used for splits and model cards).
        cube: ``(bands, rows, cols)`` float32 reflectance in [0, 1].
        bands: Its band set.
        valid: ``(rows, cols)`` bool.
        gsd_m: Pixel size in metres.
        source: Where it comes from (for model cards).
    """

    name: str
    cube: npt.NDArray[np.float32]
    bands: BandSet
    valid: npt.NDArray[np.bool_]
    gsd_m: float = 30.0
    source: str = ""
    meta: dict = field(default_factory=dict)

    def to(self, target: BandSet) -> Scene:
        """This scene resampled to ``target`` (raises BandMappingError if impossible)."""
        m = resampling_matrix(self.bands, target)
        return Scene(
            self.name,
            resample(self.cube, m),
            target,
            self.valid,
            self.gsd_m,
            self.source,
            self.meta,
        )


def scene_from_raster(path: str | Path, name: str | None = None, **raster_kwargs) -> Scene:  # noqa: ANN003
    """Read a whole raster (strip by strip) as a clear :class:`Scene`."""
    with Raster(path, **raster_kwargs) as r:
        bands = r.bands
        strips = list(r.strips())
        gsd = abs(r.transform.a) if r.crs is not None and r.crs.is_projected else 30.0
    cube = np.concatenate([s.data for s in strips], axis=1)
    valid = np.concatenate([s.valid for s in strips], axis=0)
    return Scene(name or Path(path).stem, cube, bands, valid, gsd, str(path))


def _mat_scene(
    path: Path,
    name: str,
    wavelengths: Sequence[float],
    fwhm: float,
    scale: float,
    source: str,
    gsd: float,
) -> Scene:
    from scipy.io import loadmat  # only the ground side needs scipy

    data = loadmat(path)["data"].astype(np.float32) * scale
    cube = np.clip(np.transpose(data, (2, 0, 1)), 0, 1).astype(np.float32)
    bands = BandSet(tuple(wavelengths), (fwhm,) * len(wavelengths))
    valid = np.isfinite(cube).all(0) & (cube.max(0) > 0)
    return Scene(name, cube, bands, valid, gsd, source)


#: Of the five eo-learn "reference scenes" (one place on five dates), these are not clear: the
#: first lies under thick cloud (median blue reflectance 0.30), the second under a grey cloud
#: deck (0.15), where the three clear dates read 0.07-0.08. The shared README calls all five
#: clear; as clear training scenes they taught the detector real cloud as clear ground and the
#: multispectral removers real cloud as the surface under a synthetic one (found 2026-12-06).
EOLEARN_CLOUDY = (0, 1)


def shared_scenes(root: Path = SHARED, cloudy_eolearn: bool = False) -> list[Scene]:
    """The clear scenes of ../shared/data (see the module docstring); ``cloudy_eolearn``: the
    two cloudy eo-learn dates too (:data:`EOLEARN_CLOUDY`), as bright, hazy "ground" for a
    brightness companion, which without them learns that ground is dark (README, Limits)."""
    if not root.is_dir():
        raise KumoError(f"{root} not found; pass your own scene list (--scenes) instead")
    scenes: list[Scene] = []
    l8 = BandSet((482.0, 561.4, 654.6), (60.0, 57.0, 37.0), ("B2", "B3", "B4"))
    for f in sorted((root / "landsat8").glob("LC08_*.tif")):
        s = scene_from_raster(
            f,
            f"landsat8_{f.name.split('_')[2]}",
            wavelengths=l8.centers_nm,
            fwhm=l8.fwhm_nm,
            scale=2e-5,
            offset=-0.1,
        )
        s.source = f"Landsat-8 OLI L1TP {f.name} (USGS, public domain)"
        scenes.append(s)
    l7 = root / "landsat7" / "LE07_nc_2000_B123457.tif"
    if l7.exists():
        from kumo_edge.cli import sample_scene_path

        s = scene_from_raster(sample_scene_path(), "landsat7_nc")
        s.source = "Landsat-7 ETM+ North Carolina 2000 (USGS), the bundled sample scene"
        scenes.append(s)
    s2 = sensor_profile("sentinel2-msi").bands
    npy = root / "sentinel2" / "eolearn_reference_scenes_s2_l1c.npy"
    if npy.exists():
        arr = np.load(npy)
        for i in range(arr.shape[0]):
            if i in EOLEARN_CLOUDY and not cloudy_eolearn:
                continue
            cube = np.clip(np.transpose(arr[i], (2, 0, 1)), 0, 1).astype(np.float32)
            note = " (a cloudy date, used as bright ground)" if i in EOLEARN_CLOUDY else ""
            scenes.append(
                Scene(
                    f"s2_eolearn_{i}",
                    cube,
                    s2,
                    np.ones(cube.shape[1:], bool),
                    10.0,
                    f"Sentinel-2 L1C, eo-learn example data (Copernicus){note}",
                )
            )
    # the four 10 m bands, and the two 20 m SWIR bands repeated to 10 m (nearest)
    ben_bands = ["B02", "B03", "B04", "B08", "B11", "B12"]
    for d in sorted((root / "sentinel2" / "bigearthnet_s2_l2a").glob("S2*")):
        planes = []
        for b in ben_bands:
            with Raster(
                d / f"{d.name}_{b}.tif",
                wavelengths=[0 + s2.centers_nm[s2.names.index(b.replace("B0", "B"))]],
                scale=1e-4,
            ) as r:
                plane = r.read_strip(0, r.height).data[0]
            if planes and plane.shape != planes[0].shape:
                k = planes[0].shape[0] // plane.shape[0]
                plane = np.repeat(np.repeat(plane, k, 0), k, 1)
            planes.append(plane)
        idx = [s2.names.index(b.replace("B0", "B")) for b in ben_bands]
        cube = np.stack(planes).astype(np.float32)
        scenes.append(
            Scene(
                f"ben_{d.name[-5:]}",
                cube,
                s2.subset(idx),
                np.ones(cube.shape[1:], bool),
                10.0,
                f"Sentinel-2 L2A BigEarthNet patch {d.name} (CDLA-Permissive-1.0)",
            )
        )
    hs = root / "hyperspectral"
    wl = (
        json.loads((hs / "wavelengths.json").read_text())
        if (hs / "wavelengths.json").exists()
        else {}
    )
    if "HYDICE_data.mat" in wl:
        w = wl["HYDICE_data.mat"]
        scenes.append(
            _mat_scene(
                hs / "HYDICE_data.mat",
                "hydice_urban",
                w["wavelength_nm"],
                w["fwhm_nm"],
                1e-3,
                "HYDICE Urban crop, ABU set (research use; approximate wavelengths)",
                2.0,
            )
        )
    if "abu-beach-4.mat" in wl:
        w = wl["abu-beach-4.mat"]
        scenes.append(
            _mat_scene(
                hs / "abu-beach-4.mat",
                "rosis_beach",
                w["wavelength_nm"],
                w["fwhm_nm"],
                1.0,
                "ROSIS Pavia crop, ABU set (research use; approximate wavelengths)",
                1.3,
            )
        )
    return scenes


def usable(scenes: Sequence[Scene], target: BandSet) -> list[Scene]:
    """Scenes that can be resampled to ``target``, resampled (others are logged and skipped)."""
    out = []
    for s in scenes:
        try:
            out.append(s.to(target))
        except BandMappingError as exc:
            logger.info("scene %s skipped for this band set: %s", s.name, exc)
    return out


def split_scenes(
    scenes: Sequence[Scene], val: Sequence[str], test: Sequence[str]
) -> dict[str, list[Scene]]:
    """Assign whole scenes to splits by name; every other scene trains."""
    names = {s.name for s in scenes}
    for n in [*val, *test]:
        if n not in names:
            raise KumoError(f"split names scene {n!r}, which is not among {sorted(names)}")
    if set(val) & set(test):
        raise KumoError(f"scenes in both val and test: {sorted(set(val) & set(test))}")
    return {
        "train": [s for s in scenes if s.name not in val and s.name not in test],
        "val": [s for s in scenes if s.name in val],
        "test": [s for s in scenes if s.name in test],
    }


def clean_origins(valid: npt.NDArray[np.bool_], size: int) -> npt.NDArray[np.int64]:
    """``(N, 2)`` every ``(row, col)`` where a ``size`` tile holds only valid pixels."""
    h, w = valid.shape
    if h < size or w < size:
        return np.zeros((0, 2), np.int64)
    s = np.zeros((h + 1, w + 1), np.int64)
    s[1:, 1:] = np.cumsum(np.cumsum(~valid, 0), 1)
    bad = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
    return np.argwhere(bad == 0).astype(np.int64)


#: Snow and ice reflectance, approximate (medium grains): nearly white and bright in the visible,
#: falling through the NIR, dark in the SWIR ice-absorption bands (1.5 and 2.0 um) with partial
#: recovery at 1.65-1.8 and 2.2 um. The values in the SWIR vary several-fold with grain size and
#: sun angle, hence the random factor in :func:`add_snow`.
_SNOW_NM = np.array(
    [
        400,
        500,
        600,
        700,
        800,
        900,
        1000,
        1100,
        1250,
        1400,
        1500,
        1650,
        1800,
        1950,
        2100,
        2200,
        2500,
    ],
    float,
)
_SNOW = np.array(
    [
        0.95,
        0.95,
        0.93,
        0.9,
        0.86,
        0.8,
        0.68,
        0.56,
        0.5,
        0.2,
        0.1,
        0.15,
        0.13,
        0.03,
        0.09,
        0.12,
        0.03,
    ],
    float,
)


def add_snow(
    clear: npt.NDArray[np.float32], bands: BandSet, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Snow and ice over a clear tile: an augmentation for detectors with a SWIR band.

    Bright snow is clear ground: a detector must not call it cloud. In the VNIR the two look
    alike; from ~1.5 um snow is dark and cloud stays bright (the normalised difference snow
    index). The only real clear-snow pixels here are one held-out Landsat-8 patch and one
    held-out Sentinel-2 scene, so training sees snow painted over real tiles: a Perlin-noise
    cover (soft edges, random extent and feature size) of the spectrum above, scaled for
    illumination, tilted in the VNIR, with a random SWIR level, and modulated by the shading of
    the ground below. The result is still labelled clear; clouds are rendered over it after.
    """
    _, rows, cols = clear.shape
    params = CloudParams(
        cover=float(rng.uniform(0.2, 1.0)),
        thickness=1.0,
        gamma=0.5,
        feature_px=float(rng.uniform(8.0, 64.0)),
        shadows=False,
    )
    frac = CloudField(params, rows, cols, int(rng.integers(2**31))).tau550(0, rows, 0, cols)
    frac = np.clip(frac * rng.uniform(1.5, 4.0), 0.0, 1.0)
    lam = bands.centers.astype(float)
    spec = np.interp(lam, _SNOW_NM, _SNOW)
    spec = np.where(
        lam > 1000, spec * rng.uniform(0.4, 2.2), spec * (lam / 560.0) ** rng.uniform(-0.15, 0.25)
    )
    spec *= rng.uniform(0.55, 1.0)
    lum = clear.mean(0)
    shade = np.clip(1.0 + 0.5 * (lum / max(float(lum.mean()), 1e-3) - 1.0), 0.3, 1.3)
    snow = spec[:, None, None].astype(np.float32) * shade[None].astype(np.float32)
    out = clear * (1.0 - frac[None]) + snow * frac[None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


#: Range of the thickness exponent of an overcast sample (:class:`CloudRanges`).
OVERCAST_GAMMA = (0.05, 0.2)


@dataclass(frozen=True)
class CloudRanges:
    """Ranges the cloud parameters are drawn from, uniformly."""

    cover: tuple[float, float] = (0.05, 0.95)
    thickness: tuple[float, float] = (0.1, 3.0)
    angstrom: tuple[float, float] = (0.3, 2.0)
    feature_px: tuple[float, float] = (12.0, 96.0)
    cloud_albedo: tuple[float, float] = (0.7, 0.95)
    sun_elevation_deg: tuple[float, float] = (30.0, 70.0)
    cloud_height_m: tuple[float, float] = (300.0, 3000.0)
    clear_fraction: float = 0.1  # share of samples with no cloud at all
    snow_fraction: float = 0.0  # share of samples with snow under the clouds (:func:`add_snow`)
    #: share of cloudy samples drawn as an overcast: cover 1 and a thickness nearly flat
    #: (gamma in OVERCAST_GAMMA: ``u ** gamma`` of u in [0.05, 1] stays within 0.55-1), a
    #: featureless sheet such as hazy overcast or ice cloud; drawn only when above 0 (older
    #: recipes draw what they drew)
    overcast_fraction: float = 0.0
    # drawn only when the range is not a single value (older recipes draw what they drew)
    diffuse_fraction: tuple[float, float] = (0.15, 0.15)
    view_zenith_deg: tuple[float, float] = (0.0, 0.0)
    gamma: tuple[float, float] = (1.5, 1.5)
    persistence: tuple[float, float] = (0.5, 0.5)
    sky_exponent: tuple[float, float] = (2.0, 2.0)

    def draw(self, rng: np.random.Generator, gsd_m: float) -> CloudParams:
        u = lambda r: float(rng.uniform(*r))  # noqa: E731
        cover = 0.0 if rng.random() < self.clear_fraction else u(self.cover)
        overcast = (
            cover > 0 and self.overcast_fraction > 0 and rng.random() < self.overcast_fraction
        )
        kw = dict(
            cover=cover,
            thickness=u(self.thickness),
            angstrom=u(self.angstrom),
            feature_px=u(self.feature_px),
            cloud_albedo=u(self.cloud_albedo),
            sun_azimuth_deg=u((0.0, 360.0)),
            sun_elevation_deg=u(self.sun_elevation_deg),
            cloud_height_m=u(self.cloud_height_m),
            gsd_m=gsd_m,
        )
        for name in ("diffuse_fraction", "view_zenith_deg", "gamma", "persistence", "sky_exponent"):
            r = getattr(self, name)
            kw[name] = u(r) if r[1] > r[0] else r[0]
        if overcast:
            kw["cover"], kw["gamma"] = 1.0, u(OVERCAST_GAMMA)
        return CloudParams(**kw)


class CloudyTiles:
    """Random cloudy/clear tile pairs from clear scenes (a map-style dataset of fixed length).

    Item ``i`` of epoch ``e`` is determined by ``(seed, e, i)``; call :meth:`set_epoch` between
    epochs for fresh samples. Items: ``cloudy`` and ``clear`` ``(C, T, T)`` float32,
    ``classes`` ``(T, T)`` int64 (0 clear, 1 thin, 2 thick, 3 shadow), ``tau`` ``(T, T)`` float32.
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        tile: int = 64,
        length: int = 1000,
        seed: int = 0,
        augment: bool = True,
        ranges: CloudRanges = CloudRanges(),  # noqa: B008
        gain: tuple[float, float] = (0.6, 1.6),
    ) -> None:
        self.scenes = [s for s in scenes if len(clean_origins(s.valid, tile))]
        self.gain = gain
        if not self.scenes:
            raise KumoError(f"no scene holds a fully valid {tile} x {tile} tile")
        self.origins = [clean_origins(s.valid, tile) for s in self.scenes]
        area = np.array([len(o) for o in self.origins], float)
        self.p = (
            np.sqrt(area) / np.sqrt(area).sum()
        )  # large scenes are seen more, not overwhelmingly
        self.tile, self.length, self.seed, self.augment, self.ranges = (
            tile,
            length,
            seed,
            augment,
            ranges,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, npt.NDArray]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        k = int(rng.choice(len(self.scenes), p=self.p))
        s = self.scenes[k]
        y, x = self.origins[k][rng.integers(len(self.origins[k]))]
        t = self.tile
        clear = s.cube[:, y : y + t, x : x + t]
        if self.augment:
            clear = np.rot90(clear, int(rng.integers(4)), axes=(1, 2))
            if rng.random() < 0.5:
                clear = clear[:, :, ::-1]
            # brightness (``gain``: its range) and a small per-band gain: sensors, seasons and
            # calibrations differ
            gain = rng.uniform(*self.gain) * rng.normal(1.0, 0.05, size=(clear.shape[0], 1, 1))
            clear = clear * gain.astype(np.float32)
        clear = np.ascontiguousarray(np.clip(clear, 0, 1), dtype=np.float32)
        if self.ranges.snow_fraction > 0:  # own stream: items without snow stay as they were
            srng = np.random.default_rng([self.seed, self.epoch, i, 2])
            if srng.random() < self.ranges.snow_fraction:
                clear = add_snow(clear, s.bands, srng)
        # clouds come from their own stream, so the same item gets the same cloud field in every
        # band set (the gain above draws one number per band)
        crng = np.random.default_rng([self.seed, self.epoch, i, 1])
        params = self.ranges.draw(crng, s.gsd_m)
        field = CloudField(params, t, t, int(crng.integers(2**31)))
        res = field.apply(clear, s.bands)
        classes = np.zeros((t, t), np.int64)
        classes[res.shadow] = 3
        classes[res.cloud] = 1
        classes[res.thick] = 2
        return {
            "cloudy": res.cloudy,
            "clear": clear,
            "classes": classes,
            "tau": res.tau550,
            "t550": res.extra["t550"],
            "illum550": res.extra["illum550"],
            "angstrom": np.float32(params.angstrom),
        }


def patch_cube(patch: dict, bands: BandSet) -> npt.NDArray[np.float32]:
    """A real patch's cube resampled to ``bands`` and clipped to [0, 1], ``(C, H, W)`` (raises
    BandMappingError where the patch's bands cannot feed ``bands``)."""
    return np.clip(resample(patch["cube"], resampling_matrix(patch["bands"], bands)), 0, 1)


#: The band order of :func:`rice2_pairs`' cubes: blue, green, red, as the ``rgb`` band set.
RICE2_ORDER = ("blue", "green", "red")


def rice2_pairs(root: Path = SHARED) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The RICE2 pairs as ``(name, cloudy, clear)``: float32 ``(3, H, W)`` cubes of the 8-bit
    display values / 255 (the usual RICE convention; no radiometric calibration exists), in the
    order :data:`RICE2_ORDER`. The PNGs store red, green, blue; the band sets run blue to red,
    so the channels are reversed here (fed as stored, red was read as blue)."""
    from PIL import Image

    folder = root / "real_clouds" / "rice2_pairs"
    if not folder.is_dir():
        raise KumoError(f"{folder} not found")

    def load(f: Path) -> np.ndarray:
        rgb = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)[::-1])

    return [
        (
            a.name.removesuffix("_real_A.png"),
            load(a),
            load(a.with_name(a.name.replace("_A.", "_B."))),
        )
        for a in sorted(folder.glob("*_real_A.png"))
    ]


def real_cloud_patches(root: Path = SHARED) -> list[dict]:
    """The labelled Landsat-8 L8 Biome patches: ``name``, ``land``, ``cube`` (7 reflective bands:
    B2 B3 B4 B5 B6 B7 B9), ``bands``, ``classes`` (0 clear, 1 thin, 2 thick, 3 shadow, -1 fill)."""
    img_dir = root / "real_clouds" / "l8biome" / "Images"
    if not img_dir.is_dir():
        raise KumoError(f"{img_dir} not found")
    bands = BandSet(
        (482.0, 561.4, 654.6, 864.6, 1608.9, 2200.7, 1373.4),
        (60.0, 57.0, 37.0, 28.0, 85.0, 187.0, 20.0),
        ("B2", "B3", "B4", "B5", "B6", "B7", "B9"),
    )
    lut = np.full(256, -1, np.int64)
    lut[128], lut[192], lut[255], lut[64] = 0, 1, 2, 3
    out = []
    import rasterio

    for f in sorted(img_dir.glob("*.tif")):
        with rasterio.open(f) as ds:
            cube = ds.read(list(range(1, 8))).astype(np.float32)
        with rasterio.open(img_dir.parent / "Masks" / f.name) as ds:
            m = ds.read(1)
        out.append(
            {
                "name": f.stem,
                "land": f.stem.split("_")[0],
                "cube": np.clip(cube, 0, 1),
                "bands": bands,
                "classes": lut[m],
            }
        )
    return out
