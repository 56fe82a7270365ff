"""Per-tile latency of the cloud-removal generators, in one run: full-size pix2pix (torch eager
and ONNX Runtime) vs our unpruned FP32 parent vs pruned FP32 vs pruned INT8 (the shipped model),
plus the detector.

    python -m bench.models --bands hsi32 [--json bench/results/models_hsi32.json] [--repeats 20]

ONNX Runtime runs on the CPU with ``intra_op_num_threads`` = --threads (default 2), batch 1,
one 256 x 256 tile of reflectance. Cases are timed in rounds that alternate between models, and
the ratios come from medians of this one run. Quality figures (held-out PSNR/SAM before and after
compression) are read from the model cards written by ``export/release.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json
from kumo_edge.runtime import load_model

ARTIFACTS = Path(__file__).resolve().parents[1] / "export" / "artifacts"
MODELS = Path(__file__).resolve().parents[1] / "kumo_edge" / "models"


def _timer(fn, x):  # noqa: ANN001, ANN202
    def run() -> float:
        t0 = time.perf_counter()
        fn(x)
        return time.perf_counter() - t0

    return run


def _pix2pix_onnx(n_bands: int, folder: Path, tile: int) -> Path | None:
    """The full-size pix2pix U-Net (random weights: only its speed matters) as ONNX; None
    without torch. Built on the fly: at 54 M parameters it is too large to commit."""
    try:
        import torch

        from export.nets import Pix2PixUNet
    except ImportError:
        return None
    net = Pix2PixUNet(n_bands, n_bands).eval()
    path = folder / "pix2pix.onnx"
    torch.onnx.export(
        net,
        torch.zeros(1, n_bands, tile, tile),
        str(path),
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
    )
    return path


def run(bands: str, repeats: int = 20, threads: int = 2, tile: int = 256) -> dict:
    art = ARTIFACTS / bands
    paths = {
        "generator_parent_fp32": art / "generator_parent_fp32.onnx",
        "generator_pruned_fp32": art / "generator_pruned_fp32.onnx",
        "generator_pruned_int8 (shipped)": MODELS / bands / "generator.onnx",
        "detector_fp32": art / "detector_fp32.onnx",
        "detector_int8 (shipped)": MODELS / bands / "detector.onnx",
    }
    models = {k: load_model(p, threads=threads) for k, p in paths.items() if p.exists()}
    if not models:
        raise SystemExit(
            f"no models for band set {bands!r} in {art} or {MODELS / bands}; run export/release.py first"
        )
    n_bands = len(next(iter(models.values())).contract.bands)
    tmp = tempfile.TemporaryDirectory()
    p2p_onnx = _pix2pix_onnx(n_bands, Path(tmp.name), tile)
    if p2p_onnx is not None:
        paths["pix2pix_fullsize_fp32"] = p2p_onnx
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "0"
        )  # as kumo_edge.runtime does
        sess = ort.InferenceSession(str(p2p_onnx), so, providers=["CPUExecutionProvider"])
        models["pix2pix_fullsize_fp32"] = type(
            "M", (), {"run": staticmethod(lambda b: sess.run(None, {"x": b})[0])}
        )()
    x = np.random.default_rng(0).random((1, n_bands, tile, tile), dtype=np.float32) * 0.5
    cases = {k: _timer(m.run, x) for k, m in models.items()}
    torch_info = None
    try:
        import torch

        from export.nets import Pix2PixUNet, count_macs

        torch.set_num_threads(threads)
        p2p = Pix2PixUNet(n_bands, n_bands).eval()
        xt = torch.from_numpy(x)

        def eager(_x: object) -> None:
            with torch.no_grad():
                p2p(xt)

        cases["pix2pix_fullsize_torch_eager"] = _timer(eager, x)
        torch_info = {
            "torch": torch.__version__,
            "pix2pix_gmac_per_tile": count_macs(p2p, tuple(x.shape)) / 1e9,
            "pix2pix_params": sum(p.numel() for p in p2p.parameters()),
        }
    except ImportError:
        pass
    for fn in cases.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            times[k].append(fn())
    res = {}
    for k, ts in times.items():
        a = np.sort(np.array(ts))
        res[k] = {
            "n": len(a),
            "median_ms": float(np.median(a) * 1e3),
            "p95_ms": float(a[int(0.95 * (len(a) - 1))] * 1e3),
        }
        if k in paths and paths[k].exists() and k != "pix2pix_fullsize_fp32":
            res[k]["file_mb"] = paths[k].stat().st_size / 1e6
            res[k]["mpx_per_s"] = tile * tile / (np.median(a)) / 1e6
    ship = res.get("generator_pruned_int8 (shipped)", {}).get("median_ms")
    ratios = {}
    if ship:
        for k in (
            "generator_parent_fp32",
            "generator_pruned_fp32",
            "pix2pix_fullsize_fp32",
            "pix2pix_fullsize_torch_eager",
        ):
            if k in res:
                ratios[f"{k} / shipped"] = res[k]["median_ms"] / ship
    cards = {}
    for kind in ("generator", "detector"):
        card = MODELS / bands / f"{kind}.json"
        if card.exists():
            cards[kind] = json.loads(card.read_text()).get("metrics", {})
    tmp.cleanup()
    return {
        "benchmark": "models",
        "bands": bands,
        "environment": {
            **environment(),
            "ort_threads": threads,
            **({"torch": torch_info} if torch_info else {}),
        },
        "config": {"tile": tile, "batch": 1, "repeats": repeats},
        "results": res,
        "ratios": ratios,
        "quality_from_cards": cards,
        "targets": {
            "shipped vs parent": ">= 3x",
            "shipped vs full-size pix2pix": ">= 5x",
            "generator file": "<= 5 MB",
            "detector file": "<= 1 MB",
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", default="hsi32")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    doc = run(a.bands, a.repeats, a.threads)
    path = write_json(doc, a.json or RESULTS / f"models_{a.bands}.json")
    for k, r in doc["results"].items():
        print(
            f"{k:<34} {r['median_ms']:8.2f} ms/tile  (p95 {r['p95_ms']:.2f})"
            + (f"  {r['file_mb']:.2f} MB" if "file_mb" in r else "")
        )
    for k, v in doc["ratios"].items():
        print(f"{k:<45} {v:5.2f}x")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
