"""Training data by split: scenes per split, real labelled patches, batches, fixed validation sets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from export.data import (
    CloudRanges,
    CloudyTiles,
    Scene,
    patch_cube,
    real_cloud_patches,
    scene_from_raster,
    shared_scenes,
    split_scenes,
    usable,
)
from export.train.config import DEFAULT_SPLITS, TrainConfig, band_set
from kumo_edge.bands import BandSet
from kumo_edge.errors import KumoError

logger = logging.getLogger("kumo_edge.train")


# -- data ------------------------------------------------------------------------------------
def split_names(splits: dict[str, list[Scene]]) -> dict[str, list[str]]:
    return {k: [s.name for s in v] for k, v in splits.items()}


def load_scenes(cfg: TrainConfig) -> tuple[dict[str, list[Scene]], BandSet]:
    target = band_set(cfg.bands)
    if cfg.scenes:
        paths = [
            ln.strip()
            for ln in Path(cfg.scenes).read_text().splitlines()
            if ln.strip() and not ln.startswith("#")
        ]
        scenes = [scene_from_raster(p) for p in paths]
    else:
        scenes = shared_scenes(cloudy_eolearn=cfg.cloudy_eolearn)
    if cfg.corpus:
        from export.scenes import hyperspectral_corpus

        have = {s.name for s in scenes}
        scenes += [s for s in hyperspectral_corpus() if s.name not in have]
    scenes = usable(scenes, target)
    split = DEFAULT_SPLITS.get(cfg.bands, {"val": [], "test": []})
    # an explicit split (or the user's own scenes) replaces the default split as a whole
    explicit = bool(cfg.val or cfg.test or cfg.scenes)
    val = list(cfg.val) if explicit else split["val"]
    test = list(cfg.test) if explicit else split["test"]
    splits = split_scenes(scenes, val, test)
    if cfg.train:
        known = {s.name for s in scenes}
        missing = [n for n in cfg.train if n not in known]
        if missing:
            raise KumoError(f"--train names unknown scenes {missing}; known: {sorted(known)}")
        splits["train"] = [s for s in splits["train"] if s.name in cfg.train]
    if not splits["train"]:
        raise KumoError("no training scene left after the split")
    return splits, target


class RealPatches:
    """Random crops of the labelled real patches, resampled to the model's band set."""

    def __init__(self, names: list[str], target: BandSet, tile: int) -> None:
        patches = [p for p in real_cloud_patches() if p["name"] in names]
        if not patches:
            raise KumoError(f"none of the real patches {names} is available")
        self.cubes = [patch_cube(p, target) for p in patches]
        self.classes = [p["classes"] for p in patches]
        self.names = [p["name"] for p in patches]
        self.tile = tile

    def sample(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        t = self.tile
        for _ in range(n):
            k = int(rng.integers(len(self.cubes)))
            c, m = self.cubes[k], self.classes[k]
            y0, x0 = rng.integers(0, c.shape[1] - t + 1), rng.integers(0, c.shape[2] - t + 1)
            cc, mm = c[:, y0 : y0 + t, x0 : x0 + t], m[y0 : y0 + t, x0 : x0 + t]
            r = int(rng.integers(4))
            cc, mm = np.rot90(cc, r, (1, 2)), np.rot90(mm, r)
            xs.append(np.ascontiguousarray(cc))
            ys.append(np.ascontiguousarray(mm))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _batches(ds: CloudyTiles, batch: int, rng: np.random.Generator):  # noqa: ANN202
    epoch = 0
    while True:
        ds.set_epoch(epoch)
        order = rng.permutation(len(ds))
        for i in range(0, len(order) - batch + 1, batch):
            items = [ds[int(j)] for j in order[i : i + batch]]
            yield {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
        epoch += 1


def fixed_set(
    scenes: list[Scene], cfg: TrainConfig, seed: int, ranges: CloudRanges | None = None
) -> dict[str, torch.Tensor] | None:
    """A deterministic evaluation set: ``eval_tiles`` tiles with fixed clouds."""
    if not scenes:
        return None
    ds = CloudyTiles(
        scenes, cfg.tile, cfg.eval_tiles, seed=seed, augment=False, ranges=ranges or CloudRanges()
    )
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}


def _real_names() -> list[str]:
    from export.data import SHARED

    return sorted(p.stem for p in (SHARED / "real_clouds" / "l8biome" / "Images").glob("*.tif"))
