"""``batch``: the ground side's archive batches (:mod:`kumo_edge.ground`, extra ``ground``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import KumoError
from ._base import (
    REMOVAL_PARAMS,
    _options,
    cli,
    handle_errors,
    model_options,
    raster_options,
    refuse_unused,
    removal_options,
)


@cli.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: per scene <scene>.tif, .mask.tif, .report.json, .item.json (STAC); "
    "catalog.json and batch.json for the batch.",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Dask workers of the local cluster (each processes one scene or line range at a time).",
)
@click.option(
    "--threads-per-worker",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Cores each worker's stream uses (ONNX Runtime and numba threads).",
)
@click.option(
    "--scheduler",
    metavar="ADDR",
    help="Use an existing Dask scheduler (tcp://host:port) instead of a local cluster; its "
    "workers must see INPUT and --out at the same paths and have kumo-edge installed.",
)
@click.option(
    "--retries",
    default=1,
    show_default=True,
    type=click.IntRange(0),
    help="Extra attempts of a task that crashed (bad input is recorded, not retried).",
)
@click.option(
    "--split-lines",
    type=click.IntRange(1),
    help="Cut passes longer than this many lines into line ranges for different workers; the "
    "stitched output equals a single stream's.",
)
@click.option("--detect-only", is_flag=True, help="Write masks and reports only (no removal).")
@removal_options
@model_options
@raster_options
@handle_errors
def batch(
    inputs: tuple[str, ...],
    out_dir: str,
    workers: int,
    threads_per_worker: int,
    scheduler: str | None,
    retries: int,
    split_lines: int | None,
    detect_only: bool,
    **opts: Any,
) -> None:
    """Process many scenes on Dask: files, folders, list files (one path per line) or STAC
    Catalogs / Items / ItemCollections (their 'data' asset).

    Each scene is the constant-memory stream of `kumo-edge run`; its STAC Item is written last
    and marks it complete: a re-run skips complete scenes (same input, settings and version)
    and does the rest. A scene that fails is recorded with its error; the others go on. Exit
    code 0 when every scene is done or skipped, 1 otherwise. Needs the ground extra
    (pip install 'kumo-edge[ground]').
    """
    if opts["bil_width"] or opts["bil_dtype"] != "uint16":
        raise click.UsageError("--bil-width and --bil-dtype apply to `run -`, not to batch")
    try:
        from ..ground import BatchOptions, run_batch
    except ImportError:
        raise KumoError(
            "kumo-edge batch needs the ground extra: pip install 'kumo-edge[ground]'"
        ) from None
    if detect_only:
        refuse_unused(REMOVAL_PARAMS, "removal options, unused with --detect-only")
    options = _options(not detect_only, {**opts, "overwrite": False})
    summary = run_batch(
        inputs,
        out_dir,
        options,
        BatchOptions(workers, threads_per_worker, scheduler, retries, split_lines),
    )
    click.echo(
        f"{summary['scenes']} scenes: {summary['done']} done, {summary['skipped']} skipped "
        f"(complete), {summary['failed']} failed in {summary['seconds']:.1f} s; "
        f"{Path(out_dir) / 'catalog.json'}, {Path(out_dir) / 'batch.json'}"
    )
    for r in summary["per_scene"]:
        if r["status"] == "failed":
            click.echo(f"  failed: {r['scene']}: {r['error']}", err=True)
    if summary["failed"]:
        raise SystemExit(1)
