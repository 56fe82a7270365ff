"""Band sets no model was trained on, through the path users run.

    python -m bench.new_sensors [--seeds 3] [--size 256x384]

Seven band sets imitating instruments we have no data from (224-band AVIRIS-like float32,
224-band EnMAP-like int16 with negative no data, 239-band PRISMA-like with its VNIR and SWIR
ranges overlapping, Sentinel-2's 13 bands, WorldView-3's and SuperDove's 8, a 60-band VNIR
imager), each a GeoTIFF with its wavelengths and scale declared as a user's file would have
them, run through ``kumo-edge run FILE OUT`` with the default model choice (the first shipped
set the file can be resampled to). The scenes are synthetic: procedural land (vegetation,
soil, roofs and water in 20-px fields, 6 % texture, the water-vapour bands dimmed), under
clouds from the cloud model the removal cross-validation tests with (``export.physics``'s
``AlienRanges``: every parameter outside the training ranges, a curved Angstrom law, a tilted
albedo). Every file's valid footprint is a rotated rectangle, the rest declared no data (NaN,
-9999, 0 or -32768), as a satellite product's raster is. So this checks band sets and file
handling, not land: what users' real scenes do is the cross-validation by place and the
real-cloud benchmarks. ``--checkout DIR`` runs ``kumo-edge`` from another checkout (a git
worktree of an older commit) for a before/after comparison.

Scored in the models' band set (the input and its clear truth resampled there by the project's
rule, ``kumo_edge.bands.resampling_matrix``): PSNR gain over the cloudy input and spectral
angle on recoverable pixels (two-way transmittance at 550 nm >= 0.2), the mean change of
cloud-free pixels (>= 0.98), the share of clearly cloudy pixels (< 0.5) the mask calls cloud
and of cloud-free ones it calls cloud. Writes ``bench/results/new_sensors.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json

#: name -> (centres nm, FWHM nm, GeoTIFF dtype, scale, nodata)
SENSORS: dict[str, tuple[list[float], list[float], str, float | None, float | None]] = {
    "AVIRIS-like 224, float32": (
        list(np.linspace(400, 2500, 224)), [10.0] * 224, "float32", None, -9999.0,
    ),
    "EnMAP-like 224, int16": (
        list(np.linspace(420, 2450, 224)), [8.0] * 224, "int16", 1e-4, -32768.0,
    ),
    "PRISMA-like 239, uint16": (
        sorted([*np.linspace(400, 1010, 66), *np.linspace(920, 2500, 173)]),
        [12.0] * 239, "uint16", 1e-4, 0.0,
    ),
    "Sentinel-2 13, uint16": (
        [443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190],
        [20, 65, 35, 30, 15, 15, 20, 115, 20, 20, 30, 90, 180], "uint16", 1e-4, 0.0,
    ),
    "WorldView-3-like 8, uint16": (
        [427, 478, 546, 608, 659, 724, 831, 908],
        [50, 60, 70, 40, 60, 40, 120, 100], "uint16", 1e-4, 0.0,
    ),
    "SuperDove-like 8, uint16": (
        [443, 490, 531, 565, 610, 665, 705, 865],
        [20, 50, 36, 36, 20, 31, 15, 40], "uint16", 1e-4, 0.0,
    ),
    "VNIR 60, float32": (list(np.linspace(400, 1000, 60)), [10.0] * 60, "float32", None, float("nan")),
}  # fmt: skip


#: Bands below this (nm) are the visible and near infrared: a model set with SWIR bands is
#: scored over them too, beside the models' whole set, so that it compares with a VNIR one.
VNIR_NM = 1000.0


def land(lam: np.ndarray, h: int, w: int, seed: int) -> np.ndarray:
    """Procedural clear land ``(C, h, w)``: four materials in 20-px fields, 6 % texture."""
    rng = np.random.default_rng(seed)
    tex = 1 + 0.06 * rng.standard_normal((h, w))
    spectra = [
        ([400, 450, 550, 670, 720, 850, 1250, 1650, 2200, 2500],
         [0.03, 0.03, 0.08, 0.03, 0.3, 0.45, 0.35, 0.25, 0.12, 0.08]),  # vegetation
        ([400, 850, 1650, 2200, 2500], [0.06, 0.22, 0.32, 0.30, 0.28]),  # soil
        ([400, 850, 1650, 2500], [0.18, 0.22, 0.25, 0.22]),  # roofs
        ([400, 550, 700, 850, 2500], [0.06, 0.05, 0.02, 0.01, 0.005]),  # water
    ]  # fmt: skip
    mats = np.stack([np.interp(lam, x, y) for x, y in spectra])
    pick = rng.integers(0, len(mats), (h // 20 + 1, w // 20 + 1)).repeat(20, 0).repeat(20, 1)
    cube = mats[pick[:h, :w]].transpose(2, 0, 1) * tex[None]
    for a, b in ((1350, 1450), (1800, 1950)):  # water vapour: next to no signal
        cube[(lam > a) & (lam < b)] *= 0.02
    return np.clip(cube, 0, 1).astype(np.float32)


def footprint(h: int, w: int, degrees: float = 12.0) -> np.ndarray:
    """``(h, w)`` bool: a rotated rectangle, as a scene's valid footprint lies in its raster
    (Landsat and Sentinel-2 products; a quarter or so of the raster is no data)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy - (h - 1) / 2, xx - (w - 1) / 2
    a = np.radians(degrees)
    u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
    return (np.abs(u) < 0.42 * w) & (np.abs(v) < 0.40 * h)


