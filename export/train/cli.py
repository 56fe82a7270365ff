"""``kumo-edge-train``: the command line of the training loops."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from export.nets import (
    CloudDetector,
    DetectorConfig,
    UNet,
    count_macs,
    count_params,
)
from export.train.config import TrainConfig, band_set, describe_config
from export.train.loops import generator_config, train_detector, train_generator
from kumo_edge.errors import KumoError

logger = logging.getLogger("kumo_edge.train")

# -- CLI ---------------------------------------------------------------------------------------
#: TrainConfig fields that are plain command-line options, by type.
_INT_OPTIONS = (
    "steps",
    "batch",
    "tile",
    "eval_every",
    "eval_tiles",
    "seed",
    "threads",
    "ndf",
    "gan_start",
)
_FLOAT_OPTIONS = (
    "lr",
    "weight_decay",
    "real_fraction",
    "real_start",
    "snow_fraction",
    "lambda_l1",
    "lambda_adv",
    "lambda_sam",
)
_HELP = {
    "steps": "optimiser steps",
    "batch": "tiles per step",
    "tile": "training tile side in pixels (multiple of 16)",
    "eval_every": "validate, log and checkpoint every N steps",
    "eval_tiles": "tiles in the fixed validation set",
    "threads": "torch CPU threads",
    "ndf": "generator: PatchGAN discriminator width",
    "gan_start": "generator: step at which the adversarial loss starts",
    "lr": "peak learning rate (one-cycle schedule)",
    "real_fraction": "detector: share of each batch taken from real labelled L8 Biome patches",
    "real_start": "detector: fraction of the run before real patches are mixed in",
    "snow_fraction": "detector: share of synthetic tiles with snow painted under the clouds "
    "(useful only with a SWIR band)",
    "lambda_l1": "generator: weight of the L1 loss",
    "lambda_adv": "generator: weight of the adversarial loss",
    "lambda_sam": "generator: weight of the spectral-angle loss",
}
_PLAIN_OPTIONS = ("head", "upsample", "norm", "scenes", "smoke", "cloudy_eolearn", "corpus")


def parse(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    d = TrainConfig()
    ap = argparse.ArgumentParser(
        prog="kumo-edge-train",
        description="Train the Kumo Edge cloud detector or cloud-removal generator on CPU or GPU.",
    )
    ap.add_argument("task", choices=["detector", "generator"])
    ap.add_argument("--bands", default=d.bands, help="hsi32, rgbn, rgb or any sensor profile name")
    ap.add_argument("--out", help="output folder [runs/<task>_<bands>]")
    for name in _INT_OPTIONS:
        ap.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=getattr(d, name),
            help=f"{_HELP.get(name, '')} [{getattr(d, name)}]".strip(),
        )
    for name in _FLOAT_OPTIONS:
        ap.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=getattr(d, name),
            help=f"{_HELP.get(name, '')} [{getattr(d, name)}]".strip(),
        )
    ap.add_argument(
        "--ignore-tau",
        default=",".join(str(v) for v in d.ignore_tau),
        help="detector: tau550 range left out of the loss",
    )
    ap.add_argument(
        "--gain",
        default=",".join(str(v) for v in d.gain),
        help="LO,HI: range of the brightness gain drawn per training tile (augmentation)",
    )
    ap.add_argument("--widths", help="comma-separated channel widths per level")
    ap.add_argument(
        "--head", default=d.head, choices=["residual", "affine", "affine_lowres", "direct"]
    )
    ap.add_argument("--upsample", default=d.upsample, choices=["bilinear", "nearest", "transposed"])
    ap.add_argument("--norm", default=d.norm, choices=["batch", "instance", "none"])
    ap.add_argument(
        "--scenes",
        default="",
        help="text file of clear rasters (one path per line) instead of ../shared/data",
    )
    ap.add_argument("--train", default="", help="comma-separated scene names: train on these only")
    ap.add_argument("--val", default="", help="comma-separated scene names for validation")
    ap.add_argument("--test", default="", help="comma-separated scene names held out for testing")
    ap.add_argument(
        "--real-test",
        default="",
        help="detector: comma-separated real L8 Biome patches held out [one per land type]",
    )
    ap.add_argument(
        "--real-val", default="", help="detector: comma-separated real validation patches"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="a tiny run that exercises every step in seconds"
    )
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument(
        "--corpus",
        action="store_true",
        help="also train on the 15 hyperspectral crops (resampled), all but those named in "
        "--val/--test (e.g. one removal cross-validation fold held out)",
    )
    ap.add_argument(
        "--cloudy-eolearn",
        action="store_true",
        help="also train on the two cloudy eo-learn dates as ground (their cloud is labelled "
        "clear): bright, hazy examples for a brightness companion, never for a detector",
    )
    a = ap.parse_args(argv)
    cfg = TrainConfig(
        task=a.task,
        bands=a.bands,
        out=a.out or f"runs/{a.task}_{a.bands}",
        **{n: getattr(a, n) for n in (*_INT_OPTIONS, *_FLOAT_OPTIONS, *_PLAIN_OPTIONS)},
        widths=tuple(int(w) for w in a.widths.split(",")) if a.widths else (),
        ignore_tau=tuple(float(v) for v in a.ignore_tau.split(",")),
        gain=tuple(float(v) for v in a.gain.split(",")),
        train=tuple(v for v in a.train.split(",") if v),
        val=tuple(v for v in a.val.split(",") if v),
        test=tuple(v for v in a.test.split(",") if v),
        real_test=tuple(v for v in a.real_test.split(",") if v),
        real_val=tuple(v for v in a.real_val.split(",") if v),
    )
    if a.smoke:
        cfg = replace(
            cfg,
            steps=4,
            batch=2,
            tile=32,
            eval_every=2,
            eval_tiles=4,
            gan_start=2,
            widths=cfg.widths or ((4, 8) if a.task == "detector" else (4, 8, 8)),
        )
    return cfg, a.resume


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    torch.set_num_threads(cfg.threads)
    # denormal floats make CPU kernels crawl; flush them to zero
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print(describe_config(cfg), file=sys.stderr)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    try:
        if cfg.task == "detector":
            best = train_detector(cfg, resume)
            net = CloudDetector(DetectorConfig(len(band_set(cfg.bands)), cfg.resolved_widths()))
        else:
            best = train_generator(cfg, resume)
            net = UNet(generator_config(cfg, len(band_set(cfg.bands))))
    except KumoError as exc:
        raise SystemExit(f"error: {exc}") from None
    n = len(band_set(cfg.bands))
    print(
        f"best checkpoint: {best}  ({count_params(net)} parameters, {count_macs(net, (1, n, 256, 256)) / 1e9:.3f} GMAC per 256 x 256 tile)"
    )


if __name__ == "__main__":
    main()
