"""Cloud removal on REAL clouds, through the runtime path (``process_image``: the stream's tiles,
detector, remover, blend and do-no-harm gate).

    python -m bench.removal_real [--models rgbn] [--rice-models rgb]

1. **L8 Biome** (all 28 labelled Landsat-8 patches): how much the pixels the truth calls clear
   are changed (target: < 0.005 mean absolute reflectance), and how much the thin-cloud pixels
   are, per patch, for every remover.
2. **RICE2** (74 cloudy/clear RGB pairs; the clear image is another date, 8-bit display values
   taken as DN / 255): PSNR gain over the cloudy input against the other date, on the pixels the
   runtime does not flag as thick cloud, for every remover.
3. **Clear multispectral scenes** (every clear scene of ``../shared`` the band set can be fed
   from: Landsat-7, Landsat-8, Sentinel-2 eo-learn and BigEarthNet, one of them snowy): how much
   the cloud-free scene is changed (as the L8 clear pixels, target < 0.005; two of them are
   hyperspectral crops of the cross-validation, hydice_urban and rosis_beach), given in the
   models' bands and, for the shipped remover, with all the scene's own bands as a user's file
   brings them (where they include SWIR, the snow test spares snow), and the PSNR gain
   and spectral angle under synthetic clouds from the removal cross-validation's out-of-range
   cloud model (its 64-px tiles and draws), for every remover; each scene marked if it was
   among the shipped remover's training scenes (its card).
4. **Other sensors' real clouds** (the detector's other labelled patches: ukis-csmask's tests,
   Landsat-5, Landsat-7 and Sentinel-2 with SWIR, and five On-Cloud-N Sentinel-2 chips), each
   given in its own bands with the default model choice, as ``kumo-edge run`` takes a file:
   the change of the pixels labelled not cloud (target < 0.005, as L8) and of the cloud ones.

Writes ``bench/results/removal_real.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench._common import RESULTS, clear_changes, environment, write_json
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


def patch_change(x: np.ndarray, y: np.ndarray, classes: np.ndarray) -> dict:
    """How much ``y`` changed a labelled patch ``x``: mean absolute change of the pixels the
    truth calls clear, thin cloud and thick cloud (None where it has none; thick cloud is to be
    kept as it is, never invented)."""
    d = np.abs(y - x).mean(0)
    out = {}
    for name, c in (("clear_change", 0), ("thin_change", 1), ("thick_change", 2)):
        m = classes == c
        out[name] = float(d[m].mean()) if m.any() else None
    return out


def l8(models: str) -> dict:
    det, rems = removers(models)
    out: dict = {}
    for p in real_cloud_patches():
        x = np.ascontiguousarray(patch_cube(p, det.bands))
        ok = p["classes"] >= 0
        rec = {"land": p["land"], "clear_fraction": float(((p["classes"] == 0) & ok).mean())}
        for name, rem in rems.items():
            y, _, rep = run(x, det.bands, det, rem)
            rec[name] = {**patch_change(x, y, p["classes"]), "tiles_kept": rep["tiles_kept"]}
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


def other_sensors() -> dict:
    """Section 4 of the module docstring."""
    from export.detector import real_patches
    from kumo_edge.bands import resample, resampling_matrix
    from kumo_edge.runtime import load_models

    out: dict = {}
    for p in real_patches():
        if p["sensor"] == "landsat8":  # section 1
            continue
        x = np.ascontiguousarray(p["cube"], dtype=np.float32)
        det, gen, name = load_models(None, p["bands"], threads=2)
        y, _, rep = process_image(x.copy(), p["bands"], det, gen, StreamConfig())
        d = np.abs(y - resample(x, resampling_matrix(p["bands"], det.bands))).mean(0)
        lab = p["labels"]
        free, cloud = (lab == 0) | (lab == 5), (lab == 1) | (lab == 2) | (lab == 4)
        out[p["name"]] = {
            "sensor": p["sensor"],
            "bands": len(p["bands"]),
            "models": name,
            "not_cloud_fraction": float(free.mean()),
            "not_cloud_change": float(d[free].mean()) if free.any() else None,
            "cloud_change": float(d[cloud].mean()) if cloud.any() else None,
            "tiles_kept": rep.to_dict()["tiles_kept"],
        }
    return out


def clear_scenes(models: str, tiles: int = 48) -> dict:
    """Section 3 of the module docstring, for the band set ``models``."""
    import json
    import zlib

    from bench.removal_cv import _stream, _tiles, score, summarise
    from export.data import shared_scenes, usable
    from export.physics import AlienRanges

    det, rems = removers(models)
    ship = next(iter(rems))  # the shipped remover
    card = json.loads(Path(shipped_models()[models]["generator"]).with_suffix(".json").read_text())[
        "training"
    ]
    trained = {r["scene"] for r in [*card.get("scenes", []), *card.get("multispectral_scenes", [])]}
    out: dict = {}
    scenes = shared_scenes()
    native = {s.name: s for s in scenes}
    for scene in usable(scenes, det.bands):
        x = np.ascontiguousarray(scene.cube, dtype=np.float32)
        ok = scene.valid
        rec: dict = {"in_remover_training": scene.name in trained, "pixels": int(ok.sum())}
        # as a user's file brings it, with all its bands (the snow test where it has SWIR)
        raw = native[scene.name]
        y, _, _ = process_image(
            np.ascontiguousarray(raw.cube, dtype=np.float32),
            raw.bands,
            det,
            rems[ship],
            StreamConfig(),  # the snow test on (the default)
            raw.valid,
        )
        rec["shipped_native_bands"] = {
            "bands": len(raw.bands),
            "cloud_free_change": float(np.abs(y - x).mean(0)[ok].mean()),
        }
        clear, clouds = _tiles(scene, tiles, 64, zlib.crc32(scene.name.encode()), AlienRanges())
        cloudy = np.stack([c["cloudy"] for c in clouds])
        t550 = np.stack([c["t550"] for c in clouds])
        base = score(cloudy, clear, cloudy, t550)
        rng = np.random.default_rng(0)
        rec["input"] = summarise(base, base, rng)
        for name, rem in rems.items():
            y, _, rep = process_image(x.copy(), det.bands, det, rem, StreamConfig(), ok)
            d = np.abs(y - x).mean(0)[ok]
            cl = summarise(score(_stream(det, rem)(cloudy), clear, cloudy, t550), base, rng)
            rec[name] = {
                "cloud_free_change": float(d.mean()),
                "cloud_free_changed_0.01": float((d > 0.01).mean()),
                "tiles_kept": rep.to_dict()["tiles_kept"],
                "gain_db": cl["gain_db"],
                "sam_deg": cl["sam_deg"],
            }
        out[scene.name] = rec
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rgbn", help="band set for the L8 Biome patches")
    ap.add_argument("--rice-models", default="rgb", help="band set for the RICE2 pairs")
    ap.add_argument(
        "--scene-models",
        default="rgbn,rgb",
        help="band sets for the clear multispectral scenes (comma separated)",
    )
    a = ap.parse_args(argv)
    doc = {
        "benchmark": "removal_real",
        "l8biome": l8(a.models),
        "rice2": rice2(a.rice_models),
        "clear_scenes": {b: clear_scenes(b) for b in a.scene_models.split(",") if b},
        "other_sensors": other_sensors(),
    }
    for name in next(iter(doc["l8biome"].values())):
        if name in ("land", "clear_fraction"):
            continue
        ch = clear_changes(doc["l8biome"], name)
        print(
            f"L8 {name:16s} clear-pixel change: mean {np.mean(ch):.4f}, max {np.max(ch):.4f}, patches >= 0.005: {sum(c >= 0.005 for c in ch)}"
        )
    for name, s in doc["rice2"]["summary"].items():
        print(
            f"RICE2 {name:16s} mean gain {s['mean_gain_db']:+.2f} dB (median {s['median_gain_db']:+.2f}), worse on {s['pairs_worse']}/{s['pairs']}"
        )
    for b, scenes in doc["clear_scenes"].items():
        for name, rec in scenes.items():
            m = next(k for k in rec if k.startswith("shipped ("))
            print(
                f"{b} {name:16s} cloud-free change {rec[m]['cloud_free_change']:.4f}, under clouds "
                f"{rec[m]['gain_db']:+.2f} dB, SAM {rec[m]['sam_deg']:.2f} (input {rec['input']['sam_deg']:.2f})"
            )
    doc["environment"] = environment()
    print(write_json(doc, RESULTS / "removal_real.json"))


if __name__ == "__main__":
    main()
