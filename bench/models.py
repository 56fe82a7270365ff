"""Per-tile latency of the cloud-removal generators, in one run: full-size pix2pix (torch eager
and ONNX Runtime) vs our unpruned FP32 parent vs pruned FP32 vs pruned INT8 (the shipped model),
plus the detector.

    python -m bench.models --bands hsi32 [--json bench/results/models_hsi32.json] [--repeats 20] [--blocks 3]

ONNX Runtime runs on the CPU with ``intra_op_num_threads`` = --threads (default 2) on 256 x 256
tiles of reflectance, one tile per call (the headline) and the stream's batch (``DEFAULT_BATCH``
tiles per call, as ``kumo-edge run`` feeds the models), reported per tile. Cases are timed in
rounds that alternate between models and batches, and the ratios come from medians of this one
run. Quality figures (held-out PSNR/SAM before and after
compression) are read from the model cards written by ``export/release.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json
from kumo_edge.benchmark import alternating
from kumo_edge.config import DEFAULT_BATCH
from kumo_edge.physics import as_remover
from kumo_edge.runtime import load_model

ARTIFACTS = Path(__file__).resolve().parents[1] / "export" / "artifacts"
MODELS = Path(__file__).resolve().parents[1] / "kumo_edge" / "models"


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
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        dynamo=False,
    )
    return path


#: The shipped remover's row. A physics remover is timed with its analytic inversion and its
#: do-no-harm gate (``PhysicsRemover.run``), what the stream pays per tile.
SHIPPED = "generator_int8 (shipped)"


def _ratios(res: dict) -> dict[str, float]:
    ship = res.get(SHIPPED, {}).get("median_ms")
    keys = (
        "generator_parent_fp32",
        "generator_pruned_fp32",
        "physics_fp32",
        "cgan_pruned_int8 (previous)",
        "pix2pix_fullsize_fp32",
        "pix2pix_fullsize_torch_eager",
    )
    return {f"{k} / shipped": res[k]["median_ms"] / ship for k in keys if ship and k in res}


def run(
    bands: str,
    repeats: int = 20,
    threads: int = 2,
    tile: int = 256,
    batches: tuple[int, ...] = (1, DEFAULT_BATCH),
    n_blocks: int = 3,
) -> dict:
    art = ARTIFACTS / bands
    paths = {
        "generator_parent_fp32": art / "generator_parent_fp32.onnx",
        "generator_pruned_fp32": art / "generator_pruned_fp32.onnx",
        "physics_fp32": art / "physics_fp32.onnx",
        "cgan_pruned_int8 (previous)": art / "cgan_int8.onnx",
        SHIPPED: MODELS / bands / "generator.onnx",
        "detector_fp32": art / "detector_fp32.onnx",
        "detector_int8 (shipped)": MODELS / bands / "detector.onnx",
    }
    models = {k: as_remover(load_model(p, threads=threads)) for k, p in paths.items() if p.exists()}
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
            "M", (), {"run": staticmethod(lambda x: sess.run(None, {"x": x})[0])}
        )()
    rng = np.random.default_rng(0)
    xs = {b: rng.random((b, n_bands, tile, tile), dtype=np.float32) * 0.5 for b in batches}
    cases = {(k, b): (lambda m=m, x=x: m.run(x)) for b, x in xs.items() for k, m in models.items()}
    torch_info = None
    try:
        import torch

        from export.nets import Pix2PixUNet, count_macs

        torch.set_num_threads(threads)
        p2p = Pix2PixUNet(n_bands, n_bands).eval()

        def eager(xt: torch.Tensor) -> None:
            with torch.no_grad():
                p2p(xt)

        for b, x in xs.items():
            xt = torch.from_numpy(x)
            cases[("pix2pix_fullsize_torch_eager", b)] = lambda xt=xt: eager(xt)
        torch_info = {
            "torch": torch.__version__,
            "pix2pix_gmac_per_tile": count_macs(p2p, (1, n_bands, tile, tile)) / 1e9,
            "pix2pix_params": sum(p.numel() for p in p2p.parameters()),
        }
    except ImportError:
        pass
    # several blocks of alternating rounds, minutes apart: the host's speed drifts (measured on
    # one day: the INT8 models' per-tile time moved 1.5x between runs, the FP32 parent's far
    # less), so each block's ratio is kept to show the spread; medians pool all rounds
    blocks = [alternating(cases, repeats) for _ in range(max(1, n_blocks))]
    times = {k: [t for blk in blocks for t in blk[k]] for k in cases}
    spread: dict[str, dict[str, list[float]]] = {}
    for b in batches:
        per_block = [
            _ratios(
                {k: {"median_ms": float(np.median(blk[(k, bb)]))} for (k, bb) in blk if bb == b}
            )
            for blk in blocks
        ]
        spread[str(b)] = {k: [r[k] for r in per_block] for k in per_block[0]}
    by_batch: dict[int, dict] = {b: {} for b in batches}
    for (k, b), ts in times.items():
        a = np.sort(np.array(ts)) / b  # per tile
        r = {
            "n": len(a),
            "median_ms": float(np.median(a) * 1e3),
            "p95_ms": float(a[int(0.95 * (len(a) - 1))] * 1e3),
        }
        if k in paths and paths[k].exists() and k != "pix2pix_fullsize_fp32":
            r["file_mb"] = paths[k].stat().st_size / 1e6
            r["mpx_per_s"] = tile * tile / float(np.median(a)) / 1e6
        by_batch[b][k] = r
    res = by_batch[batches[0]]
    ratios = _ratios(res)
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
        "config": {
            "tile": tile,
            "batch": batches[0],
            "batches": list(batches),
            "repeats": repeats,
            "blocks": n_blocks,
        },
        "results": res,
        "ratios": ratios,
        # the stream runs DEFAULT_BATCH tiles per call: per-tile figures at that batch too
        "by_batch": {
            str(b): {"results": r, "ratios": _ratios(r), "ratios_per_block": spread[str(b)]}
            for b, r in by_batch.items()
        },
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
    ap.add_argument("--repeats", type=int, default=20, help="alternating rounds per block")
    ap.add_argument("--blocks", type=int, default=3, help="blocks of rounds, run one after another")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--batches",
        default=f"1,{DEFAULT_BATCH}",
        help="tiles per call to time, comma-separated; the first is the headline "
        f"[1,{DEFAULT_BATCH}: single tiles and the stream's batch]",
    )
    a = ap.parse_args()
    batches = tuple(dict.fromkeys(int(b) for b in a.batches.split(",")))
    doc = run(a.bands, a.repeats, a.threads, batches=batches, n_blocks=a.blocks)
    path = write_json(doc, a.json or RESULTS / f"models_{a.bands}.json")
    for k, r in doc["results"].items():
        print(
            f"{k:<34} {r['median_ms']:8.2f} ms/tile  (p95 {r['p95_ms']:.2f})"
            + (f"  {r['file_mb']:.2f} MB" if "file_mb" in r else "")
        )
    for b, d in doc["by_batch"].items():
        for k, v in d["ratios"].items():
            blocks = ", ".join(f"{r:.2f}" for r in d["ratios_per_block"][k])
            print(f"batch {b}: {k:<45} {v:5.2f}x  (blocks: {blocks})")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
