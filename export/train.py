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

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812
from tqdm import tqdm

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
from export.nets import (
    CloudDetector,
    DetectorConfig,
    PatchDiscriminator,
    UNet,
    UNetConfig,
    count_macs,
    count_params,
)
from kumo_edge import metrics
from kumo_edge.bands import BandSet
from kumo_edge.config import sensor_profile
from kumo_edge.errors import BandMappingError, KumoError
from kumo_edge.runtime import classify

logger = logging.getLogger("kumo_edge.train")

#: Short band-set names of the shipped models -> sensor profiles.
BAND_SETS = {"hsi32": "satellogic-hsi", "rgbn": "rgbn", "rgb": "rgb"}
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
        scenes = shared_scenes()
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
            raise SystemExit(f"--train names unknown scenes {missing}; known: {sorted(known)}")
        splits["train"] = [s for s in splits["train"] if s.name in cfg.train]
    if not splits["train"]:
        raise SystemExit("no training scene left after the split")
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


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(path: Path, **state: object) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _log(out: Path, rec: dict) -> None:
    with (out / "log.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: object) -> None:
    """Backward pass, optimiser step, scheduler step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()  # type: ignore[attr-defined]


def due(step: int, cfg: TrainConfig) -> bool:
    """Evaluate and checkpoint at this step?"""
    return step % cfg.eval_every == 0 or step == cfg.steps


# -- detector ----------------------------------------------------------------------------------
def detector_scores(model: CloudDetector, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Pixel scores of cloud (thin+thick) vs not-cloud, and 4-class accuracy; label -1 ignored."""
    model.eval()
    with torch.no_grad():
        prob = torch.cat([model(x[i : i + 16]).softmax(1) for i in range(0, len(x), 16)])
    model.train()
    pred = torch.from_numpy(classify(prob.numpy(), axis=1).astype(np.int64))  # the runtime's rule
    ok = y >= 0
    p = ((pred == 1) | (pred == 2))[ok].numpy()
    t = ((y == 1) | (y == 2))[ok].numpy()
    d = metrics.detection(p, t)
    return {
        "accuracy": d.accuracy,
        "fpr": d.false_positive_rate,
        "f1": d.f1,
        "iou": d.iou,
        "acc4": float((pred == y)[ok].float().mean()),
    }


def train_detector(cfg: TrainConfig, resume: bool = False) -> Path:
    out = Path(cfg.out)
    real_test, real_val_names = cfg.real_split()
    known = set(_real_names())
    unknown = [n for n in real_test + real_val_names if known and n not in known]
    if unknown:
        raise SystemExit(f"unknown real patches {unknown}; known: {sorted(known)}")
    splits, target = load_scenes(cfg)
    model = CloudDetector(DetectorConfig(len(target), cfg.resolved_widths()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1
    )
    real = None
    real_val = None
    try:
        real = RealPatches(
            [p for p in sorted(known) if p not in real_test + real_val_names], target, cfg.tile
        )
        real_val = RealPatches(real_val_names, target, 256)
    except (BandMappingError, Exception) as exc:  # noqa: BLE001 - no real patches for this band set
        logger.warning("no real labelled patches for %s: %s", cfg.bands, exc)
    step, best = _maybe_resume(out, resume, model, opt, sched)
    rng = np.random.default_rng([cfg.seed, step])
    ranges = CloudRanges(snow_fraction=cfg.snow_fraction)
    ds = CloudyTiles(splits["train"], cfg.tile, 4096, seed=cfg.seed, ranges=ranges)
    batches = _batches(ds, cfg.batch, rng)
    val = fixed_set(splits["val"] or splits["train"], cfg, seed=10_000 + cfg.seed, ranges=ranges)
    # class weights: shadow and thin cloud are rarer and matter more than easy clear pixels
    weight = torch.tensor([1.0, 1.5, 1.0, 1.5])
    bar = tqdm(total=cfg.steps, initial=step, desc=f"detector {cfg.bands}", disable=None)
    t0 = time.time()
    while step < cfg.steps:
        b = next(batches)
        x, y = b["cloudy"], b["classes"].clone()
        # the faintest cloud edges are invisible: do not teach either answer there
        lo, hi = cfg.ignore_tau
        y[(b["tau"] >= lo) & (b["tau"] < hi)] = -1
        # synthetic pre-training first, then real labelled patches mixed into every batch
        if real is not None and cfg.real_fraction > 0 and step >= cfg.real_start * cfg.steps:
            n_real = int(round(cfg.batch * cfg.real_fraction))
            xr, yr = real.sample(rng, n_real)
            x = torch.cat([x[: cfg.batch - n_real], xr])
            y = torch.cat([y[: cfg.batch - n_real], yr])
        loss = F.cross_entropy(model(x), y, weight=weight, ignore_index=-1)
        optimizer_step(loss, opt, sched)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if due(step, cfg):
            rec: dict = {"step": step, "loss": loss.item(), "elapsed_s": time.time() - t0}
            if val is not None:
                rec["val_synthetic"] = detector_scores(model, val["cloudy"], val["classes"])
            if real_val is not None:
                rec["val_real"] = detector_scores(
                    model,
                    torch.from_numpy(np.stack(real_val.cubes)),
                    torch.from_numpy(np.stack(real_val.classes)),
                )
            score = (
                np.mean([r["accuracy"] - r["fpr"] for k, r in rec.items() if k.startswith("val_")])
                if len(rec) > 3
                else -loss.item()
            )
            _log(out, rec)
            if score > best:
                best = score
                save_checkpoint(
                    out / "best.pt",
                    model=model.state_dict(),
                    step=step,
                    score=score,
                    config=asdict(cfg),
                    splits=split_names(splits),
                    real_train=real.names if real else [],
                )
            save_checkpoint(
                out / "last.pt",
                model=model.state_dict(),
                opt=opt.state_dict(),
                sched=sched.state_dict(),
                step=step,
                best=best,
                config=asdict(cfg),
            )
            logger.info("step %d %s", step, json.dumps(rec))
    bar.close()
    return out / "best.pt"


def _real_names() -> list[str]:
    from export.data import SHARED

    return sorted(p.stem for p in (SHARED / "real_clouds" / "l8biome" / "Images").glob("*.tif"))


def _maybe_resume(
    out: Path,
    resume: bool,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: object,
    extra: dict | None = None,
) -> tuple[int, float]:
    ck = out / "last.pt"
    if resume and ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])  # type: ignore[attr-defined]
        for k, m in (extra or {}).items():
            m.load_state_dict(st[k])
        logger.warning("resumed from %s at step %d", ck, st["step"])
        return int(st["step"]), float(st["best"])
    return 0, -math.inf


