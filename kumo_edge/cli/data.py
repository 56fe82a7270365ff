"""``info``, ``tile``, ``synth``: inspect rasters, cut tiles, make cloudy test scenes."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..clouds import CloudField, CloudParams
from ..errors import OutputExistsError, RasterWriteError
from ..io import (
    DEFAULT_STRIP_LINES,
    FLOAT_NODATA,
    GeoTiffWriter,
    Raster,
    WriterGroup,
    check_output_path,
    write_geotiff,
)
from ..tiling import footprint_tiles
from ._base import (
    CLASS_CODES,
    _open,
    _progress,
    cli,
    handle_errors,
    raster_options,
)


def raster_info(r: Raster, lines: int = DEFAULT_STRIP_LINES) -> dict[str, Any]:
    """Facts about a raster, including its valid fraction (read strip by strip)."""
    n_valid = 0
    with _progress(r.height, "scanning") as bar:
        for _row, raw, valid in r.raw_strips(lines):
            n_valid += int(valid.sum())
            bar.update(raw.shape[1])
    bands = r.band_set
    return {
        "path": str(r.path),
        "driver": r.driver,
        "width": r.width,
        "height": r.height,
        "bands": r.count,
        "dtype": r.dtype.name,
        "crs": r.crs.to_string() if r.crs else None,
        "pixel_size": [abs(r.transform.a), abs(r.transform.e)],
        "bounds": list(r.bounds),
        "nodata": None
        if r.nodata is None
        else (str(r.nodata) if isinstance(r.nodata, float) and math.isnan(r.nodata) else r.nodata),
        "zero_fill_is_nodata": r.zero_fill,
        "mask": r.mask_source,
        "scale_source": r.scale_source,
        "scale": None if r.scale is None else r.scale.tolist(),
        "offset": None if r.offset is None else r.offset.tolist(),
        "wavelength_source": r.wavelength_source,
        "band_list": [
            {
                "index": r.band_indexes[i] if r.band_indexes else i + 1,  # the file's number
                "name": (bands.names[i] if bands else "") or None,
                "description": r.descriptions[i] or None,
                "wavelength_nm": bands.centers_nm[i] if bands else None,
                "fwhm_nm": bands.fwhm_nm[i] if bands else None,
            }
            for i in range(r.count)
        ],
        "valid_fraction": n_valid / (r.width * r.height),
    }


@cli.command()
@click.argument("raster", type=click.Path(dir_okay=False))
@raster_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@handle_errors
def info(raster: str, wavelengths, fwhm, scale, offset, nodata, as_json: bool) -> None:  # noqa: ANN001
    """Describe RASTER: size, CRS, bands with wavelengths, no-data rule, valid fraction.

    Given a model (.onnx), print its contract instead: band set, tile, halo, outputs, metrics.
    """
    if raster.lower().endswith(".onnx"):
        from ..runtime import load_model

        c = load_model(raster).contract
        if as_json:
            click.echo(json.dumps({k: v for k, v in c.to_metadata().items()}, indent=2))
        else:
            click.echo(raster)
            for line in c.describe():
                click.echo("  " + line)
        return
    with _open(raster, wavelengths, fwhm, scale, offset, nodata) as r:
        d = raster_info(r)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['path']}  ({d['driver']})")
    click.echo(f"  size        {d['width']} x {d['height']} px, {d['bands']} bands, {d['dtype']}")
    click.echo(
        f"  crs         {d['crs'] or 'none'}   pixel {d['pixel_size'][0]:g} x {d['pixel_size'][1]:g}"
    )
    nd = d["nodata"]
    rule = f"{nd}" if nd is not None else "none declared"
    if d["zero_fill_is_nodata"]:
        rule += " (pixels with all bands 0 count as no data)"
    if d["mask"]:
        rule += f"; {d['mask']} (0 = no data)"
    click.echo(f"  nodata      {rule}")
    if d["scale"] is None:
        click.echo("  reflectance unknown scale (pass --scale/--offset to convert)")
    else:
        click.echo(
            f"  reflectance stored x {_fmt_list(d['scale'])} + {_fmt_list(d['offset'])}  [{d['scale_source']}]"
        )
    click.echo(f"  valid       {100 * d['valid_fraction']:.2f} % of pixels")
    click.echo(f"  wavelengths from {d['wavelength_source']}")
    for b in d["band_list"]:
        wl = (
            f"{b['wavelength_nm']:8.1f} nm  fwhm {b['fwhm_nm']:6.1f} nm"
            if b["wavelength_nm"]
            else "       unknown"
        )
        click.echo(f"  {b['index']:>4} {wl}  {b['description'] or ''}")


def _fmt_list(values: Sequence[float]) -> str:
    return (
        f"{values[0]:g}"
        if len(set(values)) == 1
        else "[" + ", ".join(f"{v:g}" for v in values) + "]"
    )


# -- tile -----------------------------------------------------------------------------------
def _atomic_dir(outdir: Path, overwrite: bool) -> Path:
    if outdir.exists() and not overwrite:
        raise OutputExistsError(f"{outdir} exists; pass --overwrite to replace it")
    if outdir.exists() and not outdir.is_dir():
        raise RasterWriteError(f"{outdir} exists and is not a folder")
    parent = outdir.resolve().parent
    if not parent.is_dir():
        raise RasterWriteError(f"{parent}: the output folder's parent does not exist")
    return Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".partial", dir=parent))


def _commit_dir(tmp: Path, outdir: Path) -> None:
    if outdir.exists():
        shutil.rmtree(outdir)
    os.replace(tmp, outdir)


@cli.command()
@click.argument("raster", type=click.Path(dir_okay=False))
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option(
    "--size", default=256, show_default=True, type=click.IntRange(1), help="Tile side in pixels."
)
@click.option(
    "--stride", type=click.IntRange(1), help="Grid period in pixels [default: --size, no overlap]."
)
@raster_options
@click.option("--overwrite", is_flag=True, help="Replace OUTDIR if it exists.")
@handle_errors
def tile(
    raster: str,
    outdir: str,
    size: int,
    stride: int | None,
    wavelengths,
    fwhm,
    scale,
    offset,
    nodata,
    overwrite: bool,
) -> None:  # noqa: ANN001
    """Cut RASTER into GeoTIFF tiles that lie wholly inside its valid footprint.

    The grid offset is chosen to fit the most tiles; no tile holds a no-data pixel. Tiles keep
    the stored values, CRS, nodata and wavelengths. OUTDIR/tiles.json indexes them.
    """
    out = Path(outdir)
    with _open(raster, wavelengths, fwhm, scale, offset, nodata) as r:
        tmp = _atomic_dir(out, overwrite)
        try:
            valid = np.empty((r.height, r.width), dtype=bool)
            with _progress(r.height, "mask") as bar:
                for row, raw, v in r.raw_strips():
                    valid[row : row + raw.shape[1]] = v
                    bar.update(raw.shape[1])
            grid = footprint_tiles(valid, size, stride)
            del valid
            index = _write_tiles(r, grid, tmp)
            (tmp / "tiles.json").write_text(json.dumps(index, indent=1))
            _commit_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    click.echo(
        f"{len(grid)} tiles of {size} x {size} px (grid offset row {grid.offset[0]}, col {grid.offset[1]}, "
        f"stride {grid.stride}) -> {out}"
    )


def _write_tiles(r: Raster, grid: Any, tmp: Path) -> dict[str, Any]:
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    size = grid.size
    width = len(str(max(r.height, r.width)))
    tiles = []
    scales = None if r.scale_source != "GDAL scale/offset" else list(r.scale)
    offsets = None if r.scale_source != "GDAL scale/offset" else list(r.offset)
    nodata = r.declared_nodata
    by_row: dict[int, list[int]] = {}
    for y, x in grid.origins.tolist():
        by_row.setdefault(y, []).append(x)
    with _progress(len(grid), "tiles", unit="tile") as bar:
        for y, xs in by_row.items():
            x0, x1 = min(xs), max(xs) + size
            block = r.read_raw(y, size, x0, x1 - x0)
            for x in xs:
                name = f"tile_r{y:0{width}d}_c{x:0{width}d}.tif"
                t = window_transform(Window(x, y, size, size), r.transform)
                write_geotiff(
                    tmp / name,
                    np.ascontiguousarray(block[:, :, x - x0 : x - x0 + size]),
                    crs=r.crs,
                    transform=t,
                    nodata=nodata,
                    bands=r.band_set,
                    descriptions=r.descriptions if any(r.descriptions) else None,
                    scales=scales,
                    offsets=offsets,
                )
                tiles.append({"file": name, "row": y, "col": x, "bounds": list(_bounds(t, size))})
                bar.update(1)
    return {
        "source": str(r.path),
        "size": size,
        "stride": grid.stride,
        "offset": list(grid.offset),
        "count": len(tiles),
        "crs": r.crs.to_string() if r.crs else None,
        "tiles": tiles,
    }


def _bounds(t: Any, size: int) -> tuple[float, float, float, float]:
    x0, y0 = t * (0, 0)
    x1, y1 = t * (size, size)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


# -- synth ----------------------------------------------------------------------------------
def cloud_options(f: Callable[..., Any]) -> Callable[..., Any]:
    d = CloudParams()
    opts = [
        click.option(
            "--cover",
            default=d.cover,
            show_default=True,
            type=click.FloatRange(0, 1),
            help="Fraction of the scene under cloud.",
        ),
        click.option(
            "--thickness",
            default=d.thickness,
            show_default=True,
            type=click.FloatRange(0),
            help="Optical thickness at 550 nm of cloud cores (<0.7 stays thin).",
        ),
        click.option(
            "--feature-px",
            default=d.feature_px,
            show_default=True,
            type=click.FloatRange(1),
            help="Size of the largest cloud features in pixels.",
        ),
        click.option(
            "--angstrom",
            default=d.angstrom,
            show_default=True,
            type=click.FloatRange(0, 4),
            help="Spectral exponent: tau(l) = tau550 (l/550)^-a.",
        ),
        click.option(
            "--sun-azimuth",
            default=d.sun_azimuth_deg,
            show_default=True,
            type=float,
            help="Sun azimuth, degrees clockwise from north.",
        ),
        click.option(
            "--sun-elevation",
            default=d.sun_elevation_deg,
            show_default=True,
            type=click.FloatRange(0.1, 90),
            help="Sun elevation in degrees.",
        ),
        click.option(
            "--cloud-height",
            default=d.cloud_height_m,
            show_default=True,
            type=click.FloatRange(0),
            help="Cloud height in metres (sets the shadow offset).",
        ),
        click.option(
            "--gsd",
            type=click.FloatRange(0.01),
            help="Pixel size in metres [default: from a projected CRS, else 30].",
        ),
        click.option("--no-shadows", is_flag=True, help="Do not cast cloud shadows."),
        click.option("--seed", default=0, show_default=True, type=int, help="Random seed."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _cloud_params(
    r: Raster,
    cover,
    thickness,
    feature_px,
    angstrom,
    sun_azimuth,
    sun_elevation,
    cloud_height,
    gsd,
    no_shadows,
) -> CloudParams:  # noqa: ANN001
    if gsd is None:
        gsd = (
            abs(r.transform.a)
            if (
                r.crs is not None
                and r.crs.is_projected
                and r.crs.linear_units in ("metre", "meter", "m")
            )
            else 30.0
        )
    return CloudParams(
        cover=cover,
        thickness=thickness,
        feature_px=feature_px,
        angstrom=angstrom,
        sun_azimuth_deg=sun_azimuth,
        sun_elevation_deg=sun_elevation,
        cloud_height_m=cloud_height,
        gsd_m=gsd,
        shadows=not no_shadows,
    )


def synthesize_raster(
    r: Raster,
    out: Path,
    truth: Path,
    tau_out: Path,
    params: CloudParams,
    seed: int,
    overwrite: bool = False,
    lines: int = DEFAULT_STRIP_LINES,
) -> dict[str, Any]:
    """Stream a raster through the cloud model into three atomic outputs.

    ``out``: float32 cloudy reflectance (nodata -9999, wavelengths kept); ``truth``: uint8 class
    mask (0 no data, 1 clear, 2 thin, 3 thick, 4 shadow); ``tau_out``: float32 tau550.
    Returns class fractions over valid pixels.
    """
    for p in (out, truth, tau_out):
        check_output_path(p, overwrite)
    if len({out.resolve(), truth.resolve(), tau_out.resolve()}) != 3:
        raise OutputExistsError("the cloudy, truth and tau outputs must be three different files")
    bands = r.bands
    field = CloudField(params, r.height, r.width, seed)
    geo = {"crs": r.crs, "transform": r.transform, "width": r.width, "height": r.height}
    tags = {"CLOUD_PARAMS": json.dumps(params.to_dict()), "CLOUD_SEED": seed, "SOURCE": r.path.name}
    counts = np.zeros(5, dtype=np.int64)
    with WriterGroup(
        GeoTiffWriter(
            out,
            count=len(bands),
            dtype="float32",
            nodata=FLOAT_NODATA,
            bands=bands,
            tags=tags,
            overwrite=overwrite,
            **geo,
        ),
        GeoTiffWriter(
            truth,
            count=1,
            dtype="uint8",
            nodata=0,
            tags={**tags, "CLASSES": json.dumps(CLASS_CODES)},
            overwrite=overwrite,
            **geo,
        ),
        GeoTiffWriter(
            tau_out,
            count=1,
            dtype="float32",
            nodata=FLOAT_NODATA,
            tags=tags,
            overwrite=overwrite,
            **geo,
        ),
    ) as group:
        w_cube, w_mask, w_tau = group.writers
        with _progress(r.height, "synth") as bar:
            for strip in r.strips(lines):
                res = field.apply(strip.data, bands, row0=strip.row, valid=strip.valid)
                cube = res.cloudy
                cube[:, ~strip.valid] = FLOAT_NODATA
                mask = res.class_mask(strip.valid)
                tau = np.where(strip.valid, res.tau550, FLOAT_NODATA).astype(np.float32)
                w_cube.write(cube, strip.row)
                w_mask.write(mask, strip.row)
                w_tau.write(tau, strip.row)
                counts += np.bincount(mask.ravel(), minlength=5)[:5]
                bar.update(cube.shape[1])
    n = max(int(counts[1:].sum()), 1)
    return {CLASS_CODES[k]: counts[k] / n for k in range(1, 5)}


@cli.command()
@click.argument("raster", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@cloud_options
@click.option(
    "--truth",
    type=click.Path(dir_okay=False),
    help="Class-mask output [default: OUT stem + .truth.tif].",
)
@click.option(
    "--tau",
    "tau_path",
    type=click.Path(dir_okay=False),
    help="Optical-thickness output [default: OUT stem + .tau550.tif].",
)
@raster_options
@click.option(
    "--strip-lines",
    default=DEFAULT_STRIP_LINES,
    show_default=True,
    type=click.IntRange(1),
    help="Rows read per strip.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@handle_errors
def synth(
    raster: str,
    out: str,
    cover,
    thickness,
    feature_px,
    angstrom,
    sun_azimuth,
    sun_elevation,
    cloud_height,
    gsd,
    no_shadows,
    seed,
    truth,
    tau_path,
    wavelengths,
    fwhm,
    scale,
    offset,
    nodata,
    strip_lines,
    overwrite,
) -> None:  # noqa: ANN001
    """Put synthetic clouds and shadows over a clear RASTER, writing OUT and truth layers.

    OUT is float32 reflectance (no data -9999) with the input's bands and georeferencing; the
    truth mask uses the class codes 1 clear, 2 thin cloud, 3 thick cloud, 4 cloud shadow. The
    cloud model is documented in kumo_edge.clouds; its parameters are stored in OUT's tags.
    """
    o = Path(out)
    stem = o.with_suffix("") if o.suffix.lower() in (".tif", ".tiff") else o
    truth_p = Path(truth) if truth else Path(f"{stem}.truth.tif")
    tau_p = Path(tau_path) if tau_path else Path(f"{stem}.tau550.tif")
    with _open(raster, wavelengths, fwhm, scale, offset, nodata) as r:
        params = _cloud_params(
            r,
            cover,
            thickness,
            feature_px,
            angstrom,
            sun_azimuth,
            sun_elevation,
            cloud_height,
            gsd,
            no_shadows,
        )
        fr = synthesize_raster(r, o, truth_p, tau_p, params, seed, overwrite, strip_lines)
    click.echo(f"wrote {o}, {truth_p}, {tau_p}")
    click.echo("  " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in fr.items()))
