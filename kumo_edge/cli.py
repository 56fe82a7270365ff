"""The ``kumo-edge`` command line.

Errors are reported as one line on stderr with a non-zero exit code (1 for bad input, 2 for
bad usage), never a traceback (``-v`` twice shows one). Outputs are never overwritten without
``--overwrite`` and are written under a temporary name, renamed when complete. Progress bars
show on a terminal and stay quiet in pipes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from . import __version__
from .bands import resampling_matrix
from .classes import NAMES
from .clouds import CloudField, CloudParams
from .config import DEFAULT_BATCH
from .errors import KumoError, OutputExistsError, RasterWriteError
from .io import (
    DEFAULT_STRIP_LINES,
    FLOAT_NODATA,
    STREAM_STRIP_LINES,
    GeoTiffWriter,
    Raster,
    WriterGroup,
    check_output_path,
    check_outputs,
    write_geotiff,
)
from .process import RunOptions, Source, process
from .render import write_side_by_side
from .tiling import footprint_tiles

logger = logging.getLogger("kumo_edge")

#: Fixed class codes of every mask kumo-edge writes.
CLASS_CODES = {int(c): name for c, name in NAMES.items()}


def _progress(total: int, desc: str, unit: str = "row") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False, file=sys.stderr)


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated numbers, got {text!r}", param_hint=name
        ) from None
    if not values:
        raise click.BadParameter("no numbers given", param_hint=name)
    return values


def _nodata(text: str | None) -> float | str | None:
    if text is None or text == "auto":
        return "auto"
    if text == "none":
        return None
    if text.lower() == "nan":
        return "nan"
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(
            f"expected a number, 'nan', 'auto' or 'none', got {text!r}", param_hint="--nodata"
        ) from None


def raster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options that tell the reader how to interpret a raster."""
    opts = [
        click.option(
            "--wavelengths",
            metavar="NM,NM,...",
            help="Band centre wavelengths in nm, overriding the file's metadata.",
        ),
        click.option(
            "--fwhm",
            metavar="NM,NM,...",
            help="Band FWHM in nm (with --wavelengths); estimated from spacing if omitted.",
        ),
        click.option(
            "--scale",
            metavar="S[,S...]",
            help="Stored value x scale + offset = reflectance (one value or one per band).",
        ),
        click.option("--offset", metavar="O[,O...]", help="Offset added after --scale."),
        click.option(
            "--nodata",
            metavar="VALUE|nan|auto|none",
            default="auto",
            show_default=True,
            help="No-data value. auto: the file's, else pixels whose bands are all 0; none: only the file's.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _open(
    path: str,
    wavelengths: str | None,
    fwhm: str | None,
    scale: str | None,
    offset: str | None,
    nodata: str | None,
) -> Raster:
    return _source(wavelengths, fwhm, scale, offset, nodata).open(path)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn KumoError into a one-line message and exit code 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except KumoError as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.exception("failed")
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; no output was left behind", err=True)
            raise SystemExit(130) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kumo-edge")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug and tracebacks).")
@click.option("-q", "--quiet", count=True, help="Less log output.")
def cli(verbose: int, quiet: int) -> None:
    """Kumo Edge: cloud detection and thin-cloud removal for hyperspectral pushbroom imagery.

    Rasters are anything GDAL reads (GeoTIFF, ENVI, ...). Masks use fixed class codes:
    0 no data, 1 clear, 2 thin cloud, 3 thick cloud, 4 cloud shadow.
    """
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(
        level=max(logging.DEBUG, min(level, logging.CRITICAL)), format="%(levelname)s: %(message)s"
    )


