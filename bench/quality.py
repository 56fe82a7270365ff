"""The quality report: does hyperspectral beat multispectral and RGB, and does the cGAN beat
classical cloud removal? Regenerates every number and figure of docs/results.md.

    python -m bench.quality            # JSON in bench/results/quality.json, PNGs, docs/results.md
    python -m bench.quality --tiles 48 # fewer tiles (faster, wider intervals)

Needs the repository (``export/`` for the held-out splits and ../shared/data for the scenes;
torch only to export the band-set study checkpoints to ONNX the first time). Every model is run
through ONNX Runtime, as the flight runtime runs it.

Sections:
1. **Methods** (synthetic clouds on the held-out test scenes of each shipped band set): cloudy
   input, HOT, harmonic inpainting (both from the shipped detector's classes), the cGAN FP32
   parent and the shipped pruned INT8 generator, both blended in by the detector's
   probabilities as the stream does, and the raw INT8 output. PSNR/SSIM/SAM per tile, thick-cloud pixels
   (unrecoverable, flagged by the runtime) left out; 95 % bootstrap intervals over tiles, and
   per-pixel-thickness bins.
2. **Band sets**: one generator architecture and budget trained on the same scene
   (hydice_urban) with the same cloud fields in hsi32, rgbn and rgb (``python -m export.recipe
   --bands study``), tested on the ROSIS crop: full bands, and the visible bands common to all
   three (every output and truth resampled to the rgb band set).
3. **Detector**: shipped detectors on held-out synthetic tiles and held-out real L8 Biome
   patches (per land type), CNN vs the bright-and-white threshold test, pixel and tile level.
4. **Real clouds**: RICE2 cloudy/clear RGB pairs (the clear image is another date), the L8
   Biome test patches (change where the truth mask says clear), the real cloudy Sentinel-2
   patch (figure with its cirrus band).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, fmt_ci, pyplot, save_figure, write_json
from bench.models import ARTIFACTS
from export.data import SHARED, CloudyTiles, Scene, patch_cube, real_cloud_patches
from export.evaluate import DROP_FRACTION, eval_detector, run_batches, threshold_test
from export.train import REAL_TEST, TrainConfig, band_set, load_scenes
from kumo_edge import metrics
from kumo_edge.bands import resample, resampling_matrix
from kumo_edge.baselines import HarmonicInpainting, HazeOptimizedTransform
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import blend_removed

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT / "export" / "artifacts"
DOCS = ROOT / "docs"
#: Per-pixel optical thickness (550 nm) bins of recoverable cloud; pixels the truth calls thick
#: (unrecoverable) are not in any bin.
TAU_BINS = {
    "thin (tau < 0.2)": (0.02, 0.2),
    "medium (0.2-0.45)": (0.2, 0.45),
    "thick (>= 0.45)": (0.45, 99.0),
}
SEED = 30_000  # cloud fields of the report (no training or selection ever used this seed)


# -- statistics ----------------------------------------------------------------------------------
def bootstrap(values: np.ndarray, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean and 95 % percentile-bootstrap interval over the entries of ``values``."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    return {
        "mean": float(v.mean()),
        "lo": float(np.percentile(means, 2.5)),
        "hi": float(np.percentile(means, 97.5)),
        "n": int(len(v)),
    }


_fmt = fmt_ci


# -- tiles and methods ---------------------------------------------------------------------------
def test_tiles(scenes: list[Scene], n: int, tile: int) -> dict[str, np.ndarray]:
    ds = CloudyTiles(scenes, tile, n, seed=SEED, augment=False)
    items = [ds[i] for i in range(n)]
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def per_tile(
    pred: np.ndarray, t: dict[str, np.ndarray], project: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """PSNR/SSIM/SAM per tile on recoverable pixels; ``project`` resamples both sides first."""
    rows = []
    for i in range(len(pred)):
        keep = t["classes"][i] != 2
        p, c = pred[i], t["clear"][i]
        if project is not None:
            p, c = resample(p, project), resample(c, project)
        if keep.sum() < 64:
            rows.append((np.nan, np.nan, np.nan))
            continue
        rows.append(
            (
                min(metrics.psnr(p, c, mask=keep), 60.0),
                metrics.ssim(p, c),
                metrics.sam(p, c, mask=keep),
            )
        )
    a = np.array(rows)
    return {"psnr": a[:, 0], "ssim": a[:, 1], "sam_deg": a[:, 2]}


def per_bin(
    pred: np.ndarray, t: dict[str, np.ndarray], project: np.ndarray | None = None
) -> dict[str, dict]:
    """PSNR and SAM per thickness bin: per tile over the bin's pixels (tiles with >= 64 of them)."""
    out = {}
    for name, (lo, hi) in TAU_BINS.items():
        ps, ss = [], []
        for i in range(len(pred)):
            sel = (t["tau"][i] >= lo) & (t["tau"][i] < hi) & (t["classes"][i] != 2)
            if sel.sum() < 64:
                continue
            p, c = pred[i], t["clear"][i]
            if project is not None:
                p, c = resample(p, project), resample(c, project)
            ps.append(min(metrics.psnr(p, c, mask=sel), 60.0))
            ss.append(metrics.sam(p, c, mask=sel))
        out[name] = {"psnr": bootstrap(np.array(ps)), "sam_deg": bootstrap(np.array(ss))}
    return out