def write_scene(
    path: Path, cube: np.ndarray, centers: list[float], fwhm: list[float], dtype: str,
    scale: float | None, nodata: float | None, valid: np.ndarray | None = None,
) -> None:  # fmt: skip
    """``cube`` as a user's GeoTIFF: wavelength and FWHM tags, stored values scaled by
    ``scale`` where given, ``nodata`` (declared) outside ``valid``."""
    import rasterio
    from rasterio.transform import from_origin

    data = cube
    if scale:
        info = np.iinfo(dtype)
        data = np.clip(np.round(cube / scale), info.min + 1, info.max - 1).astype(dtype)
    if valid is not None:
        data = data.copy()
        data[:, ~valid] = nodata
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
        count=data.shape[0], dtype=dtype, crs="EPSG:32633",
        transform=from_origin(500_000, 6_000_000, 30, 30), nodata=nodata,
    ) as ds:  # fmt: skip
        ds.write(data)
        for b, (c, f) in enumerate(zip(centers, fwhm, strict=True), start=1):
            ds.update_tags(b, wavelength=f"{c:.6g}", fwhm=f"{f:.6g}", wavelength_units="nm")
        if scale:
            ds.scales = (scale,) * data.shape[0]


def run_case(
    name: str, seed: int, h: int, w: int, folder: Path, checkout: Path | None = None
) -> dict:
    from export.physics import AlienRanges, alien_clouds
    from kumo_edge import metrics
    from kumo_edge.bands import BandSet, resample, resampling_matrix
    from kumo_edge.io import Raster

    centers, fwhm, dtype, scale, nodata = SENSORS[name]
    bands = BandSet(tuple(float(c) for c in centers), tuple(float(f) for f in fwhm))
    clear = land(np.asarray(centers, float), h, w, seed)
    clouds = alien_clouds(clear, bands, np.random.default_rng(seed), 30.0, AlienRanges())
    src, out, mask = (folder / f"{seed}_{n}.tif" for n in ("in", "out", "mask"))
    valid = footprint(h, w)
    write_scene(src, clouds["cloudy"], centers, fwhm, dtype, scale, nodata, valid)
    cmd = [sys.executable, "-m", "kumo_edge.cli", "run", str(src), str(out), "--mask", str(mask)]
    # python -m finds kumo_edge in the working folder first: another checkout's, where given
    r = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, cwd=checkout)
    if r.returncode:
        return {"seed": seed, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    with Raster(src) as i:
        x = i.read_strip(0, i.height).data  # the cloudy input as the file stores it
    with Raster(out) as o:
        strip = o.read_strip(0, o.height)
        y, o_valid, out_bands = strip.data, strip.valid, o.bands
    import rasterio

    with rasterio.open(mask) as m:
        classes = m.read(1)
    to_model = resampling_matrix(bands, out_bands)
    x_m, truth = resample(x, to_model), resample(clear, to_model)
    t = clouds["t550"]
    rec, free, cloudy = (t >= 0.2) & valid, (t >= 0.98) & valid, (t < 0.5) & valid
    called = np.isin(classes, (2, 3))

    psnr_in, psnr_out = (metrics.psnr(a, truth, mask=rec) for a in (x_m, y))
    vnir = np.asarray(out_bands.centers_nm) < VNIR_NM
    extra = {}
    if not vnir.all():  # scored in the visible and NIR too, as a VNIR-only model set scores
        xv, yv, tv = x_m[vnir], y[vnir], truth[vnir]
        pv_in, pv_out = (metrics.psnr(a, tv, mask=rec) for a in (xv, yv))
        extra = {
            "gain_db_vnir": pv_out - pv_in,
            "psnr_out_vnir": pv_out,
            "sam_in_vnir": metrics.sam(xv, tv, mask=rec),
            "sam_out_vnir": metrics.sam(yv, tv, mask=rec),
        }
    return {
        "seed": seed,
        "model_bands": len(out_bands.centers_nm),
        "cloud_fraction": float(1 - free.sum() / valid.sum()),
        "no_data_fraction": float(1 - valid.mean()),
        "no_data_kept": bool(not o_valid[~valid].any()),
        "psnr_in": psnr_in,
        "psnr_out": psnr_out,
        "gain_db": psnr_out - psnr_in,
        "sam_in": metrics.sam(x_m, truth, mask=rec),
        "sam_out": metrics.sam(y, truth, mask=rec),
        "clear_change": float(np.abs(y - x_m).mean(0)[free].mean()),
        "cloud_found": float(called[cloudy].mean()) if cloudy.any() else None,
        "clear_called_cloud": float(called[free].mean()),
        **extra,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="cloud and land draws per band set")
    ap.add_argument("--size", default="256x384", help="lines x pixels of each scene")
    ap.add_argument("--json", type=Path, default=RESULTS / "new_sensors.json")
    ap.add_argument("--checkout", type=Path, help="run kumo-edge from this checkout instead")
    a = ap.parse_args(argv)
    h, w = (int(v) for v in a.size.split("x"))
    doc: dict = {
        "benchmark": "new_sensors",
        "environment": environment(),
        "checkout": str(a.checkout.resolve()) if a.checkout else None,
        "sensors": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in SENSORS:
            rows = [run_case(name, s, h, w, Path(tmp), a.checkout) for s in range(1, a.seeds + 1)]
            doc["sensors"][name] = rows
            for r in rows:
                line = (
                    r.get("error")
                    or f"-> {r['model_bands']} bands, gain {r['gain_db']:+.2f} dB, SAM {r['sam_in']:.2f} -> {r['sam_out']:.2f}, clear change {r['clear_change']:.4f}"
                )
                print(f"{name:28s} seed {r['seed']}: {line}", flush=True)
    print("->", write_json(doc, a.json))


if __name__ == "__main__":
    main()
