"""Shared benchmark plumbing of the repository's benchmarks: paths, JSON output, plots, jobs.
The timing and the environment record are the installed package's
(:mod:`kumo_edge.benchmark`), so ``kumo-edge bench`` on a flight computer and ``bench/`` here
measure and describe a run the same way."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from kumo_edge.benchmark import cpu_details, cpu_model, environment, time_it  # noqa: F401

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def write_json(doc: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def clear_changes(per_patch: dict, name: str) -> list[float]:
    """From a per-patch result (``{patch: {remover: {"clear_change": ...}}}``): the clear-pixel
    changes of remover ``name`` over the patches that have clear pixels."""
    return [
        v[name]["clear_change"] for v in per_patch.values() if v[name]["clear_change"] is not None
    ]


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


def bootstrap(
    values: np.ndarray, n: int = 2000, seed: int = 0, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Mean and 95 % percentile-bootstrap interval over the entries of ``values`` (resampled
    whole); with ``weights`` the weighted mean, each resample weighted by its entries' weights
    (e.g. per-patch accuracies weighted by pixels: the pooled accuracy, patches resampled)."""
    v = np.asarray(values, float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(v) & (w > 0)
    v, w = v[ok], w[ok]
    if len(v) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(v), (n, len(v)))
    means = (v[i] * w[i]).sum(1) / w[i].sum(1)
    return {
        "mean": float((v * w).sum() / w.sum()),
        "lo": float(np.percentile(means, 2.5)),
        "hi": float(np.percentile(means, 97.5)),
        "n": int(len(v)),
    }


def fmt_ci(ci: dict[str, Any] | None, digits: int = 2) -> str:
    """``mean [lo, hi]`` of a bootstrap interval (``n/a`` when empty)."""
    if not ci or not ci.get("n"):
        return "n/a"
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"


def file_bench_args(
    doc: str | None, lines: int, width: int, rounds: int, json: Path
) -> argparse.ArgumentParser:
    """The arguments of a benchmark that times rounds on a generated file: its size, the
    rounds and the result file, with these defaults; ``doc`` (the module docstring) gives the
    description."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--lines", type=int, default=lines, help="lines of the generated file")
    ap.add_argument("--width", type=int, default=width, help="pixels per line")
    ap.add_argument("--rounds", type=int, default=rounds, help="timed rounds per case")
    ap.add_argument("--json", type=Path, default=json, help="result file")
    return ap


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
