"""Section 3 of the quality report: the shipped detectors on synthetic and real clouds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.models import ARTIFACTS
from export.data import SHARED, patch_cube, real_cloud_patches
from export.evaluate import DROP_FRACTION, eval_detector
from export.train import REAL_TEST, TrainConfig, load_scenes
from kumo_edge import metrics
from kumo_edge.runtime import load_model, shipped_models, spectral_cloud_test


# -- 3. detector ---------------------------------------------------------------------------------
def trained_on_every_real_patch(det: Path) -> bool:
    """Whether a shipped detector's card says it trained on all real patches (the band-agnostic
    detector): then no real patch is held out from it, and its real-cloud figures are the
    cross-validation of ``bench/detector_real.py``."""
    import json

    card = det.with_suffix(".json")
    return card.exists() and "real_patches" in json.loads(card.read_text()).get("training", {})


def detector_report(n: int) -> dict:
    out = {}
    for bands, files in shipped_models().items():
        splits, _ = load_scenes(TrainConfig(bands=bands))
        real = [] if trained_on_every_real_patch(files["detector"]) else REAL_TEST
        d = eval_detector(files["detector"], splits["test"], real, n=n)
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
        cloud = det.classify(det.detect(x[None]))[0]
        cloud = (cloud == 1) | (cloud == 2)
        thr = spectral_cloud_test(x, det.bands)
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
