"""Section 4 of the quality report: real clouds (RICE2 pairs, L8 Biome patches)."""

from __future__ import annotations

import numpy as np

from bench.quality.common import _as_runtime, bootstrap, cgan_path
from export.data import patch_cube, real_cloud_patches, rice2_pairs
from export.evaluate import run_batches
from export.train import REAL_TEST
from kumo_edge import metrics
from kumo_edge.baselines import HarmonicInpainting, HazeOptimizedTransform
from kumo_edge.errors import KumoError
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import removal_classify


# -- 4. real clouds ------------------------------------------------------------------------------
def rice2(models: str = "rgb") -> tuple[dict, list]:
    """RICE2 pairs through the rgb detector + each remover; the 'truth' is another date."""
    ship = shipped_models()
    if models not in ship:
        return {"missing": f"models {models}"}, []
    try:
        pairs = rice2_pairs()  # blue, green, red, as the rgb band set
    except KumoError as e:
        return {"missing": str(e)}, []
    det = load_model(ship[models]["detector"], threads=2)
    gen = load_model(cgan_path(models), threads=2)
    bands = det.bands
    # 8-bit display values with no radiometric calibration: taken as reflectance = DN / 255, the
    # usual convention of RICE results (PSNR on the 8-bit scale). Land is brighter than in our
    # training scenes under this mapping; clouds are near 1.
    scale = 1.0 / 255.0
    x = np.stack([a for _, a, _ in pairs])
    y = np.stack([b for _, _, b in pairs])
    probs = run_batches(det.run, x, batch=4)
    classes = removal_classify(det, probs)  # as the stream gives them to HOT and inpainting
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
    det, gen = load_model(ship["detector"], threads=2), load_model(cgan_path(bands), threads=2)
    out: dict = {}
    examples = []
    for p in (p for p in real_cloud_patches() if p["name"] in REAL_TEST):
        x = patch_cube(p, det.bands)[None]
        h, w = x.shape[2:]
        h2, w2 = h - h % 32, w - w % 32
        x = np.ascontiguousarray(x[:, :, :h2, :w2])
        truth = p["classes"][:h2, :w2]
        probs = det.removal_probabilities(x)
        cls = removal_classify(det, probs)
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
