"""Training of the cloud detector and the cloud-removal cGAN: ``kumo-edge-train``.

    kumo-edge-train detector  --bands rgbn  --out runs/det_rgbn
    kumo-edge-train generator --bands hsi32 --out runs/gen_hsi32
    kumo-edge-train ... --smoke          # a tiny run (seconds) that exercises every step
    kumo-edge-train ... --resume         # continue from OUT/last.pt
    kumo-edge-train ... --scenes my.txt  # train on your own clear rasters (one path per line)

Every run writes beside its outputs: ``config.json`` (the resolved configuration; the console
shows which values differ from the defaults), ``log.jsonl`` (one line per evaluation),
``last.pt`` (resumable checkpoint) and ``best.pt`` (best validation score).
"""

from __future__ import annotations

from export.train.cli import main, parse
from export.train.config import (
    BAND_SETS,
    DEFAULT_SPLITS,
    REAL_TEST,
    REAL_VAL,
    TrainConfig,
    band_set,
    describe_config,
)
from export.train.loops import (
    detector_scores,
    generator_config,
    generator_scores,
    sam_loss,
    save_checkpoint,
    train_detector,
    train_generator,
)
from export.train.splits import RealPatches, fixed_set, load_scenes, split_names

__all__ = [
    "BAND_SETS",
    "DEFAULT_SPLITS",
    "REAL_TEST",
    "REAL_VAL",
    "RealPatches",
    "TrainConfig",
    "band_set",
    "describe_config",
    "detector_scores",
    "fixed_set",
    "generator_config",
    "generator_scores",
    "load_scenes",
    "main",
    "parse",
    "sam_loss",
    "save_checkpoint",
    "split_names",
    "train_detector",
    "train_generator",
]
