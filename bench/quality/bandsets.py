"""Section 2 of the quality report: the band-set study (hsi32 vs rgbn vs rgb)."""

from __future__ import annotations

from pathlib import Path

from bench.quality.common import ART, ROOT, _summary, per_bin, per_tile, test_tiles
from export.evaluate import run_batches
from export.train import TrainConfig, band_set, load_scenes
from kumo_edge.bands import resample, resampling_matrix
from kumo_edge.runtime import load_model

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
