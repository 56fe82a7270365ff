"""What resampling a hyperspectral file onto the models' bands costs on the path users run.

    python -m bench.resample [--lines 512] [--width 1000] [--rounds 8]

Procedural EnMAP- and PRISMA-like files (the new-sensor benchmark's land and out-of-range
clouds, 224 / 239 bands, int16 / uint16, scale 1e-4) go file to file through
``kumo_edge.process.process`` (what ``kumo-edge run`` calls) with the default models, in
alternating rounds (``kumo_edge.benchmark.alternating``) with the shipped resampling
(``kumo_edge.bands.resample``: a numba kernel that reads only the few source bands each target
band weights) and with the BLAS matrix product it replaced (``matrix @ cube``, patched into the
stream and the input's SWIR tests for the "blas" rounds). Also each alone on 256 lines of the
file, and how far the two passes' outputs and masks differ: the sums agree to float32
rounding, which the INT8 models can turn into a quantisation step of their own.

Writes ``bench/results/resample.json``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, file_bench_args, write_json
from bench.new_sensors import SENSORS, land, write_scene

FILES = ("EnMAP-like 224, int16", "PRISMA-like 239, uint16")


def blas_resample(cube: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The resampling before 2026-12-07: a selection where the matrix is one, else a BLAS
    product over every source band."""
    flat = np.ascontiguousarray(cube, dtype=np.float32).reshape(cube.shape[0], -1)
    if np.all((matrix == 0) | (matrix == 1)) and np.all(matrix.sum(1) == 1):
        out = flat[np.argmax(matrix, axis=1)]
    else:
        out = matrix @ flat
    return out.reshape((matrix.shape[0],) + cube.shape[1:]).astype(np.float32, copy=False)


@contextlib.contextmanager
def previous_resampling() -> Iterator[None]:
    """The stream and the input's tests resample with :func:`blas_resample` inside."""
    import kumo_edge.runtime as rt
    import kumo_edge.stream as st

    saved = st.resample, rt.resample
    st.resample = rt.resample = blas_resample
    try:
        yield
    finally:
        st.resample, rt.resample = saved


def one_file(name: str, lines: int, width: int, rounds: int, folder: Path) -> dict:
    import rasterio

    from export.physics import AlienRanges, alien_clouds
    from kumo_edge.bands import BandSet, resample, resampling_matrix
    from kumo_edge.benchmark import alternating
    from kumo_edge.io import Raster
    from kumo_edge.process import RunOptions, process
    from kumo_edge.runtime import load_models

    centers, fwhm, dtype, scale, nodata = SENSORS[name]
    bands = BandSet(tuple(float(c) for c in centers), tuple(float(f) for f in fwhm))
    clear = land(np.asarray(centers, float), lines, width, 1)
    clouds = alien_clouds(clear, bands, np.random.default_rng(1), 30.0, AlienRanges())
    src = folder / "in.tif"
    write_scene(src, clouds["cloudy"], centers, fwhm, dtype, scale, nodata)
    opts = RunOptions(threads=2, overwrite=True)

    def case(tag: str):  # noqa: ANN202
        paths = [folder / f"{tag}.tif", folder / f"{tag}_mask.tif", folder / f"{tag}.json"]

        def go() -> None:
            with previous_resampling() if tag == "blas" else contextlib.nullcontext():
                process(str(src), *map(str, paths), opts)

        return go

    times = alternating({"sparse": case("sparse"), "blas": case("blas")}, rounds, warmup=1)
    with Raster(folder / "sparse.tif") as r1, Raster(folder / "blas.tif") as r2:
        a, b = r1.read_strip(0, r1.height).data, r2.read_strip(0, r2.height).data
    with (
        rasterio.open(folder / "sparse_mask.tif") as r1,
        rasterio.open(folder / "blas_mask.tif") as r2,
    ):
        m1, m2 = r1.read(), r2.read()
    with Raster(src) as r:
        strip = r.read_strip(0, min(256, r.height)).data
    det, _, chosen = load_models(None, bands)
    m = resampling_matrix(bands, det.contract.bands)
    alone = {}
    for tag, fn in (("sparse", resample), ("blas", blas_resample)):
        t = []
        for _ in range(10):
            t0 = time.perf_counter()
            fn(strip, m)
            t.append(time.perf_counter() - t0)
        alone[tag] = 1e3 * float(np.median(t))
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "file": {"sensor": name, "lines": lines, "width": width, "bands": len(centers)},
        "models": chosen,
        "model_bands": len(det.contract.bands.centers),
        "nonzero_weights_per_model_band": [int(x) for x in np.count_nonzero(m, axis=1)],
        "seconds": times,
        "median_s": med,
        "ratio_of_medians": med["sparse"] / med["blas"],
        "ratio_per_round": [x / y for x, y in zip(times["sparse"], times["blas"], strict=True)],
        "resample_ms_per_256_lines": alone,
        "output_max_abs_difference": float(np.abs(a.astype(np.float64) - b).max()),
        # where the two differ by more than one count of the output's scale (1e-4)
        "output_pixels_differing": float((np.abs(a.astype(np.float64) - b) > 1.5e-4).any(0).mean()),
        "mask_pixels_differing": float((m1 != m2).any(0).mean()),
    }


def main(argv: list[str] | None = None) -> None:
    a = file_bench_args(__doc__, 512, 1000, 8, RESULTS / "resample.json").parse_args(argv)
    out = []
    for name in FILES:
        with tempfile.TemporaryDirectory() as tmp:
            r = one_file(name, a.lines, a.width, a.rounds, Path(tmp))
        out.append(r)
        print(
            f"{name}, {a.lines} x {a.width} -> {r['model_bands']} model bands: sparse "
            f"{r['median_s']['sparse']:.2f} s, blas {r['median_s']['blas']:.2f} s (ratio "
            f"{r['ratio_of_medians']:.3f}); alone per 256 lines "
            f"{r['resample_ms_per_256_lines']['sparse']:.1f} against "
            f"{r['resample_ms_per_256_lines']['blas']:.1f} ms; outputs differ by at most "
            f"{r['output_max_abs_difference']:.2g} (pixels beyond one count: "
            f"{100 * r['output_pixels_differing']:.3f} %), mask pixels differing: "
            f"{100 * r['mask_pixels_differing']:.3f} %",
            flush=True,
        )
    path = write_json(
        {"benchmark": "resample", "rounds": a.rounds, "files": out, "environment": environment()},
        a.json,
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
