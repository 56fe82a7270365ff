"""Stream benchmark: real-time factor, per-strip latency, throughput and peak memory of a pass,
with the shipped models, for any sensor profile. Importable without the repository (so it runs
on a Jetson from the installed package): ``kumo-edge bench stream``.

The input is generated once, before any timed pass (no disk I/O in the loop): a block of 192
lines of smooth random spectra in the sensor's band set with synthetic clouds over the whole
swath, stored as uint16 digital numbers (reflectance x 10 000, as a sensor delivers them) in a
file each pass maps read-only and pushes cyclically, converting every strip to float32
reflectance inside the timed loop. Peak RSS includes the mapped block (``input_block_mb``), as a
sensor's line buffer would. Each ONNX Runtime session runs one batch before the timed pass
(``warmup_s``), as a flight computer would before the sensor starts. Worst case (default) sends every tile through the generator whatever
the detector says, the case the real-time target is defined for. Each pass length runs in its
own subprocess so that its peak RSS is its own (and the block's synthesis, which needs numba
kernels the flight runtime never runs, is not in it).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_BATCH, sensor_profile
from .errors import KumoError

#: Digital numbers per unit reflectance of the benchmark's input block.
DN_PER_REFLECTANCE = 10_000
BLOCK_LINES = 192


def _lines_source(profile_name: str, width: int, block: int, seed: int = 0) -> np.ndarray:
    """A cloudy block of ``block`` lines as uint16 digital numbers, reused cyclically."""
    from .clouds import CloudField, CloudParams  # the synthesis is not part of a pass

    prof = sensor_profile(profile_name)
    bands = prof.bands
    rng = np.random.default_rng(seed)
    lam = (bands.centers.astype(np.float32) - 400) / 600
    spectra = np.stack(
        [0.05 + 0.1 * lam, 0.04 + 0.35 * np.clip(lam - 0.45, 0, 1)]
    )  # soil-ish, vegetation-ish
    field = CloudField(CloudParams(cover=0.7, thickness=0.6, gsd_m=prof.gsd_m), block, width, seed)
    out = np.empty((len(bands), block, width), np.uint16)
    for r in range(0, block, 16):  # in strips: the synthesis temporaries stay small
        n = min(16, block - r)
        yy, xx = np.mgrid[r : r + n, 0:width].astype(np.float32)
        spatial = 0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
        cube = (
            spectra[0][:, None, None] * (1 - spatial) + spectra[1][:, None, None] * spatial
        ).astype(np.float32)
        cube = np.clip(cube + rng.normal(0, 0.003, cube.shape).astype(np.float32), 0, 1)
        cloudy = field.apply(cube, bands, row0=r).cloudy
        out[:, r : r + n] = np.round(np.clip(cloudy, 0, 6.5) * DN_PER_REFLECTANCE)
    return out


def _cpu_seconds(usage: Any) -> float:  # noqa: ANN401 - a resource.struct_rusage
    return float(usage.ru_utime + usage.ru_stime)


def cpu_figures(cpu_s: float, lines: int, sensor_lines_per_s: float) -> dict[str, float]:
    """CPU time of a pass (user + system, every thread) and what it means for real time:
    ``cpu_per_sensor_s``, CPU seconds per second of sensor time, is the number of cores that
    must be busy ALL the time for the pass to keep up with the sensor (real-time factor 1);
    a real-time factor R needs R times as many, whatever the threading."""
    sensor_s = lines / sensor_lines_per_s
    return {"cpu_s": cpu_s, "cpu_per_sensor_s": cpu_s / sensor_s}


def run_pass(
    profile_name: str,
    lines: int,
    strip: int = 64,
    models: str | None = None,
    threads: int | None = None,
    worst_case: bool = True,
    width: int | None = None,
    providers: list[str] | None = None,
    batch: int = DEFAULT_BATCH,
    block_path: str | None = None,
) -> dict[str, Any]:
    """One pass in this process; returns timings and peak RSS. ``block_path``: the input block
    (``.npy`` of uint16, made by :func:`bench_stream`); generated here when not given."""
    from .runtime import load_models
    from .stream import Lines, StreamConfig, StreamProcessor

    prof = sensor_profile(profile_name)
    width = width or prof.width_px
    det, gen, name = load_models(models, prof.bands, providers, threads)
    if block_path is None:
        block = _lines_source(profile_name, width, BLOCK_LINES)
    else:
        block = np.load(block_path, mmap_mode="r")
        if block.shape != (len(prof.bands), BLOCK_LINES, width) or block.dtype != np.uint16:
            raise KumoError(f"{block_path}: not an input block for {profile_name} at width {width}")
    scale = np.float32(1.0 / DN_PER_REFLECTANCE)
    proc = StreamProcessor(
        width,
        prof.bands,
        det,
        gen,
        StreamConfig(min_fraction=0.0 if worst_case else 0.01, batch=batch),
    )
    # warm-up before the pass, as a flight computer would before the sensor starts: the first
    # run of each ONNX Runtime session plans and allocates (seconds on this CPU)
    t0 = time.perf_counter()
    zeros = np.zeros((batch, len(det.bands), proc.T, proc.T), np.float32)
    det.run(zeros)
    if gen is not None:
        gen.run(
            zeros, np.zeros((batch, proc.T, proc.T), np.int64)
        ) if gen.needs_classes else gen.run(zeros)
    del zeros
    warmup = time.perf_counter() - t0
    lat = []
    done = 0

    def sink(out: Lines) -> None:  # what a writer does: touch every line once
        nonlocal done
        done += out.data.shape[1]
        out.data.sum(dtype=np.float64)

    cpu0 = _cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
    t_start = time.perf_counter()
    for r in range(0, lines, strip):
        n = min(strip, lines - r)
        i = r % (block.shape[1] - strip)
        t0 = time.perf_counter()
        proc.push(np.multiply(block[:, i : i + n], scale, dtype=np.float32), sink=sink)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    proc.flush(sink)
    lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    cpu = _cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - cpu0
    from .pipeline import peak_rss_mb

    # VmHWM: ru_maxrss would also count what the forking parent held before exec
    rss_kb = (peak_rss_mb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024) * 1024
    lat_a = np.array(lat[:-1]) if len(lat) > 1 else np.array(lat)
    rep = proc.report.to_dict()
    return {
        "profile": profile_name,
        "models": name,
        "providers": det.providers,
        "lines": lines,
        "width": width,
        "bands_in": len(prof.bands),
        "bands_model": len(det.contract.bands),
        "strip_lines": strip,
        "batch": batch,
        "worst_case": worst_case,
        "lines_out": done,
        "wall_s": wall,
        "warmup_s": warmup,
        "lines_per_s": lines / wall,
        "sensor_lines_per_s": prof.lines_per_s,
        "real_time_factor": lines / wall / prof.lines_per_s,
        **cpu_figures(cpu, lines, prof.lines_per_s),
        "mpx_per_s": lines * width / wall / 1e6,
        "samples_per_s": lines * width * len(prof.bands) / wall,
        "strip_latency_ms": {
            "p50": float(np.percentile(lat_a, 50) * 1e3),
            "p99": float(np.percentile(lat_a, 99) * 1e3),
            "max": float(lat_a.max() * 1e3),
        },
        "peak_rss_mb": rss_kb / 1024,
        "input_block_mb": block.nbytes / 2**20,
        "stage_seconds": rep["seconds"],
        "tiles": rep["tiles"],
        "tiles_generated": rep["tiles_removed"],
    }


def bench_stream(
    profile_name: str,
    lengths: list[int],
    strip: int = 64,
    models: str | None = None,
    threads: int | None = None,
    worst_case: bool = True,
    width: int | None = None,
    providers: list[str] | None = None,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Every pass length in its own subprocess (own peak RSS); returns the JSON document."""
    import tempfile

    prof = sensor_profile(profile_name)
    common = {
        "profile_name": profile_name,
        "strip": strip,
        "models": models,
        "threads": threads,
        "worst_case": worst_case,
        "width": width,
        "providers": providers,
        "batch": batch,
    }
    cases = []
    with tempfile.TemporaryDirectory(prefix="kumo-bench-") as tmp:
        block_path = os.path.join(tmp, "block.npy")
        np.save(block_path, _lines_source(profile_name, width or prof.width_px, BLOCK_LINES))
        for n in lengths:
            cases.append(pass_in_subprocess({**common, "lines": n, "block_path": block_path}))
    base = cases[0]["peak_rss_mb"]
    for c in cases:
        c["rss_growth_vs_first"] = c["peak_rss_mb"] / base - 1.0
    return {
        "benchmark": "stream",
        "environment": environment(threads),
        "cases": cases,
        "targets": {
            "real_time_factor": ">= 2 (satellogic-hsi, worst case)",
            "peak_rss_mb": "<= 500",
            "rss_growth_1k_to_100k": "<= 5 %",
        },
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_details() -> dict[str, Any]:
    """Family/model numbers, SIMD extensions and clock of the CPU: hosts that report the same
    model name differ (measured: the FP32 parent ran 2x slower on one such host than on another,
    the INT8 model 1.35x), so a benchmark records which one it ran on."""
    info: dict[str, Any] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    first = text.split("\n\n", 1)[0]
    fields = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split(":", 1) for ln in first.splitlines() if ":" in ln)
    )
    flags = set(fields.get("flags", "").split())
    simd = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")
    info["family_model_stepping"] = "/".join(
        fields.get(k, "?") for k in ("cpu family", "model", "stepping")
    )
    info["simd"] = [f for f in simd if f in flags]
    if "cpu MHz" in fields:
        info["mhz"] = float(fields["cpu MHz"])
    return info


