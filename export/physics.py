"""Training and export of the physics-constrained cloud remover (``kumo_edge.physics``).

    python -m export.physics train  --bands hsi32 --out runs/phys_hsi32 [--holdout a,b,c]
    python -m export.physics export --ckpt runs/phys_hsi32/best.pt --out kumo_edge/models/hsi32

The network (:class:`PhysicsNet`, the encoder-decoder trunk of the detector and generator)
returns the six thin-cloud parameters per pixel at half resolution (k, alpha, A, d, f, q; see
:mod:`kumo_edge.physics`), already squashed into their physical ranges. Training inverts the
cloud model with :func:`invert` (the torch twin of the runtime's numba kernel) and scores the
recovered surface against the clear truth, plus the parameters the truth knows (two-way
transmittance and ground illumination at 550 nm).

Data: the hyperspectral corpus (:mod:`export.scenes`) resampled to the band set, each scene
also with its wavelengths shifted by -4, -2, +2, +4 nm (sensor calibration is never exact),
random gain and illumination, flips and rotations, sensor noise, and clouds drawn from
:data:`TRAIN_RANGES`: randomised Angstrom exponent, albedo, air mass (sun elevation and view
angle), cloud height (shadow offset), diffuse light and texture. The evaluation clouds
(:func:`alien_clouds`) come from ranges outside these AND from a different cloud model.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from export import share
from export.data import CloudRanges, CloudyTiles, Scene, usable
from export.nets import EncoderDecoder, UNet, UNetConfig, count_macs, count_params
from export.scenes import card_rows, hyperspectral_corpus
from kumo_edge.bands import BandSet
from kumo_edge.clouds import CloudField, CloudParams
from kumo_edge.errors import KumoError
from kumo_edge.physics import (
    FIT_ALBEDO,
    FIT_MIN_SAMPLES,
    FIT_MIN_STD,
    N_PARAMS,
    T_MIN,
    THICK_TRANSMITTANCE,
    spectral_terms,
)

logger = logging.getLogger("kumo_edge.physics_train")

#: Cloud parameters seen in training.
TRAIN_RANGES = CloudRanges(
    cover=(0.05, 0.95),
    thickness=(0.05, 2.5),
    angstrom=(0.3, 1.8),
    feature_px=(16.0, 96.0),
    cloud_albedo=(0.7, 0.95),
    sun_elevation_deg=(35.0, 70.0),
    cloud_height_m=(300.0, 3000.0),
    clear_fraction=0.1,
    diffuse_fraction=(0.08, 0.22),
    view_zenith_deg=(0.0, 8.0),
    gamma=(1.1, 1.9),
    persistence=(0.4, 0.6),
    sky_exponent=(1.0, 2.6),
)
#: Wavelength shifts (nm) of the extra copies of every training scene.
JITTER_NM = (-4.0, -2.0, 2.0, 4.0)


@dataclass
class PhysicsConfig:
    bands: str = "hsi32"
    widths: tuple[int, ...] = (8, 16, 32)
    tile: int = 64
    batch: int = 16
    steps: int = 3000
    lr: float = 2e-3
    seed: int = 0
    holdout: tuple[str, ...] = ()
    eval_every: int = 250
    noise: float = 0.004
    sam_weight: float = 0.2
    param_weight: float = 0.1
    #: weight of the ground-illumination term (shadow); None: ``param_weight``
    illum_weight: float | None = None
    #: initial bias of the shadow head (``d = sigmoid(bias)``: 4 starts at "no shadow")
    shadow_bias: float = 4.0
    range_weight: float = 1.0
    alpha_weight: float = 0.0
    #: ``physics`` (the six-parameter network) or ``residual`` (the cGAN's residual U-Net, same
    #: trunk, same data and losses less the parameter terms: the comparison the issue asks for)
    method: str = "physics"
    #: start from this checkpoint's weights (same network) instead of random ones
    init: str = ""
    #: also train on the clear multispectral scenes of ../shared/data (Landsat-8, Sentinel-2;
    #: never the demo's Landsat-7 scene): None = for every band set but hsi32, which they
    #: cannot feed. They are never test scenes of the cross-validation (it holds out places of
    #: the hyperspectral corpus), and they bring satellite pixel sizes the airborne crops lack.
    multispectral: bool | None = None
    #: share of training tiles with no cloud at all (TRAIN_RANGES' own share by default)
    clear_fraction: float = TRAIN_RANGES.clear_fraction
    #: share of training tiles with snow painted on the ground under the clouds
    #: (:func:`export.data.add_snow`, labelled ground); 0 draws what older recipes drew. Tried
    #: for rgbn at 0.2 (2026-12-06, README Limits): the network read MORE haze on a real clear
    #: snow scene, and the removal CV fell by 1.2 dB; no shipped recipe uses it
    snow_fraction: float = 0.0
    #: fit one cloud albedo per tile in closed form (as the runtime then does, contract
    #: ``kumo.fit_albedo``) instead of using the network's albedo map: the depth map is trained
    #: to pair with a fitted albedo, which extrapolates where the network's cannot
    fit_albedo: bool = False
    #: the network reads the tile averaged over ``pool`` x ``pool`` pixels (its cost / pool**2)
    #: and its parameters are resized back to half the tile's resolution inside the graph, so
    #: the runtime's contract (``cloud_params_half``) is the same
    pool: int = 1
    extra: dict = field(default_factory=dict)


class PhysicsNet(EncoderDecoder):
    """Cloudy reflectance -> the six cloud-model parameters at half resolution (with ``pool``
    > 1, computed from the tile averaged over ``pool`` x ``pool`` pixels, then resized)."""

    def __init__(
        self, in_ch: int, widths: tuple[int, ...], shadow_bias: float = 4.0, pool: int = 1
    ) -> None:
        super().__init__(in_ch, widths, "batch", "bilinear", "lrelu")
        self.in_ch, self.widths, self.pool = in_ch, tuple(widths), int(pool)
        self.head = nn.Conv2d(widths[0], N_PARAMS, 3, 1, 1)
        nn.init.normal_(self.head.weight, std=1e-3)
        with torch.no_grad():  # start near "no cloud, no shadow"
            self.head.bias.copy_(torch.tensor([-4.0, 0.0, 1.0, shadow_bias, -1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        h = self.head(self.features(x))
        if self.pool > 1:
            h = F.interpolate(
                h, scale_factor=float(self.pool), mode="bilinear", align_corners=False
            )
        k = F.softplus(h[:, 0:1])
        alpha = 3.0 * torch.sigmoid(h[:, 1:2])
        albedo = torch.sigmoid(h[:, 2:3])
        d = torch.sigmoid(h[:, 3:4])
        f = 0.02 + 0.58 * torch.sigmoid(h[:, 4:5])
        q = 1.0 + 3.0 * torch.sigmoid(h[:, 5:6])
        return torch.cat([k, alpha, albedo, d, f, q], 1)


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def tile_albedo(
    x: torch.Tensor, p: torch.Tensor, lnr: torch.Tensor, lo: float, hi: float
) -> torch.Tensor:
    """Per tile, the cloud albedo in ``[lo, hi]`` that leaves the corrected surface least
    correlated with the depth map (the runtime's :func:`kumo_edge.physics.fit_spectrum`
    criterion at its network's exponent and gain 1, in closed form over all non-thick pixels);
    tiles with too little depth contrast keep the network's map. ``p``: full-res params."""
    k = p[:, 0:1].clamp(min=0.0)
    t = torch.exp(-k * torch.exp(-p[:, 1:2] * lnr.view(1, -1, 1, 1))).clamp(min=T_MIN)
    use = (k <= -math.log(THICK_TRANSMITTANCE)).float()
    cnt = use.sum((1, 2, 3), keepdim=True)
    kc = (k - (k * use).sum((1, 2, 3), keepdim=True) / cnt.clamp(min=1.0)) * use
    pb = (x / t * kc).sum((2, 3))  # (N, C): slopes' numerators, the shared 1/var dropped
    qb = ((1.0 / t - 1.0) * kc).sum((2, 3))
    a = ((pb * qb).sum(1) / (qb * qb).sum(1).clamp(min=1e-12)).clamp(lo, hi)
    std = ((kc * kc).sum((1, 2, 3)) / cnt.flatten().clamp(min=1.0)).sqrt()
    ok = (cnt.flatten() >= FIT_MIN_SAMPLES) & (std >= FIT_MIN_STD)
    return torch.where(ok.view(-1, 1, 1, 1), a.view(-1, 1, 1, 1), p[:, 2:3])


def invert(
    x: torch.Tensor, half: torch.Tensor, lnr: torch.Tensor, fit_albedo: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The runtime's inversion in torch: ``(surface, t550, illum550)`` from half-res params
    (with ``fit_albedo``, the albedo of :func:`tile_albedo`)."""
    p = up2(half)
    if fit_albedo:
        p = torch.cat(
            [p[:, :2], tile_albedo(x, p, lnr, *FIT_ALBEDO).expand_as(p[:, 2:3]), p[:, 3:]], 1
        )
    k, a, alb, d, f, q = (p[:, i : i + 1] for i in range(N_PARAMS))
    d = d.clamp(0.0, 1.0)
    lnr = lnr.view(1, -1, 1, 1)
    t = torch.exp(-k.clamp(min=0.0) * torch.exp(-a * lnr))
    fd = torch.clamp(f * torch.exp(-q * lnr), max=0.95)
    illum = torch.clamp(fd + (1.0 - fd) * d, min=0.05)
    y = (x - alb * (1.0 - t)) / t.clamp(min=T_MIN) / illum
    fd550 = f.clamp(max=0.95)
    return y, torch.exp(-k[:, 0]), (fd550 + (1.0 - fd550) * d)[:, 0]


def corpus(band_set: BandSet, names: list[str] | None = None) -> list[Scene]:
    """The hyperspectral corpus (or the named scenes) resampled to ``band_set``."""
    return usable(hyperspectral_corpus(names=names), band_set)


def jittered(scenes: list[Scene], band_set: BandSet) -> list[Scene]:
    """Every scene resampled as it is and with its wavelengths shifted by :data:`JITTER_NM`."""
    from export.scenes import hyperspectral_corpus as hc

    out = []
    for s in hc(names=[s.name for s in scenes]):
        for dnm in (0.0, *JITTER_NM):
            b = BandSet(tuple(s.bands.centers + dnm), s.bands.fwhm_nm)
            shifted = Scene(f"{s.name}{dnm:+.0f}", s.cube, b, s.valid, s.gsd_m, s.source, s.meta)
            out.extend(usable([shifted], band_set))
    return out


def _batch(ds: CloudyTiles, idx: range, rng: np.random.Generator, noise: float) -> dict:
    items = [ds[i] for i in idx]
    b = {
        k: torch.from_numpy(np.stack([it[k] for it in items]))
        for k in ("cloudy", "clear", "t550", "illum550", "angstrom")
    }
    if noise > 0:
        sigma = torch.from_numpy(rng.uniform(0, noise, (len(items), 1, 1, 1)).astype(np.float32))
        b["cloudy"] = (b["cloudy"] + sigma * torch.randn_like(b["cloudy"])).clamp(0.0, 1.0)
    return b


def build_net(
    method: str, n_bands: int, widths: tuple[int, ...], shadow_bias: float = 4.0, pool: int = 1
) -> nn.Module:
    if method == "physics":
        return PhysicsNet(n_bands, widths, shadow_bias, pool)
    if method == "residual":
        return UNet(UNetConfig(n_bands, n_bands, tuple(widths), "bilinear", "batch", "residual"))
    raise ValueError(f"unknown method {method!r}; choose physics or residual")


def losses(
    net: nn.Module, b: dict, lnr: torch.Tensor, cfg: PhysicsConfig
) -> tuple[torch.Tensor, dict]:
    if isinstance(net, UNet):  # the residual generator: reconstruction losses only
        y = net(b["cloudy"])
        t550 = illum = None
    else:
        half = net(b["cloudy"])
        y, t550, illum = invert(b["cloudy"], half, lnr, cfg.fit_albedo)
    rec = (b["t550"] >= THICK_TRANSMITTANCE).float()[:, None]
    n = rec.sum().clamp(min=1.0)
    yc = y.clamp(-0.1, 1.1)
    l1 = ((yc - b["clear"]).abs() * rec).sum() / (n * y.shape[1])
    cos = F.cosine_similarity(yc.clamp(min=1e-4), b["clear"].clamp(min=1e-4), dim=1, eps=1e-6)
    sam = (torch.acos(cos.clamp(-0.9999, 0.9999)) * rec[:, 0]).sum() / n
    if t550 is None:
        parts = {"l1": l1, "sam": sam}
        return l1 + cfg.sam_weight * sam, {k: float(v.detach()) for k, v in parts.items()}
    kt = -torch.log(b["t550"].clamp(min=math.exp(-4.0)))
    lk = (-torch.log(t550.clamp(min=math.exp(-4.0))) - kt).abs().mean()
    li = (illum - b["illum550"]).abs().mean()
    # the Angstrom exponent where there is cloud to measure it on (measured: without this term
    # the alpha head stayed near its prior, and clouds of unseen spectral slope cost SAM)
    cloudy = (b["t550"] < 0.95).float()
    alpha = up2(half)[:, 1]
    la = ((alpha - b["angstrom"].view(-1, 1, 1)).abs() * cloudy).sum() / cloudy.sum().clamp(min=1.0)
    # reflectance the inversion pushes below 0 or above 1: the gate would refuse the tile
    out = ((F.relu(-y) + F.relu(y - 1.0)) * rec).sum() / (n * y.shape[1])
    loss = (
        l1
        + cfg.sam_weight * sam
        + cfg.param_weight * lk
        + (cfg.param_weight if cfg.illum_weight is None else cfg.illum_weight) * li
        + cfg.alpha_weight * la
        + cfg.range_weight * out
    )
    parts = {"l1": l1, "sam": sam, "k": lk, "illum": li, "alpha": la, "range": out}
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def train(cfg: PhysicsConfig, out: Path) -> Path:
    """Train on every corpus scene (and, but for hsi32, the clear multispectral scenes) not in
    ``cfg.holdout``; checkpoints ``last.pt``/``best.pt``
    (best: lowest L1 on a fixed validation draw of the training scenes' tiles, since no
    held-out scene may steer model choice), ``log.jsonl``."""
    from export.train import band_set  # the shipped band-set names

    torch.manual_seed(cfg.seed)
    torch.set_flush_denormal(True)
    bs = band_set(cfg.bands)
    base = corpus(bs)
    train_scenes = [s for s in base if s.name not in cfg.holdout]
    if not train_scenes:
        raise ValueError("no training scenes left after the hold-out")
    scenes = jittered(train_scenes, bs)
    extra = []
    if cfg.multispectral if cfg.multispectral is not None else cfg.bands != "hsi32":
        from export.data import shared_scenes
        from export.scenes import CATALOGUE

        hyper = {e.name for e in CATALOGUE}  # held out by place in the cross-validation
        extra = [
            s
            for s in usable(shared_scenes(), bs)
            if s.name != "landsat7_nc" and s.name not in hyper and s.name not in cfg.holdout
        ]
        scenes += extra
    ranges = replace(
        TRAIN_RANGES, clear_fraction=cfg.clear_fraction, snow_fraction=cfg.snow_fraction
    )
    ds = CloudyTiles(scenes, cfg.tile, length=cfg.steps * cfg.batch, seed=cfg.seed, ranges=ranges)
    val = CloudyTiles(scenes, cfg.tile, length=128, seed=cfg.seed + 1000, ranges=ranges)
    rng = np.random.default_rng(cfg.seed)
    vb = _batch(val, range(128), rng, cfg.noise)
    lnr = torch.from_numpy(spectral_terms(bs))
    net = build_net(cfg.method, len(bs), cfg.widths, cfg.shadow_bias, cfg.pool)
    if cfg.init:
        net.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True)["model"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "train_scenes": [s.name for s in train_scenes],
        "extra_scenes": [
            {"scene": s.name, "source": s.source, "size": list(s.cube.shape)} for s in extra
        ],
        "macs_256": count_macs(net, (1, len(bs), 256, 256)),
        "params": count_params(net),
    }
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    best = math.inf
    t0 = time.time()
    for step in range(cfg.steps):
        net.train()
        b = _batch(ds, range(step * cfg.batch, (step + 1) * cfg.batch), rng, cfg.noise)
        loss, parts = losses(net, b, lnr, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            net.eval()
            with torch.no_grad():
                vl, vparts = losses(net, vb, lnr, cfg)
            rec = {
                "step": step + 1,
                "train": parts,
                "val": vparts,
                "val_loss": float(vl),
                "s": round(time.time() - t0, 1),
            }
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            state = {"model": net.state_dict(), "meta": meta, "step": step + 1, "val": vparts}
            torch.save(state, out / "last.pt")
            if vparts["l1"] < best:
                best = vparts["l1"]
                torch.save(state, out / "best.pt")
            logger.info("step %d val %s", step + 1, vparts)
    return out / "best.pt"


def load_net(ckpt: Path) -> tuple[nn.Module, dict]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    c = state["meta"]["config"]
    from export.train import band_set

    net = build_net(
        c.get("method", "physics"),
        len(band_set(c["bands"])),
        tuple(c["widths"]),
        pool=c.get("pool", 1),
    )
    net.load_state_dict(state["model"])
    return net.eval(), state["meta"]


# -- evaluation clouds from outside the training ranges, and from another cloud model ---------
@dataclass(frozen=True)
class AlienRanges:
    """Each parameter is drawn from one side or the other of its training range (both sides
    outside it), and the model itself differs from ours: a curved Angstrom law
    ``tau(l) = tau550 * r ** -(alpha + beta * ln r)`` and a spectrally tilted albedo
    ``A * (1 + s * (l - 550) / 300)``; the sky light of shadows falls as ``r ** -q`` with ``q``
    beyond the training range."""

    angstrom: tuple[tuple[float, float], ...] = ((0.0, 0.25), (1.9, 2.6))
    curvature: tuple[float, float] = (0.2, 0.6)
    albedo: tuple[tuple[float, float], ...] = ((0.5, 0.68), (0.96, 1.0))
    tilt: tuple[float, float] = (-0.08, 0.08)
    sun_elevation_deg: tuple[tuple[float, float], ...] = ((20.0, 33.0), (72.0, 85.0))
    view_zenith_deg: tuple[float, float] = (10.0, 30.0)
    feature_px: tuple[tuple[float, float], ...] = ((6.0, 14.0), (100.0, 180.0))
    persistence: tuple[float, float] = (0.62, 0.75)
    gamma: tuple[tuple[float, float], ...] = ((0.7, 1.0), (2.0, 2.6))
    diffuse_fraction: tuple[float, float] = (0.25, 0.4)
    sky_exponent: tuple[float, float] = (2.8, 4.0)
    cloud_height_m: tuple[float, float] = (3200.0, 5000.0)
    thickness: tuple[float, float] = (0.05, 1.5)
    cover: tuple[float, float] = (0.1, 0.9)


def alien_clouds(
    clear: npt.NDArray[np.float32],
    bands: BandSet,
    rng: np.random.Generator,
    gsd_m: float = 20.0,
    ranges: AlienRanges = AlienRanges(),  # noqa: B008
) -> dict[str, npt.NDArray]:
    """Clouds over ``clear`` ``(C, H, W)`` from :class:`AlienRanges`: ``cloudy``, ``t550``
    (two-way transmittance at 550 nm), ``illum550``, ``params``."""
    side = lambda r: float(rng.uniform(*r[int(rng.integers(len(r)))]))  # noqa: E731
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    p = CloudParams(
        cover=u(ranges.cover),
        thickness=u(ranges.thickness),
        gamma=side(ranges.gamma),
        feature_px=side(ranges.feature_px),
        persistence=u(ranges.persistence),
        angstrom=min(side(ranges.angstrom), 4.0),
        cloud_albedo=min(side(ranges.albedo), 1.0),
        sun_azimuth_deg=u((0.0, 360.0)),
        sun_elevation_deg=side(ranges.sun_elevation_deg),
        view_zenith_deg=u(ranges.view_zenith_deg),
        cloud_height_m=u(ranges.cloud_height_m),
        gsd_m=gsd_m,
        diffuse_fraction=u(ranges.diffuse_fraction),
    )
    beta, tilt = u(ranges.curvature), u(ranges.tilt)
    _, h, w = clear.shape
    fld = CloudField(p, h, w, int(rng.integers(2**31)))
    tau = fld.tau550(0, h, 0, w)
    dr, dc = p.shadow_offset_px
    tau_sun = fld.tau550(dr, h, dc, w)
    r = (bands.centers / 550.0)[:, None, None]
    spectral = r ** -(p.angstrom + beta * np.log(r))
    mu = math.sin(math.radians(p.sun_elevation_deg))
    fd = np.clip(p.diffuse_fraction * r ** -u(ranges.sky_exponent), 0.0, 0.95)
    illum = fd + (1.0 - fd) * np.exp(-tau_sun[None] * spectral / mu)
    t = np.exp(-p.air_mass * tau[None] * spectral)
    alb = p.cloud_albedo * (1.0 + tilt * (bands.centers[:, None, None] - 550.0) / 300.0)
    cloudy = np.clip(clear * illum * t + alb * (1.0 - t), 0.0, 1.0).astype(np.float32)
    fd550 = min(p.diffuse_fraction, 0.95)
    return {
        "cloudy": cloudy,
        "t550": np.exp(-p.air_mass * tau).astype(np.float32),
        "illum550": (fd550 + (1 - fd550) * np.exp(-tau_sun / mu)).astype(np.float32),
        "params": {**p.to_dict(), "curvature": beta, "albedo_tilt": tilt},
    }


# -- export ------------------------------------------------------------------------------------
def export(
    ckpt: Path,
    out: Path,
    tile: int = 256,
    halo: int = 16,
    metrics: dict | None = None,
    brightness: str | None = None,
) -> Path:
    """FP32 ONNX of a trained :class:`PhysicsNet` with its contract (output ``cloud_params_half``);
    ``brightness``: the file name of a companion learned remover that will lie beside it
    (contract ``kumo.brightness_model``, see :mod:`kumo_edge.physics`)."""
    import io

    import onnx

    from export.onnx_export import OPSET, git_sha, write_model
    from export.train import band_set
    from kumo_edge.runtime import ModelContract

    net, meta = load_net(ckpt)
    c = meta["config"]
    bs = band_set(c["bands"])

    def contract(output: str, method: str) -> ModelContract:
        return ModelContract(
            kind="generator",
            band_set=c["bands"],
            bands=bs,
            tile=tile,
            halo=halo,
            multiple=2 ** len(c["widths"]) * c.get("pool", 1),
            input_scaling={"type": "reflectance", "scale": 1.0, "offset": 0.0, "range": [0.0, 1.0]},
            output=output,
            opset=OPSET,
            git_sha=git_sha(),
            training={**c, "train_scenes": meta["train_scenes"], "method": method},
            metrics=metrics or {},
        )

    if isinstance(net, UNet):
        from export.onnx_export import to_onnx

        return write_model(to_onnx(net, len(bs), tile), contract("residual_half", "residual"), out)
    f = io.BytesIO()
    torch.onnx.export(
        net,
        torch.zeros(1, len(bs), tile, tile),
        f,
        opset_version=OPSET,
        input_names=["reflectance"],
        output_names=["cloud_params_half"],
        dynamic_axes={
            "reflectance": {0: "n", 2: "h", 3: "w"},
            "cloud_params_half": {0: "n", 2: "h", 3: "w"},
        },
        do_constant_folding=True,
        dynamo=False,
    )
    model = onnx.load_from_string(f.getvalue())
    extra = {"thick_transmittance": repr(THICK_TRANSMITTANCE)}
    if c.get("fit_albedo"):
        extra["fit_albedo"] = "1"
    if brightness:
        extra["brightness_model"] = brightness
    return write_model(model, contract("cloud_params_half", "physics"), out, extra)


def parity(ckpt: Path, onnx_path: Path, size: int = 64) -> float:
    """Largest difference between torch and the runtime's corrected surface on random input."""
    from kumo_edge.physics import PhysicsRemover
    from kumo_edge.runtime import load_model

    net, meta = load_net(ckpt)
    from export.train import band_set

    bs = band_set(meta["config"]["bands"])
    x = np.random.default_rng(0).uniform(0.02, 0.6, (2, len(bs), size, size)).astype(np.float32)
    with torch.no_grad():
        yt, _, _ = invert(
            torch.from_numpy(x), net(torch.from_numpy(x)), torch.from_numpy(spectral_terms(bs))
        )
    rem = PhysicsRemover(load_model(onnx_path))
    from kumo_edge.physics import invert as np_invert

    yr, _ = np_invert(x, rem.params(x), bs)
    return float(np.abs(yt.numpy() - yr).max())


def quantize(fp32: Path, int8: Path, meta: dict) -> Path:
    """INT8 (QDQ) of an exported remover, calibrated on cloudy tiles of its own training scenes;
    a physics network's parameter head (N_PARAMS x widths[0] channels, the thinnest Conv, whose
    outputs the inversion divides by) stays in float."""
    from export.quantize import quantize_model
    from export.train import band_set

    c = meta["config"]
    bs = band_set(c["bands"])
    scenes = jittered(corpus(bs, meta["train_scenes"]), bs)
    ds = CloudyTiles(scenes, 64, 64, seed=123, augment=False, ranges=TRAIN_RANGES)
    xs = np.stack([ds[i]["cloudy"] for i in range(64)])
    upto = N_PARAMS * c["widths"][0] if c.get("method", "physics") == "physics" else 0
    return quantize_model(
        fp32, int8, [xs[i : i + 8] for i in range(0, 64, 8)], float_convs_upto=upto
    )


def release(
    ckpt: Path,
    ship: Path,
    command: str,
    metrics: dict | None = None,
    brightness: Path | None = None,
) -> Path:
    """FP32 export to ``export/artifacts/<bands>/physics_fp32.onnx``, INT8 (every Conv but the
    parameter head, whose outputs the inversion divides by) to ``ship/generator.onnx``, and the
    model card ``ship/generator.json``: every training scene with its wavelength provenance,
    the cloud ranges, the command, the metrics. ``brightness``: a learned remover (ONNX, its
    card beside it) copied to ``ship/brightness.onnx`` and named in the contract as the
    companion whose output length the corrected pixels take."""
    import shutil

    from export.train import band_set

    net, meta = load_net(ckpt)
    c = meta["config"]
    bs = band_set(c["bands"])
    art = Path(__file__).resolve().parent / "artifacts" / c["bands"]
    companion = None
    if brightness is not None:
        companion = "brightness.onnx"
        if brightness.resolve() != (ship / companion).resolve():
            shutil.copyfile(brightness, ship / companion)
            src = brightness.with_suffix(".json")
            if src.exists():  # its own card, renamed for its place and role
                bcard = json.loads(src.read_text())
                bcard.update(
                    name=f"{c['bands']}/brightness",
                    file=companion,
                    role=companion_role(c["bands"]),
                )
                (ship / "brightness.json").write_text(json.dumps(bcard, indent=2))
    fp32 = export(ckpt, art / "physics_fp32.onnx", metrics=metrics)  # the network alone
    int8 = quantize(fp32, ship / "generator.onnx", meta)
    if companion:  # only the shipped file names its companion, which lies beside it
        from export.release import _set_props

        _set_props(int8, brightness_model=companion)
    card = {
        "name": f"{c['bands']}/generator",
        "kind": "generator",
        "method": "physics: per-pixel thin-cloud parameters (k, alpha, A, d, f, q), analytic inversion in the runtime",
        "band_set": c["bands"],
        "output": "cloud_params_half",
        "thick_transmittance": THICK_TRANSMITTANCE,
        "network": {"widths": c["widths"], "params": meta["params"], "macs_256": meta["macs_256"]},
        "training": _training_card(meta, command),
        "metrics": metrics or {},
        "files": {"fp32": str(fp32.relative_to(fp32.parents[2])), "int8": "generator.onnx"},
        "brightness_model": (
            {
                "file": companion,
                "card": "brightness.json",
                "role": "each corrected pixel keeps the physics correction's spectral direction and "
                "takes its length from this learned remover's output (kumo_edge.physics)",
            }
            if companion
            else None
        ),
        **_card_fields(bs, int8, meta),
    }
    (ship / "generator.json").write_text(json.dumps(card, indent=2))
    return int8


def companion_role(bands: str) -> str:
    """What a brightness companion's card says it is: one wording for every path that ships one
    (:func:`release`, :func:`companion`, ``export.release --companion``)."""
    return (
        f"brightness companion of {bands}/generator (kumo_edge.physics): each corrected pixel "
        "keeps the physics correction's spectral direction and takes its length (the norm over "
        "bands) from this network's output"
    )


def _card_fields(bs: BandSet, int8: Path, meta: dict) -> dict:
    """The fields every model card carries (README tables), for a shipped INT8 file."""
    return {
        "bands": {"centers_nm": list(bs.centers_nm), "fwhm_nm": list(bs.fwhm_nm)},
        "file": int8.name,
        "precision": "int8",
        "size_bytes": int8.stat().st_size,
        "parameters": meta["params"],
        "macs_per_256_tile": meta["macs_256"],
    }


def _training_card(meta: dict, command: str) -> dict:
    """A model card's training record: command, schedule, augmentation, cloud ranges, and every
    training scene with its wavelength provenance."""
    c = meta["config"]
    return {
        "command": command,
        "steps": c["steps"],
        "tile": c["tile"],
        "batch": c["batch"],
        "seed": c["seed"],
        "wavelength_jitter_nm": list(JITTER_NM),
        "noise_sigma_max": c["noise"],
        # the loss's weight on the ground illumination (None: the parameter weight) and where
        # the shadow head starts (d = sigmoid(bias)); they decide whether it reads shadow
        "illum_weight": c.get("illum_weight"),
        "shadow_bias": c.get("shadow_bias", PhysicsConfig.shadow_bias),
        "cloud_ranges": {
            **asdict(TRAIN_RANGES),
            "clear_fraction": c.get("clear_fraction", TRAIN_RANGES.clear_fraction),
            "snow_fraction": c.get("snow_fraction", 0.0),
        },
        "scenes": card_rows(hyperspectral_corpus(names=meta["train_scenes"])),  # native bands
        "multispectral_scenes": meta.get("extra_scenes", []),
    }


def companion_slot(ship: Path) -> dict:
    """The card of the physics remover shipped in ``ship``, which must take a brightness
    companion (``brightness.onnx``, named in its contract at release); else KumoError, before a
    companion is written there."""
    try:
        card = json.loads((ship / "generator.json").read_text())
    except (OSError, ValueError) as exc:
        raise KumoError(f"{ship}: no shipped physics remover card ({exc})") from None
    if (card.get("brightness_model") or {}).get("file") != "brightness.onnx":
        raise KumoError(
            f"{ship}/generator.onnx takes no brightness companion (no shipped physics remover "
            "that names brightness.onnx; python -m export.physics release --brightness ... first)"
        )
    return card


def companion(
    ckpt: Path, ship: Path, command: str, metrics: dict | None = None, art: Path | None = None
) -> Path:
    """A residual network (``train --method residual``) released as the brightness companion
    of the physics remover shipped in ``ship``: FP32 export to
    ``export/artifacts/<bands>/brightness_fp32.onnx``, INT8 (every Conv, calibrated on its own
    training scenes) to ``ship/brightness.onnx``, card ``ship/brightness.json`` (``art``: another
    folder for the FP32 file). The physics remover is not touched: its contract must already
    name ``brightness.onnx``."""
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["meta"]
    c = meta["config"]
    if c.get("method") != "residual":
        raise KumoError(f"{ckpt}: a {c.get('method', 'physics')} network, not a residual one")
    remover = companion_slot(ship)
    if remover.get("band_set") != c["bands"]:
        raise KumoError(f"{ckpt} is a {c['bands']} network, {ship} ships {remover.get('band_set')}")
    from export.train import band_set

    bs = band_set(c["bands"])
    art = art or Path(__file__).resolve().parent / "artifacts" / c["bands"]
    fp32 = export(ckpt, art / "brightness_fp32.onnx", metrics=metrics)
    int8 = quantize(fp32, ship / "brightness.onnx", meta)
    card = {
        "name": f"{c['bands']}/brightness",
        "kind": "generator",
        "role": companion_role(c["bands"]),
        "method": "residual: the cGAN's U-Net, L1 + SAM, trained on the physics remover's corpus",
        "band_set": c["bands"],
        "network": {"widths": c["widths"], "params": meta["params"], "macs_256": meta["macs_256"]},
        "training": _training_card(meta, command),
        "metrics": metrics or {},
        "files": {"fp32": str(fp32.relative_to(fp32.parents[2])), "int8": "brightness.onnx"},
        **_card_fields(bs, int8, meta),
    }
    (ship / "brightness.json").write_text(json.dumps(card, indent=2))
    return int8


def cv_metrics(path: Path) -> dict:
    """The model card's metrics from a ``bench.removal_cv`` result: the summary of every method
    and the per-scene gains of the shipped configuration."""
    doc = json.loads(path.read_text())
    return {
        "cross_validation": {
            "benchmark": str(path.name),
            "folds": doc["folds"],
            "steps_per_fold": doc["steps"],
            # the fold removers' own training options (e.g. the shadow term's weight)
            "fold_train_args": doc.get("train_args", ""),
            "clouds": doc["clouds"],
            "scored_pixels": doc["scored_pixels"],
            "summary": doc["summary"],
            "per_scene_gain_db": {
                n: {m: round(v[m]["gain_db"], 3) for m in doc["summary"]}
                for n, v in doc["per_scene"].items()
            },
        }
    }


def refresh_card(ship: Path, cv: Path) -> Path:
    """Replace the cross-validation metrics of the card ``ship/generator.json`` by those of
    ``cv`` (:func:`cv_metrics`), keeping everything else, and in the model file the card names
    the same metrics (its ``kumo.metrics`` entry, which ``kumo-edge info`` prints); the graph
    and every other entry of the file are untouched."""
    path = ship / "generator.json"
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KumoError(f"{path}: no readable model card ({exc})") from None
    metrics = cv_metrics(cv)
    doc = json.loads(cv.read_text())
    if doc.get("bands") not in (None, card.get("band_set")):
        raise KumoError(
            f"{cv} is a {doc.get('bands')} result, {path} a {card.get('band_set')} card"
        )
    metrics["cross_validation"]["host"] = doc.get("environment", {}).get("cpu")
    card["metrics"] = metrics
    model = ship / card.get("file", "generator.onnx")
    if model.exists():
        from export.release import _set_metrics

        _set_metrics(model, metrics)
        card["size_bytes"] = model.stat().st_size
    path.write_text(json.dumps(card, indent=2))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m export.physics", description=__doc__.split("\n\n")[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a physics remover on the hyperspectral corpus")
    t.add_argument("--bands", default="hsi32")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=PhysicsConfig.steps)
    t.add_argument("--holdout", default="", help="comma-separated scenes left out of training")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--widths", default="8,16,32")
    t.add_argument(
        "--pool",
        type=int,
        default=PhysicsConfig.pool,
        help="run the network on the tile averaged over POOL x POOL pixels (cost / POOL**2)",
    )
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    t.add_argument("--method", default="physics", choices=["physics", "residual"])
    t.add_argument("--init", default="", help="start from this checkpoint (fine-tuning)")
    t.add_argument("--lr", type=float, default=PhysicsConfig.lr)
    t.add_argument("--alpha-weight", type=float, default=PhysicsConfig.alpha_weight)
    t.add_argument(
        "--illum-weight",
        type=float,
        help="weight of the ground-illumination (shadow) loss term (default: the parameter weight)",
    )
    t.add_argument(
        "--shadow-bias",
        type=float,
        default=PhysicsConfig.shadow_bias,
        help="initial bias of the shadow head, d = sigmoid(bias) (4: starts at no shadow)",
    )
    t.add_argument(
        "--clear-fraction",
        type=share,
        default=PhysicsConfig.clear_fraction,
        help="share of training tiles with no cloud at all",
    )
    t.add_argument(
        "--snow-fraction",
        type=share,
        default=PhysicsConfig.snow_fraction,
        help="share of training tiles with snow painted on the ground under the clouds "
        "(export.data.add_snow): bright, white ground that is not haze",
    )
    t.add_argument(
        "--fit-albedo",
        action="store_true",
        help="fit one cloud albedo per tile in closed form, in training and (through the "
        "contract) at run time, instead of the network's albedo map",
    )
    r = sub.add_parser(
        "release",
        help="FP32 + INT8 export, the INT8 model into the package, its model card with the CV metrics",
    )
    r.add_argument("--ckpt", type=Path, required=True)
    r.add_argument("--ship", type=Path, required=True, help="kumo_edge/models/<bands>")
    r.add_argument("--cv", type=Path, help="bench/results/removal_cv_<bands>.json for the card")
    r.add_argument("--command", default="", help="the training command, for the card")
    r.add_argument(
        "--brightness",
        type=Path,
        help="a learned remover (ONNX) shipped beside it as the brightness companion",
    )
    c = sub.add_parser(
        "card",
        help="refresh a shipped remover's card with a newer cross-validation (the model files are "
        "untouched; e.g. after a new detector, which the CV's blend and gate depend on)",
    )
    c.add_argument("--ship", type=Path, required=True, help="kumo_edge/models/<bands>")
    c.add_argument("--cv", type=Path, required=True, help="bench/results/removal_cv_<bands>.json")
    b = sub.add_parser(
        "companion",
        help="release a residual network (train --method residual) as the brightness companion "
        "of the shipped physics remover (brightness.onnx + card); the remover is untouched",
    )
    b.add_argument("--ckpt", type=Path, required=True)
    b.add_argument("--ship", type=Path, required=True, help="kumo_edge/models/<bands>")
    b.add_argument("--command", default="", help="the training command, for the card")
    b.add_argument("--cv", type=Path, help="bench/results/removal_cv_<bands>.json for the card")
    e = sub.add_parser("export", help="export a checkpoint to ONNX with its contract")
    e.add_argument("--ckpt", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.cmd == "train":
        if a.threads:
            torch.set_num_threads(a.threads)
        cfg = PhysicsConfig(
            bands=a.bands,
            steps=a.steps,
            seed=a.seed,
            holdout=tuple(n for n in a.holdout.split(",") if n),
            widths=tuple(int(v) for v in a.widths.split(",")),
            pool=a.pool,
            method=a.method,
            init=a.init,
            lr=a.lr,
            alpha_weight=a.alpha_weight,
            illum_weight=a.illum_weight,
            shadow_bias=a.shadow_bias,
            clear_fraction=a.clear_fraction,
            snow_fraction=a.snow_fraction,
            fit_albedo=a.fit_albedo,
        )
        print(train(cfg, a.out))
    elif a.cmd == "release":
        metrics = cv_metrics(a.cv) if a.cv else None
        print(release(a.ckpt, a.ship, a.command, metrics, a.brightness))
    elif a.cmd == "companion":
        try:
            print(companion(a.ckpt, a.ship, a.command, cv_metrics(a.cv) if a.cv else None))
        except KumoError as exc:
            ap.exit(1, f"error: {exc}\n")
    elif a.cmd == "card":
        try:
            print(refresh_card(a.ship, a.cv))
        except KumoError as exc:
            ap.exit(1, f"error: {exc}\n")
    else:
        print(export(a.ckpt, a.out))


if __name__ == "__main__":
    main()