def _summary(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    return {k: bootstrap(v) for k, v in scores.items()}


def _paired(a: np.ndarray, b: np.ndarray) -> dict:
    ok = np.isfinite(a) & np.isfinite(b)
    return bootstrap(a[ok] - b[ok])


def _as_runtime(
    x: np.ndarray, removed: np.ndarray, probs: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """The remover's output as the stream applies it (:func:`kumo_edge.stream.blend_removed`)."""
    out = x.copy()
    blend_removed(out, removed, probs, classes)
    return out


# -- 1. methods ----------------------------------------------------------------------------------
def method_comparison(
    bands: str, n: int, tile: int
) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    splits, target = load_scenes(TrainConfig(bands=bands))
    t = test_tiles(splits["test"], n, tile)
    ship = shipped_models()[bands]
    det = load_model(ship["detector"], threads=2)
    probs = run_batches(det.run, t["cloudy"])
    classes = det.classify(probs)
    x = t["cloudy"]
    parent = run_batches(load_model(ART / bands / "generator_parent_fp32.onnx", threads=2).run, x)
    raw = run_batches(load_model(ship["generator"], threads=2).run, x)
    preds = {
        "cloudy input": x,
        "HOT": _as_runtime(
            x, run_batches(HazeOptimizedTransform(target).run, x, classes), probs, classes
        ),
        "inpainting": _as_runtime(
            x, run_batches(HarmonicInpainting(target).run, x, classes), probs, classes
        ),
        "cGAN FP32 parent": _as_runtime(x, parent, probs, classes),
        "cGAN INT8 shipped": _as_runtime(x, raw.copy(), probs, classes),
        "cGAN INT8, raw output": raw,
    }
    scores = {m: per_tile(p, t) for m, p in preds.items()}
    doc = {
        "band_set": bands,
        "test_scenes": [s.name for s in splits["test"]],
        "tiles": n,
        "tile": tile,
        "methods": {
            m: {"overall": _summary(s), "by_thickness": per_bin(preds[m], t)}
            for m, s in scores.items()
        },
        "paired_psnr_gain": {
            "cGAN INT8 - HOT": _paired(scores["cGAN INT8 shipped"]["psnr"], scores["HOT"]["psnr"]),
            "cGAN INT8 - inpainting": _paired(
                scores["cGAN INT8 shipped"]["psnr"], scores["inpainting"]["psnr"]
            ),
            "cGAN INT8 - cGAN FP32": _paired(
                scores["cGAN INT8 shipped"]["psnr"], scores["cGAN FP32 parent"]["psnr"]
            ),
        },
    }
    return doc, preds, t


def tile_size_check(bands: str, sizes: tuple[int, ...], n: int) -> dict:
    """Shipped INT8 vs FP32 parent at several tile sizes (training used 64 px; the runtime uses
    256): the compression loss measured where the model is deployed. Scenes too small for a
    size drop out (listed)."""
    splits, _ = load_scenes(TrainConfig(bands=bands))
    parent = load_model(ART / bands / "generator_parent_fp32.onnx", threads=2)
    shipped = load_model(shipped_models()[bands]["generator"], threads=2)
    out = {}
    for size in sizes:
        try:
            t = test_tiles(splits["test"], n, size)
        except Exception as exc:  # noqa: BLE001 - no test scene large enough
            out[str(size)] = {"missing": str(exc)}
            continue
        a = per_tile(run_batches(parent.run, t["cloudy"], batch=4), t)["psnr"]
        b = per_tile(run_batches(shipped.run, t["cloudy"], batch=4), t)["psnr"]
        scenes = [s.name for s in splits["test"] if min(s.valid.shape) >= size]
        out[str(size)] = {
            "scenes": scenes,
            "parent_psnr": bootstrap(a),
            "shipped_psnr": bootstrap(b),
            "shipped_minus_parent": _paired(b, a),
        }
    return out


# -- 2. band sets --------------------------------------------------------------------------------
STUDY_SETS = ("hsi32", "rgbn", "rgb")


def study_model(bands: str) -> Path | None:
    onnx_path = ART / "study" / bands / "generator_fp32.onnx"
    ck = ROOT / "runs" / f"study_{bands}" / "best.pt"
    if not onnx_path.exists() and ck.exists():
        from export.onnx_export import export_checkpoint  # torch, only the first time

        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_checkpoint(ck, onnx_path)
    return onnx_path if onnx_path.exists() else None


def band_study(n: int, tile: int) -> tuple[dict, dict]:
    rgb = band_set("rgb")
    doc: dict = {
        "train_scene": "hydice_urban",
        "test_scene": "rosis_beach",
        "tiles": n,
        "tile": tile,
        "sets": {},
    }
    examples = {}
    for b in STUDY_SETS:
        path = study_model(b)
        if path is None:
            doc["sets"][b] = {
                "missing": f"runs/study_{b}/best.pt (run python -m export.recipe --bands study)"
            }
            continue
        target = band_set(b)
        splits, _ = load_scenes(
            TrainConfig(bands=b, train=("hydice_urban",), test=("rosis_beach",))
        )
        t = test_tiles(splits["test"], n, tile)
        model = load_model(path, threads=2)
        pred = run_batches(model.run, t["cloudy"])
        to_rgb = resampling_matrix(target, rgb)
        cfg = model.contract.training
        doc["sets"][b] = {
            "bands": len(target),
            "training": {k: cfg.get(k) for k in ("steps", "batch", "tile", "widths", "seed")},
            "full_bands": {
                "cGAN": _summary(per_tile(pred, t)),
                "cloudy input": _summary(per_tile(t["cloudy"], t)),
            },
            "visible_common": {
                "cGAN": _summary(per_tile(pred, t, to_rgb)),
                "cloudy input": _summary(per_tile(t["cloudy"], t, to_rgb)),
            },
            "visible_by_thickness": {
                "cGAN": per_bin(pred, t, to_rgb),
                "cloudy input": per_bin(t["cloudy"], t, to_rgb),
            },
            "tau_checksum": float(t["tau"].sum()),  # identical across sets = the same cloud fields
        }
        examples[b] = (
            resample(t["cloudy"][0], to_rgb),
            resample(pred[0], to_rgb),
            resample(t["clear"][0], to_rgb),
        )
    return doc, examples


# -- 3. detector ---------------------------------------------------------------------------------
def detector_report(n: int) -> dict:
    out = {}
    for bands, files in shipped_models().items():
        splits, _ = load_scenes(TrainConfig(bands=bands))
        d = eval_detector(files["detector"], splits["test"], REAL_TEST, n=n)
        if "real_l8biome" in d:
            d["real_l8biome"]["tile_drop_decision"] = _real_tile_decisions(files["detector"])
        out[bands] = d
    return out


#: Band sets whose detector is an experiment (export/artifacts/<bands>/detector_fp32.onnx).
DETECTOR_EXPERIMENTS = ("rgbn-swir",)


def detector_experiments(n: int) -> dict:
    """Experimental detectors (FP32, not shipped), evaluated as the shipped ones are."""
    out = {}
    for bands in DETECTOR_EXPERIMENTS:
        path = ARTIFACTS / bands / "detector_fp32.onnx"
        if path.exists():
            splits, _ = load_scenes(TrainConfig(bands=bands))
            out[bands] = eval_detector(path, splits["test"], REAL_TEST, n=n)
    return out


#: All eight bands of the L8 Biome crops: reflective, cirrus, and thermal (kelvin).
L8_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10")
SNOW_PAIR = ("SnowIce_00_1415", "Urban_01_0609")


def snow_vs_ice_cloud() -> dict:
    """The held-out clear ice-sheet patch next to the held-out ice-cloud patch, band by band,
    with every band the crops have (cirrus and thermal included), and the best pixel accuracy
    on the real test set of any detector that cannot tell the two apart."""
    import rasterio

    patches = {p["name"]: p for p in real_cloud_patches() if p["name"] in REAL_TEST}
    valid_total = sum(int((p["classes"] >= 0).sum()) for p in patches.values())
    out: dict = {"patches": {}}
    for name in SNOW_PAIR:
        p = patches[name]
        ok = p["classes"] >= 0
        # the reflective bands and cirrus from the loader, the thermal band (8) from the file
        with rasterio.open(SHARED / "real_clouds" / "l8biome" / "Images" / f"{name}.tif") as ds:
            thermal = ds.read(8).astype(np.float64)
        x = np.concatenate([p["cube"].astype(np.float64), thermal[None]])
        g, s1 = x[1][ok], x[4][ok]
        out["patches"][name] = {
            "cloud_fraction": float(np.isin(p["classes"][ok], (1, 2)).mean()),
            "pixels": int(ok.sum()),
            "median": dict(zip(L8_BANDS, np.median(x[:, ok], axis=1).tolist(), strict=True)),
            "ndsi_median": float(np.median((g - s1) / np.maximum(g + s1, 1e-6))),
            "red_std": float(x[2][ok].std()),
        }
    smaller = min(v["pixels"] for v in out["patches"].values())
    out["accuracy_bound"] = 1.0 - smaller / valid_total
    return out


def _real_tile_decisions(det_path: Path, tile: int = 64) -> dict:
    """'Too cloudy to downlink' (> 70 % cloud) per 64 px tile of the real test patches."""
    det = load_model(det_path, threads=2)
    pred_t, true_t, thr_t = [], [], []
    for p in (p for p in real_cloud_patches() if p["name"] in REAL_TEST):
        x = patch_cube(p, det.bands)
        cloud = det.classify(det.run(x[None]))[0]
        cloud = (cloud == 1) | (cloud == 2)
        thr = threshold_test(x, det.bands)
        truth = np.isin(p["classes"], (1, 2))
        ok = p["classes"] >= 0
        h, w = truth.shape
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                s = (slice(r, r + tile), slice(c, c + tile))
                if ok[s].mean() < 0.9:
                    continue
                true_t.append(truth[s][ok[s]].mean() > DROP_FRACTION)
                pred_t.append(cloud[s][ok[s]].mean() > DROP_FRACTION)
                thr_t.append(thr[s][ok[s]].mean() > DROP_FRACTION)
    d_cnn = metrics.detection(np.array(pred_t), np.array(true_t))
    d_thr = metrics.detection(np.array(thr_t), np.array(true_t))
    return {
        "tiles": d_cnn.n,
        "tiles_too_cloudy": int(np.sum(true_t)),
        "cnn": {"accuracy": d_cnn.accuracy, "false_positive_rate": d_cnn.false_positive_rate},
        "threshold_test": {
            "accuracy": d_thr.accuracy,
            "false_positive_rate": d_thr.false_positive_rate,
        },
    }


# -- 4. real clouds ------------------------------------------------------------------------------
def rice2(models: str = "rgb") -> tuple[dict, list]:
    """RICE2 pairs through the rgb detector + each remover; the 'truth' is another date."""
    from PIL import Image

    ship = shipped_models()
    folder = SHARED / "real_clouds" / "rice2_pairs"
    if models not in ship or not folder.is_dir():
        return {"missing": f"models {models} or {folder}"}, []
    det = load_model(ship[models]["detector"], threads=2)
    gen = load_model(ship[models]["generator"], threads=2)
    bands = det.bands
    pairs = sorted(folder.glob("*_real_A.png"))
    a = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in pairs]).transpose(
        0, 3, 1, 2
    )
    b = np.stack(
        [
            np.asarray(Image.open(str(p).replace("_A.png", "_B.png")).convert("RGB"), np.float32)
            for p in pairs
        ]
    ).transpose(0, 3, 1, 2)
    # 8-bit display values with no radiometric calibration: taken as reflectance = DN / 255, the
    # usual convention of RICE results (PSNR on the 8-bit scale). Land is brighter than in our
    # training scenes under this mapping; clouds are near 1.
    scale = 1.0 / 255.0
    x, y = np.clip(a * scale, 0, 1), np.clip(b * scale, 0, 1)
    probs = run_batches(det.run, x, batch=4)
    classes = det.classify(probs)
    preds = {
        "cloudy input": x,
        "HOT": _as_runtime(
            x, run_batches(HazeOptimizedTransform(bands).run, x, classes, batch=4), probs, classes
        ),
        "inpainting": _as_runtime(
            x, run_batches(HarmonicInpainting(bands).run, x, classes, batch=4), probs, classes
        ),
        "cGAN INT8 shipped": _as_runtime(x, run_batches(gen.run, x, batch=4), probs, classes),
    }
    keep = classes != 2  # what the runtime would not flag as unrecoverable
    res = {}
    for m, p in preds.items():
        ps = [
            min(metrics.psnr(p[i], y[i], mask=keep[i]), 60.0) if keep[i].sum() > 64 else np.nan
            for i in range(len(p))
        ]
        ss = [metrics.ssim(p[i], y[i]) for i in range(len(p))]
        sa = [
            metrics.sam(p[i], y[i], mask=keep[i]) if keep[i].sum() > 64 else np.nan
            for i in range(len(p))
        ]
        res[m] = {
            "psnr": bootstrap(np.array(ps)),
            "ssim": bootstrap(np.array(ss)),
            "sam_deg": bootstrap(np.array(sa)),
        }
    doc = {
        "pairs": len(pairs),
        "scale_dn_to_reflectance": scale,
        "detector_cloud_fraction": bootstrap(np.isin(classes, (1, 2)).mean((1, 2))),
        "detector_thick_fraction": bootstrap((classes == 2).mean((1, 2))),
        "methods": res,
        "caveat": "the clear image is from another date: land and light changed; thick-cloud pixels (by our detector) are excluded",
    }
    # examples: the most thin cloud among pairs that are not mostly thick cloud
    thin = np.array([(classes[i] == 1).mean() for i in range(len(x))])
    thick = np.array([(classes[i] == 2).mean() for i in range(len(x))])
    order = [i for i in np.argsort(-thin) if thick[i] < 0.3][:3]
    examples = [
        (
            x[i],
            preds["HOT"][i],
            preds["inpainting"][i],
            preds["cGAN INT8 shipped"][i],
            y[i],
            classes[i],
        )
        for i in order
    ]
    return doc, examples


