"""What the input's own SWIR tests (``--input-swir``, on by default) cost on the path users run.

    python -m bench.input_swir [--lines 1024] [--width 2000] [--rounds 6]

A Sentinel-2-like file (the new-sensor benchmark's procedural land and clouds, 13 bands,
uint16, scale 1e-4, with its SWIR bands) goes file to file through ``kumo_edge.process.process``
(what ``kumo-edge run`` calls: read, resample, models, write cleaned output, mask and report)
with the default models (rgbn, which has no SWIR band of its own), the input's tests on and off
in alternating rounds (``kumo_edge.benchmark.alternating``: a slow phase of the host hits both
alike). Also: ``kumo_edge.runtime.input_flags`` alone (with the input's pixel trees, as the
stream calls it) on 256 lines of the file, and whether the cleaned outputs are the same (the
tests shape the mask, never the removal).

Writes ``bench/results/input_swir.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, file_bench_args, write_json
from bench.new_sensors import SENSORS, land, write_scene


def main(argv: list[str] | None = None) -> None:
    from export.physics import AlienRanges, alien_clouds
    from kumo_edge.bands import BandSet
    from kumo_edge.benchmark import alternating
    from kumo_edge.io import Raster
    from kumo_edge.process import RunOptions, process
    from kumo_edge.runtime import input_flags, input_test_matrix, input_trees, load_models

    a = file_bench_args(__doc__, 1024, 2000, 6, RESULTS / "input_swir.json").parse_args(argv)
    name = "Sentinel-2 13, uint16"
    centers, fwhm, dtype, scale, nodata = SENSORS[name]
    bands = BandSet(tuple(float(c) for c in centers), tuple(float(f) for f in fwhm))
    clear = land(np.asarray(centers, float), a.lines, a.width, 1)
    clouds = alien_clouds(clear, bands, np.random.default_rng(1), 30.0, AlienRanges())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "in.tif"
        write_scene(src, clouds["cloudy"], centers, fwhm, dtype, scale, nodata)

        def case(on: bool):  # noqa: ANN202
            tag = "on" if on else "off"
            opts = RunOptions(input_swir=on, threads=2, overwrite=True)
            paths = [folder / f"{tag}.tif", folder / f"{tag}_mask.tif", folder / f"{tag}.json"]
            return lambda: process(str(src), *map(str, paths), opts)

        times = alternating({"on": case(True), "off": case(False)}, a.rounds, warmup=1)
        with Raster(folder / "on.tif") as r1, Raster(folder / "off.tif") as r2:
            same = bool(
                np.array_equal(r1.read_strip(0, r1.height).data, r2.read_strip(0, r2.height).data)
            )
        with Raster(src) as r:
            lines = r.read_strip(0, 256).data
    det, _, _ = load_models("rgbn", bands)
    tm = input_test_matrix(bands, det.contract.bands)
    t = []
    for _ in range(20):
        t0 = time.perf_counter()
        input_flags(lines, bands, True, tm, input_trees())
        t.append(time.perf_counter() - t0)
    on, off = (float(np.median(times[k])) for k in ("on", "off"))
    doc = {
        "benchmark": "input_swir",
        "file": {"sensor": name, "lines": a.lines, "width": a.width, "bands": len(centers)},
        "models": "rgbn (default for this file)",
        "rounds": a.rounds,
        "seconds_on": times["on"],
        "seconds_off": times["off"],
        "median_s": {"on": on, "off": off},
        "ratio_of_medians": on / off,
        "ratio_per_round": [x / y for x, y in zip(times["on"], times["off"], strict=True)],
        "lines_per_s": {"on": a.lines / on, "off": a.lines / off},
        "input_flags_ms_per_256_lines": 1e3 * float(np.median(t)),
        "cleaned_output_identical": same,
        "environment": environment(),
    }
    path = write_json(doc, a.json)
    print(
        f"{name}, {a.lines} x {a.width}: on {on:.2f} s, off {off:.2f} s (ratio {on / off:.3f}); "
        f"input_flags {doc['input_flags_ms_per_256_lines']:.1f} ms per 256 lines; "
        f"cleaned output identical: {same}\n-> {path}"
    )


if __name__ == "__main__":
    main()
