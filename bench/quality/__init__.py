"""The quality report: does hyperspectral beat multispectral and RGB, and does the cGAN beat
classical cloud removal? Regenerates every number and figure of docs/results.md.

    python -m bench.quality            # JSON in bench/results/quality.json, PNGs, docs/results.md
    python -m bench.quality --tiles 48 # fewer tiles (faster, wider intervals)

Needs the repository (``export/`` for the held-out splits and ../shared/data for the scenes;
torch only to export the band-set study checkpoints to ONNX the first time). Every model is run
through ONNX Runtime, as the flight runtime runs it.

Sections:
1. **Methods** (synthetic clouds on the held-out test scenes of each shipped band set): cloudy
   input, HOT, harmonic inpainting (both from the shipped detector's classes), the cGAN FP32
   parent and the shipped pruned INT8 generator, both blended in by the detector's
   probabilities as the stream does, and the raw INT8 output. PSNR/SSIM/SAM per tile, thick-cloud pixels
   (unrecoverable, flagged by the runtime) left out; 95 % bootstrap intervals over tiles, and
   per-pixel-thickness bins.
2. **Band sets**: one generator architecture and budget trained on the same scene
   (hydice_urban) with the same cloud fields in hsi32, rgbn and rgb (``python -m export.recipe
   --bands study``), tested on the ROSIS crop: full bands, and the visible bands common to all
   three (every output and truth resampled to the rgb band set).
3. **Detector**: shipped detectors on held-out synthetic tiles and held-out real L8 Biome
   patches (per land type), CNN vs the bright-and-white threshold test, pixel and tile level.
4. **Real clouds**: RICE2 cloudy/clear RGB pairs (the clear image is another date), the L8
   Biome test patches (change where the truth mask says clear), the real cloudy Sentinel-2
   patch (figure with its cirrus band).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench._common import RESULTS, environment, write_json
from bench.quality.bandsets import band_study
from bench.quality.common import DOCS, TAU_BINS, bootstrap, per_bin, per_tile
from bench.quality.detector import detector_experiments, detector_report, snow_vs_ice_cloud
from bench.quality.methods import method_comparison, tile_size_check
from bench.quality.real import l8_removal, rice2
from bench.quality.report import figures, results_md
from export.train import band_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=96, help="synthetic tiles per evaluation")
    ap.add_argument("--json", type=Path, default=RESULTS / "quality.json")
    a = ap.parse_args()
    t0 = time.time()
    doc: dict = {"benchmark": "quality", "environment": environment(), "methods": {}}
    examples: dict = {}
    for b in ("hsi32", "rgbn"):
        print(f"methods {b} ...", flush=True)
        doc["methods"][b], preds, t = method_comparison(b, a.tiles, 96)
        if b == "rgbn":
            examples["methods"] = (preds, t, band_set(b))
    print("tile sizes ...", flush=True)
    doc["tile_sizes"] = {
        b: tile_size_check(b, sizes, max(a.tiles // 2, 16))
        for b, sizes in (
            ("hsi32", (64, 96)),
            ("rgbn", (64, 96, 128, 256)),
            ("rgb", (64, 96, 128, 256)),
        )
    }
    print("band sets ...", flush=True)
    doc["band_sets"], examples["study"] = band_study(a.tiles, 96)
    print("detector ...", flush=True)
    doc["detector"] = detector_report(a.tiles)
    doc["detector_experiments"] = detector_experiments(a.tiles)
    doc["snow_vs_ice_cloud"] = snow_vs_ice_cloud()
    print("real clouds ...", flush=True)
    doc["rice2"], examples["rice2"] = rice2()
    doc["l8_real"], examples["l8"] = l8_removal()
    doc["seconds"] = time.time() - t0
    write_json(doc, a.json)
    for p in figures(doc, examples, a.json.parent):
        print("wrote", p)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "results.md").write_text(results_md(doc))
    print(f"wrote {a.json} and {DOCS / 'results.md'} in {doc['seconds']:.0f} s")


__all__ = ["TAU_BINS", "bootstrap", "main", "per_bin", "per_tile"]