def l8_removal(bands: str = "rgbn") -> tuple[dict, list]:
    """Detector + removal on the real L8 Biome test patches: how much pixels the truth mask calls
    clear are changed (should be little), per method."""
    ship = shipped_models()[bands]
    det, gen = load_model(ship["detector"], threads=2), load_model(ship["generator"], threads=2)
    out: dict = {}
    examples = []
    for p in (p for p in real_cloud_patches() if p["name"] in REAL_TEST):
        x = patch_cube(p, det.bands)[None]
        h, w = x.shape[2:]
        h2, w2 = h - h % 32, w - w % 32
        x = np.ascontiguousarray(x[:, :, :h2, :w2])
        truth = p["classes"][:h2, :w2]
        probs = det.run(x)
        cls = det.classify(probs)
        y = {
            "HOT": _as_runtime(x, HazeOptimizedTransform(det.bands).run(x, cls), probs, cls)[0],
            "inpainting": _as_runtime(x, HarmonicInpainting(det.bands).run(x, cls), probs, cls)[0],
            "cGAN INT8": gen.run(x)[0],
        }
        y["cGAN INT8"] = _as_runtime(x, y["cGAN INT8"][None], probs, cls)[
            0
        ]  # as the stream applies it
        clear = truth == 0
        out[p["name"]] = {
            "land": p["land"],
            "truth_cloud_fraction": float(np.isin(truth, (1, 2)).mean()),
            "mean_abs_change_on_truth_clear": {
                m: float(np.abs(v - x[0])[:, clear].mean()) if clear.any() else None
                for m, v in y.items()
            },
        }
        examples.append((p["name"], x[0], y, truth, cls[0]))
    return out, examples


