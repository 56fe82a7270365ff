"""The snow test that spares snow from the removal (``--spare-snow``), on and off, and with and
without its NIR part: what it saves on snow and what it costs under cloud.

    python -m bench.snow_spare [--nir-ratios 0,0.7,0.8]

For each NIR share (``kumo_edge.runtime.SNOW_NIR_RATIO``; 0 is the test as it was before
2026-12-06, without the NIR part), through ``process_image`` with the default model choice:

1. **The clear snowy Sentinel-2 scene** (BigEarthNet ``ben_57_38``, given with its own bands,
   blue to SWIR-2): mean change of the whole scene, rgbn and rgb models, and the share the test
   spares.
2. **Files with SWIR under clouds** (``bench.new_sensors``' procedural land, AVIRIS-, PRISMA-
   and Sentinel-2-like, seeds 1-3, its out-of-range clouds): PSNR gain over the cloudy input
   with the test off and on, and the share of cloudy pixels it spares.
3. **Clear scenes of ../shared with SWIR** under the removal cross-validation's out-of-range
   clouds (24 64-px tiles each, given with their own bands, rgbn models): gain off and on.
4. **Real labelled patches** (L8 Biome and the others, in the six-band set): the share of the
   cloud pixels and of the clear pixels the test takes for snow.

Writes ``bench/results/snow_spare.json``.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json

SNOW_SCENE = "ben_57_38"
NEW_SENSORS = ("AVIRIS-like 224, float32", "PRISMA-like 239, uint16", "Sentinel-2 13, uint16")


def _gain(y, x, truth, rec) -> float:  # noqa: ANN001
    from kumo_edge import metrics

    return metrics.psnr(y, truth, mask=rec) - metrics.psnr(x, truth, mask=rec)


def evaluate(tiles: int = 24) -> dict:
    """One pass of sections 1-4 with the snow test as :mod:`kumo_edge.runtime` now defines it."""
    import kumo_edge.runtime as rt
    from bench.new_sensors import SENSORS, footprint, land
    from bench.removal_cv import _tiles
    from export.data import patch_cube, real_cloud_patches, shared_scenes
    from export.physics import AlienRanges, alien_clouds
    from kumo_edge.bands import BandSet, resample, resampling_matrix
    from kumo_edge.errors import BandMappingError
    from kumo_edge.runtime import load_models, read_contract, shipped_models
    from kumo_edge.stream import StreamConfig, process_image

    on, off = StreamConfig(spare_snow=True), StreamConfig(spare_snow=False)
    out: dict = {"snow_scene": {}, "new_sensors": [], "shared": {}, "real_patches": {}}
    scenes = {s.name: s for s in shared_scenes()}
    snow = scenes[SNOW_SCENE]
    x = np.ascontiguousarray(snow.cube, np.float32)
    out["snow_scene"]["spared"] = float(rt.snow_test(x, snow.bands)[snow.valid].mean())
    for name in ("rgbn", "rgb"):
        bands = read_contract(shipped_models()[name]["detector"]).bands
        det, gen, _ = load_models(name, bands)
        ref = resample(x, resampling_matrix(snow.bands, bands))
        y, _, _ = process_image(x.copy(), snow.bands, det, gen, on, snow.valid)
        out["snow_scene"][name] = float(np.abs(y - ref).mean(0)[snow.valid].mean())
    for name in NEW_SENSORS:
        centers, fwhm, *_ = SENSORS[name]
        bands = BandSet(tuple(map(float, centers)), tuple(map(float, fwhm)))
        det, gen, models = load_models(None, bands)
        for seed in (1, 2, 3):
            clear = land(np.asarray(centers, float), 256, 384, seed)
            cl = alien_clouds(clear, bands, np.random.default_rng(seed), 30.0, AlienRanges())
            valid = footprint(256, 384)
            xx = np.where(valid, cl["cloudy"], 0).astype(np.float32)
            m = resampling_matrix(bands, det.bands)
            truth, xm = resample(clear, m), resample(xx, m)
            rec = (cl["t550"] >= 0.2) & valid
            g = [
                _gain(process_image(xx.copy(), bands, det, gen, c, valid)[0], xm, truth, rec)
                for c in (off, on)
            ]
            cloudy = rec & (cl["t550"] < 0.98)
            out["new_sensors"].append(
                {
                    "file": name,
                    "models": models,
                    "seed": seed,
                    "gain_db_off": g[0],
                    "gain_db_on": g[1],
                    "cloudy_spared": float(rt.snow_test(xx, bands)[cloudy].mean()),
                }
            )
    b4 = read_contract(shipped_models()["rgbn"]["detector"]).bands
    det, gen, _ = load_models("rgbn", b4)
    for s in scenes.values():
        if s.name == SNOW_SCENE or not rt.tests_snow(s.bands):
            continue
        try:
            m = resampling_matrix(s.bands, b4)
        except BandMappingError:
            continue
        clear, clouds = _tiles(s, tiles, 64, zlib.crc32(s.name.encode()), AlienRanges())
        sums = np.zeros(3)
        for c0, c in zip(clear, clouds, strict=True):
            rec = c["t550"] >= 0.2
            truth, xi = resample(c0, m), resample(c["cloudy"], m)
            for j, cfg in enumerate((off, on)):
                y, _, _ = process_image(np.ascontiguousarray(c["cloudy"]), s.bands, det, gen, cfg)
                sums[j] += ((y - truth) ** 2).mean(0)[rec].sum()
            sums[2] += ((xi - truth) ** 2).mean(0)[rec].sum()
        out["shared"][s.name] = {
            "gain_db_off": float(10 * np.log10(sums[2] / sums[0])),
            "gain_db_on": float(10 * np.log10(sums[2] / sums[1])),
        }
    b6 = read_contract(shipped_models()["swir6"]["detector"]).bands
    tot = np.zeros(4)
    for p in real_cloud_patches():
        try:
            xx = np.ascontiguousarray(patch_cube(p, b6))
        except BandMappingError:
            continue
        t, cls = rt.snow_test(xx, b6), p["classes"]
        cloud, clear = (cls == 1) | (cls == 2), cls == 0
        tot += [cloud.sum(), (cloud & t).sum(), clear.sum(), (clear & t).sum()]
    out["real_patches"] = {
        "cloud_taken_for_snow": float(tot[1] / tot[0]),
        "clear_taken_for_snow": float(tot[3] / tot[2]),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    import kumo_edge.runtime as rt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nir-ratios", default=f"0,{rt.SNOW_NIR_RATIO:g},0.85")
    ap.add_argument("--tiles", type=int, default=24, help="64-px tiles per shared scene")
    ap.add_argument("--json", type=Path, default=RESULTS / "snow_spare.json")
    a = ap.parse_args(argv)
    shipped = rt.SNOW_NIR_RATIO
    doc = {"benchmark": "snow_spare", "environment": environment(), "shipped_nir_ratio": shipped}
    runs = {}
    for r in (float(v) for v in a.nir_ratios.split(",") if v):
        rt.SNOW_NIR_RATIO = r
        try:
            res = runs[f"{r:g}"] = evaluate(a.tiles)
        finally:
            rt.SNOW_NIR_RATIO = shipped
        loss = [v["gain_db_on"] - v["gain_db_off"] for v in res["new_sensors"]]
        loss += [v["gain_db_on"] - v["gain_db_off"] for v in res["shared"].values()]
        res["worst_gain_change_db"] = float(min(loss))
        print(
            f"NIR >= {r:g} x green: snow scene change rgbn {res['snow_scene']['rgbn']:.4f} "
            f"rgb {res['snow_scene']['rgb']:.4f} (spared {res['snow_scene']['spared']:.2f}); "
            f"cloudy pixels spared up to "
            f"{max(v['cloudy_spared'] for v in res['new_sensors']):.3f}; worst gain change "
            f"{min(loss):+.2f} dB; real cloud taken for snow "
            f"{res['real_patches']['cloud_taken_for_snow']:.3f}",
            flush=True,
        )
    doc["runs"] = runs
    print("->", write_json(doc, a.json))


if __name__ == "__main__":
    main()
