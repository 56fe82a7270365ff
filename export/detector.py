"""The band-agnostic cloud detector: one set of weights for any band set, trained on every real
label we have plus synthetic clouds over clear scenes.

    python -m export.detector train --out runs/det_all [--test-patches A,B] [--steps N]
    python -m export.detector cv [--folds 4] [--steps N] [--jobs 2]   # trains one model per fold
    python -m export.detector release --ckpt runs/det_all/last.pt      # one ONNX per band set

How it reads any band set (:class:`export.nets.SpectralDetector`): every input is mapped onto six
canonical bands (:data:`CANON`: blue, green, red, NIR, SWIR 1.6 um, SWIR 2.2 um) by a matrix built
from the band set's wavelengths and widths (:func:`canonical_map`, the project's one resampling
rule); canonical bands a band set cannot feed are zero and flagged absent. Training draws, for
every sample, one of the views its source allows (all six bands, or blue-green-red-NIR, or
blue-green-red), so that the same weights learn each band set; real multispectral labels teach the
hyperspectral detector too, since hsi32 feeds the same four VNIR canonical bands.

Labels (:func:`real_patches`): 36 real labelled patches from 4 sensors. Their label sets differ
(L8 Biome: clear / thin / thick / shadow; ukis-csmask tests: clear / cloud / shadow; On-Cloud-N:
cloud / not cloud), so each pixel carries the SET of classes its label allows and the loss is
``-log P(set)`` (:data:`LABEL_SETS`).

Cross-validation (:func:`cv_folds`): folds by patch, stratified by sensor and land type; a fold's
model is trained on the other folds' patches (fixed schedule, last weights: no model selection on
anything held out) and the synthetic-clouds scenes in :data:`SYNTH_TEST` are held out of every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F  # noqa: N812

from export import share
from export.data import SHARED, CloudRanges, CloudyTiles, Scene, real_cloud_patches, shared_scenes
from export.nets import CloudDetector, SpectralDetector, count_macs, count_params
from kumo_edge.bands import BandSet, resample, resampling_matrix
from kumo_edge.config import sensor_profile
from kumo_edge.errors import BandMappingError, KumoError

logger = logging.getLogger("kumo_edge.train")

#: The canonical bands every band set is mapped onto: the ``rgbn-swir`` sensor profile (blue,
#: green, red, NIR, SWIR-1 at 1620 nm so that Landsat-5/7 (1650), Landsat-8 (1609) and
#: Sentinel-2 (1614) all feed it at the runtime's 30 nm tolerance, SWIR-2).
CANON = sensor_profile("rgbn-swir").bands
#: The canonical SWIR bands (1.6 and 2.2 um), by wavelength as :func:`export.data.add_snow` tells them
SWIR_CANON = [i for i, nm in enumerate(CANON.centers) if nm > 1000]
#: Which training views see painted snow (:class:`SynthSampler`)
SNOW_VIEWS = ("all", "swir")
#: Views a sample can be seen through: indices of the canonical bands kept.
VIEWS = {"swir6": (0, 1, 2, 3, 4, 5), "rgbn": (0, 1, 2, 3), "rgb": (0, 1, 2)}
#: The band sets released from one set of weights (name -> band set).
RELEASE = {
    "hsi32": "satellogic-hsi",
    "rgbn": "rgbn",
    "rgb": "rgb",
    "swir6": "rgbn-swir",  # the Landsat / Sentinel-2 six-band set: CANON itself
}
#: Label codes -> the classes (clear, thin, thick, shadow) each allows.
LABEL_SETS = np.array(
    [
        [1, 0, 0, 0],  # 0 clear
        [0, 1, 0, 0],  # 1 thin
        [0, 0, 1, 0],  # 2 thick
        [0, 0, 0, 1],  # 3 shadow
        [0, 1, 1, 0],  # 4 cloud, thickness not labelled
        [1, 0, 0, 1],  # 5 not cloud (clear or shadow: On-Cloud-N labels no shadow)
    ],
    bool,
)
#: Loss weight per label code: shadow and thin cloud are rarer and matter more (the shadow
#: weight, index 3, is :attr:`DetectorRun.shadow_weight`).
LABEL_WEIGHTS = torch.tensor([1.0, 1.5, 1.0, 1.5, 1.2, 1.0])
#: Clear scenes whose synthetic clouds score the detector and never train it (any run): the
#: held-out real snow scene (ben_57_38), one scene per multispectral sensor, two hyperspectral.
SYNTH_TEST = (
    "landsat7_nc",
    "s2_eolearn_3",
    "ben_69_24",
    "ben_57_38",
    "rosis_beach",
    "aviris_urban_3",
)


#: The synthetic clouds of the detector's training (:class:`SynthSampler`; its overcast share
#: set per run). Cloud droplets and ice crystals are large against the wavelength: clouds stay
#: bright into the SWIR (measured on the L8 Biome / ukis patches: SWIR-1 / red 0.4-1.2 over
#: thick cloud), so the Angstrom exponent is small here, not the haze-like 0.3-2 of the
#: remover's ranges (which made synthetic clouds vanish in the SWIR: in a first CV round the
#: six-band view scored below the four-band one).
DETECTOR_RANGES = CloudRanges(
    angstrom=(0.0, 0.7),
    snow_fraction=0.15,
    diffuse_fraction=(0.1, 0.3),
    gamma=(1.0, 2.5),
    persistence=(0.4, 0.65),
    view_zenith_deg=(0.0, 10.0),
)


#: The largest synthetic-cloud sample drawn from the clear scenes: every scene group holds fully
#: valid tiles of this size (BigEarthNet patches are 120 px); larger training tiles mirror it out.
SYNTH_TILE = 96


def release_bands(name: str) -> BandSet:
    return sensor_profile(RELEASE.get(name, name)).bands


# -- band mapping ------------------------------------------------------------------------------
def canonical_map(bands: BandSet) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(matrix, present)``: ``matrix`` ``(6, len(bands))`` maps the band set onto :data:`CANON`
    (a zero row where the band set cannot feed that canonical band), ``present`` ``(6,)`` 0/1."""
    m = np.zeros((len(CANON), len(bands)), np.float32)
    present = np.zeros(len(CANON), np.float32)
    for i in range(len(CANON)):
        try:
            m[i] = resampling_matrix(bands, CANON.subset([i]), tolerance_nm=60.0)[0]
            present[i] = 1.0
        except BandMappingError:
            pass
    if present[:3].sum() < 3:
        raise BandMappingError(
            "the detector needs blue, green and red; this band set lacks "
            + ", ".join(CANON.names[i] for i in range(3) if not present[i])
        )
    return m, present


