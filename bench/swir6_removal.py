"""``run --models swir6`` against the default pair for files with SWIR bands.

    python -m bench.swir6_removal [--seeds 12]

A file with blue to SWIR-2 (Landsat, Sentinel-2) runs by default with ``rgbn``: its detector
and remover on the four VNIR bands, four bands out. ``--models swir6`` runs the six-band
detector (better on the real labelled patches: ``bench.detector_real``) with rgbn's physics
remover widened to the six bands (:meth:`kumo_edge.physics.PhysicsRemover.widen`: the network
reads the four, the cloud model is inverted and each tile's cloud spectrum fitted in all six),
six bands out. Both are scored on the four VNIR bands (what they share), the widened pair also
on all six:

1. **Clear scenes of ../shared with SWIR** (Landsat-7, Sentinel-2 eo-learn and BigEarthNet,
   HYDICE; the snowy BigEarthNet one included), under the removal cross-validation's
   out-of-range clouds (:func:`export.physics.alien_clouds`, its 48 64-px tiles and draws) and
   cloud-free (mean change of the whole scene). Most are training scenes of the shipped rgbn
   remover (marked): the comparison is of the two pairs, not of unseen land.
2. **Held out**: jasper_ridge and hydice_urban (the corpus crops that reach SWIR-2) with the
   removal cross-validation's rgbn fold network that never saw them
   (``runs/removal_cv/rgbn-clean``, skipped where absent) and the shipped companion.
3. **Procedural Sentinel-2 files** (``bench.new_sensors``' land, 13 bands resampled to the six,
   ``--seeds`` draws of its out-of-range clouds, the file's no-data footprint).
4. **Real clouds**: the labelled real patches that have the six bands (the 28 L8 Biome ones):
   mean change of the pixels the truth calls clear (target < 0.005, as ``bench.removal_real``)
   and of the thin-cloud ones, in the four VNIR bands.

PSNR gain over the cloudy input on recoverable pixels (two-way transmittance at 550 nm >=
0.2), spectral angle. Writes ``bench/results/swir6_removal.json``.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

from bench._common import RESULTS, ROOT, clear_changes, environment, write_json

VNIR = [0, 1, 2, 3]


def _pairs():  # noqa: ANN202
    from kumo_edge.runtime import load_models, read_contract, shipped_models

    ship = shipped_models()
    b6 = read_contract(ship["swir6"]["detector"]).bands
    b4 = read_contract(ship["rgbn"]["detector"]).bands
    det4, gen4, _ = load_models("rgbn", b4, threads=2)
    det6, gen6, _ = load_models("swir6", b6, threads=2)
    return (det4, gen4), (det6, gen6)


def _scene_row(scene, pair4, pair6, tiles: int) -> dict:  # noqa: ANN001
    from bench.removal_cv import _stream, _tiles, score, summarise
    from export.physics import AlienRanges
    from kumo_edge.stream import StreamConfig, process_image

    (det4, gen4), (det6, gen6) = pair4, pair6
    x6 = np.ascontiguousarray(scene.cube, np.float32)
    ok = scene.valid
    x4 = np.ascontiguousarray(x6[VNIR])
    y4, _, _ = process_image(x4.copy(), det4.bands, det4, gen4, StreamConfig(), ok)
    y6, _, _ = process_image(x6.copy(), det6.bands, det6, gen6, StreamConfig(), ok)
    clear, clouds = _tiles(scene, tiles, 64, zlib.crc32(scene.name.encode()), AlienRanges())
    cloudy = np.stack([c["cloudy"] for c in clouds])
    t550 = np.stack([c["t550"] for c in clouds])
    c4, k4 = np.ascontiguousarray(clear[:, VNIR]), np.ascontiguousarray(cloudy[:, VNIR])
    rng = np.random.default_rng(0)
    base4, base6 = score(k4, c4, k4, t550), score(cloudy, clear, cloudy, t550)
    o4 = _stream(det4, gen4)(k4)
    o6 = _stream(det6, gen6)(cloudy)
    s4 = summarise(score(o4, c4, k4, t550), base4, rng)
    s6v = summarise(score(np.ascontiguousarray(o6[:, VNIR]), c4, k4, t550), base4, rng)
    s6 = summarise(score(o6, clear, cloudy, t550), base6, rng)
    return {
        "rgbn": {
            "cloud_free_change": float(np.abs(y4 - x4).mean(0)[ok].mean()),
            "gain_db": s4["gain_db"],
            "sam_deg": s4["sam_deg"],
        },
        "swir6": {
            "cloud_free_change": float(np.abs(y6 - x6).mean(0)[ok].mean()),
            "gain_db_vnir": s6v["gain_db"],
            "sam_deg_vnir": s6v["sam_deg"],
            "gain_db": s6["gain_db"],
            "sam_deg": s6["sam_deg"],
        },
        "input_sam_deg_vnir": summarise(base4, base4, rng)["sam_deg"],
        "input_sam_deg": summarise(base6, base6, rng)["sam_deg"],
    }


def scenes(tiles: int = 48) -> dict:
    """Sections 1 and 2 of the module docstring."""
    from bench.removal_cv import FOLDS
    from export.data import shared_scenes, usable
    from export.scenes import hyperspectral_corpus
    from kumo_edge.physics import PhysicsRemover
    from kumo_edge.runtime import load_model, shipped_models

    pair4, pair6 = _pairs()
    b6 = pair6[0].bands
    card = json.loads(Path(shipped_models()["rgbn"]["generator"]).with_suffix(".json").read_text())
    tr = card["training"]
    trained = {r["scene"] for r in [*tr.get("scenes", []), *tr.get("multispectral_scenes", [])]}
    out: dict = {"shared": {}, "held_out": {}}
    for s in usable(shared_scenes(), b6):
        out["shared"][s.name] = {
            "in_remover_training": s.name in trained,
            **_scene_row(s, pair4, pair6, tiles),
        }
    bright = pair4[1].brightness
    for s in usable(hyperspectral_corpus(), b6):
        k = next(i for i, f in enumerate(FOLDS) if s.name in f)
        f = ROOT / "runs" / "removal_cv" / "rgbn-clean" / f"fold{k}" / "physics_int8.onnx"
        if not f.exists():
            continue
        g4 = PhysicsRemover(load_model(f, threads=2), brightness=bright)
        row = _scene_row(s, (pair4[0], g4), (pair6[0], g4.widen(b6)), tiles)
        out["held_out"][s.name] = {"fold": k, **row}
    return out


def procedural(seeds: int) -> list[dict]:
    """Section 3 of the module docstring."""
    from bench.new_sensors import SENSORS, footprint, land
    from export.physics import AlienRanges, alien_clouds
    from kumo_edge import metrics
    from kumo_edge.bands import BandSet, resample, resampling_matrix
    from kumo_edge.stream import StreamConfig, process_image

    (det4, gen4), (det6, gen6) = _pairs()
    centers, fwhm, _, scale, _ = SENSORS["Sentinel-2 13, uint16"]
    bands = BandSet(tuple(map(float, centers)), tuple(map(float, fwhm)))
    to6 = resampling_matrix(bands, det6.bands)
    rows = []
    for seed in range(1, seeds + 1):
        clear = land(np.asarray(centers, float), 256, 384, seed)
        cl = alien_clouds(clear, bands, np.random.default_rng(seed), 30.0, AlienRanges())
        valid = footprint(256, 384)
        x = np.where(valid, np.round(cl["cloudy"] / scale) * scale, 0).astype(np.float32)
        x6, truth = resample(x, to6), resample(clear, to6)
        rec = (cl["t550"] >= 0.2) & valid
        x4 = np.ascontiguousarray(x6[VNIR])
        y4, _, _ = process_image(x4.copy(), det4.bands, det4, gen4, StreamConfig(), valid)
        y6, _, _ = process_image(x6.copy(), det6.bands, det6, gen6, StreamConfig(), valid)
        t4 = truth[VNIR]
        p_in = metrics.psnr(x4, t4, mask=rec)
        rows.append(
            {
                "seed": seed,
                "input_sam_deg_vnir": metrics.sam(x4, t4, mask=rec),
                "rgbn": {
                    "gain_db": metrics.psnr(y4, t4, mask=rec) - p_in,
                    "sam_deg": metrics.sam(y4, t4, mask=rec),
                },
                "swir6": {
                    "gain_db_vnir": metrics.psnr(y6[VNIR], t4, mask=rec) - p_in,
                    "sam_deg_vnir": metrics.sam(y6[VNIR], t4, mask=rec),
                    "gain_db": metrics.psnr(y6, truth, mask=rec)
                    - metrics.psnr(x6, truth, mask=rec),
                },
            }
        )
    return rows


def real_patches() -> dict:
    """Section 4 of the module docstring: the labelled real patches with SWIR."""
    from bench.removal_real import patch_change
    from export.data import patch_cube, real_cloud_patches
    from kumo_edge.errors import BandMappingError
    from kumo_edge.stream import StreamConfig, process_image

    (det4, gen4), (det6, gen6) = _pairs()
    out = {}
    for p in real_cloud_patches():
        try:
            x6 = np.ascontiguousarray(patch_cube(p, det6.bands))
        except BandMappingError:
            continue
        x4 = np.ascontiguousarray(x6[VNIR])
        y4, _, _ = process_image(x4.copy(), det4.bands, det4, gen4, StreamConfig())
        y6, _, _ = process_image(x6.copy(), det6.bands, det6, gen6, StreamConfig())
        out[p["name"]] = {
            "clear_fraction": float((p["classes"] == 0).mean()),
            "rgbn": patch_change(x4, y4, p["classes"]),
            "swir6": patch_change(x4, y6[VNIR], p["classes"]),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=12, help="procedural Sentinel-2 draws")
    ap.add_argument("--tiles", type=int, default=48, help="64-px tiles per scene")
    ap.add_argument("--json", type=Path, default=RESULTS / "swir6_removal.json")
    a = ap.parse_args(argv)
    doc = {
        "benchmark": "swir6_removal",
        "environment": environment(),
        **scenes(a.tiles),
        "procedural_sentinel2": procedural(a.seeds),
        "real_patches": real_patches(),
    }
    for part in ("shared", "held_out"):
        for name, r in doc[part].items():
            star = "*" if r.get("in_remover_training") else " "
            print(
                f"{name:16s}{star} VNIR gain rgbn {r['rgbn']['gain_db']:+.2f} swir6 "
                f"{r['swir6']['gain_db_vnir']:+.2f} dB (six bands {r['swir6']['gain_db']:+.2f}); "
                f"SAM in {r['input_sam_deg_vnir']:.2f} rgbn {r['rgbn']['sam_deg']:.2f} swir6 "
                f"{r['swir6']['sam_deg_vnir']:.2f}; cloud-free change "
                f"{r['rgbn']['cloud_free_change']:.4f} / {r['swir6']['cloud_free_change']:.4f}",
                flush=True,
            )
    d = [r["swir6"]["gain_db_vnir"] - r["rgbn"]["gain_db"] for r in doc["procedural_sentinel2"]]
    print(
        f"procedural Sentinel-2, {len(d)} seeds: swir6 - rgbn VNIR gain mean {np.mean(d):+.2f} dB"
    )
    for m in ("rgbn", "swir6"):
        ch = clear_changes(doc["real_patches"], m)
        print(
            f"real patches ({len(ch)}), {m}: clear pixels changed {np.mean(ch):.4f} (max {max(ch):.4f})"
        )
    print("->", write_json(doc, a.json))


if __name__ == "__main__":
    main()