# -- figures -------------------------------------------------------------------------------------
def _rgb(cube: np.ndarray, bands, top: float | None = None) -> np.ndarray:  # noqa: ANN001
    """True colour for display, stretched so that ``top`` (default: the image's 99th
    percentile) is white; pass the truth's value to show a row on one scale."""
    idx = [int(np.argmin(np.abs(bands.centers - w))) for w in (660, 560, 480)]
    im = cube[idx].transpose(1, 2, 0)
    top = top if top is not None else float(np.percentile(im, 99))
    return np.clip(im / max(top, 1e-3), 0, 1)


def _top(cube: np.ndarray, bands) -> float:  # noqa: ANN001
    idx = [int(np.argmin(np.abs(bands.centers - w))) for w in (660, 560, 480)]
    return float(np.percentile(cube[idx], 99.5))


MASK_COLOURS = np.array([[0.15, 0.5, 0.15], [0.55, 0.75, 1.0], [1, 1, 1], [0.2, 0.2, 0.2]])


def figures(doc: dict, examples: dict, out: Path) -> list[Path]:
    plt = pyplot()
    if plt is None:
        return []
    paths = []
    # methods side by side (rgbn test tiles)
    preds, t, bands = examples["methods"]
    order = [
        i
        for i in np.argsort(-np.isin(t["classes"], (1, 3)).mean((1, 2)))
        if (t["classes"][i] == 2).mean() < 0.2
    ][:3]
    names = list(preds)
    fig, ax = plt.subplots(
        len(order), len(names) + 1, figsize=(2.2 * (len(names) + 1), 2.3 * len(order))
    )
    for r, i in enumerate(order):
        top = _top(t["clear"][i], bands)
        for c, m in enumerate(names):
            ax[r, c].imshow(_rgb(preds[m][i], bands, top))
            ax[r, c].set_title(m if r == 0 else "", fontsize=8)
        ax[r, -1].imshow(_rgb(t["clear"][i], bands, top))
        ax[r, -1].set_title("truth" if r == 0 else "", fontsize=8)
    for a in ax.ravel():
        a.axis("off")
    paths.append(save_figure(fig, out / "quality_methods.png"))
    # PSNR vs thickness: methods (per band set) and band sets
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    bins = list(TAU_BINS)
    for a, b in zip(axes[:2], ("hsi32", "rgbn"), strict=True):
        for m, v in doc["methods"][b]["methods"].items():
            ys = [v["by_thickness"][k]["psnr"]["mean"] for k in bins]
            a.plot(range(len(bins)), ys, marker="o", label=m)
        a.set_title(f"methods, {b} (held-out scenes)", fontsize=9)
        a.set_xticks(range(len(bins)), [k.split(" ")[0] for k in bins])
        a.set_ylabel("PSNR dB (cloud pixels of the bin)")
        a.legend(fontsize=7)
    for b, v in doc["band_sets"]["sets"].items():
        if "missing" in v:
            continue
        ys = [v["visible_by_thickness"]["cGAN"][k]["psnr"]["mean"] for k in bins]
        axes[2].plot(range(len(bins)), ys, marker="o", label=f"{b} cGAN")
    some = next((v for v in doc["band_sets"]["sets"].values() if "missing" not in v), None)
    if some:
        axes[2].plot(
            range(len(bins)),
            [some["visible_by_thickness"]["cloudy input"][k]["psnr"]["mean"] for k in bins],
            "k--",
            label="cloudy input",
        )
    axes[2].set_title("band sets: visible bands (ROSIS test crop)", fontsize=9)
    axes[2].set_xticks(range(len(bins)), [k.split(" ")[0] for k in bins])
    axes[2].legend(fontsize=7)
    paths.append(save_figure(fig, out / "quality_thickness.png"))
    # detector on the real cloudy Sentinel-2 patch
    p = s2_detector_panel(plt)
    if p is not None:
        paths.append(save_figure(p, out / "quality_s2_detector.png"))
    # real L8 patches and RICE2
    if examples.get("l8"):
        ex = examples["l8"][:4]
        fig, ax = plt.subplots(len(ex), 5, figsize=(11, 2.3 * len(ex)))
        for r, (name, x, y, truth, cls) in enumerate(ex):
            bands = band_set("rgbn")
            top = _top(x, bands)
            ax[r, 0].imshow(_rgb(x, bands, top))
            ax[r, 0].set_title(name, fontsize=7)
            ax[r, 1].imshow(MASK_COLOURS[np.clip(truth, 0, 3)])
            ax[r, 1].set_title("truth mask" if r == 0 else "", fontsize=8)
            ax[r, 2].imshow(MASK_COLOURS[cls])
            ax[r, 2].set_title("our detector" if r == 0 else "", fontsize=8)
            ax[r, 3].imshow(_rgb(y["HOT"], bands, top))
            ax[r, 3].set_title("HOT" if r == 0 else "", fontsize=8)
            ax[r, 4].imshow(_rgb(y["cGAN INT8"], bands, top))
            ax[r, 4].set_title("cGAN INT8" if r == 0 else "", fontsize=8)
        for a in ax.ravel():
            a.axis("off")
        paths.append(save_figure(fig, out / "quality_l8_real.png"))
    if examples.get("rice2"):
        ex = examples["rice2"]
        fig, ax = plt.subplots(len(ex), 5, figsize=(11, 2.3 * len(ex)))
        rgb = band_set("rgb")
        for r, (x, hot, inp, gan, y, _cls) in enumerate(ex):
            for c, (im, title) in enumerate(
                (
                    (x, "cloudy"),
                    (hot, "HOT"),
                    (inp, "inpainting"),
                    (gan, "cGAN INT8 (rgb)"),
                    (y, "clear, other date"),
                )
            ):
                ax[r, c].imshow(_rgb(im, rgb))
                ax[r, c].set_title(title if r == 0 else "", fontsize=8)
        for a in ax.ravel():
            a.axis("off")
        paths.append(save_figure(fig, out / "quality_rice2.png"))
    return paths


