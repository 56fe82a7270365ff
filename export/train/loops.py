"""The training loops of the detector and the cGAN generator, with their checkpoints and scores."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812
from tqdm import tqdm

from export.data import (
    CloudRanges,
    CloudyTiles,
)
from export.nets import (
    CloudDetector,
    DetectorConfig,
    PatchDiscriminator,
    UNet,
    UNetConfig,
)
from export.train.config import TrainConfig
from export.train.splits import (
    RealPatches,
    _batches,
    _real_names,
    fixed_set,
    load_scenes,
    split_names,
)
from kumo_edge import metrics
from kumo_edge.errors import BandMappingError, KumoError
from kumo_edge.runtime import classify

logger = logging.getLogger("kumo_edge.train")


# -- checkpoints -------------------------------------------------------------------------------
def _plain(v: object) -> object:
    """numpy scalars -> Python numbers, recursively: checkpoints load with
    ``torch.load(..., weights_only=True)``, which unpickles no numpy objects."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    return v


def save_checkpoint(path: Path, **state: object) -> None:
    """Save atomically; every value is a tensor, a state dict or plain Python (module data only,
    so that loading never unpickles arbitrary objects)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            k: v if k in ("model", "opt", "sched", "disc", "opt_d") else _plain(v)
            for k, v in state.items()
        },
        tmp,
    )
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
        raise KumoError(f"unknown real patches {unknown}; known: {sorted(known)}")
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
    ds = CloudyTiles(splits["train"], cfg.tile, 4096, seed=cfg.seed, ranges=ranges, gain=cfg.gain)
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
        st = torch.load(ck, weights_only=True)
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
    ds = CloudyTiles(splits["train"], cfg.tile, 4096, seed=cfg.seed, gain=cfg.gain)
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
