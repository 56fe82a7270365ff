"""``demo``: the whole pipeline on the bundled sample scene."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from ..bands import resampling_matrix
from ..clouds import CloudParams
from ..io import (
    FLOAT_NODATA,
    Raster,
    check_output_path,
)
from ..render import write_side_by_side
from ._base import (
    _summary,
    cli,
    handle_errors,
    sample_scene_path,
)
from .data import synthesize_raster


@cli.command()
@click.option(
    "--out",
    "outdir",
    default="kumo-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
@click.option(
    "--seed", default=7, show_default=True, type=int, help="Seed of the synthetic clouds."
)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime threads.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs in --out.")
@handle_errors
def demo(outdir: str, seed: int, threads: int | None, overwrite: bool) -> None:
    """Run the whole pipeline on the bundled sample scene.

    Synthesises clouds and shadows over the real Landsat-7 sample, streams the cloudy scene
    through the runtime (detector + cloud removal, rgbn models), writes every output and a
    side-by-side PNG (cloudy / cleaned / truth / detected mask), and prints PSNR and SAM before
    and after against the clear scene.
    """
    from .. import metrics
    from ..bands import resample
    from ..pipeline import load_models, raster_chunks, run_stream
    from ..stream import StreamConfig

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = {k: out / f"{k}.tif" for k in ("cloudy", "truth", "tau550", "cleaned", "mask")}
    report_p = out / "report.json"
    for p in [*paths.values(), report_p, out / "demo.png"]:
        check_output_path(p, overwrite)
    with Raster(sample_scene_path()) as r:
        params = CloudParams(cover=0.45, thickness=1.2, gsd_m=abs(r.transform.a), feature_px=64)
        fr = synthesize_raster(
            r, paths["cloudy"], paths["truth"], paths["tau550"], params, seed, overwrite
        )
        clear = np.concatenate([s.data for s in r.strips()], axis=1)
        valid = r.valid_mask()
        bands = r.bands
    with Raster(paths["cloudy"], nodata=FLOAT_NODATA) as c:
        det, gen, name = load_models("rgbn", c.bands, None, threads)
        geo = {"crs": c.crs, "transform": c.transform}
        rep = run_stream(
            raster_chunks(c, 128),
            c.width,
            c.bands,
            det,
            gen,
            StreamConfig(),
            paths["cleaned"],
            paths["mask"],
            report_p,
            c.height,
            geo,
            overwrite,
            None,
            {"input": str(paths["cloudy"]), "models": name},
        )
        cloudy = c.read_strip(0, c.height).data
    model_bands = det.contract.bands
    m = resampling_matrix(bands, model_bands)
    clear_m, cloudy_m = resample(clear, m), resample(cloudy, m)
    with Raster(paths["cleaned"]) as c:
        cleaned = c.read_strip(0, c.height).data
    with Raster(paths["truth"], nodata=None) as t:
        truth = t.read_raw(0, t.height)[0]
    with Raster(paths["mask"], nodata=None) as t:
        detected = t.read_raw(0, t.height)[0]
    write_side_by_side(
        out / "demo.png",
        [cloudy_m, cleaned],
        truth,
        model_bands,
        overwrite=True,
        extra_mask=detected,
        titles=["cloudy input", "cleaned", "true classes", "detected classes"],
    )
    keep = valid & (truth != 3)
    dt = time.perf_counter() - t0
    click.echo(
        f"sample scene: {sample_scene_path().name}, {clear.shape[2]} x {clear.shape[1]} px, {clear.shape[0]} bands -> models {name} ({len(model_bands)} bands)"
    )
    click.echo("  synthetic cover: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in fr.items()))
    click.echo(
        f"  before (cloudy vs clear): PSNR {metrics.psnr(cloudy_m, clear_m, mask=keep):.2f} dB, SAM {metrics.sam(cloudy_m, clear_m, mask=keep):.2f} deg"
    )
    click.echo(
        f"  after (cleaned vs clear): PSNR {metrics.psnr(cleaned, clear_m, mask=keep):.2f} dB, SAM {metrics.sam(cleaned, clear_m, mask=keep):.2f} deg"
        "  (valid pixels outside thick cloud)"
    )
    click.echo("  " + _summary(rep))
    click.echo(
        f"  outputs in {out}/: cloudy.tif truth.tif tau550.tif cleaned.tif mask.tif report.json demo.png  ({dt:.1f} s)"
    )