# -- generator ---------------------------------------------------------------------------------
def sam_loss(
    pred: torch.Tensor, true: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean spectral angle (radians) between pixel spectra, over pixels where ``keep`` (N, 1, H, W) is 1."""
    dot = (pred * true).sum(1)
    den = pred.norm(dim=1) * true.norm(dim=1) + 1e-6
    angle = torch.acos(torch.clamp(dot / den, -1 + 1e-6, 1 - 1e-6))
    if keep is None:
        return angle.mean()
    k = keep[:, 0]
    return (angle * k).sum() / (k.sum() + 1)


def generator_scores(
    model: UNet, x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor
) -> dict[str, float]:
    """PSNR/SSIM/SAM per tile averaged, on recoverable pixels (thick cloud excluded from PSNR/SAM)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 16]) for i in range(0, len(x), 16)]).numpy()
    model.train()
    xs, ys, cs = x.numpy(), y.numpy(), classes.numpy()
    ps, pin, ss, sams, sin = [], [], [], [], []
    for i in range(len(pred)):
        mask = cs[i] != 2
        if mask.sum() < 16:
            continue
        ps.append(min(metrics.psnr(pred[i], ys[i], mask=mask), 60.0))
        pin.append(min(metrics.psnr(xs[i], ys[i], mask=mask), 60.0))
        sams.append(metrics.sam(pred[i], ys[i], mask=mask))
        sin.append(metrics.sam(xs[i], ys[i], mask=mask))
        ss.append(metrics.ssim(pred[i], ys[i]))
    return {
        "psnr": float(np.mean(ps)),
        "psnr_input": float(np.mean(pin)),
        "ssim": float(np.mean(ss)),
        "sam": float(np.mean(sams)),
        "sam_input": float(np.mean(sin)),
        "tiles": len(ps),
    }


def generator_config(cfg: TrainConfig, n_bands: int) -> UNetConfig:
    return UNetConfig(n_bands, n_bands, cfg.resolved_widths(), cfg.upsample, cfg.norm, cfg.head)


