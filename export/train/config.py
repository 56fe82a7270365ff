"""Training configuration: the shipped band sets, the default scene and real-patch splits,
:class:`TrainConfig` and its one-line description."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from kumo_edge.bands import BandSet
from kumo_edge.config import sensor_profile

logger = logging.getLogger("kumo_edge.train")


#: Short band-set names of the shipped models -> sensor profiles.
BAND_SETS = {"hsi32": "satellogic-hsi", "rgbn": "rgbn", "rgb": "rgb", "swir6": "rgbn-swir"}
#: Default scene splits for the built-in catalogue (by scene; see export.data).
DEFAULT_SPLITS = {
    "hsi32": {"val": [], "test": ["rosis_beach"]},
    # ben_57_38 is a bright winter (snow) patch: with no SWIR band, snow and cloud look alike in
    # rgb/rgbn, so it is a held-out hard case, not a validation scene (it would steer model
    # selection towards doing nothing)
    "rgbn": {
        "val": ["s2_eolearn_4", "ben_56_35"],
        "test": ["landsat7_nc", "s2_eolearn_3", "ben_69_24", "rosis_beach", "ben_57_38"],
    },
    # with two SWIR bands: the same split as rgbn less ROSIS (no SWIR); ben_57_38 is the
    # held-out real snow scene
    "rgbn-swir": {
        "val": ["s2_eolearn_4", "ben_56_35"],
        "test": ["landsat7_nc", "s2_eolearn_3", "ben_69_24", "ben_57_38"],
    },
    "swir6": {
        "val": ["s2_eolearn_4", "ben_56_35"],
        "test": ["landsat7_nc", "s2_eolearn_3", "ben_69_24", "ben_57_38"],
    },
    "rgb": {
        "val": ["s2_eolearn_4", "ben_56_35"],
        "test": [
            "landsat7_nc",
            "s2_eolearn_3",
            "ben_69_24",
            "rosis_beach",
            "ben_57_38",
            "landsat8_224077",
        ],
    },
}
#: Real L8 Biome patches held out for testing the detector: one per land type. SnowIce_00 (clear
#: snow and ice, no cloud) is the snow test: the detector never sees clear snow from the real set.
REAL_TEST = [
    "Barren_11_0207",
    "Forest_08_0805",
    "GrassCrops_02_0608",
    "Shrubland_02_1021",
    "SnowIce_00_1415",
    "Urban_01_0609",
    "Water_02_1010",
    "Wetlands_07_1826",
]
#: Real patches for validation (model selection): mixed cloud / clear / shadow content.
REAL_VAL = ["Barren_03_0207", "Forest_00_1008", "GrassCrops_01_0413", "Water_01_0922"]


def band_set(name: str) -> BandSet:
    return sensor_profile(BAND_SETS.get(name, name)).bands


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; written to ``config.json``."""

    task: str = "detector"
    bands: str = "rgbn"
    out: str = "runs/run"
    steps: int = 3000
    batch: int = 16
    tile: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 250
    eval_tiles: int = 96
    seed: int = 0
    threads: int = 2
    widths: tuple[int, ...] = ()
    # range of the brightness gain drawn per training tile (export.data.CloudyTiles): wider
    # than the default teaches surfaces brighter than any training scene
    gain: tuple[float, float] = (0.6, 1.6)
    # also train on the two cloudy eo-learn dates, as bright ground (export.data.shared_scenes)
    cloudy_eolearn: bool = False
    # also train on the hyperspectral corpus (export.scenes.CATALOGUE, resampled to the band
    # set), all but the scenes named in val/test: the removal cross-validation's scenes
    corpus: bool = False
    # detector
    real_fraction: float = 0.5
    real_start: float = 0.3
    ignore_tau: tuple[float, float] = (0.02, 0.08)
    snow_fraction: float = 0.0  # share of synthetic tiles with snow under the clouds
    real_test: tuple[str, ...] = ()  # held-out real patches [REAL_TEST]
    real_val: tuple[str, ...] = ()  # real validation patches [REAL_VAL]
    # generator
    head: str = "residual"
    upsample: str = "bilinear"
    norm: str = "batch"
    ndf: int = 32
    lambda_l1: float = 100.0
    lambda_adv: float = 1.0
    lambda_sam: float = 10.0
    gan_start: int = 500
    scenes: str = ""
    train: tuple[str, ...] = ()  # if set, only these scenes train (others unused unless val/test)
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    smoke: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("detector", "generator"):
            raise ValueError(f"task must be detector or generator, got {self.task!r}")
        for n in ("steps", "batch", "tile", "eval_every", "eval_tiles"):
            if getattr(self, n) < 1:
                raise ValueError(f"`{n}` must be >= 1")
        if self.tile % 16:
            raise ValueError(f"`tile` must be a multiple of 16, got {self.tile}")
        if self.cloudy_eolearn and self.task == "detector":
            raise ValueError("`cloudy_eolearn` would teach a detector real cloud as clear ground")
        if len(self.gain) != 2 or not 0 < self.gain[0] <= self.gain[1]:
            raise ValueError(f"`gain` must be LO,HI with 0 < LO <= HI, got {self.gain}")

    def real_split(self) -> tuple[list[str], list[str]]:
        """(test, validation) real labelled patches; the rest train the detector."""
        return list(self.real_test or REAL_TEST), list(self.real_val or REAL_VAL)

    def resolved_widths(self) -> tuple[int, ...]:
        if self.widths:
            return tuple(self.widths)
        return (12, 24, 48) if self.task == "detector" else (32, 48, 64, 96)


def describe_config(cfg: TrainConfig) -> str:
    """pix2pix-style options listing; values that differ from the defaults are marked."""
    default = TrainConfig()
    lines = ["----------------- options -----------------"]
    for f in fields(cfg):
        v, d = getattr(cfg, f.name), getattr(default, f.name)
        lines.append(f"{f.name:>15}: {v!s:<30}" + (f"[default: {d}]" if v != d else ""))
    lines.append("------------------- end -------------------")
    return "\n".join(lines)
