"""``run`` and ``detect``: one pass, file or stdin, through :func:`kumo_edge.process.process`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._base import (
    _echo_summary,
    _options,
    _run,
    cli,
    handle_errors,
    model_options,
    raster_options,
    removal_options,
)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("output", type=click.Path())
@click.option(
    "--mask",
    type=click.Path(),
    help="Also write the uint8 class mask here (0 no data, 1 clear, 2 thin, 3 thick, 4 shadow).",
)
@click.option(
    "--report",
    type=click.Path(),
    help="Write the JSON report (per-tile cloud fraction and decision, timings) here.",
)
@removal_options
@model_options
@raster_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@handle_errors
def run(input_path: str, output: str, mask: str | None, report: str | None, **opts: Any) -> None:
    """Detect clouds in INPUT and remove thin clouds and shadows, streaming, into OUTPUT.

    INPUT is a raster file, or '-' for a raw band-interleaved-by-line stream on stdin (give
    --profile or --bil-width and --wavelengths). OUTPUT is a compressed GeoTIFF in the models'
    band set, georeferenced like INPUT, written in 8-row strips as lines finish (constant
    memory), bands named by wavelength, nodata declared. Thick cloud is flagged, never invented.
    """
    rep = _run(
        input_path,
        Path(output),
        Path(mask) if mask else None,
        Path(report) if report else None,
        _options(True, opts),  # the model, output and raster options, as click parsed them
    )
    _echo_summary(rep)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--mask",
    required=True,
    type=click.Path(),
    help="Class mask output (0 no data, 1 clear, 2 thin, 3 thick, 4 shadow).",
)
@click.option("--report", type=click.Path(), help="JSON report output.")
@model_options
@raster_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@handle_errors
def detect(input_path: str, mask: str, report: str | None, **opts: Any) -> None:
    """Detect clouds and shadows in INPUT and write the class mask (no removal)."""
    rep = _run(
        input_path, None, Path(mask), Path(report) if report else None, _options(False, opts)
    )
    _echo_summary(rep)