def s2_detector_panel(plt):  # noqa: ANN001, ANN201
    from kumo_edge.config import sensor_profile
    from kumo_edge.io import Raster

    f = SHARED / "sentinel2" / "ROIs1868_summer_s2_cloudy_19_p30.tif"
    ship = shipped_models()
    if not f.exists() or "rgbn" not in ship:
        return None
    s2 = sensor_profile("sentinel2-msi").bands
    with Raster(f, wavelengths=list(s2.centers_nm), fwhm=list(s2.fwhm_nm), scale=1e-4) as r:
        cube = r.read_strip(0, r.height).data
    det = load_model(ship["rgbn"]["detector"], threads=2)
    x = np.clip(resample(cube, resampling_matrix(s2, det.bands)), 0, 1)[None]
    cls = det.classify(det.run(np.ascontiguousarray(x)))[0]
    cirrus = cube[s2.names.index("B10")] if "B10" in s2.names else cube[10]
    thr = threshold_test(x[0], det.bands)
    fig, ax = plt.subplots(1, 4, figsize=(11, 3))
    ax[0].imshow(_rgb(cube, s2))
    ax[0].set_title("Sentinel-2 L1C true colour", fontsize=8)
    ax[1].imshow(cirrus, cmap="magma")
    ax[1].set_title("B10 cirrus (1375 nm)", fontsize=8)
    ax[2].imshow(MASK_COLOURS[cls])
    ax[2].set_title("rgbn detector: clear/thin/thick/shadow", fontsize=8)
    ax[3].imshow(thr, cmap="gray")
    ax[3].set_title("bright-and-white threshold test", fontsize=8)
    for a in ax:
        a.axis("off")
    return fig


