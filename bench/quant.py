"""Which convolutions pay in INT8: the pruned generator of each band set in FP32, with every
Conv in INT8, and with the thin Convs (output x input channels <= 64) left in float.

    python -m bench.quant [--bands rgbn,hsi32,rgb] [--threads 1,2] [--json bench/results/quant.json]

Per-tile time on 256 x 256 tiles, one tile per call, in ``--blocks`` blocks of alternating
rounds (ratios from one run; each block's medians are kept to show the spread). Needs the
``train`` extra (the quantiser calibrates on the training scenes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json
from bench.models import ARTIFACTS
from export.quantize import FLOAT_CONVS_UPTO, calibration_batches, quantize_model
from kumo_edge.benchmark import alternating
from kumo_edge.runtime import load_model


def variants(bands: str, folder: Path) -> dict[str, Path]:
    fp = ARTIFACTS / bands / "generator_pruned_fp32.onnx"
    calib = calibration_batches(bands)
    return {
        "fp32": fp,
        "int8 every Conv": quantize_model(fp, folder / f"{bands}_all.onnx", calib),
        f"int8, thin Convs (<= {FLOAT_CONVS_UPTO}) in float": quantize_model(
            fp, folder / f"{bands}_thin.onnx", calib, float_convs_upto=FLOAT_CONVS_UPTO
        ),
    }


def run(bands: list[str], threads: list[int], repeats: int, blocks: int) -> dict:
    doc: dict = {"environment": environment(), "tile": 256, "results": {}}
    with tempfile.TemporaryDirectory() as td:
        for b in bands:
            files = variants(b, Path(td))
            for th in threads:
                models = {k: load_model(p, threads=th) for k, p in files.items()}
                n = len(models["fp32"].bands)
                x = np.random.default_rng(0).random((1, n, 256, 256), dtype=np.float32) * 0.5
                cases = {k: (lambda m=m, x=x: m.run(x)) for k, m in models.items()}
                per_block = []
                for _ in range(blocks):
                    t = alternating(cases, repeats)
                    per_block.append({k: float(np.median(v)) * 1e3 for k, v in t.items()})
                med = {k: float(np.median([pb[k] for pb in per_block])) for k in cases}
                doc["results"][f"{b}, {th} thread(s)"] = {"ms_median": med, "ms_blocks": per_block}
                print(b, th, {k: round(v, 2) for k, v in med.items()}, flush=True)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", default="rgbn,hsi32,rgb")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--json", type=Path, default=RESULTS / "quant.json")
    a = ap.parse_args()
    doc = run(a.bands.split(","), [int(t) for t in a.threads.split(",")], a.repeats, a.blocks)
    print(write_json(doc, a.json))


if __name__ == "__main__":
    main()
