"""Stream benchmark: real-time factor, per-strip latency, throughput and peak memory of a pass,
with the shipped models, for any sensor profile. Importable without the repository (so it runs
on a Jetson from the installed package): ``kumo-edge bench stream``.

The input is generated before the timed loop (no disk I/O in it): a block of 192 lines of smooth
random spectra in the sensor's band set with synthetic clouds over the whole swath, pushed
cyclically. Peak RSS includes that block (``input_block_mb``), as a sensor's line buffer would. ``--worst-case`` (default) sends
every tile through the generator whatever the detector says, the case the real-time target is
defined for. Each pass length runs in its own subprocess so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

from .clouds import CloudField, CloudParams
from .config import sensor_profile
from .errors import KumoError


def _lines_source(profile_name: str, width: int, block: int, seed: int = 0) -> np.ndarray:
    """A cloudy block of ``block`` lines, reused cyclically (generation stays out of the timing)."""
    prof = sensor_profile(profile_name)
    bands = prof.bands
    rng = np.random.default_rng(seed)
    lam = (bands.centers.astype(np.float32) - 400) / 600
    spectra = np.stack(
        [0.05 + 0.1 * lam, 0.04 + 0.35 * np.clip(lam - 0.45, 0, 1)]
    )  # soil-ish, vegetation-ish
    field = CloudField(CloudParams(cover=0.7, thickness=0.6, gsd_m=prof.gsd_m), block, width, seed)
    out = np.empty((len(bands), block, width), np.float32)
    for r in range(0, block, 16):  # in strips: the synthesis temporaries stay small
        n = min(16, block - r)
        yy, xx = np.mgrid[r : r + n, 0:width].astype(np.float32)
        spatial = 0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
        cube = (
            spectra[0][:, None, None] * (1 - spatial) + spectra[1][:, None, None] * spatial
        ).astype(np.float32)
        cube = np.clip(cube + rng.normal(0, 0.003, cube.shape).astype(np.float32), 0, 1)
        out[:, r : r + n] = field.apply(cube, bands, row0=r).cloudy
    return out


def run_pass(
    profile_name: str,
    lines: int,
    strip: int = 64,
    models: str | None = None,
    threads: int | None = None,
    worst_case: bool = True,
    width: int | None = None,
    providers: list[str] | None = None,
) -> dict[str, Any]:
    """One pass in this process; returns timings and peak RSS."""
    from .pipeline import load_models
    from .stream import StreamConfig, StreamProcessor

    prof = sensor_profile(profile_name)
    width = width or prof.width_px
    det, gen, name = load_models(models, prof.bands, providers, threads)
    block = _lines_source(profile_name, width, 192)
    proc = StreamProcessor(
        width, prof.bands, det, gen, StreamConfig(min_fraction=0.0 if worst_case else 0.01)
    )
    lat = []
    done = 0
    t_start = time.perf_counter()
    for r in range(0, lines, strip):
        n = min(strip, lines - r)
        i = r % (block.shape[1] - strip)
        t0 = time.perf_counter()
        out = proc.push(block[:, i : i + n])
        lat.append(time.perf_counter() - t0)
        done += sum(o.data.shape[1] for o in out)
    t0 = time.perf_counter()
    done += sum(o.data.shape[1] for o in proc.flush())
    lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
        "worst_case": worst_case,
        "lines_out": done,
        "wall_s": wall,
        "lines_per_s": lines / wall,
        "sensor_lines_per_s": prof.lines_per_s,
        "real_time_factor": lines / wall / prof.lines_per_s,
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
) -> dict[str, Any]:
    """Every pass length in its own subprocess (own peak RSS); returns the JSON document."""
    import numba
    import onnxruntime

    from . import __version__

    cases = []
    for n in lengths:
        args = json.dumps(
            {
                "profile_name": profile_name,
                "lines": n,
                "strip": strip,
                "models": models,
                "threads": threads,
                "worst_case": worst_case,
                "width": width,
                "providers": providers,
            }
        )
        code = f"import json,sys; from kumo_edge.benchmark import run_pass; print(json.dumps(run_pass(**json.loads({args!r}))))"
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if p.returncode != 0:
            last = (
                p.stderr.strip().splitlines()[-1]
                if p.stderr.strip()
                else f"exit code {p.returncode}"
            )
            raise KumoError(f"benchmark pass of {n} lines failed: {last.split(': ', 1)[-1]}")
        cases.append(json.loads(p.stdout.strip().splitlines()[-1]))
    base = cases[0]["peak_rss_mb"]
    for c in cases:
        c["rss_growth_vs_first"] = c["peak_rss_mb"] / base - 1.0
    return {
        "benchmark": "stream",
        "environment": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "kumo_edge": __version__,
            "onnxruntime": onnxruntime.__version__,
            "numba": numba.__version__,
            "numba_threads": numba.get_num_threads(),
            "ort_threads": threads,
        },
        "cases": cases,
        "targets": {
            "real_time_factor": ">= 2 (satellogic-hsi, worst case)",
            "peak_rss_mb": "<= 500",
            "rss_growth_1k_to_100k": "<= 5 %",
        },
    }
