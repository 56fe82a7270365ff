"""How well the detector's real-patch accuracy holds up across splits: k-fold cross-validation
over the 28 labelled Landsat-8 Biome patches (folds stratified by land type), one detector
trained per fold with the shipped recipe, FP32 export evaluated on the fold's held-out patches.

    python -m bench.detector_cv --bands rgbn [--folds 4] [--steps 3000] [--jobs 2]

Each fold trains ``kumo-edge-train detector --real-test <fold> --real-val <4 of the next fold>``
(``runs/cv_<bands>_<k>``; ~15 min per fold on one core), then every patch is scored once, as a
test patch of its own fold. Writes ``bench/results/detector_cv_<bands>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench._common import RESULTS, ROOT, environment, run_jobs, write_json
from export.data import patch_cube, real_cloud_patches
from export.onnx_export import export_checkpoint
from kumo_edge import metrics
from kumo_edge.runtime import load_model


def folds(names: list[str], k: int) -> list[list[str]]:
    """Round-robin over the patches sorted by land type: every fold gets every land type that
    has at least ``k`` patches."""
    out: list[list[str]] = [[] for _ in range(k)]
    for i, n in enumerate(sorted(names)):
        out[i % k].append(n)
    return out


def train_fold(
    bands: str, k: int, test: list[str], val: list[str], steps: int, extra: list[str]
) -> tuple[Path, tuple[list[str], Path] | None]:
    """The fold's run folder and, unless it already trained to ``steps``, its training job."""
    out = ROOT / "runs" / f"cv_{bands}_{k}"
    if (out / "best.pt").exists() and (out / "log.jsonl").exists():
        done = (out / "log.jsonl").read_text().strip().splitlines()
        if done and f'"step": {steps},' in done[-1]:
            return out, None
    argv = [
        sys.executable, "-m", "export.train", "detector", "--bands", bands,
        "--steps", str(steps), "--threads", "1", "--out", str(out),
        "--real-test", ",".join(test), "--real-val", ",".join(val), *extra,
    ]  # fmt: skip
    return out, (argv, ROOT / "runs" / f"cv_{bands}_{k}.log")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", default="rgbn")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--jobs", type=int, default=2, help="folds trained at once (one core each)")
    ap.add_argument(
        "--ignore-tau", default="0.02,0.08", help="as kumo-edge-train [shipped: 0.02,0.08]"
    )
    a = ap.parse_args()
    patches = {p["name"]: p for p in real_cloud_patches()}
    fs = folds(list(patches), a.folds)
    plan = [(k, fs[k], fs[(k + 1) % a.folds][:4]) for k in range(a.folds)]
    jobs = []
    outs = {}
    for k, test, val in plan:
        out, job = train_fold(a.bands, k, test, val, a.steps, ["--ignore-tau", a.ignore_tau])
        outs[k] = out
        if job:
            jobs.append(job)
    try:
        run_jobs(jobs, a.jobs)
    except RuntimeError as exc:
        raise SystemExit(f"fold training failed: {exc}") from None
    per: dict = {}
    pred_all, truth_all = [], []
    for k, test, _ in plan:
        m = load_model(export_checkpoint(outs[k] / "best.pt", outs[k] / "detector_fp32.onnx"))
        for name in test:
            p = patches[name]
            x = patch_cube(p, m.bands)[None]
            ok = p["classes"] >= 0
            pred = np.isin(m.classify(m.run(x))[0], (1, 2))[ok]
            truth = np.isin(p["classes"], (1, 2))[ok]
            c = metrics.detection(pred, truth)
            per[name] = {
                "fold": k,
                "cloud_fraction": float(truth.mean()),
                "accuracy": c.accuracy,
                "false_positive_rate": c.false_positive_rate,
            }
            pred_all.append(pred)
            truth_all.append(truth)
    d = metrics.detection(np.concatenate(pred_all), np.concatenate(truth_all))
    accs = {n: v["accuracy"] for n, v in per.items()}
    doc = {
        "benchmark": "detector_cv",
        "bands": a.bands,
        "folds": [{"fold": k, "test": t, "val": v} for k, t, v in plan],
        "steps": a.steps,
        "ignore_tau": a.ignore_tau,
        "all_patches": {
            "accuracy": d.accuracy,
            "false_positive_rate": d.false_positive_rate,
            "f1": d.f1,
            "pixels": d.n,
        },
        "patch_accuracy_median": float(np.median(list(accs.values()))),
        "patches_below_0.92": sorted(n for n, v in accs.items() if v < 0.92),
        "per_patch": per,
        "environment": environment(),
    }
    path = write_json(doc, RESULTS / f"detector_cv_{a.bands}.json")
    print(f"all {len(per)} patches: accuracy {d.accuracy:.3f}, FPR {d.false_positive_rate:.3f}")
    for n, v in sorted(per.items()):
        print(
            f"  fold {v['fold']} {n:22s} cloud {v['cloud_fraction']:.2f}  "
            f"acc {v['accuracy']:.3f}  FPR {v['false_positive_rate']:.3f}"
        )
    print(path)


if __name__ == "__main__":
    main()