def to_canonical(
    cube: npt.NDArray[np.float32], bands: BandSet
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    m, present = canonical_map(bands)
    flat = cube.reshape(cube.shape[0], -1)
    return (m @ flat).reshape((len(CANON),) + cube.shape[1:]).astype(np.float32), present


def view_of(present: npt.NDArray[np.float32], view: str) -> npt.NDArray[np.float32]:
    keep = np.zeros_like(present)
    keep[list(VIEWS[view])] = 1.0
    return present * keep


def views_for(present: npt.NDArray[np.float32]) -> list[str]:
    """The views a source with these canonical bands can be seen through."""
    return [v for v, idx in VIEWS.items() if present[list(idx)].all()]


# -- real labels -------------------------------------------------------------------------------
_UKIS_BANDS = {
    "landsat5": BandSet((485.0, 560.0, 660.0, 830.0, 1650.0, 2215.0), (70, 80, 60, 140, 200, 270)),
    "landsat7": BandSet((483.0, 560.0, 662.0, 835.0, 1648.0, 2206.0), (70, 80, 60, 130, 200, 260)),
    "sentinel2": BandSet((492.4, 559.8, 664.6, 832.8, 1613.7, 2202.4), (66, 36, 31, 106, 91, 175)),
}


def real_patches(root: Path = SHARED) -> list[dict]:
    """All labelled real patches: ``name``, ``sensor``, ``land``, ``cube`` ``(C, H, W)``,
    ``bands``, ``labels`` (codes of :data:`LABEL_SETS`, -1 no label), ``scheme``."""
    out = []
    for p in real_cloud_patches(root):
        out.append(
            {
                "name": p["name"],
                "sensor": "landsat8",
                "land": p["land"],
                "cube": p["cube"][:6],  # B2..B7 (B9 cirrus left out: no other sensor here has it)
                "bands": p["bands"].subset(range(6)),
                "labels": p["classes"],
                "scheme": "clear/thin/thick/shadow",
            }
        )
    uk = root / "real_clouds" / "ukis_csmask_tests"
    for f in sorted(uk.glob("*.npz")):
        d = np.load(f)
        lut = np.array([3, 0, 0, 0, 4] + [-1] * 251, np.int64)  # shadow water snow land cloud
        out.append(
            {
                "name": f"ukis_{f.stem}",
                "sensor": f.stem,
                "land": "mixed",
                "cube": np.clip(np.transpose(d["img"], (2, 0, 1)), 0, 1).astype(np.float32),
                "bands": _UKIS_BANDS[f.stem],
                "labels": lut[d["msk"][..., 0]],
                "scheme": "clear/cloud/shadow",
            }
        )
    import rasterio

    s2 = sensor_profile("sentinel2-msi").bands
    idx = [s2.names.index(b) for b in ("B2", "B3", "B4", "B8")]
    for d in sorted((root / "real_clouds" / "oncloudn_s2").glob("chip_id_*")):
        planes = []
        for b in ("B02", "B03", "B04", "B08"):
            with rasterio.open(d / f"{b}.tif") as ds:
                planes.append(ds.read(1).astype(np.float32) * 1e-4)
        with rasterio.open(d / "label.tif") as ds:
            lab = ds.read(1)
        out.append(
            {
                "name": f"oncloudn_{d.name.split('_')[-1]}",
                "sensor": "sentinel2",
                "land": "mixed",
                "cube": np.clip(np.stack(planes), 0, 1),
                "bands": s2.subset(idx),
                "labels": np.where(lab == 1, 4, 5).astype(np.int64),
                "scheme": "cloud/not cloud",
            }
        )
    return out


def cv_folds(patches: list[dict], k: int) -> list[list[str]]:
    """Folds by patch, stratified by sensor and land type (round-robin over the sorted list)."""
    order = sorted(patches, key=lambda p: (p["sensor"], p["land"], p["name"]))
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, p in enumerate(order):
        folds[i % k].append(p["name"])
    return folds


#: Saturation levels (reflectance) drawn for each canonical band when a sample is seen through a
#: saturating sensor (:func:`saturate`): Landsat-5 TM and Landsat-7 ETM+ clip bright cloud at
#: 0.38-0.43 in the visible (measured on the ukis-csmask Landsat-5/7 patches: 10 % of their
#: pixels sit at the blue band's ceiling), which turns a white cloud's interior yellow; the
#: NIR saturates later, the SWIR bands hardly at all.
SATURATION = ((0.3, 0.8), (0.3, 0.8), (0.3, 0.8), (0.5, 1.0), (1.0, 1.0), (1.0, 1.0))


def saturate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` (canonical bands, H, W) as a sensor that clips each band at a random level of
    :data:`SATURATION` records it."""
    lo, hi = np.array(SATURATION, np.float32).T
    level = rng.uniform(lo, hi).astype(np.float32)
    return np.minimum(x, level[: len(x), None, None])


#: How :class:`RealSampler` draws its patches (``DetectorRun.real_weight``).
REAL_WEIGHTS = ("patch", "pixels")


class RealSampler:
    """Random crops of real patches in canonical bands, through a random view.

    ``mix``: the share of samples with a box of another patch's crop pasted in, labels and all
    (CutMix), seen through a view both patches allow: 27 training patches teach whole-patch
    answers (a flat white sheet is all cloud or all clear), and a sample holding two scenes
    must be answered pixel by pixel.
    """

    def __init__(
        self,
        patches: list[dict],
        tile: int,
        band_jitter: float = 0.0,
        saturate: float = 0.0,
        mix: float = 0.0,
        weight: str = "patch",
    ) -> None:
        if weight not in REAL_WEIGHTS:
            raise KumoError(f"weight must be one of {REAL_WEIGHTS}, got {weight!r}")
        self.band_jitter = band_jitter
        self.saturate = saturate
        self.mix = mix
        self.items = []
        for p in patches:
            c, present = to_canonical(p["cube"], p["bands"])
            self.items.append((c, present, p["labels"]))
        self.tile = tile
        #: "patch": every patch as likely (the draws of recipes before the option); "pixels":
        #: each patch in proportion to its labelled pixels, as the pooled scores weigh it
        self.p = None
        if weight == "pixels":
            n = np.array([float((lab >= 0).sum()) for _, _, lab in self.items])
            self.p = n / n.sum()

    def _crop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One patch's crop, rotated, flipped, gained (and clipped as a saturating sensor
        would, at the set rate): ``(bands, labels, present)``."""
        t = self.tile
        k = (
            rng.integers(len(self.items))
            if self.p is None
            else rng.choice(len(self.items), p=self.p)
        )
        c, present, lab = self.items[int(k)]
        y0 = int(rng.integers(0, c.shape[1] - t + 1))
        x0 = int(rng.integers(0, c.shape[2] - t + 1))
        cc, ll = c[:, y0 : y0 + t, x0 : x0 + t], lab[y0 : y0 + t, x0 : x0 + t]
        r = int(rng.integers(4))
        cc, ll = np.rot90(cc, r, (1, 2)), np.rot90(ll, r)
        if rng.random() < 0.5:
            cc, ll = cc[:, :, ::-1], ll[:, ::-1]
        # overall gain and a small per-band gain: sensors differ in calibration
        cc = cc * np.float32(rng.uniform(0.9, 1.1))
        if self.band_jitter:
            jit = rng.uniform(1 - self.band_jitter, 1 + self.band_jitter, (len(cc), 1, 1))
            cc = cc * jit.astype(np.float32)
        if self.saturate and rng.random() < self.saturate:
            cc = saturate(cc, rng)
        return cc, ll, present

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        xs, ps, ys = [], [], []
        t = self.tile
        for _ in range(n):
            cc, ll, present = self._crop(rng)
            # drawn only when mixing (the draws without it stay as they were)
            if self.mix and rng.random() < self.mix:
                c2, l2, p2 = self._crop(rng)
                h, w = (
                    int(t * v) for v in np.sqrt(rng.uniform(0.15, 0.5)) * rng.uniform(0.7, 1.4, 2)
                )
                h, w = min(max(h, 8), t), min(max(w, 8), t)
                y0, x0 = int(rng.integers(0, t - h + 1)), int(rng.integers(0, t - w + 1))
                cc, ll = np.array(cc), np.array(ll)
                cc[:, y0 : y0 + h, x0 : x0 + w] = c2[:, y0 : y0 + h, x0 : x0 + w]
                ll[y0 : y0 + h, x0 : x0 + w] = l2[y0 : y0 + h, x0 : x0 + w]
                present = present * p2  # the bands both patches have
            pv = view_of(present, str(rng.choice(views_for(present))))
            xs.append(np.clip(cc, 0, 1) * pv[:, None, None])
            ps.append(pv)
            ys.append(np.ascontiguousarray(ll))
        return np.stack(xs), np.stack(ps), np.stack(ys)


#: The clouds of a hazy synthetic sample (``DetectorRun.haze``): thin, widespread and
#: haze-like in colour (optical depth falling steeply with wavelength: a bluish veil over
#: ground that stays visible, as the hazy overcast of the L8 Biome's Forest_07), drawn only for
#: views without SWIR, where such a veil vanishes and would teach that cloud can be as dark
#: there as snow.
HAZE_RANGES = dict(angstrom=(0.7, 2.0), thickness=(0.1, 1.0), cover=(0.5, 1.0))

#: Optical depths of synthetic cloud edges too faint to see: training gives them no answer
#: (label -1), and the synthetic scores say how much of the error is there.
INVISIBLE_TAU = (0.02, 0.08)
#: What training teaches on those edges (``DetectorRun.edges``): nothing (``ignore``, label -1)
#: or the class the cloud generator gives them, thin cloud (``cloud``; the synthetic-only hsi32
#: detector of 2026-11-24 was trained so).
EDGE_LABELS = ("ignore", "cloud")


def invisible(tau: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Pixels whose synthetic cloud is too faint to see (:data:`INVISIBLE_TAU`)."""
    return (tau >= INVISIBLE_TAU[0]) & (tau < INVISIBLE_TAU[1])


class SynthSampler:
    """Synthetic clouds over clear scenes, rendered in each scene's canonical bands."""

    def __init__(
        self,
        scenes: list[Scene],
        tile: int,
        seed: int,
        size: int = 0,
        saturate: float = 0.0,
        overcast: float = 0.0,
        snow_views: str = "all",
        edges: str = "ignore",
        haze: float = 0.0,
    ) -> None:
        self.saturate = saturate
        #: share of the samples seen through a view without SWIR whose clouds are drawn from
        #: :data:`HAZE_RANGES` (a bluish veil over visible ground)
        self.haze = haze
        if snow_views not in SNOW_VIEWS:
            raise KumoError(f"snow_views must be one of {SNOW_VIEWS}, got {snow_views!r}")
        if edges not in EDGE_LABELS:
            raise KumoError(f"edges must be one of {EDGE_LABELS}, got {edges!r}")
        self.edges = edges
        #: "swir": snow is painted only under samples seen through a view with a SWIR band (in
        #: the VNIR painted snow and a soft-edged cloud look alike); "all": under any sample
        self.snow_views = snow_views
        #: samples are ``tile`` px drawn, mirrored out to ``size`` px when larger (many clear
        #: scenes hold no fully valid tile above :data:`SYNTH_TILE`)
        self.pad = max(0, size - tile)
        groups: dict[tuple, list[Scene]] = {}
        for s in scenes:
            try:
                m, present = canonical_map(s.bands)
            except BandMappingError:
                continue
            idx = tuple(int(i) for i in np.flatnonzero(present))
            sub = CANON.subset(idx)
            cube = (m[list(idx)] @ s.cube.reshape(s.cube.shape[0], -1)).reshape(
                (len(idx),) + s.cube.shape[1:]
            )
            groups.setdefault(idx, []).append(
                Scene(s.name, cube.astype(np.float32), sub, s.valid, s.gsd_m, s.source)
            )
        ranges = replace(DETECTOR_RANGES, overcast_fraction=overcast)
        self.groups = []
        for i, (idx, g) in enumerate(sorted(groups.items())):
            try:
                ds = CloudyTiles(g, tile, 1 << 30, seed=seed + i, ranges=ranges)
            except KumoError:  # every scene of the group smaller than the tile
                logger.info(
                    "synthetic clouds: %s too small for %d px tiles", [s.name for s in g], tile
                )
                continue
            bare = None
            if snow_views == "swir":  # the same draws without snow (its own random stream)
                bare = CloudyTiles(
                    g, tile, 1 << 30, seed=seed + i, ranges=replace(ranges, snow_fraction=0.0)
                )
            hazy = None
            if haze:  # its own random stream too
                hazy = CloudyTiles(
                    g, tile, 1 << 30, seed=seed + i + 7919, ranges=replace(ranges, **HAZE_RANGES)
                )
            self.groups.append((np.array(idx), ds, bare, hazy))
        self.names = sorted(s.name for _, ds, _, _ in self.groups for s in ds.scenes)
        w = np.array([len(ds.scenes) for _, ds, _, _ in self.groups], float)
        self.p = w / w.sum()

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        xs, ps, ys = [], [], []
        for _ in range(n):
            idx, ds, bare, hazy = self.groups[int(rng.choice(len(self.groups), p=self.p))]
            present = np.zeros(len(CANON), np.float32)
            present[idx] = 1.0
            if bare is not None or hazy is not None:  # the view decides the draw
                view = str(rng.choice(views_for(present)))
                k = int(rng.integers(1 << 30))
                swir = bool(view_of(present, view)[SWIR_CANON].any())
                if hazy is not None and not swir and rng.random() < self.haze:
                    it = hazy[k]  # haze only where no SWIR band could tell it from snow
                else:  # snow only under views with SWIR where ``bare`` is given
                    it = (ds if swir or bare is None else bare)[k]
            else:
                view = ""
                it = ds[int(rng.integers(1 << 30))]
            x = np.zeros((len(CANON),) + it["cloudy"].shape[1:], np.float32)
            x[idx] = it["cloudy"]
            if self.saturate and rng.random() < self.saturate:
                x = saturate(x, rng)
            pv = view_of(present, view or str(rng.choice(views_for(present))))
            y = it["classes"].copy()
            if self.edges == "ignore":
                y[invisible(it["tau"])] = -1  # invisible cloud edges: no answer
            if self.pad:
                a, b = self.pad // 2, self.pad - self.pad // 2
                x = np.pad(x, ((0, 0), (a, b), (a, b)), mode="reflect")
                y = np.pad(y, ((a, b), (a, b)), mode="reflect")
            xs.append(x * pv[:, None, None])
            ps.append(pv)
            ys.append(y)
        return np.stack(xs), np.stack(ps), np.stack(ys)


def set_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor = LABEL_WEIGHTS
) -> torch.Tensor:
    """``-log P(label set)`` per pixel, weighted by label code, mean over labelled pixels."""
    logp = F.log_softmax(logits, 1)  # N 4 H W
    ok = labels >= 0
    lab = labels.clamp(min=0)
    allowed = torch.from_numpy(LABEL_SETS)[lab].permute(0, 3, 1, 2)  # N 4 H W
    nll = -torch.logsumexp(logp.masked_fill(~allowed, -torch.inf), 1)
    w = weights[lab] * ok
    return (nll * w).sum() / w.sum().clamp(min=1.0)


# -- training ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorRun:
    out: str
    test_patches: tuple[str, ...] = ()
    steps: int = 3500
    batch: int = 16
    tile: int = 96
    lr: float = 3e-3
    weight_decay: float = 1e-4
    widths: tuple[int, ...] = (8, 16, 32, 64)
    stem: int = 16
    #: a tile-wide context block at the deepest level (:class:`export.nets.GlobalContext`)
    context: bool = False
    real_fraction: float = 0.7
    shadow_weight: float = 1.5
    #: per-band gain jitter of the real crops (uniform, +-)
    band_jitter: float = 0.0
    #: fraction of samples seen through a saturating sensor (:func:`saturate`)
    saturate: float = 0.0
    #: clip the synthetic samples too, not only the real crops
    saturate_synthetic: bool = True
    #: share of the synthetic cloudy samples drawn as a flat overcast (``CloudRanges``)
    overcast: float = 0.0
    #: views whose synthetic samples may have snow painted under them (:data:`SNOW_VIEWS`)
    snow_views: str = "all"
    #: share of real samples with a box of another patch pasted in (:class:`RealSampler`)
    real_mix: float = 0.0
    #: how the real patches are drawn: each as likely, or by their pixels (:data:`REAL_WEIGHTS`)
    real_weight: str = "patch"
    #: what the synthetic clouds' invisible edges are labelled (:data:`EDGE_LABELS`)
    edges: str = "ignore"
    #: share of the synthetic samples seen without SWIR drawn as haze (:data:`HAZE_RANGES`)
    haze: float = 0.0
    #: decay of an exponential moving average of the weights (0: none); the average is what
    #: :func:`load` returns
    ema: float = 0.0
    seed: int = 0
    threads: int = 1


def corpus_scenes() -> list[Scene]:
    """Every clear scene we have: the multispectral catalogue and the hyperspectral corpus."""
    from export.scenes import hyperspectral_corpus

    scenes = shared_scenes()
    have = {s.name for s in scenes}
    return scenes + [s for s in hyperspectral_corpus() if s.name not in have]


def train(run: DetectorRun) -> Path:
    torch.set_num_threads(run.threads)
    torch.manual_seed(run.seed)
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    patches = real_patches()
    known = {p["name"] for p in patches}
    unknown = sorted(set(run.test_patches) - known)
    if unknown:
        raise KumoError(f"unknown real patches {unknown}")
    train_p = [p for p in patches if p["name"] not in run.test_patches]
    real = RealSampler(
        train_p, run.tile, run.band_jitter, run.saturate, run.real_mix, run.real_weight
    )
    synth = SynthSampler(
        [s for s in corpus_scenes() if s.name not in SYNTH_TEST],
        min(run.tile, SYNTH_TILE),
        run.seed,
        size=run.tile,
        saturate=run.saturate if run.saturate_synthetic else 0.0,
        overcast=run.overcast,
        snow_views=run.snow_views,
        edges=run.edges,
        haze=run.haze,
    )
    net = SpectralDetector(len(CANON), run.widths, run.stem, run.context)
    opt = torch.optim.AdamW(net.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, run.lr, total_steps=run.steps, pct_start=0.1)
    step = 0
    last = out / "last.pt"
    if last.exists():
        st = torch.load(last, weights_only=True)
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step = int(st["step"])
    ema = _Ema(net, run.ema, st.get("ema") if last.exists() else None) if run.ema else None
    rng = np.random.default_rng([run.seed, step])
    weights = LABEL_WEIGHTS.clone()
    weights[3] = run.shadow_weight
    n_real = int(round(run.batch * run.real_fraction))
    (out / "run.json").write_text(
        json.dumps(
            {**asdict(run), "train_patches": [p["name"] for p in train_p], "scenes": synth.names},
            indent=1,
        )
    )
    t0 = time.time()
    while step < run.steps:
        parts = [real.sample(rng, n_real), synth.sample(rng, run.batch - n_real)]
        x, p, y = (torch.from_numpy(np.concatenate([a[i] for a in parts])) for i in range(3))
        loss = set_loss(net(x, p), y, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(net)
        step += 1
        if step % 100 == 0 or step == run.steps:
            rec = {"step": step, "loss": round(loss.item(), 4), "elapsed_s": time.time() - t0}
            with (out / "log.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")
        if step % 500 == 0 or step == run.steps:
            tmp = last.with_suffix(".tmp")
            torch.save(
                {
                    "model": net.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": step,
                    **({"ema": ema.state} if ema is not None else {}),
                    "run": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in asdict(run).items()
                    },
                },
                tmp,
            )
            tmp.replace(last)
    return last


class _Ema:
    """Exponential moving average of a network's weights (and normalisation statistics)."""

    def __init__(self, net: torch.nn.Module, decay: float, state: dict | None = None) -> None:
        self.decay = decay
        self.state = state or {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.state[k].copy_(v)


def load(ckpt: Path) -> SpectralDetector:
    """The trained detector of a checkpoint: its weight average where the run kept one."""
    st = torch.load(ckpt, weights_only=True, map_location="cpu")
    r = st["run"]
    net = SpectralDetector(len(CANON), tuple(r["widths"]), r["stem"], r.get("context", False))
    net.load_state_dict(st.get("ema", st["model"]))
    return net.eval()


def fold_for(net: SpectralDetector, bands: BandSet, temperature: float = 1.0) -> CloudDetector:
    m, present = canonical_map(bands)
    return net.fold(torch.from_numpy(m), torch.from_numpy(present), temperature)


# -- export ------------------------------------------------------------------------------------
def calibration_tiles(bands: BandSet, n: int = 48, tile: int = 64, seed: int = 123) -> np.ndarray:
    """Cloudy tiles in ``bands`` for INT8 calibration: synthetic clouds over the training scenes
    (never a :data:`SYNTH_TEST` scene, never a real labelled patch)."""
    scenes = []
    for s in corpus_scenes():
        if s.name in SYNTH_TEST:
            continue
        try:
            scenes.append(s.to(bands))
        except BandMappingError:
            continue
    ds = CloudyTiles(scenes, tile, n, seed=seed, augment=False)
    return np.stack([ds[i]["cloudy"] for i in range(n)])


def export_band_set(
    net: SpectralDetector,
    name: str,
    out_dir: Path,
    temperature: float = 1.0,
    metrics: dict | None = None,
    training: dict | None = None,
    int8: bool = True,
) -> dict[str, Path]:
    """FP32 (and INT8) ONNX of the detector folded for band set ``name`` (:data:`RELEASE` or a
    sensor profile): ``{"fp32": path, "int8": path}``."""
    from export.onnx_export import DEFAULT_HALO, DEFAULT_TILE, OPSET, git_sha, to_onnx, write_model
    from export.quantize import FLOAT_CONVS_UPTO, quantize_model
    from kumo_edge.runtime import ModelContract

    bands = release_bands(name)
    det = fold_for(net, bands, temperature)
    contract = ModelContract(
        kind="detector",
        band_set=name,
        bands=bands,
        tile=DEFAULT_TILE,
        halo=DEFAULT_HALO,
        multiple=2 ** len(det.cfg.widths),
        input_scaling={"type": "reflectance", "scale": 1.0, "offset": 0.0, "range": [0.0, 1.0]},
        classes=("clear", "thin", "thick", "shadow"),
        output="probabilities_half",
        precision="fp32",
        opset=OPSET,
        git_sha=git_sha(),
        training={
            "command": "python -m export.detector",
            "temperature": temperature,
            **(training or {}),
        },
        metrics=metrics or {},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": write_model(to_onnx(det, len(bands)), contract, out_dir / f"{name}_fp32.onnx")}
    if int8:
        batches = calibration_tiles(bands)
        paths["int8"] = quantize_model(
            paths["fp32"],
            out_dir / f"{name}_int8.onnx",
            [batches[i : i + 8] for i in range(0, len(batches), 8)],
            float_convs_upto=FLOAT_CONVS_UPTO,
        )
    return paths


def synthetic_scores(model_path: Path, n: int = 96, tile: int = 64, seed: int = 50_000) -> dict:
    """The detector on synthetic clouds (the default ranges) over the :data:`SYNTH_TEST` scenes
    its band set can use: cloud (thin + thick) accuracy and false-positive rate, pooled; and the
    accuracy with the invisible cloud edges unscored, as training scores them
    (``accuracy_visible``: on the shipped hsi32 detector those edges, 9 % of the pixels, half
    found, cost 4 points)."""
    from kumo_edge import metrics
    from kumo_edge.runtime import load_model

    m = load_model(model_path, threads=2)
    scenes = []
    for s in corpus_scenes():
        if s.name in SYNTH_TEST:
            try:
                scenes.append(s.to(m.bands))
            except BandMappingError:
                continue
    ds = CloudyTiles(scenes, tile, n, seed=seed, augment=False)
    items = [ds[i] for i in range(n)]
    x = np.stack([it["cloudy"] for it in items])
    cls = np.concatenate([m.classify(m.detect(x[i : i + 16])) for i in range(0, n, 16)])
    truth = np.isin(np.stack([it["classes"] for it in items]), (1, 2))
    pred = np.isin(cls, (1, 2))
    d = metrics.detection(pred, truth)
    seen = ~invisible(np.stack([it["tau"] for it in items]))
    return {
        "scenes": sorted(s.name for s in ds.scenes),
        "tiles": n,
        "accuracy": d.accuracy,
        "false_positive_rate": d.false_positive_rate,
        "accuracy_visible": float((pred == truth)[seen].mean()),
    }


def fold_synthetic_scores(
    patterns: list[str], folds: int, sets: tuple[str, ...]
) -> dict[str, dict[str, dict]]:
    """:func:`synthetic_scores` of every fold model of each ``patterns`` (``{k}``: the fold),
    folded for each band set of ``sets`` and quantised as shipped (exported beside the fold's
    checkpoint, in its ``onnx`` folder, where not there yet); per pattern and set the folds'
    figures and their mean."""
    out: dict[str, dict[str, dict]] = {}
    for pattern in patterns:
        for k in range(folds):
            run = Path(pattern.format(k=k))
            net = None
            for name in sets:
                path = run / "onnx" / f"{name}_int8.onnx"
                if not path.exists():
                    net = net or load(run / "last.pt")
                    export_band_set(net, name, run / "onnx")
                r = out.setdefault(pattern, {}).setdefault(name, {"folds": []})
                r["folds"].append(synthetic_scores(path))
        for r in out[pattern].values():
            keys = ("accuracy", "false_positive_rate", "accuracy_visible")
            r["mean"] = {key: float(np.mean([f[key] for f in r["folds"]])) for key in keys}
    return out


def fold_commands(
    k: int,
    steps: int,
    runs: str = "runs/detcv_{k}",
    extra: tuple[str, ...] = (),
    only: tuple[int, ...] = (),
) -> list[tuple[list[str], Path]]:
    """The training jobs of a ``k``-fold cross-validation over the real patches, and the log of
    each (``runs`` with ``{k}`` the fold); ``extra`` arguments go to every ``train``; ``only``:
    these folds alone (a screen on some folds), else all."""
    from bench._common import ROOT

    folds = cv_folds(real_patches(), k)
    jobs = []
    for i, test in enumerate(folds):
        if only and i not in only:
            continue
        out = ROOT / runs.format(k=i)
        last = out / "last.pt"
        if last.exists() and torch.load(last, weights_only=True)["step"] >= steps:
            continue
        argv = [
            sys.executable, "-m", "export.detector", "train", "--out", str(out),
            "--test-patches", ",".join(test), "--steps", str(steps), "--threads", "1", *extra,
        ]  # fmt: skip
        jobs.append((argv, out.with_suffix(".log")))
    return jobs


def release(ckpt: Path, results: Path, sets: tuple[str, ...] = tuple(RELEASE)) -> None:
    """Fold the final weights for every band set of :data:`RELEASE`, at the temperature the
    cross-validation fitted (``bench/results/detector_real.json``), quantise, score, and write
    ``kumo_edge/models/<set>/detector.onnx`` with its card.

    The removal is weighted by the detector's P(clear): before committing a release for a band
    set that drives a remover, re-run ``python -m bench.removal_cv --bands <set> --eval-only``
    with the released file in place. A detector more accurate on the real patches (drawn by
    their pixels with 70 % real samples, 2026-12-07) was surer of clear on thin cloud and cost
    the removal 0.3-0.4 dB, rgbn's below its +4 dB target (README: "Shipped 2026-12-07 (third
    session)", which also gives the removal with the released file at other temperatures)."""
    from bench._common import ROOT
    from export.release import _set_metrics

    doc = json.loads(results.read_text())
    net = load(ckpt)
    run = torch.load(ckpt, weights_only=True)["run"]
    unknown = sorted(set(sets) - set(RELEASE))
    if unknown:
        raise KumoError(f"unknown band sets {unknown}; released: {', '.join(RELEASE)}")
    for name in sets:
        # hsi32 feeds the same canonical bands as rgbn: it takes rgbn's temperature
        view = name if name in doc["calibration"] else "rgbn"
        t = float(doc["calibration"][view]["temperature_all_folds"])
        cv = {
            k: doc["results"][f"{m}/{view}"]["all"]
            for m, k in (("ours", "cv_real_int8"), ("ukis_csmask", "cv_real_ukis_csmask"))
            if f"{m}/{view}" in doc["results"]
        }
        art = ROOT / "export" / "artifacts" / name
        paths = export_band_set(
            net, name, art / "detector_v2", t, training={"run": run, "checkpoint": str(ckpt)}
        )
        syn = {k: synthetic_scores(p) for k, p in paths.items()}
        prev = art / "detector_previous_int8.onnx"
        if prev.exists():
            syn["previous_int8"] = synthetic_scores(prev)
        metrics = {
            "synthetic_held_out": syn,
            **({f"{k} ({view} view)": v for k, v in cv.items()}),
            "calibration_ece": {
                "before": doc["calibration"][view]["before"]["ece"],
                "after": doc["calibration"][view]["after_cross_fold_temperature"]["ece"],
            },
        }
        for path in paths.values():  # the metrics need the exported files: written in after
            _set_metrics(path, metrics)
        final = paths
        ship = ROOT / "kumo_edge" / "models" / name
        det_bands = release_bands(name)
        det = fold_for(net, det_bands, t)
        ship.mkdir(parents=True, exist_ok=True)
        (ship / "detector.onnx").write_bytes(final["int8"].read_bytes())
        final["int8"].unlink()  # the shipped file is the INT8 artefact; the FP32 one stays
        card = {
            "name": f"{name}/detector",
            "kind": "detector",
            "band_set": name,
            "bands": {
                "centers_nm": list(release_bands(name).centers_nm),
                "fwhm_nm": list(release_bands(name).fwhm_nm),
            },
            "file": "detector.onnx",
            "size_bytes": (ship / "detector.onnx").stat().st_size,
            "precision": "int8",
            "parameters": count_params(det),
            "macs_per_256_tile": count_macs(det, (1, len(det_bands), 256, 256)),
            "architecture": "band-agnostic SpectralDetector folded for this band set "
            f"(canonical bands {list(CANON.names)}, widths {run['widths']}, stem {run['stem']})",
            "temperature": t,
            "lineage": {
                "fp32": str(final["fp32"].relative_to(ROOT)),
                "shipped": "int8 (QDQ, per-channel, Conv; thin convolutions in float; softmax in "
                "primitive ops)",
                "checkpoint": f"{ckpt} (not in the repository)",
            },
            "training": {
                "command": f"python -m export.detector train --out {ckpt.parent} "
                + recipe_command(run)
                + " --threads 2",
                "release": (
                    f"python -m export.detector release --ckpt {ckpt} --results "
                    f"{results} --sets {','.join(sets)}"
                ),
                "run": run,
                "real_patches": "all 36 (L8 Biome 28, ukis-csmask tests 3, On-Cloud-N 5)",
                "synthetic_scenes_held_out": list(SYNTH_TEST),
            },
            "metrics": metrics,
            "limits": f"Real-label figures are the cross-validation ({results}),"
            " from the fold models at temperature 1, not this file's weights (the temperature moves"
            " the cross-validated accuracy by <= 0.1 point); hsi32 has no real hyperspectral "
            "cloud label: its real-data figures are those of the rgbn view it shares.",
        }
        (ship / "detector.json").write_text(json.dumps(card, indent=2))
        print(name, json.dumps({k: v for k, v in metrics.items() if k != "synthetic_held_out"}))
        print("  synthetic", json.dumps(syn))
    set_shadow_thresholds(results, sets=sets)


def set_shadow_thresholds(
    results: Path, write_files: bool = True, sets: tuple[str, ...] = tuple(RELEASE)
) -> None:
    """Record the shadow operating point (threshold and darkness factor) the cross-validation
    fitted on all folds (``shadow_operating_point`` of ``bench/results/detector_real.json``) in
    every shipped detector's card, with the cross-validated shadow figures at that point, and
    with ``write_files`` also in the file itself (``kumo.shadow_threshold``,
    ``kumo.shadow_darker``; metadata only, the weights are untouched). hsi32 takes rgbn's (the view it shares).
    The figures are the runtime's at that point, its shadow rules applied
    (:func:`kumo_edge.runtime.shadow_rules`: no shadow in a tile without cloud, the darkness rule).

    The point sets what the mask and the report call shadow. The removal keeps the balanced
    point (:data:`kumo_edge.stream.REMOVAL_SHADOW_THRESHOLD`): measured, the recall-70 % point
    (0.05-0.15) calls so many pixels shadow that the class-driven removers lost their clear
    references (hsi32 removal CV, the same detector at 0.5 and at 0.05: HOT +2.37 -> +0.00 dB,
    inpainting +1.90 -> -0.01; the physics remover and the cGAN, blended by probabilities,
    unchanged)."""
    from bench._common import ROOT
    from export.release import _set_props

    doc = json.loads(results.read_text())
    ops = doc.get("shadow_operating_point")
    if not ops:
        raise KumoError(
            f"{results} has no shadow_operating_point: re-run python -m bench.detector_real"
        )
    for name in sets:
        view = name if name in ops else "rgbn"
        tau = float(ops[view]["threshold_all_folds"])
        darker = float(ops[view].get("darker_all_folds", 0.0))
        ship = ROOT / "kumo_edge" / "models" / name
        if write_files:
            _set_props(
                ship / "detector.onnx", shadow_threshold=repr(tau), shadow_darker=repr(darker)
            )
        card_path = ship / "detector.json"
        card = json.loads(card_path.read_text())
        card["shadow_threshold"] = tau if write_files else card.get("shadow_threshold", 0.5)
        card["shadow_threshold_for_70_percent_recall"] = tau
        card["shadow_darker"] = darker if write_files else card.get("shadow_darker", 0.0)
        card["metrics"][f"shadow_operating_point_for_70_percent_recall ({view} view)"] = {
            "threshold_fitted_on_other_folds": ops[view]["fold_thresholds"],
            "darker_fitted_on_other_folds": ops[view].get("fold_darker", {}),
            "shadow": doc["results"][f"ours_shadow_op/{view}"]["shadow"],
            "all": doc["results"][f"ours_shadow_op/{view}"]["all"],
        }
        card["size_bytes"] = (ship / "detector.onnx").stat().st_size
        card_path.write_text(json.dumps(card, indent=2))
        print(name, "shadow threshold for 70 % recall", tau, "(written)" if write_files else "")


# -- screening candidate recipes ---------------------------------------------------------------
def view_cube(p: dict, view: str) -> np.ndarray | None:
    """A real patch (:func:`real_patches`) in a view's canonical bands, as the runtime would get
    it resampled (None where its bands cannot feed the view)."""
    want = CANON.subset(VIEWS[view])
    try:
        m = resampling_matrix(p["bands"], want, tolerance_nm=60.0)
    except BandMappingError:
        return None
    return np.clip(resample(p["cube"], m), 0, 1)


def screen(
    runs: list[str], folds: list[int], k: int = 4, views: tuple[str, ...] = ("rgbn", "swir6")
) -> dict:
    """A quick look at candidate recipes before a full cross-validation: each run's fold models
    (``runs``: folder patterns with ``{k}``) on the real patches those folds held out, FP32 in
    torch at the default operating point (not the runtime's INT8: ``bench.detector_real`` gives
    the figures a release quotes). A run given as ``A+B`` is the ensemble of A's and B's fold
    models (their class probabilities averaged): what more compute per tile would buy. Returns,
    per run and view, pooled cloud accuracy and clear-called-cloud and the accuracy of each
    patch."""
    from export.evaluate import detection_scores
    from kumo_edge.runtime import classify

    patches = real_patches()
    by_name = {p["name"]: p for p in patches}
    fold_names = cv_folds(patches, k)
    nets: dict[Path, SpectralDetector] = {}  # each checkpoint loaded once, for every view
    out: dict = {}
    for pattern in runs:
        for view in views:
            want = CANON.subset(VIEWS[view])
            ps, ts, per_patch = [], [], {}
            for f in folds:
                dets = []
                for m in pattern.split("+"):
                    ckpt = Path(m.format(k=f)) / "last.pt"
                    if ckpt not in nets:
                        nets[ckpt] = load(ckpt)
                    dets.append(fold_for(nets[ckpt], want))
                for name in fold_names[f]:
                    p = by_name[name]
                    x = view_cube(p, view)
                    if x is None:
                        continue
                    xt = torch.from_numpy(x.astype(np.float32)[None])
                    with torch.no_grad():
                        prob = torch.stack([torch.softmax(d(xt), 1)[0] for d in dets]).mean(0)
                    prob = prob.numpy()
                    ok = p["labels"] >= 0
                    pred = np.isin(classify(prob), (1, 2))[ok]
                    truth = np.isin(p["labels"], (1, 2, 4))[ok]
                    ps.append(pred)
                    ts.append(truth)
                    per_patch[name] = float(np.mean(pred == truth))
            d = detection_scores(np.concatenate(ps), np.concatenate(ts))
            out.setdefault(pattern, {})[view] = {
                "accuracy": d["accuracy"],
                "false_positive_rate": d["false_positive_rate"],
                "per_patch_accuracy": per_patch,
            }
    return out


# -- command line ------------------------------------------------------------------------------
#: The recipe options ``train`` and ``cv`` share (``cv`` hands them on to every fold's
#: ``train``): the :class:`DetectorRun` fields they set, the valued ones and the flags.
RECIPE_VALUES = (
    "batch", "tile", "shadow_weight", "band_jitter", "ema", "saturate", "overcast",
    "snow_views", "real_mix", "edges", "haze", "real_fraction", "seed", "real_weight",
)  # fmt: skip
RECIPE_FLAGS = ("context", "saturate_real_only")


def _recipe_options(p: argparse.ArgumentParser) -> None:
    """The training recipe's options (with ``--steps``) on a ``train`` or ``cv`` parser."""
    p.add_argument("--steps", type=int, default=DetectorRun.steps)
    p.add_argument("--batch", type=int, default=DetectorRun.batch)
    p.add_argument("--tile", type=int, default=DetectorRun.tile)
    p.add_argument(
        "--context", action="store_true", help="a tile-wide context block at the deepest level"
    )
    p.add_argument("--shadow-weight", type=float, default=DetectorRun.shadow_weight)
    p.add_argument("--band-jitter", type=share, default=DetectorRun.band_jitter)
    p.add_argument("--ema", type=share, default=DetectorRun.ema, help="weight-average decay")
    p.add_argument(
        "--saturate",
        type=share,
        default=DetectorRun.saturate,
        help="fraction of samples clipped as a saturating sensor clips bright cloud",
    )
    p.add_argument(
        "--saturate-real-only", action="store_true", help="--saturate clips the real crops only"
    )
    p.add_argument(
        "--overcast",
        type=share,
        default=DetectorRun.overcast,
        help="share of synthetic cloudy samples drawn as a flat, full-cover overcast",
    )
    p.add_argument(
        "--snow-views",
        choices=SNOW_VIEWS,
        default=DetectorRun.snow_views,
        help="paint synthetic snow under samples of every view, or only of views with SWIR",
    )
    p.add_argument(
        "--real-mix",
        type=share,
        default=DetectorRun.real_mix,
        help="share of real samples with a box of another patch's crop pasted in (CutMix)",
    )
    p.add_argument(
        "--edges",
        choices=EDGE_LABELS,
        default=DetectorRun.edges,
        help="label of the synthetic clouds' invisible edges (optical depth 0.02-0.08): none "
        "(ignore) or thin cloud (cloud)",
    )
    p.add_argument(
        "--haze",
        type=share,
        default=DetectorRun.haze,
        help="share of synthetic samples seen without SWIR whose clouds are a thin bluish haze",
    )
    p.add_argument("--real-fraction", type=share, default=DetectorRun.real_fraction)
    p.add_argument(
        "--real-weight",
        choices=REAL_WEIGHTS,
        default=DetectorRun.real_weight,
        help="draw the real patches each as likely (patch) or in proportion to their labelled "
        "pixels (pixels: the 512-px Sentinel-2 and ukis-csmask patches four times as often as "
        "a 256-px Landsat-8 one, as the pooled cross-validation scores weigh them)",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (cv: of every fold)")


def recipe_command(run: dict) -> str:
    """A checkpoint's ``run`` record as ``train`` options: ``--steps`` and every recipe option
    whose value is not :class:`DetectorRun`'s default (records older than an option hold its
    default)."""
    default = asdict(DetectorRun(out=""))
    rec = {**default, **run}
    rec["saturate_real_only"] = rec["saturate_synthetic"] is False
    out = [f"--steps {rec['steps']}"]
    out += [f"--{n.replace('_', '-')} {rec[n]}" for n in RECIPE_VALUES if rec[n] != default[n]]
    out += [f"--{n.replace('_', '-')}" for n in RECIPE_FLAGS if rec[n]]
    return " ".join(out)


def _recipe_argv(a: argparse.Namespace) -> tuple[str, ...]:
    """The recipe options of ``a`` as ``train`` arguments (without ``--steps``)."""
    out = [x for n in RECIPE_VALUES for x in (f"--{n.replace('_', '-')}", str(getattr(a, n)))]
    return (*out, *(f"--{n.replace('_', '-')}" for n in RECIPE_FLAGS if getattr(a, n)))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(
        prog="python -m export.detector", description=__doc__.splitlines()[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one band-agnostic detector")
    t.add_argument("--out", required=True)
    t.add_argument("--test-patches", default="", help="real patches held out (comma separated)")
    _recipe_options(t)
    t.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("cv", help="train the cross-validation fold models (runs/detcv_<k>)")
    c.add_argument("--folds", type=int, default=4)
    _recipe_options(c)
    c.add_argument("--runs", default="runs/detcv_{k}", help="fold folders ({k}: the fold)")
    c.add_argument("--jobs", type=int, default=2, help="folds trained at once (one core each)")
    c.add_argument(
        "--only-folds",
        default="",
        help="train only these folds (comma separated; e.g. 0,1 for `screen --folds 0,1`)",
    )
    r = sub.add_parser("release", help="fold, calibrate, quantise and ship one ONNX per band set")
    r.add_argument("--ckpt", default="runs/det_all/last.pt")
    r.add_argument("--results", default="bench/results/detector_real.json")
    r.add_argument(
        "--sets", default=",".join(RELEASE), help="band sets to release (comma separated)"
    )
    o = sub.add_parser(
        "shadow-op",
        help="write the cross-validated recall-70 % shadow operating point into the shipped "
        "detectors and their cards (a release does this too)",
    )
    o.add_argument("--results", default="bench/results/detector_real.json")
    o.add_argument("--sets", default=",".join(RELEASE), help="band sets (comma separated)")
    sc = sub.add_parser(
        "screen",
        help="compare recipes on some folds (FP32, quick; bench.detector_real gives the real figures)",
    )
    sc.add_argument(
        "runs",
        nargs="+",
        help="fold folder patterns, e.g. 'runs/detcv_rf85_{k}'; 'A+B' scores the ensemble of A and B",
    )
    sc.add_argument("--folds", default="0,1", help="folds to score (comma separated)")
    sc.add_argument("--json", type=Path, help="also write the figures here")
    sy = sub.add_parser(
        "synthetic",
        help="every fold model's score on synthetic clouds over the held-out clear scenes "
        "(synthetic_scores, INT8 as shipped): whether a recipe's synthetic figure is a draw",
    )
    sy.add_argument("runs", nargs="+", help="fold folder patterns, e.g. 'runs/detcv_{k}'")
    sy.add_argument("--folds", type=int, default=4)
    sy.add_argument("--sets", default="hsi32,rgbn", help="band sets (comma separated)")
    sy.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    if a.cmd == "synthetic":
        from bench._common import environment, write_json

        res = fold_synthetic_scores(a.runs, a.folds, tuple(a.sets.split(",")))
        for pattern, sets in res.items():
            for name, r in sets.items():
                print(
                    f"{pattern:28s} {name:6s} accuracy {r['mean']['accuracy']:.1%} clear called "
                    f"cloud {r['mean']['false_positive_rate']:.1%} (mean of {len(r['folds'])} folds)"
                )
        if a.json:
            write_json({"results": res, "environment": environment()}, a.json)
    elif a.cmd == "screen":
        res = screen(a.runs, [int(f) for f in a.folds.split(",")])
        for pattern, views in res.items():
            for view, r in views.items():
                print(
                    f"{pattern:32s} {view:6s} accuracy {r['accuracy']:.1%}  "
                    f"clear called cloud {r['false_positive_rate']:.1%}"
                )
        if a.json:
            from bench._common import write_json

            write_json({"folds": a.folds, "results": res}, a.json)
    elif a.cmd == "cv":
        from bench._common import run_jobs

        extra = _recipe_argv(a)
        only = tuple(int(f) for f in a.only_folds.split(",") if f)
        if any(not 0 <= f < a.folds for f in only):
            ap.error(f"--only-folds {a.only_folds}: folds are 0 to {a.folds - 1}")
        run_jobs(fold_commands(a.folds, a.steps, a.runs, extra, only), a.jobs)
        print("now: python -m bench.detector_real")
    elif a.cmd == "release":
        release(Path(a.ckpt), Path(a.results), tuple(x for x in a.sets.split(",") if x))
    elif a.cmd == "shadow-op":
        set_shadow_thresholds(Path(a.results), sets=tuple(x for x in a.sets.split(",") if x))
    elif a.cmd == "train":
        run = DetectorRun(
            out=a.out,
            test_patches=tuple(n for n in a.test_patches.split(",") if n),
            steps=a.steps,
            context=a.context,
            saturate_synthetic=not a.saturate_real_only,
            threads=a.threads,
            **{n: getattr(a, n) for n in RECIPE_VALUES},
        )
        print(train(run))


if __name__ == "__main__":
    main(sys.argv[1:])
