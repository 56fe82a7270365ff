"""Shared benchmark plumbing: environment record, timing with warm-up, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


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


def environment() -> dict[str, Any]:
    """Versions, CPU and thread settings of this run."""
    import numba
    import onnxruntime
    import rasterio

    import kumo_edge

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_details": cpu_details(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "versions": {
            "kumo_edge": kumo_edge.__version__,
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


def write_json(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def pyplot():  # noqa: ANN201
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed (plots are
    optional; the JSON is the result)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path: Path) -> Path:  # noqa: ANN001
    """Lay out, save as PNG at 110 dpi, close."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def fmt_ci(ci: dict[str, Any] | None, digits: int = 2) -> str:
    """``mean [lo, hi]`` of a bootstrap interval (``n/a`` when empty)."""
    if not ci or not ci.get("n"):
        return "n/a"
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"


def run_jobs(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run ``(argv, log)`` commands from the repository root, ``parallel`` at a time (training
    folds, one core each); any failure raises with its log named."""
    running: list[tuple[subprocess.Popen, object, Path]] = []

    def wait_one() -> None:
        proc, fh, log = running.pop(0)
        rc = proc.wait()
        fh.close()  # type: ignore[attr-defined]
        if rc:
            raise RuntimeError(f"job failed (rc {rc}); see {log}")

    for argv, log in jobs:
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "w")  # noqa: SIM115 - closed in wait_one
        running.append(
            (subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT), fh, log)
        )
        while len(running) >= parallel:
            wait_one()
    while running:
        wait_one()
