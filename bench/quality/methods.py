"""Section 1 of the quality report: cloud removal methods on held-out synthetic tiles."""

from __future__ import annotations

import numpy as np

from bench.quality.common import (
    ART,
    _as_runtime,
    _paired,
    _summary,
    bootstrap,
    cgan_path,
    per_bin,
    per_tile,
    physics_rows,
    test_tiles,
)
from export.evaluate import run_batches
from export.train import TrainConfig, load_scenes
from kumo_edge.baselines import HarmonicInpainting, HazeOptimizedTransform
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import removal_classify


# -- 1. methods ----------------------------------------------------------------------------------
def method_comparison(
    bands: str, n: int, tile: int
) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    splits, target = load_scenes(TrainConfig(bands=bands))
    t = test_tiles(splits["test"], n, tile)
    ship = shipped_models()[bands]
    det = load_model(ship["detector"], threads=2)
    probs = run_batches(det.run, t["cloudy"])
    classes = removal_classify(det, probs)  # as the stream gives them to HOT and inpainting
    x = t["cloudy"]
    parent = run_batches(load_model(ART / bands / "generator_parent_fp32.onnx", threads=2).run, x)
    raw = run_batches(load_model(cgan_path(bands), threads=2).run, x)
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
        **physics_rows(bands, x, probs, det),
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
    shipped = load_model(cgan_path(bands), threads=2)
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
