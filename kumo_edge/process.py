"""One input to its outputs: the library call behind ``kumo-edge run`` and ``kumo-edge detect``,
and the task every scene of a ground batch runs (:mod:`kumo_edge.ground`).

Every setting travels in two frozen objects, :class:`Source` (how to read the input) and
:class:`RunOptions` (what to do with it), so that a caller states a run once and hands it on::

    from kumo_edge.process import RunOptions, process
    report = process("pass.tif", "clean.tif", mask="mask.tif", options=RunOptions(models="hsi32"))

``rows=(a, b)`` processes one range of a file's lines, reading only the lines (and the halo of
tile rows) it needs; the lines it writes equal those of a run over the whole file
(:func:`kumo_edge.stream.input_window`), which is how the ground side splits a long pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .bands import BandSet
from .config import DEFAULT_BATCH, sensor_profile
from .errors import ConfigError, KumoError
from .io import STREAM_STRIP_LINES, Raster, check_outputs, estimate_fwhm

logger = logging.getLogger("kumo_edge")


@dataclass(frozen=True)
class Source:
    """How to read the input: metadata that overrides the file's, or describes a BIL stream.

    Attributes:
        wavelengths, fwhm: Band centres and widths in nm (override the file's metadata).
        scale, offset: Stored value x scale + offset = reflectance (one value or one per band).
        nodata: No-data value, ``"nan"``, ``"auto"`` (the file's, else all-zero pixels) or None.
        profile: Sensor profile giving the band set (and a BIL stream's width).
        bil_width, bil_dtype: A raw band-interleaved-by-line stream's line width and sample type.
    """

    wavelengths: tuple[float, ...] | None = None
    fwhm: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    offset: tuple[float, ...] | None = None
    nodata: float | str | None = "auto"
    profile: str | None = None
    bil_width: int | None = None
    bil_dtype: str = "uint16"

    def open(self, path: str | Path) -> Raster:
        """The raster at ``path`` read with these settings (``profile`` supplies the band set
        of a file without wavelength metadata; the band counts must agree)."""
        wl, fw = self.wavelengths, self.fwhm
        if self.profile and wl:
            raise ConfigError("give --profile or --wavelengths, not both")
        if self.profile:
            bands = sensor_profile(self.profile).bands
            wl, fw = bands.centers_nm, fw or bands.fwhm_nm
        return Raster(
            path,
            wavelengths=list(wl) if wl else None,
            fwhm=list(fw) if fw else None,
            scale=list(self.scale) if self.scale else None,
            offset=list(self.offset) if self.offset else None,
            nodata=self.nodata,
        )


@dataclass(frozen=True)
class RunOptions:
    """What a run does.

    Attributes:
        models: A shipped band set (``hsi32``, ``swir6``, ``rgbn``, ``rgb``), a model folder, or
            None (the first shipped set the input can be resampled to).
        method: Cloud remover: ``model`` (the band set's remover model), ``cgan`` (older name),
            ``hot`` or ``inpaint`` (classical baselines).
        remove: Remove thin cloud and shadow (False: detection only, no cleaned output).
        threads: ONNX Runtime intra-op threads (None: its own choice).
        providers: Execution providers in priority order (``cpu``, ``cuda``, ``tensorrt``).
        strip_lines: Lines converted (or received) per strip.
        batch: Tiles per inference call.
        drop_fraction: Tiles more cloudy than this are reported ``drop``.
        spare_snow: Snow the input's own SWIR band finds keeps its input (see
            :class:`kumo_edge.stream.StreamConfig`).
        input_swir: The input's own SWIR-1 band tests the mask where the models' bands have
            none (see :class:`kumo_edge.stream.StreamConfig`).
        output_bands: ``model`` or ``input`` (see :class:`kumo_edge.stream.StreamConfig`).
        output_dtype: ``auto`` (uint16 for integer input, else float32), ``uint16``, ``float32``.
        compress: Compression of the cleaned output: ``zstd``, ``deflate`` or ``none``.
        allow_8bit: Let model removers run on 8-bit input (refused by default).
        trees: The detector's tree ensemble, where one ships beside it (rgbn, hsi32), gives its second
            opinion on cloud for the mask and the report (:mod:`kumo_edge.trees`); False: the
            network alone. The removal is the network's either way.
        shadow_threshold: Overrides the detector's shadow operating point (contract
            ``shadow_threshold``): shadow where P(shadow) / (P(shadow) + P(clear)) exceeds it;
            0.5 is "the larger of the two" (fewer, surer shadow pixels).
        overwrite: Replace existing outputs.
        source: How to read the input.
    """

    models: str | None = None
    method: str = "model"
    remove: bool = True
    threads: int | None = None
    providers: tuple[str, ...] = ("cpu",)
    strip_lines: int = STREAM_STRIP_LINES
    batch: int = DEFAULT_BATCH
    drop_fraction: float = 0.7
    spare_snow: bool = True
    input_swir: bool = True
    output_bands: str = "model"
    output_dtype: str = "auto"
    compress: str = "zstd"
    allow_8bit: bool = False
    shadow_threshold: float | None = None
    trees: bool = True
    overwrite: bool = False
    source: Source = field(default_factory=Source)

    def __post_init__(self) -> None:
        for v in self.source.scale or ():
            if not (v > 0 and np.isfinite(v)):
                raise ConfigError(f"--scale must be > 0, got {v:g}")
        if self.shadow_threshold is not None and not 0.0 < self.shadow_threshold < 1.0:
            raise ConfigError(f"--shadow-threshold must lie in (0, 1), got {self.shadow_threshold}")
        if self.output_dtype not in ("auto", "uint16", "float32"):
            raise ConfigError(f"output dtype {self.output_dtype!r}: auto, uint16 or float32")

    def with_(self, **changes: Any) -> RunOptions:
        """A copy with ``changes``."""
        return replace(self, **changes)


def output_dtype(choice: str, input_dtype: np.dtype) -> str:
    """The output's sample type for ``--output-dtype choice`` and the input's type."""
    if choice != "auto":
        return choice
    return "uint16" if np.dtype(input_dtype).kind in "ui" else "float32"


def refuse_8bit(dtype: np.dtype, options: RunOptions, what: str) -> None:
    """Model removers refuse 8-bit input unless told otherwise (``allow_8bit``)."""
    from .baselines import MODEL_METHODS

    if (
        options.remove
        and options.method in MODEL_METHODS
        and dtype == np.uint8
        and not options.allow_8bit
    ):
        raise KumoError(
            f"{what} is 8-bit: such imagery is display-stretched, not reflectance, and the model "
            "removers were measured to make it worse (62 RICE2 pairs: -0.22 dB); use `kumo-edge "
            "detect` for the mask, --method inpaint (+0.23 dB there), or --allow-8bit if the "
            "values are calibrated reflectance"
        )


def _is_real_dtype(name: str) -> bool:
    try:
        return np.dtype(name).kind in "uif"
    except TypeError:
        return False


def process(
    input_path: str | Path,
    out: str | Path | None,
    mask: str | Path | None = None,
    report: str | Path | None = None,
    options: RunOptions | None = None,
    progress: Any = None,
    rows: tuple[int, int] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Detect clouds in ``input_path`` (a raster file, or ``"-"`` for a BIL stream on stdin)
    and, with ``options.remove``, remove thin cloud and shadow into ``out``; write the class
    ``mask`` and the JSON ``report`` where given. Returns the report.

    Args:
        progress: A tqdm-like object whose ``update(n)`` is called per finished line.
        rows: ``(first, stop)``: process only these lines of a file (``first`` a multiple of the
            stream's stride); the outputs then hold those lines only.
        meta: Extra fields for the report.

    Raises:
        KumoError: Bad input, settings or outputs, with a one-line message; nothing is written.
    """
    from .pipeline import bil_chunks, raster_chunks, run_stream, stdin_binary
    from .stream import StreamConfig

    o = options or RunOptions()
    src = o.source
    paths = {
        "OUTPUT": Path(out) if out else None,
        "--mask": Path(mask) if mask else None,
        "--report": Path(report) if report else None,
    }
    if not o.remove:
        paths["OUTPUT"] = None
    cfg = StreamConfig(
        batch=o.batch,
        drop_fraction=o.drop_fraction,
        remove=o.remove,
        output_bands=o.output_bands,
        spare_snow=o.spare_snow,
        input_swir=o.input_swir,
    )
    # every output checked (writable, distinct, not the input) before any work
    check_outputs(paths, [str(input_path)], o.overwrite)
    meta = {**(meta or {}), "input": str(input_path), "compress": o.compress}
    stream_args = (paths["OUTPUT"], paths["--mask"], paths["--report"])
    if str(input_path) == "-":
        if rows is not None:
            raise ConfigError("a line range needs a file, not a stream")
        bands, width = _stream_bands(src, meta)
        refuse_8bit(np.dtype(src.bil_dtype), o, "the stdin stream")
        default_scale = 1.0 / (2**16 - 1) if src.bil_dtype == "uint16" else 1.0
        sc = (src.scale or (default_scale,))[0]
        of = (src.offset or (0.0,))[0]
        det, gen = _models(o, bands, np.dtype(src.bil_dtype), meta)
        chunks = bil_chunks(
            stdin_binary(), width, len(bands), src.bil_dtype, o.strip_lines, sc, of, src.nodata
        )
        return run_stream(
            chunks, width, bands, det, gen, cfg, *stream_args, None, None, o.overwrite,
            progress, meta,
        )  # fmt: skip
    if src.bil_width or src.bil_dtype != "uint16":
        unused = ["--bil-width"] if src.bil_width else []
        unused += ["--bil-dtype"] if src.bil_dtype != "uint16" else []
        raise ConfigError(f"{', '.join(unused)} only apply to INPUT '-' (a BIL stream)")
    with src.open(input_path) as r:
        if progress is not None and hasattr(progress, "total"):  # a tqdm bar: its length
            progress.total = r.height if rows is None else rows[1] - rows[0]
        refuse_8bit(r.dtype, o, Path(input_path).name)
        det, gen = _models(o, r.bands, r.dtype, meta)
        out_bands = len(r.bands) if o.output_bands == "input" else len(det.contract.bands)
        lines = r.height if rows is None else rows[1] - rows[0]
        check_free_space(paths, r.width, lines, out_bands, meta["output_dtype"], o.compress)
        geo = r.georeferencing
        window = None
        if rows is not None:
            from .stream import input_window

            c = det.contract
            window = (*input_window(rows, r.height, c.tile, c.halo), *rows)
            meta["rows"] = list(rows)
        chunks = raster_chunks(r, o.strip_lines, window[:2] if window else None)
        return run_stream(
            chunks, r.width, r.bands, det, gen, cfg, *stream_args, r.height, geo, o.overwrite,
            progress, meta, window,
        )  # fmt: skip


#: Smallest compression ratio assumed of a cleaned cube (zstd/deflate on reflectance: measured
#: 1.3-2x); a disk with less free space than the output needs at this ratio is refused.
BEST_COMPRESSION = 4.0


def check_free_space(
    paths: dict[str, Path | None],
    width: int,
    lines: int,
    bands: int,
    dtype: str,
    compress: str,
) -> None:
    """Refuse a run whose outputs cannot fit on their disk even at :data:`BEST_COMPRESSION`
    (warn when they would not fit uncompressed): before any work, not halfway through a pass."""
    import shutil

    need: dict[Path, float] = {}
    sizes = {"OUTPUT": bands * np.dtype(dtype).itemsize, "--mask": 1}
    for key, per_px in sizes.items():
        p = paths.get(key)
        if p is None:
            continue
        folder = p.resolve().parent
        need[folder] = need.get(folder, 0.0) + width * lines * per_px
    for folder, raw in need.items():
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        low = raw / (BEST_COMPRESSION if compress != "none" else 1.0)
        if free < low:
            raise KumoError(
                f"{folder}: {_size(free)} free, the outputs need at least {_size(low)} "
                f"({_size(raw)} uncompressed); free space or choose another folder"
            )
        if free < raw:
            logger.warning(
                "%s: %s free; the outputs take %s uncompressed and fit only if they compress well",
                folder,
                _size(free),
                _size(raw),
            )


def _size(n: float) -> str:
    """A byte count for a message: MB, with a decimal below 10 MB, kB below 1 MB."""
    mb = n / 2**20
    if mb < 1:
        return f"{n / 1024:.0f} kB"
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:.0f} MB"


def _models(
    o: RunOptions, bands: BandSet, input_dtype: np.dtype, meta: dict[str, Any]
) -> tuple[Any, Any]:
    """The detector and remover for data in ``bands``; what the report says of them (names,
    files and hashes, shadow point, output sample type) goes into ``meta``."""
    from .pipeline import load_models, model_files

    det, gen, name = load_models(
        o.models, bands, list(o.providers), o.threads, need_generator=o.remove, method=o.method
    )
    meta["models"], meta["method"] = name, o.method if o.remove else None
    if not o.trees:
        det.use_trees(None)
    meta["model_files"] = model_files(det, gen)
    meta["shadow_threshold"] = _shadow_point(det, o)
    meta["output_dtype"] = output_dtype(o.output_dtype, input_dtype)
    return det, gen


def _shadow_point(det: Any, o: RunOptions) -> float:
    """The detector's shadow operating point, overridden by ``o.shadow_threshold`` if given."""
    if o.shadow_threshold is not None:
        det.contract = replace(det.contract, shadow_threshold=float(o.shadow_threshold))
    return det.contract.shadow_threshold


def _stream_bands(src: Source, meta: dict[str, Any]) -> tuple[BandSet, int]:
    """Band set and line width of a BIL stream, from the profile or the explicit options."""
    if not _is_real_dtype(src.bil_dtype):
        raise ConfigError(
            f"--bil-dtype {src.bil_dtype!r} is not a real sample type (uint8, uint16, int16, float32, ...)"
        )
    if src.profile:
        prof = sensor_profile(src.profile)
        if src.bil_width and prof.width_px and src.bil_width != prof.width_px:
            # a cropped or resampled stream: its width wins, and the report says so
            logger.warning(
                "--bil-width %d overrides the %d px per line of profile %s",
                src.bil_width,
                prof.width_px,
                src.profile,
            )
            meta["width_note"] = (
                f"--bil-width {src.bil_width} overrode profile {src.profile} ({prof.width_px} px)"
            )
        width = src.bil_width or prof.width_px
        if not width:
            raise ConfigError(f"profile {src.profile} has no line width: give --bil-width")
        return prof.bands, width
    if src.wavelengths and src.bil_width:
        wl = list(src.wavelengths)
        fw = list(src.fwhm) if src.fwhm else list(estimate_fwhm(wl))
        return BandSet(tuple(wl), tuple(fw)), src.bil_width
    raise ConfigError("INPUT '-' needs --profile NAME, or --bil-width and --wavelengths")