def environment(threads: int | None = None) -> dict[str, Any]:
    """Date, versions, CPU (model, family/model/stepping, SIMD) and thread settings of a run:
    every benchmark, in the package and in the repository, records this one."""
    import numba
    import onnxruntime
    import rasterio

    from . import __version__

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_details": cpu_details(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "ort_threads": threads,
        "versions": {
            "kumo_edge": __version__,
            "numpy": np.__version__,
            "numba": numba.__version__,
            "onnxruntime": onnxruntime.__version__,
            "rasterio": rasterio.__version__,
        },
    }


def time_it(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median/p95/min seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "n": repeats,
        "median_s": statistics.median(times),
        "p95_s": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))],
        "min_s": times[0],
    }


def file_case_line(c: dict[str, Any]) -> str:
    """One line per pass of :func:`bench_file` (CLI and ``bench/stream.py`` print the same)."""
    fl = c.get("first_line_s")
    return (
        f"{c['mode']:>12} {c['lines']:>7} lines: RTF {c['real_time_factor']:.2f} "
        f"({c['lines_per_s']:.0f} lines/s), peak RSS {c['peak_rss_mb']:.0f} MB"
        + (f", first line {fl:.2f} s" if fl else "")
    )


def pass_in_subprocess(
    kwargs: dict[str, Any], python: str | None = None, root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """:func:`run_pass` in its own process (its peak RSS its own), by ``python`` (default this
    interpreter); ``root``: a checkout whose ``kumo_edge`` that process imports instead of the
    installed one (run from there, first on its path)."""
    args = json.dumps(kwargs)
    code = (
        "import json; from kumo_edge.benchmark import run_pass; "
        f"print(json.dumps(run_pass(**json.loads({args!r}))))"
    )
    env = None if root is None else {**os.environ, "PYTHONPATH": str(root)}
    p = subprocess.run(
        [python or sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env
    )
    if p.returncode != 0:
        err = p.stderr.strip()
        last = err.splitlines()[-1] if err else f"exit code {p.returncode}"
        n = kwargs["lines"]
        raise KumoError(f"benchmark pass of {n} lines failed: {last.split(': ', 1)[-1]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def alternating(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of every case, timed in ``repeats`` rounds that each call every case
    once, so that a slow phase of the machine hits all cases alike (ratios between cases come
    from one run). ``warmup`` untimed calls each first: the first run of a session plans and
    allocates."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def bench_models(
    bands: str | None = None,
    repeats: int = 20,
    threads: int | None = None,
    providers: list[str] | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    """Per-tile latency of the shipped models (every shipped set, or ``bands``), as installed:
    what to run on a Jetson with ``providers``. Rounds alternate between the models; medians.
    (The repository's ``python -m bench.models`` adds the unpruned FP32 parent, the pruned FP32
    model and full-size pix2pix, which need the ``train`` extra.)"""
    from .runtime import load_model, shipped_models

    sets = shipped_models()
    if bands is not None:
        if bands not in sets:
            raise KumoError(f"no shipped model set {bands!r}; shipped: {', '.join(sorted(sets))}")
        sets = {bands: sets[bands]}
    rng = np.random.default_rng(0)
    runs: dict[str, Any] = {}
    for name, files in sets.items():
        for kind, path in files.items():
            m = load_model(path, providers, threads)
            c = m.contract
            x = (rng.random((batch, len(c.bands), c.tile, c.tile)) * 0.4).astype(np.float32)
            runs[f"{name}/{kind}"] = (m, x)
    timed = alternating({k: (lambda m=m, x=x: m.run(x)) for k, (m, x) in runs.items()}, repeats)
    results = {}
    for key, (m, x) in runs.items():
        t = np.array(timed[key]) / x.shape[0]
        results[key] = {
            "median_ms": float(np.median(t) * 1e3),
            "p95_ms": float(np.percentile(t, 95) * 1e3),
            "tile": int(x.shape[2]),
            "batch": int(x.shape[0]),
            "precision": m.contract.precision,
            "providers": m.providers,
            "file_mb": m.path.stat().st_size / 2**20,
        }
    return {
        "benchmark": "models_shipped",
        "repeats": repeats,
        "threads": threads,
        "results": results,
    }


# -- the path users run: file to file, stdin to file ----------------------------------------
def write_input_file(
    path: str, profile_name: str, lines: int, width: int, layout: str = "tiled"
) -> str:
    """A cloudy uint16 GeoTIFF (reflectance x 10,000, scale and wavelengths declared) of
    ``lines`` lines: ``tiled`` (256 x 256 deflate) or ``striped`` (16-row strips, uncompressed),
    the two layouts the file-path benchmark runs."""
    import rasterio
    from rasterio.transform import from_origin

    prof = sensor_profile(profile_name)
    block = _lines_source(profile_name, width, BLOCK_LINES)
    kw: dict[str, Any] = dict(
        driver="GTiff", width=width, height=lines, count=len(prof.bands), dtype="uint16",
        crs="EPSG:32633", transform=from_origin(500_000, 6_000_000, prof.gsd_m, prof.gsd_m),
    )  # fmt: skip
    if layout == "tiled":
        kw.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    elif layout == "striped":
        kw.update(tiled=False, blockysize=16)
    else:
        raise KumoError(f"unknown layout {layout!r}: tiled or striped")
    with rasterio.open(path, "w", **kw) as ds:
        for b, (c, f) in enumerate(
            zip(prof.bands.centers_nm, prof.bands.fwhm_nm, strict=True), start=1
        ):
            ds.update_tags(b, wavelength=f"{c:.6g}", fwhm=f"{f:.6g}", wavelength_units="nm")
        ds.scales = (1.0 / DN_PER_REFLECTANCE,) * len(prof.bands)
        step = 64
        for r in range(0, lines, step):
            n = min(step, lines - r)
            i = r % (block.shape[1] - step)
            ds.write(block[:, i : i + n], window=((r, r + n), (0, width)))
    return path


def _bil_feeder(stream: Any, bil: np.ndarray, lines: int, step: int = 64) -> None:  # noqa: ANN401
    """Write ``lines`` lines of ``bil`` (``(lines, bands, width)``, C order; cyclically) to
    ``stream``, then close it: slices of memory, no conversion (a sensor's DMA costs the flight
    computer's cores nothing either)."""
    try:
        for r in range(0, lines, step):
            n = min(step, lines - r)
            i = r % (bil.shape[0] - step)
            stream.write(memoryview(bil[i : i + n]).cast("B"))
        stream.close()
    except (BrokenPipeError, OSError):
        pass


def run_cli_pass(
    mode: str,
    profile_name: str,
    lines: int,
    width: int,
    folder: str,
    models: str | None = None,
    threads: int | None = None,
    input_path: str | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """One ``kumo-edge run`` as users run it, in its own process: ``file`` (INPUT a GeoTIFF)
    or ``stdin`` (a BIL stream fed while it runs); outputs GeoTIFF + mask + report. Returns wall
    time, time to first output line, peak RSS of that process (``wait4``) and the report's
    stage times. ``python``: the interpreter that runs it (default this one), e.g. that of a
    flight install with only the runtime's dependencies."""
    import threading

    prof = sensor_profile(profile_name)
    out, mask, rep = (
        os.path.join(folder, f"{mode}_{n}") for n in ("out.tif", "mask.tif", "r.json")
    )
    for p in (out, mask, rep):
        if os.path.exists(p):
            os.unlink(p)
    args = [python or sys.executable, "-m", "kumo_edge.cli", "run"]
    if mode == "file":
        assert input_path is not None
        args += [input_path]
    else:
        args += ["-", "--profile", profile_name, "--bil-width", str(width), "--scale", "1e-4"]
    args += [out, "--mask", mask, "--report", rep]
    args += ["--models", models] if models else []
    args += ["--threads", str(threads)] if threads else []
    # the sensor's lines exist, line-interleaved, before the pass starts: made later, their
    # synthesis (1-2 s) would compete with the pass's start for the cores
    block = (
        np.ascontiguousarray(_lines_source(profile_name, width, BLOCK_LINES).transpose(1, 0, 2))
        if mode == "stdin"
        else None
    )
    t0 = time.time()
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if mode == "stdin" else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    feeder = None
    if block is not None:
        feeder = threading.Thread(target=_bil_feeder, args=(proc.stdin, block, lines), daemon=True)
        feeder.start()
    err = b""
    if proc.stderr is not None:
        err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if feeder is not None:
        feeder.join(timeout=10)
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise KumoError(f"kumo-edge run ({mode}, {lines} lines) failed: {last[0]}")
    report = json.loads(open(rep).read())
    sizes = {k: os.path.getsize(p) / 2**20 for k, p in (("output_mb", out), ("mask_mb", mask))}
    for p in (out, mask, rep):
        os.unlink(p)
    first = report.get("first_line_at")
    return {
        "mode": mode,
        "profile": profile_name,
        "lines": lines,
        "width": width,
        "bands_in": len(prof.bands),
        "models": report.get("models"),
        "output_dtype": report.get("output_dtype"),
        "wall_s": wall,
        "first_line_s": (first - t0) if first else None,
        "lines_per_s": lines / wall,
        "sensor_lines_per_s": prof.lines_per_s,
        "real_time_factor": lines / wall / prof.lines_per_s,
        # the child's own CPU time, every thread, start-up included
        **cpu_figures(_cpu_seconds(usage), lines, prof.lines_per_s),
        # VmHWM reported by the run itself: wait4's ru_maxrss also counts what this (forking)
        # process held before the child's exec (measured: 1.5 GB after writing a 20k-line input)
        "peak_rss_mb": report.get("peak_rss_mb") or usage.ru_maxrss / 1024,
        "stage_seconds": report["seconds"],
        "tiles": report["tiles"],
        "tiles_removed": report["tiles_removed"],
        **sizes,
    }


def interpreter_info(python: str | None = None) -> dict[str, Any]:
    """The interpreter that runs the passes and which optional packages it can import (numba
    imports SciPy when it is there; a flight install has none of these)."""
    exe = python or sys.executable
    code = (
        "import importlib.util as u, json; print(json.dumps([m for m in "
        "('scipy', 'torch', 'sklearn', 'skimage') if u.find_spec(m)]))"
    )
    p = subprocess.run([exe, "-c", code], capture_output=True, text=True)
    extra = json.loads(p.stdout) if p.returncode == 0 else None
    return {"python": exe, "optional_packages": extra}


def bench_file(
    profile_name: str,
    lengths: list[int],
    modes: tuple[str, ...] = ("memory", "file-tiled", "file-striped", "stdin"),
    models: str | None = None,
    threads: int | None = None,
    width: int | None = None,
    folder: str | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """The stream side by side in one run: in memory (:func:`run_pass`, no file), file to file
    (tiled deflate and striped inputs) and BIL on stdin to file, every pass in its own process,
    worst case (every tile cloudy in the synthetic input). ``python``: the interpreter of the
    passes (default this one; e.g. a flight install's, which lacks what the development
    environment adds: SciPy, which numba imports when present, costs ~0.15 s and ~15 MB per
    run). One untimed run comes first, so that every timed one is a second run (numba's
    cache filled, files in the page cache)."""
    import tempfile

    prof = sensor_profile(profile_name)
    width = width or prof.width_px
    cases = []
    with tempfile.TemporaryDirectory(prefix="kumo-bench-file-", dir=folder) as tmp:
        if any(m != "memory" for m in modes):
            run_cli_pass(
                "stdin", profile_name, BLOCK_LINES, width, tmp, models, threads, None, python
            )
        for n in lengths:
            for mode in modes:
                if mode == "memory":
                    c = pass_in_subprocess(
                        {"profile_name": profile_name, "lines": n, "models": models,
                         "threads": threads, "width": width, "worst_case": True}, python,
                    )  # fmt: skip
                    c = {**c, "mode": "memory"}
                elif mode.startswith("file-"):
                    layout = mode.split("-", 1)[1]
                    path = os.path.join(tmp, f"in_{layout}.tif")
                    # in a child process: GDAL's cache would otherwise grow this one
                    subprocess.run(
                        [sys.executable, "-c", "import sys; from kumo_edge.benchmark import "
                         "write_input_file as w; w(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
                         "int(sys.argv[4]), sys.argv[5])", path, profile_name, str(n), str(width), layout],
                        check=True,
                    )  # fmt: skip
                    c = run_cli_pass(
                        "file", profile_name, n, width, tmp, models, threads, path, python
                    )
                    c["mode"] = mode
                    os.unlink(path)
                elif mode == "stdin":
                    c = run_cli_pass(
                        "stdin", profile_name, n, width, tmp, models, threads, None, python
                    )
                else:
                    raise KumoError(f"unknown mode {mode!r}")
                cases.append(c)
    first = {c["mode"]: c["peak_rss_mb"] for c in cases if c["lines"] == lengths[0]}
    for c in cases:
        c["rss_growth_vs_first"] = c["peak_rss_mb"] / first[c["mode"]] - 1.0
    return {
        "benchmark": "stream_file",
        "environment": environment(threads),
        "interpreter": interpreter_info(python),
        "cases": cases,
        "targets": {
            "peak_rss_mb": "<= 400 at 1,000 lines, growth <= 5 % to 20,000 (file and stdin)",
            "real_time_factor": ">= 3 on the file path",
            "first_line_s": "<= 1.5 on a second run",
        },
    }
