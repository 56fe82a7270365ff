"""Cloud removal on REAL clouds, through the runtime path (``process_image``: the stream's tiles,
detector, remover, blend and do-no-harm gate).

    python -m bench.removal_real [--models rgbn] [--rice-models rgb]

1. **L8 Biome** (all 28 labelled Landsat-8 patches): how much the pixels the truth calls clear
   are changed (target: < 0.005 mean absolute reflectance), and how much the thin-cloud pixels
   are, per patch, for every remover.
2. **RICE2** (74 cloudy/clear RGB pairs; the clear image is another date, 8-bit display values
   taken as DN / 255): PSNR gain over the cloudy input against the other date, on the pixels the
   runtime does not flag as thick cloud, for every remover.

Writes ``bench/results/removal_real.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json
from export.data import patch_cube, real_cloud_patches, rice2_pairs
from kumo_edge import metrics
from kumo_edge.baselines import remover
from kumo_edge.physics import as_remover
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import THICK, StreamConfig, process_image

ROOT = Path(__file__).resolve().parents[1]


def removers(models: str) -> dict:
    """The shipped detector and every remover for a band set: the shipped generator, the cGAN
    it replaced (where kept in export/artifacts), HOT and inpainting."""
    ship = shipped_models()[models]
    det = load_model(ship["detector"], threads=2)
    gen = as_remover(load_model(ship["generator"], threads=2))
    out = {f"shipped ({'physics' if getattr(gen, 'physics', False) else 'cgan'})": gen}
    art = ROOT / "export" / "artifacts" / models
    if (art / "cgan_int8.onnx").exists():  # the cGAN the physics remover replaced
        out["cgan (previous)"] = load_model(art / "cgan_int8.onnx", threads=2)
    if (art / "physics_int8.onnx").exists():  # a physics remover that lost its CV: not shipped
        out["physics (not shipped)"] = as_remover(load_model(art / "physics_int8.onnx", threads=2))
    out["hot"] = remover("hot", det.bands)
    out["inpaint"] = remover("inpaint", det.bands)
    return det, out


def run(cube: np.ndarray, bands, det, rem) -> tuple[np.ndarray, np.ndarray, dict]:  # noqa: ANN001
    data, mask, rep = process_image(cube, bands, det, rem, StreamConfig())
    return data, mask, rep.to_dict()


def l8(models: str) -> dict:
    det, rems = removers(models)
    out: dict = {}
    for p in real_cloud_patches():
        x = np.ascontiguousarray(patch_cube(p, det.bands))
        ok = p["classes"] >= 0
        clear, thin = (p["classes"] == 0) & ok, (p["classes"] == 1) & ok
        rec = {"land": p["land"], "clear_fraction": float(clear.mean())}
        for name, rem in rems.items():
            y, _, rep = run(x, det.bands, det, rem)
            d = np.abs(y - x).mean(0)
            rec[name] = {
                "clear_change": float(d[clear].mean()) if clear.any() else None,
                "thin_change": float(d[thin].mean()) if thin.any() else None,
                "tiles_kept": rep["tiles_kept"],
            }
        out[p["name"]] = rec
    return out


def rice2(models: str) -> dict:
    det, rems = removers(models)
    pairs = rice2_pairs()  # blue, green, red, as the rgb band set
    res: dict = {name: [] for name in rems}
    for _, a, b in pairs:
        for name, rem in rems.items():
            y, mask, rep = run(a, det.bands, det, rem)
            keep = mask != THICK  # thick-cloud pixels are flagged, alike for every method
            if keep.sum() < 64:
                res[name].append(None)
                continue
            res[name].append(
                {
                    "gain_db": metrics.psnr(y, b, mask=keep) - metrics.psnr(a, b, mask=keep),
                    "sam_input": metrics.sam(a, b, mask=keep),
                    "sam": metrics.sam(y, b, mask=keep),
                    "tiles_kept": rep["tiles_kept"],
                }
            )
    summary = {}
    for name, rows in res.items():
        g = np.array([r["gain_db"] for r in rows if r is not None])
        summary[name] = {
            "pairs": int(len(g)),
            "mean_gain_db": float(g.mean()),
            "median_gain_db": float(np.median(g)),
            "pairs_worse": int((g < 0).sum()),
            "tiles_kept": int(sum(r["tiles_kept"] for r in rows if r is not None)),
        }
    return {
        "summary": summary,
        "per_pair": {p[0]: [res[n][i] for n in res] for i, p in enumerate(pairs)},
        "methods": list(res),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rgbn", help="band set for the L8 Biome patches")
    ap.add_argument("--rice-models", default="rgb", help="band set for the RICE2 pairs")
    a = ap.parse_args(argv)
    doc = {"benchmark": "removal_real", "l8biome": l8(a.models), "rice2": rice2(a.rice_models)}
    for name in next(iter(doc["l8biome"].values())):
        if name in ("land", "clear_fraction"):
            continue
        ch = [
            v[name]["clear_change"]
            for v in doc["l8biome"].values()
            if v[name]["clear_change"] is not None
        ]
        print(
            f"L8 {name:16s} clear-pixel change: mean {np.mean(ch):.4f}, max {np.max(ch):.4f}, patches >= 0.005: {sum(c >= 0.005 for c in ch)}"
        )
    for name, s in doc["rice2"]["summary"].items():
        print(
            f"RICE2 {name:16s} mean gain {s['mean_gain_db']:+.2f} dB (median {s['median_gain_db']:+.2f}), worse on {s['pairs_worse']}/{s['pairs']}"
        )
    doc["environment"] = environment()
    print(write_json(doc, RESULTS / "removal_real.json"))


if __name__ == "__main__":
    main()
