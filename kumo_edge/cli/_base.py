"""What every command shares: the click group, option sets, one-line errors, the run options
parsed from the command line, the sample scene."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from .. import __version__
from ..classes import NAMES
from ..config import DEFAULT_BATCH, profile_names
from ..errors import KumoError
from ..io import (
    STREAM_STRIP_LINES,
    Raster,
)
from ..process import RunOptions, Source, process

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
        except OSError as exc:  # anything the library did not word itself: still one line
            if logger.isEnabledFor(logging.DEBUG):
                logger.exception("failed")
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
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


# -- options of run / detect / batch -------------------------------------------------------
def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--models",
            metavar="hsi32|swir6|rgbn|rgb|DIR",
            help="Model set: a shipped band set or a folder with detector.onnx and generator.onnx [default: the first shipped set the input can be resampled to; for `run`, the first with a remover of its own: hsi32, rgbn, rgb]. swir6 (Landsat / Sentinel-2 blue to SWIR-2) has a detector only; `run --models swir6` (experimental: on real Landsat-8 patches it corrupted a thick cloud over snow that its detector calls thin, and it gains less than rgbn on most scenes; README) removes with rgbn's physics remover widened to the six bands (the SWIR bands corrected and kept).",
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
            help="Report tiles more cloudy than this as 'drop' (downlink prioritisation); cloud "
            "calls on ambiguous bright pixels (snow, ice or cloud) do not count.",
        ),
        click.option(
            "--shadow-threshold",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            help="Shadow operating point of the mask and report: a pixel that is not cloud is "
            "shadow where P(shadow) / (P(shadow) + P(clear)) exceeds it, it is darker than its "
            "tile's clear ground (the detector's darkness rule) and its tile holds cloud (10 % of "
            "it) [default: the detector's; the shipped ones carry the point that reached 70 % "
            "shadow recall in cross-validation, 0.05-0.075: 71-78 % recall at 19-31 % "
            "precision]. 0.5 (the larger of the two) calls "
            "fewer shadows more surely (about 30 % recall at 55-65 % precision). The removal "
            "always decides at 0.5.",
        ),
        click.option(
            "--trees/--no-trees",
            default=True,
            show_default=True,
            help="Where the detector ships a tree ensemble (rgbn: context trees cross-validated "
            "on 36 real labelled patches; hsi32: spectral trees on its 32 bands, scored scene by "
            "scene on synthetic clouds of four laws), the mask's and report's cloud "
            "probability pools the network's and the trees' (rgbn: their geometric mean; hsi32: "
            "their mean): more accurate, with fewer clear pixels called cloud (README). --no-trees: the network alone, "
            "1-2 ms faster per 256-px tile (hsi32: the stream about 14 % faster). The removal "
            "is the network's either way.",
        ),
        click.option(
            "--input-swir/--no-input-swir",
            default=True,
            show_default=True,
            help="Where the models' band set has no SWIR band (rgbn, rgb, hsi32) but the input "
            "has one (Landsat, Sentinel-2, most hyperspectral files), the input's own bands "
            "test the mask: bright, white pixels that are not snow-like in the SWIR are cloud, "
            "cloud calls on snow-like pixels count as ambiguous_bright, not for --drop-"
            "fraction, and cloud calls that small trees on the pixel's blue, green, red, NIR "
            "and SWIR-1 are sure are not cloud (water, wetland, bright soil, snow under trees) "
            "are clear, as are cloud calls on snow too dark in the visible to be cloud (out of "
            "fold on the 36 real patches, three seeds of rgbn: 88.4 -> 90.1 % accuracy, 8.9 -> "
            "6.8 % of clear pixels called cloud; README). The removal is the detector's either "
            "way.",
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
            help="Sensor profile giving the band set: of the BIL stream (INPUT '-', also its width), or of a file without wavelength metadata (band counts must agree). One of: "
            + ", ".join(profile_names())
            + ".",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def removal_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the cleaned output (``run`` and ``batch``)."""
    opts = [
        click.option(
            "--spare-snow/--no-spare-snow",
            default=True,
            show_default=True,
            help="Where the input has a green, a NIR and a SWIR-1 band (Sentinel-2, Landsat, "
            "hyperspectral), pixels it calls snow (NDSI >= 0.7, NIR >= 0.7 x green) keep their "
            "input through the removal (the rgbn/rgb models read snow as haze). Ice clouds pass "
            "the test too and keep their input. The mask is not spared (see --input-swir).",
        ),
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
            "reflectance, so model removers refuse it by default (measured on the RICE2 pairs, DN / 255: "
            "the shipped rgb remover -0.22 dB, the cGAN before it -1.02 dB, inpainting +0.23 dB on the 62 "
            "with enough pixels not called thick; "
            "python -m bench.removal_real); pass this only if the 8-bit values are calibrated reflectance.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


#: The parameters of :func:`removal_options` (``batch --detect-only`` refuses them).
REMOVAL_PARAMS = ("spare_snow", "output_bands", "method", "output_dtype", "compress", "allow_8bit")


def refuse_unused(names: tuple[str, ...], why: str) -> None:
    """An option given on the command line but unused is an error, not silence: refuse any of
    the parameters ``names`` the user gave, saying ``why``."""
    ctx = click.get_current_context()
    given = [
        f"--{n.replace('_', '-')}"
        for n in names
        if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(f"{', '.join(given)}: {why}")


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
        spare_snow=p.get("spare_snow", True),
        output_bands=p.get("output_bands", "model"),
        output_dtype=p.get("output_dtype", "auto"),
        compress=p.get("compress", "zstd"),
        allow_8bit=p.get("allow_8bit", False),
        shadow_threshold=p.get("shadow_threshold"),
        trees=p.get("trees", True),
        input_swir=p.get("input_swir", True),
        overwrite=p["overwrite"],
        source=src,
    )


def _run(input_path: str, out, mask, report, options: RunOptions) -> dict[str, Any]:  # noqa: ANN001
    """One pass with a progress bar over its lines."""
    src = options.source
    if input_path == "-" and not src.profile and not (src.wavelengths and src.bil_width):
        raise click.UsageError("INPUT '-' needs --profile NAME, or --bil-width and --wavelengths")
    with _progress(0, "lines") as bar:  # process() sets its length once the input is open
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


def _echo_summary(rep: dict[str, Any]) -> None:
    """The pass's one-line summary on stdout; on stderr, a warning where no pixel held data (a
    file whose output is all no data is worth a word, not a silent success)."""
    click.echo(_summary(rep))
    px = rep.get("class_pixels", {})
    if rep.get("lines") and px and px.get("nodata") == rep["lines"] * rep["width"]:
        click.echo(
            "Warning: every pixel is no data (each holds the no-data value in some band, or 0 "
            "in every band); if a band is all fill (a water-vapour band, say), leave it out, or "
            "list it in the ENVI header's bad band list `bbl`; or check --nodata",
            err=True,
        )


def sample_scene_path() -> Path:
    """Path of the bundled sample scene (Landsat-7 ETM+, 6 bands; see kumo_edge/data/SAMPLE.md)."""
    from importlib import resources

    return Path(str(resources.files("kumo_edge").joinpath("data/sample_landsat7_nc.tif")))