# -- info -----------------------------------------------------------------------------------
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
        "scale_source": r.scale_source,
        "scale": None if r.scale is None else r.scale.tolist(),
        "offset": None if r.offset is None else r.offset.tolist(),
        "wavelength_source": r.wavelength_source,
        "band_list": [
            {
                "index": i + 1,
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
        from .runtime import load_model

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


# -- run / detect ---------------------------------------------------------------------------
def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--models",
            metavar="hsi32|swir6|rgbn|rgb|DIR",
            help="Model set: a shipped band set (swir6 has a detector only) or a folder with detector.onnx and generator.onnx [default: the first shipped set the input can be resampled to].",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1),
            help="ONNX Runtime intra-op threads [default: its own choice].",
        ),
        click.option(
            "--providers",
            default="cpu",
            show_default=True,
            help="Execution providers in priority order: cpu, cuda, tensorrt (comma-separated).",
        ),
        click.option(
            "--strip-lines",
            default=STREAM_STRIP_LINES,
            show_default=True,
            type=click.IntRange(1),
            help="Lines converted (or received) per strip; blocks of the file are read once whatever this is.",
        ),
        click.option(
            "--batch",
            default=DEFAULT_BATCH,
            show_default=True,
            type=click.IntRange(1),
            help="Tiles per inference call.",
        ),
        click.option(
            "--drop-fraction",
            default=0.7,
            show_default=True,
            type=click.FloatRange(0, 1),
            help="Report tiles more cloudy than this as 'drop' (downlink prioritisation).",
        ),
        click.option(
            "--bil-width",
            type=click.IntRange(1),
            help="INPUT '-': pixels per line of the raw BIL stream on stdin.",
        ),
        click.option(
            "--bil-dtype",
            default="uint16",
            show_default=True,
            help="INPUT '-': sample type of the BIL stream.",
        ),
        click.option(
            "--profile",
            "sensor",
            help="Sensor profile giving the band set: of the BIL stream (INPUT '-', also its width), or of a file without wavelength metadata (band counts must agree).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def removal_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the cleaned output (``run`` and ``batch``)."""
    opts = [
        click.option(
            "--output-bands",
            type=click.Choice(["model", "input"]),
            default="model",
            show_default=True,
            help="Band set of OUTPUT: the models' (no resampling back) or the input's (refused when the models' bands cannot produce it).",
        ),
        click.option(
            "--method",
            type=click.Choice(["model", "cgan", "hot", "inpaint"]),
            default="model",
            show_default=True,
            help="Cloud remover: the band set's remover model (the physics remover where shipped, else the cGAN; 'cgan' is its older name), the Haze Optimized Transform, or harmonic inpainting of detected cloud/shadow (classical baselines, see kumo_edge.baselines).",
        ),
        click.option(
            "--output-dtype",
            type=click.Choice(["auto", "uint16", "float32"]),
            default="auto",
            show_default=True,
            help="Sample type of OUTPUT: uint16 reflectance x 10,000 (GDAL scale 1e-4, nodata 65535; half "
            "the bytes of float32) or float32 reflectance (nodata -9999); auto: uint16 for integer input, "
            "float32 for float input.",
        ),
        click.option(
            "--compress",
            type=click.Choice(["zstd", "deflate", "none"]),
            default="zstd",
            show_default=True,
            help="Compression of OUTPUT: zstd (level 1; measured 6x faster to write than deflate at the "
            "same size; GDAL >= 2.3 / QGIS 3 read it), deflate (readable by older tools), or none.",
        ),
        click.option(
            "--allow-8bit",
            is_flag=True,
            help="Remove clouds from 8-bit input too. 8-bit imagery is display-stretched in practice, not "
            "reflectance, so model removers refuse it by default (measured on 74 RICE2 pairs: the cGAN "
            "made them 7.3 dB worse); pass this only if the 8-bit values are calibrated reflectance.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _source(
    wavelengths: str | None,
    fwhm: str | None,
    scale: str | None,
    offset: str | None,
    nodata: str | None,
    sensor: str | None = None,
    bil_width: int | None = None,
    bil_dtype: str = "uint16",
) -> Source:
    """The reading options of the command line, parsed."""

    def tup(text: str | None, name: str) -> tuple[float, ...] | None:
        v = _floats(text, name)
        return tuple(v) if v else None

    return Source(
        wavelengths=tup(wavelengths, "--wavelengths"),
        fwhm=tup(fwhm, "--fwhm"),
        scale=tup(scale, "--scale"),
        offset=tup(offset, "--offset"),
        nodata=_nodata(nodata),
        profile=sensor,
        bil_width=bil_width,
        bil_dtype=bil_dtype,
    )


def _options(remove: bool, p: dict[str, Any]) -> RunOptions:
    """The frozen run options of ``run``/``detect``/``batch``'s parsed parameters ``p``."""
    src = _source(
        p["wavelengths"], p["fwhm"], p["scale"], p["offset"], p["nodata"],
        p.get("sensor"), p.get("bil_width"), p.get("bil_dtype", "uint16"),
    )  # fmt: skip
    return RunOptions(
        models=p["models"],
        method=p.get("method", "model"),
        remove=remove,
        threads=p["threads"],
        providers=tuple(x.strip() for x in p["providers"].split(",") if x.strip()),
        strip_lines=p["strip_lines"],
        batch=p["batch"],
        drop_fraction=p["drop_fraction"],
        output_bands=p.get("output_bands", "model"),
        output_dtype=p.get("output_dtype", "auto"),
        compress=p.get("compress", "zstd"),
        allow_8bit=p.get("allow_8bit", False),
        overwrite=p["overwrite"],
        source=src,
    )


def _run(input_path: str, out, mask, report, options: RunOptions) -> dict[str, Any]:  # noqa: ANN001
    """One pass with a progress bar over its lines."""
    src = options.source
    if input_path == "-" and not src.profile and not (src.wavelengths and src.bil_width):
        raise click.UsageError("INPUT '-' needs --profile NAME, or --bil-width and --wavelengths")
    total = 0
    if input_path != "-":
        # the bar's length; process() opens the file again (a cheap header read)
        check_outputs(
            {"OUTPUT": out, "--mask": mask, "--report": report}, [input_path], options.overwrite
        )
        with options.source.open(input_path) as r:
            total = r.height
    with _progress(total, "lines") as bar:
        return process(input_path, out, mask, report, options, bar)


def _summary(rep: dict[str, Any]) -> str:
    secs = rep["seconds"]
    return (
        f"{rep['lines']} lines x {rep['width']} px in {rep['wall_seconds']:.1f} s with models {rep['models']}: "
        f"{rep['tiles']} tiles, {rep['tiles_removed']} cleaned, {rep['tiles_unrecoverable']} unrecoverable, {rep['tiles_drop']} marked drop"
        + (
            f", {rep['tiles_kept']} kept as input ("
            + ", ".join(f"{k} {v}" for k, v in rep.get("kept_by_reason", {}).items())
            + ")"
            if rep.get("tiles_kept")
            else ""
        )
        + (
            f", {rep['tiles_ambiguous_bright']} with ambiguous bright pixels (snow/ice or cloud)"
            if rep.get("tiles_ambiguous_bright")
            else ""
        )
        + "; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items())
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
def run(
    input_path,
    output,
    mask,
    report,
    output_bands,
    method,
    models,
    threads,
    providers,
    strip_lines,
    batch,
    drop_fraction,
    bil_width,
    bil_dtype,
    sensor,
    wavelengths,
    fwhm,
    scale,
    offset,
    nodata,
    overwrite,
    output_dtype,
    compress,
    allow_8bit,
) -> None:  # noqa: ANN001
    """Detect clouds in INPUT and remove thin clouds and shadows, streaming, into OUTPUT.

    INPUT is a raster file, or '-' for a raw band-interleaved-by-line stream on stdin (give
    --profile or --bil-width and --wavelengths). OUTPUT is a compressed GeoTIFF in the models'
    band set, georeferenced like INPUT, written in 16-row strips as lines finish (constant
    memory), bands named by wavelength, nodata declared. Thick cloud is flagged, never invented.
    """
    p = dict(locals())
    rep = _run(
        input_path,
        Path(output),
        Path(mask) if mask else None,
        Path(report) if report else None,
        _options(True, p),
    )
    click.echo(_summary(rep))


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
def detect(
    input_path,
    mask,
    report,
    models,
    threads,
    providers,
    strip_lines,
    batch,
    drop_fraction,
    bil_width,
    bil_dtype,
    sensor,
    wavelengths,
    fwhm,
    scale,
    offset,
    nodata,
    overwrite,
) -> None:  # noqa: ANN001
    """Detect clouds and shadows in INPUT and write the class mask (no removal)."""
    p = dict(locals())
    rep = _run(input_path, None, Path(mask), Path(report) if report else None, _options(False, p))
    click.echo(_summary(rep))


# -- batch (ground side) --------------------------------------------------------------------
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
    inputs,
    out_dir,
    workers,
    threads_per_worker,
    scheduler,
    retries,
    split_lines,
    detect_only,
    output_bands,
    method,
    output_dtype,
    compress,
    allow_8bit,
    models,
    threads,
    providers,
    strip_lines,
    batch,
    drop_fraction,
    bil_width,
    bil_dtype,
    sensor,
    wavelengths,
    fwhm,
    scale,
    offset,
    nodata,
) -> None:  # noqa: ANN001
    """Process many scenes on Dask: files, folders, list files (one path per line) or STAC
    Catalogs / Items / ItemCollections (their 'data' asset).

    Each scene is the constant-memory stream of `kumo-edge run`; its STAC Item is written last
    and marks it complete: a re-run skips complete scenes (same input, settings and version)
    and does the rest. A scene that fails is recorded with its error; the others go on. Exit
    code 0 when every scene is done or skipped, 1 otherwise. Needs the ground extra
    (pip install 'kumo-edge[ground]').
    """
    if bil_width or bil_dtype != "uint16":
        raise click.UsageError("--bil-width and --bil-dtype apply to `run -`, not to batch")
    try:
        from .ground import BatchOptions, run_batch
    except ImportError:
        raise KumoError(
            "kumo-edge batch needs the ground extra: pip install 'kumo-edge[ground]'"
        ) from None
    p = dict(locals())
    p["overwrite"] = False
    opts = _options(not detect_only, p)
    summary = run_batch(
        inputs,
        out_dir,
        opts,
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


# -- bench ----------------------------------------------------------------------------------
@cli.group()
def bench() -> None:
    """Benchmarks that write JSON (see also bench/ in the repository)."""


@bench.command("stream")
@click.option(
    "--sensor",
    default="satellogic-hsi",
    show_default=True,
    help="Sensor profile (band set, swath width, line rate).",
)
@click.option(
    "--lines",
    "lengths",
    default="1000,10000,100000",
    show_default=True,
    help="Pass lengths, comma-separated; each runs in its own process.",
)
@click.option(
    "--strip-lines",
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="Lines pushed at a time.",
)
@click.option("--models", help="Model set (default: the first shipped set the sensor's bands fit).")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--width", type=click.IntRange(1), help="Override the swath width.")
@click.option(
    "--typical",
    is_flag=True,
    help="Run the generator only where the detector finds cloud (default: every tile, the worst case).",
)
@click.option(
    "--providers",
    default="cpu",
    show_default=True,
    help="Execution providers: cpu, cuda, tensorrt (comma-separated).",
)
@click.option(
    "--batch",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(1),
    help="Tiles per inference call (memory grows with it).",
)
@click.option(
    "--modes",
    default="memory",
    show_default=True,
    help="What to run, comma-separated: memory (lines pushed from RAM, no file), file-tiled and "
    "file-striped (kumo-edge run on a written GeoTIFF: 256 x 256 deflate tiles, or 16-row "
    "uncompressed strips), stdin (kumo-edge run on a BIL stream); with any but memory alone, "
    "all modes run side by side in one run, each pass in its own process.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON document here."
)
@handle_errors
def bench_stream_cmd(  # noqa: ANN001
    sensor,
    lengths,
    strip_lines,
    models,
    threads,
    width,
    typical,
    providers,
    batch,
    modes,
    json_path,
) -> None:
    """Real-time factor, per-strip latency p50/p99, throughput and peak RSS of passes."""
    from .benchmark import bench_file, bench_stream, file_case_line

    ns = [int(v) for v in lengths.split(",") if v.strip()]
    mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
    if mode_list != ("memory",):
        doc = bench_file(sensor, ns, mode_list, models, threads, width)
        for c in doc["cases"]:
            click.echo(file_case_line(c))
        if json_path:
            Path(json_path).write_text(json.dumps(doc, indent=2))
            click.echo(f"-> {json_path}")
        return
    doc = bench_stream(
        sensor,
        ns,
        strip_lines,
        models,
        threads,
        not typical,
        width,
        [p.strip() for p in providers.split(",") if p.strip()],
        batch,
    )
    for c in doc["cases"]:
        click.echo(
            f"{c['lines']:>7} lines x {c['width']} px: RTF {c['real_time_factor']:.2f} ({c['lines_per_s']:.0f} lines/s vs {c['sensor_lines_per_s']:.0f}), "
            f"strip p50 {c['strip_latency_ms']['p50']:.0f} ms p99 {c['strip_latency_ms']['p99']:.0f} ms, {c['mpx_per_s']:.2f} Mpx/s, peak RSS {c['peak_rss_mb']:.0f} MB"
        )
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2))
        click.echo(f"-> {json_path}")


@bench.command("models")
@click.option("--models", "bands", metavar="hsi32|rgbn|rgb", help="One shipped set [default: all].")
@click.option(
    "--repeats", default=20, show_default=True, type=click.IntRange(1), help="Timed runs per model."
)
@click.option(
    "--batch",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Tiles per call (time is per tile).",
)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option(
    "--providers",
    default="cpu",
    show_default=True,
    help="Execution providers: cpu, cuda, tensorrt (comma-separated).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON document here."
)
@handle_errors
def bench_models_cmd(bands, repeats, batch, threads, providers, json_path) -> None:  # noqa: ANN001
    """Per-tile latency of the shipped detector and generator models, as installed.

    For the comparison with the unpruned FP32 parent, the pruned FP32 model and a full-size
    pix2pix U-Net (the compression targets), run `python -m bench.models` in the repository
    with the `train` extra.
    """
    from .benchmark import bench_models

    prov = [p.strip() for p in providers.split(",") if p.strip()]
    doc = bench_models(bands, repeats, threads, prov, batch)
    for k, v in doc["results"].items():
        click.echo(
            f"{k:>16}: {v['median_ms']:.2f} ms / {v['tile']} px tile (p95 {v['p95_ms']:.2f}), {v['precision']}, {v['file_mb']:.2f} MB"
        )
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2))
        click.echo(f"-> {json_path}")


# -- demo -----------------------------------------------------------------------------------
def sample_scene_path() -> Path:
    """Path of the bundled sample scene (Landsat-7 ETM+, 6 bands; see kumo_edge/data/SAMPLE.md)."""
    from importlib import resources

    return Path(str(resources.files("kumo_edge").joinpath("data/sample_landsat7_nc.tif")))


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
    from . import metrics
    from .bands import resample
    from .pipeline import load_models, raster_chunks, run_stream
    from .stream import StreamConfig

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


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # handled like Ctrl-C: outputs discarded, exit code 130


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kumo-edge`` console script (SIGTERM is handled like SIGINT)."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = cli.main(args=argv, prog_name="kumo-edge", standalone_mode=False)
    except click.UsageError as exc:  # one line, not click's three
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("Error: aborted", err=True)
        raise SystemExit(1) from None
    raise SystemExit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