# -- docs/results.md ------------------------------------------------------------------------------
def results_md(doc: dict) -> str:
    env = doc["environment"]
    L = [
        "# Quality report",
        "",
        f"Generated by `python -m bench.quality` ({doc['seconds']:.0f} s on {env['cpu']}, {env['cpu_count']} cores, "
        f"{env['date_utc'][:10]}); numbers from `bench/results/quality.json`. Intervals are 95 % bootstrap "
        "intervals of the mean over tiles (2000 resamples). All models run through ONNX Runtime. The report "
        "reads the shipped models and the FP32 artefacts in `export/artifacts/` (committed); rebuilding those "
        "from scratch is `python -m export.recipe --bands hsi32|rgbn|rgb` (30-60 min each on this machine) and "
        "`python -m export.recipe --bands study` (the three band-set study generators, ~25 min).",
        "",
        "**Limits.** The clouds of sections 1-2 are synthetic (`kumo_edge.clouds`: fBm optical thickness, "
        "Beer-Lambert transmittance with an Angstrom-like wavelength dependence, cloud albedo, shadows) over "
        "small real clear scenes; the hyperspectral results rest on two airborne crops (HYDICE Urban to train, "
        "ROSIS Pavia to test) with approximate wavelengths, at 1-2 m pixels instead of a satellite's 5-30 m. "
        "Thick-cloud pixels (two-way transmittance < 0.2), which the runtime flags instead of restoring, are "
        "left out of PSNR and SAM everywhere. Real-cloud results (section 4) have no exact truth.",
        "",
        "## 1. Cloud removal methods (synthetic clouds, held-out scenes)",
        "",
    ]
    for b, d in doc["methods"].items():
        L += [
            f"**{b}** - test scenes {', '.join(d['test_scenes'])}; {d['tiles']} tiles of {d['tile']} px. "
            "HOT and inpainting act on the shipped detector's classes; every remover's output is blended in by the "
            "detector's probabilities and kept off detected thick cloud, as the stream does "
            "(`kumo_edge.stream.blend_removed`), except the raw-output row (the generator alone, everywhere).",
            "",
            "| method | PSNR dB | SSIM | SAM deg | "
            + " | ".join(f"PSNR {k}" for k in TAU_BINS)
            + " |",
            "|---|---|---|---|" + "---|" * len(TAU_BINS),
        ]
        for m, v in d["methods"].items():
            o = v["overall"]
            L.append(
                f"| {m} | {_fmt(o['psnr'])} | {_fmt(o['ssim'], 3)} | {_fmt(o['sam_deg'])} | "
                + " | ".join(_fmt(v["by_thickness"][k]["psnr"]) for k in TAU_BINS)
                + " |"
            )
        L += [
            "",
            "Paired per-tile PSNR differences: "
            + "; ".join(f"{k}: {_fmt(v)} dB" for k, v in d["paired_psnr_gain"].items())
            + ".",
            "",
        ]
    L += [
        "**Compression loss against tile size.** The generators were trained and compressed on 64-px "
        "tiles; the runtime uses 256-px tiles. Shipped INT8 minus FP32 parent, paired per tile:",
        "",
        "| band set | tile px | test scenes large enough | parent PSNR | shipped PSNR | shipped - parent |",
        "|---|---:|---|---|---|---|",
    ]
    for b, sizes in doc.get("tile_sizes", {}).items():
        for size, v in sizes.items():
            if "missing" in v:
                L.append(f"| {b} | {size} | none | | | |")
                continue
            L.append(
                f"| {b} | {size} | {', '.join(v['scenes'])} | {_fmt(v['parent_psnr'])} | {_fmt(v['shipped_psnr'])} | "
                f"{_fmt(v['shipped_minus_parent'])} |"
            )
    L += [
        "",
        "![methods](../bench/results/quality_methods.png)",
        "",
        "![thickness](../bench/results/quality_thickness.png)",
        "",
    ]
    st = doc["band_sets"]
    L += [
        "## 2. Band sets: hsi32 vs rgbn vs rgb",
        "",
        f"The same generator architecture and budget trained on `{st['train_scene']}` with the same cloud fields, "
        f"rendered in each band set (`python -m export.recipe --bands study`); tested on `{st['test_scene']}` "
        f"({st['tiles']} tiles of {st['tile']} px, identical cloud fields in every set). 'Visible' = every output "
        "and its truth resampled to the rgb band set.",
        "",
        "| band set | bands | PSNR full | SAM full | PSNR visible | SSIM visible | SAM visible | "
        + " | ".join(f"visible PSNR {k}" for k in TAU_BINS)
        + " |",
        "|---|---:|---|---|---|---|---|" + "---|" * len(TAU_BINS),
    ]
    for b, v in st["sets"].items():
        if "missing" in v:
            L.append(f"| {b} | missing: {v['missing']} |")
            continue
        f, vis = v["full_bands"]["cGAN"], v["visible_common"]["cGAN"]
        L.append(
            f"| {b} | {v['bands']} | {_fmt(f['psnr'])} | {_fmt(f['sam_deg'])} | {_fmt(vis['psnr'])} | {_fmt(vis['ssim'], 3)} | {_fmt(vis['sam_deg'])} | "
            + " | ".join(_fmt(v["visible_by_thickness"]["cGAN"][k]["psnr"]) for k in TAU_BINS)
            + " |"
        )
    some = next((v for v in st["sets"].values() if "missing" not in v), None)
    if some:
        vi = some["visible_common"]["cloudy input"]
        L.append(
            f"| cloudy input | | | | {_fmt(vi['psnr'])} | {_fmt(vi['ssim'], 3)} | {_fmt(vi['sam_deg'])} | "
            + " | ".join(
                _fmt(some["visible_by_thickness"]["cloudy input"][k]["psnr"]) for k in TAU_BINS
            )
            + " |"
        )
    L += ["", "## 3. Cloud detector", ""]
    L += [
        "Cloud (thin + thick) vs not cloud. Real: held-out L8 Biome patches (one per land type: "
        + ", ".join(REAL_TEST)
        + "). Threshold test: mean visible reflectance > 0.3 and whiteness < 0.7 (with SWIR "
        "bands, also NDSI <= 0.4, Fmask's snow rule).",
        "",
        "| detector | data | CNN accuracy | CNN FPR | CNN F1 | CNN IoU | threshold accuracy | threshold FPR | threshold F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    detectors = {
        **doc["detector"],
        **{f"{b} (experiment, FP32)": d for b, d in doc.get("detector_experiments", {}).items()},
    }
    for b, d in detectors.items():
        for key, label in (
            ("synthetic", "synthetic, held-out scenes"),
            ("real_l8biome", "real L8 Biome patches"),
        ):
            if key not in d:
                continue
            c, t = d[key]["cnn"], d[key]["threshold_test"]
            L.append(
                f"| {b} | {label} | {c['accuracy']:.3f} | {c['false_positive_rate']:.3f} | {c['f1']:.3f} | {c['iou']:.3f} | {t['accuracy']:.3f} | {t['false_positive_rate']:.3f} | {t['f1']:.3f} |"
            )
    L += [
        "",
        "Per real patch (CNN accuracy / FPR; threshold accuracy / FPR):",
        "",
        "| detector | patch | land | cloud fraction | CNN | threshold |",
        "|---|---|---|---:|---|---|",
    ]
    for b, d in detectors.items():
        for name, v in d.get("real_l8biome", {}).get("per_patch", {}).items():
            L.append(
                f"| {b} | {name} | {v['land']} | {v['cloud_fraction']:.2f} | {v['cnn']['accuracy']:.3f} / {v['cnn']['false_positive_rate']:.3f} | {v['threshold_test']['accuracy']:.3f} / {v['threshold_test']['false_positive_rate']:.3f} |"
            )
    L += [
        "",
        "Tile-level 'too cloudy to downlink' (> 70 % cloud) decisions:",
        "",
        "| detector | data | tiles | CNN accuracy / FPR | threshold accuracy / FPR |",
        "|---|---|---:|---|---|",
    ]
    for b, d in doc["detector"].items():
        if "synthetic" in d:
            td = d["synthetic"]["tile_drop_decision"]
            L.append(
                f"| {b} | synthetic | {td['tiles']} | {td['accuracy']:.3f} / {td['false_positive_rate']:.3f} | |"
            )
        if "real_l8biome" in d:
            td = d["real_l8biome"]["tile_drop_decision"]
            L.append(
                f"| {b} | real, 64 px tiles | {td['tiles']} ({td['tiles_too_cloudy']} too cloudy) | {td['cnn']['accuracy']:.3f} / {td['cnn']['false_positive_rate']:.3f} | {td['threshold_test']['accuracy']:.3f} / {td['threshold_test']['false_positive_rate']:.3f} |"
            )
    L += ["", "![s2](../bench/results/quality_s2_detector.png)", ""]
    sv = doc.get("snow_vs_ice_cloud")
    if sv:
        pa = sv["patches"]
        L += [
            "**Snow and ice vs ice cloud.** Two of the held-out real patches are a clear, "
            "featureless ice sheet (SnowIce_00_1415, all clear) and a featureless ice cloud "
            "(Urban_01_0609, all cloud). Their medians in every band the crops have, cirrus and "
            "thermal included:",
            "",
            "| patch | cloud fraction | "
            + " | ".join(L8_BANDS)
            + " (K) | NDSI (B3, B6) | std of B4 |",
            "|---|---:|" + "---:|" * (len(L8_BANDS) + 2),
        ]
        for name, v in pa.items():
            med = [f"{v['median'][b]:.3f}" for b in L8_BANDS[:-1]] + [
                f"{v['median'][L8_BANDS[-1]]:.1f}"
            ]
            L.append(
                f"| {name} | {v['cloud_fraction']:.2f} | "
                + " | ".join(med)
                + f" | {v['ndsi_median']:.2f} | {v['red_std']:.4f} |"
            )
        L += [
            "",
            "In the visible and NIR (the only bands of hsi32, rgbn and rgb) they differ by "
            "brightness alone, and clouds span all brightnesses; neither has texture. SWIR does "
            "not rescue it here: the snow test (NDSI) rates the ice cloud MORE snow-like than the "
            "ice sheet, and the ice sheet is even colder than the cloud. A detector that gives "
            "both patches the same answer scores at most "
            f"**{sv['accuracy_bound']:.1%}** pixel accuracy on the real test set, so the "
            "issue's 92 % target and 'no snow called cloud' cannot both be met on it with these "
            "bands.",
        ]
        exp = doc.get("detector_experiments", {}).get("rgbn-swir", {}).get("real_l8biome")
        if exp:
            snow, ice = (exp["per_patch"][n]["cnn"] for n in SNOW_PAIR)
            L[-1] += (
                " The 6-band `rgbn-swir` experiment above (two SWIR bands, trained with synthetic "
                "snow painted under the clouds, `python -m export.recipe --bands rgbn-swir`) "
                f"calls {1 - snow['accuracy']:.0%} of the ice sheet cloud and "
                f"{1 - ice['accuracy']:.0%} of the ice cloud clear."
            )
        L.append("")
    L += ["## 4. Real clouds", ""]
    r = doc["rice2"]
    if "methods" in r:
        L += [
            f"**RICE2** ({r['pairs']} real cloudy/clear RGB pairs; the clear image is from ANOTHER DATE, so these "
            f"numbers mix cloud removal with real change; 8-bit display values read as reflectance = DN / 255, the usual "
            f"convention for RICE, which makes land brighter than in our training scenes). The rgb detector calls {_fmt(r['detector_cloud_fraction'], 2)} of pixels cloud and "
            f"{_fmt(r['detector_thick_fraction'], 2)} thick; thick pixels are left out.",
            "",
            "| method | PSNR dB | SSIM | SAM deg |",
            "|---|---|---|---|",
        ]
        for m, v in r["methods"].items():
            L.append(f"| {m} | {_fmt(v['psnr'])} | {_fmt(v['ssim'], 3)} | {_fmt(v['sam_deg'])} |")
        L += ["", "![rice2](../bench/results/quality_rice2.png)", ""]
    else:
        L += [f"RICE2: not run ({r.get('missing')}).", ""]
    L += [
        "**Real L8 Biome test patches** (rgbn models): mean absolute change of the pixels the truth mask calls clear (a remover should leave them alone):",
        "",
        "| patch | land | truth cloud fraction | HOT | inpainting | cGAN INT8 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, v in doc["l8_real"].items():
        ch = v["mean_abs_change_on_truth_clear"]
        f = lambda z: "n/a" if z is None else f"{z:.4f}"  # noqa: E731
        L.append(
            f"| {name} | {v['land']} | {v['truth_cloud_fraction']:.2f} | {f(ch['HOT'])} | {f(ch['inpainting'])} | {f(ch['cGAN INT8'])} |"
        )
    L += ["", "![l8](../bench/results/quality_l8_real.png)", ""]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=96, help="synthetic tiles per evaluation")
    ap.add_argument("--json", type=Path, default=RESULTS / "quality.json")
    a = ap.parse_args()
    t0 = time.time()
    doc: dict = {"benchmark": "quality", "environment": environment(), "methods": {}}
    examples: dict = {}
    for b in ("hsi32", "rgbn"):
        print(f"methods {b} ...", flush=True)
        doc["methods"][b], preds, t = method_comparison(b, a.tiles, 96)
        if b == "rgbn":
            examples["methods"] = (preds, t, band_set(b))
    print("tile sizes ...", flush=True)
    doc["tile_sizes"] = {
        b: tile_size_check(b, sizes, max(a.tiles // 2, 16))
        for b, sizes in (
            ("hsi32", (64, 96)),
            ("rgbn", (64, 96, 128, 256)),
            ("rgb", (64, 96, 128, 256)),
        )
    }
    print("band sets ...", flush=True)
    doc["band_sets"], examples["study"] = band_study(a.tiles, 96)
    print("detector ...", flush=True)
    doc["detector"] = detector_report(a.tiles)
    doc["detector_experiments"] = detector_experiments(a.tiles)
    doc["snow_vs_ice_cloud"] = snow_vs_ice_cloud()
    print("real clouds ...", flush=True)
    doc["rice2"], examples["rice2"] = rice2()
    doc["l8_real"], examples["l8"] = l8_removal()
    doc["seconds"] = time.time() - t0
    write_json(doc, a.json)
    for p in figures(doc, examples, a.json.parent):
        print("wrote", p)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "results.md").write_text(results_md(doc))
    print(f"wrote {a.json} and {DOCS / 'results.md'} in {doc['seconds']:.0f} s")


if __name__ == "__main__":
    main()