def train_generator(
    cfg: TrainConfig,
    resume: bool = False,
    init: dict | None = None,
    model: UNet | None = None,
    teacher: UNet | None = None,
    lambda_distill: float = 0.0,
) -> Path:
    """pix2pix training: L1 + LSGAN (PatchGAN, from step ``gan_start``) + SAM; thick-cloud pixels
    are left out of the reconstruction losses (the runtime flags them instead of inventing them).

    With a ``teacher`` (the unpruned parent, when fine-tuning a pruned network), an L1 term
    pulls the output towards the teacher's on the recoverable pixels, weight
    ``lambda_distill`` (knowledge distillation)."""
    if teacher is not None:
        teacher = teacher.eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
    out = Path(cfg.out)
    splits, target = load_scenes(cfg)
    g = model if model is not None else UNet(generator_config(cfg, len(target)))
    if init is not None:
        g.load_state_dict(init)
    d = PatchDiscriminator(2 * len(target), cfg.ndf)
    opt_g = torch.optim.AdamW(
        g.parameters(), lr=cfg.lr, betas=(0.5, 0.999), weight_decay=cfg.weight_decay
    )
    opt_d = torch.optim.AdamW(d.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt_g, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05
    )
    step, best = _maybe_resume(out, resume, g, opt_g, sched, {"disc": d, "opt_d": opt_d})
    rng = np.random.default_rng([cfg.seed, step])
    ds = CloudyTiles(splits["train"], cfg.tile, 4096, seed=cfg.seed)
    batches = _batches(ds, cfg.batch, rng)
    # model selection never looks at the test scenes: without validation scenes, it uses
    # fixed tiles of the training scenes with clouds the training never draws (another seed)
    val = fixed_set(splits["val"] or splits["train"], cfg, seed=10_000 + cfg.seed)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"generator {cfg.bands}", disable=None)
    t0 = time.time()
    while step < cfg.steps:
        b = next(batches)
        x, y = b["cloudy"], b["clear"]
        keep = (b["classes"] != 2).unsqueeze(1).float()
        fake = g(x)
        use_gan = cfg.lambda_adv > 0 and step >= cfg.gan_start
        if use_gan:
            opt_d.zero_grad(set_to_none=True)
            ld = 0.5 * (((d(x, y) - 1) ** 2).mean() + (d(x, fake.detach()) ** 2).mean())
            ld.backward()
            opt_d.step()
        l1 = (keep * (fake - y).abs()).sum() / (keep.sum() * y.shape[1] + 1)
        ls = sam_loss(fake, y, keep)
        loss = cfg.lambda_l1 * l1 + cfg.lambda_sam * ls
        if teacher is not None and lambda_distill > 0:
            with torch.no_grad():
                t_out = teacher(x)
            kd = (keep * (fake - t_out).abs()).sum() / (keep.sum() * y.shape[1] + 1)
            loss = loss + lambda_distill * kd
        if use_gan:
            loss = loss + cfg.lambda_adv * ((d(x, fake) - 1) ** 2).mean()
        optimizer_step(loss, opt_g, sched)
        step += 1
        bar.update(1)
        bar.set_postfix(l1=f"{l1.item():.4f}")
        if due(step, cfg):
            rec: dict = {
                "step": step,
                "l1": l1.item(),
                "sam_loss": ls.item(),
                "elapsed_s": time.time() - t0,
            }
            if val is not None:
                rec["val"] = generator_scores(g, val["cloudy"], val["clear"], val["classes"])
            score = rec["val"]["psnr"] if val is not None else -l1.item()
            _log(out, rec)
            if score > best:
                best = score
                save_checkpoint(
                    out / "best.pt",
                    model=g.state_dict(),
                    step=step,
                    score=score,
                    config=asdict(cfg),
                    net=g.cfg.to_dict(),
                    splits=split_names(splits),
                )
            save_checkpoint(
                out / "last.pt",
                model=g.state_dict(),
                opt=opt_g.state_dict(),
                sched=sched.state_dict(),
                disc=d.state_dict(),
                opt_d=opt_d.state_dict(),
                step=step,
                best=best,
                config=asdict(cfg),
            )
            logger.info("step %d %s", step, json.dumps(rec))
    bar.close()
    return out / "best.pt"


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
_PLAIN_OPTIONS = ("head", "upsample", "norm", "scenes", "smoke")


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
    a = ap.parse_args(argv)
    cfg = TrainConfig(
        task=a.task,
        bands=a.bands,
        out=a.out or f"runs/{a.task}_{a.bands}",
        **{n: getattr(a, n) for n in (*_INT_OPTIONS, *_FLOAT_OPTIONS, *_PLAIN_OPTIONS)},
        widths=tuple(int(w) for w in a.widths.split(",")) if a.widths else (),
        ignore_tau=tuple(float(v) for v in a.ignore_tau.split(",")),
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
    if cfg.task == "detector":
        best = train_detector(cfg, resume)
        net = CloudDetector(DetectorConfig(len(band_set(cfg.bands)), cfg.resolved_widths()))
    else:
        best = train_generator(cfg, resume)
        net = UNet(generator_config(cfg, len(band_set(cfg.bands))))
    n = len(band_set(cfg.bands))
    print(
        f"best checkpoint: {best}  ({count_params(net)} parameters, {count_macs(net, (1, n, 256, 256)) / 1e9:.3f} GMAC per 256 x 256 tile)"
    )


if __name__ == "__main__":
    main()
