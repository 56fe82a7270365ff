"""File-level runs of the stream: sources (raster files strip by strip, numpy iterators, a raw
band-interleaved-by-line byte stream as a pushbroom sensor emits it), sinks (cleaned cube and
class mask as GeoTIFFs written incrementally, a JSON report), and model selection."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from . import _tiling_kernels as _tk
from .bands import BandSet
from .classes import ACTIONS, COLOURS, MaskClass
from .counts import Counts, check_reflectance
from .errors import KumoError, RasterReadError, RasterWriteError
from .io import (
    FLOAT_NODATA,
    GeoTiffWriter,
    Raster,
    WriterGroup,
    _partial_prefix,
    bands_of_fill,
    check_outputs,
    fill_bands_message,
    fill_values,
    nodata_rule,
    non_finite_message,
    set_block_cache,
    shift_georeferencing,
    space_hint,
    values_valid,
)
from .overlap import Background, prefetch
from .remover import Remover
from .runtime import PREFERENCE, Model, load_models  # noqa: F401 - re-exported
from .stream import Lines, StreamConfig, StreamProcessor

logger = logging.getLogger(__name__)

MASK_CLASSES = {str(int(c)): name for c, name in ACTIONS.items()}
#: The mask's GDAL colour table.
MASK_COLOURS = {int(c): rgba for c, rgba in COLOURS.items()}

#: A strip of input lines: float32 reflectance and its validity, or stored integer values
#: (:class:`kumo_edge.counts.Counts`, which carry their validity) and None.
Chunk = tuple[npt.NDArray[np.float32] | Counts, npt.NDArray[np.bool_] | None]


#: GDAL block cache of a streamed run (see :func:`kumo_edge.io.set_block_cache`). Every block
#: is read once and every output strip written once, so two output strip rows of 32 bands x
#: 4000 px suffice: 8 MB peaked 24 MB lower than 32 MB at the same speed (1,000 lines,
#: 2026-11-30); with 8-row output strips (2 MB each) 4 MB peaks 5-8 MB lower than 8 MB from a
#: striped file at the same speed (2 MB: 2 MB less again, first line slower; 2026-12-05).
STREAM_BLOCK_CACHE = 4 * 2**20


def raster_chunks(r: Raster, lines: int, rows: tuple[int, int] | None = None) -> Iterator[Chunk]:
    """Strips of ``lines`` rows (of the lines ``rows = (first, stop)`` only, where given), every
    stored block read once (:meth:`Raster.natural_strips`); an integer file's as its stored
    values (:meth:`Raster.natural_counts`), which the stream converts in one pass."""
    if r.dtype.kind in "iu":
        for counts in r.natural_counts(lines, rows):
            yield counts, None
        return
    for strip in r.natural_strips(lines, rows):
        yield strip.data, strip.valid


def bil_chunks(
    stream: BinaryIO,
    width: int,
    bands: int,
    dtype: str,
    lines: int,
    scale: float = 1.0,
    offset: float = 0.0,
    nodata: float | str | None = "auto",
) -> Iterator[Chunk]:
    """Band-interleaved-by-line records from a byte stream: each line is ``bands x width``
    samples of ``dtype`` (band 1's line, then band 2's, ...). A truncated final line is an error.

    ``nodata`` as a file's (:class:`kumo_edge.io.Raster`): a stored value (a pixel with it in any
    band is no data), ``"nan"``, ``"auto"`` (a stream declares nothing: pixels whose bands are
    all 0, a swath edge's fill) or None (every pixel is data)."""
    dt = np.dtype(dtype)
    line_bytes = bands * width * dt.itemsize
    rule = nodata_rule(nodata, None)  # a stream declares nothing of its own
    got = 0
    while True:
        blob = _read_exact(stream, line_bytes * lines)
        if not blob:
            return
        n, rest = divmod(len(blob), line_bytes)
        if rest:
            raise RasterReadError(
                f"input stream ended inside line {got + n} ({rest} of {line_bytes} bytes); the pass is truncated"
            )
        # made float32 reflectance here, not passed on as stored values (as a file's integer
        # strips are, kumo_edge.counts.Counts): measured that way, the stream's peak from stdin
        # was 6-7 MB higher (389-391 against 383-386 MB at 1,000 and 5,000 lines, 32 bands x
        # 4000 px, 2026-12-05), whatever the layout of the strip handed on
        raw = np.frombuffer(blob, dtype=dt).reshape(n, bands, width).transpose(1, 0, 2)
        if not got:  # a band of fill (a dead detector band) named once, from the first lines
            fills = fill_values(*rule, dt)
            fill = bands_of_fill(raw, fills)
            if fill is not None:
                logger.warning(
                    "%s across lines 0-%d while the others hold data: a dead or empty band? "
                    "Read as it is (a stream's bands are never left out)",
                    fill_bands_message("input stream", fill, fills),
                    n - 1,
                )
        valid = _stream_valid(raw, rule)
        arr = raw.astype(np.float32)
        del blob, raw
        arr *= np.float32(scale)  # in place: no temporaries of the strip
        arr += np.float32(offset)
        if valid is not None:
            arr[:, ~valid] = 0.0
        bad = ~np.isfinite(arr)
        if bad.any():  # (stored NaN/inf stay so through scale and offset)
            raise KumoError(
                non_finite_message(f"in lines {got}-{got + n - 1} of the input stream", arr[bad])
            )
        check_reflectance(arr, valid, f"input stream lines {got}-{got + n - 1}")
        np.clip(arr, 0.0, 1.0, out=arr)
        yield arr, valid
        del arr, valid
        got += n


def _stream_valid(
    raw: npt.NDArray[Any], rule: tuple[float | None, bool]
) -> npt.NDArray[np.bool_] | None:
    """``(n, width)`` validity of a stream's stored values under :func:`nodata_rule`'s
    ``rule`` (see :func:`bil_chunks`); None where every pixel is data."""
    valid = values_valid(raw, *rule)
    return None if valid.all() else valid


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    parts, total = [], 0
    while total < size:
        b = stream.read(size - total)
        if not b:
            break
        parts.append(b)
        total += len(b)
    return b"".join(parts)


class _Spool:
    """Lines of unknown total count, spooled to a temporary file (constant memory), then copied
    into a GeoTIFF once the count is known."""

    def __init__(self, bands: int, width: int, dtype: str, beside: Path) -> None:
        # named after its output, so that a later run removes it if this one is killed
        fd, name = tempfile.mkstemp(
            prefix=_partial_prefix(beside), suffix=".spool", dir=beside.resolve().parent
        )
        self.f = os.fdopen(fd, "w+b")
        self.path = Path(name)
        self.bands, self.width, self.dtype, self.rows = bands, width, np.dtype(dtype), 0

    def write(self, data: np.ndarray) -> None:
        try:
            self.f.write(np.ascontiguousarray(data.astype(self.dtype).transpose(1, 0, 2)).tobytes())
        except OSError as exc:
            raise RasterWriteError(
                f"{self.path.parent}: cannot spool the stream ({exc.strerror}){space_hint(self.path)}"
            ) from None
        self.rows += data.shape[1]

    def copy_to(self, writer: GeoTiffWriter, lines: int = 64) -> None:
        """Copy the spooled lines into ``writer``, ``lines`` at a time, by explicit reads (a
        memory map would count every page read towards the process's resident memory)."""
        self.f.flush()
        self.f.seek(0)
        line_bytes = self.bands * self.width * self.dtype.itemsize
        buf = np.empty((lines, self.bands, self.width), self.dtype)
        for r in range(0, self.rows, lines):
            n = min(lines, self.rows - r)
            view = buf[:n]
            got = self.f.readinto(memoryview(view.reshape(-1)).cast("B"))
            if got != n * line_bytes:
                raise KumoError(
                    f"{self.path}: spool file ended early ({got} of {n * line_bytes} bytes)"
                )
            writer.write(np.ascontiguousarray(view.transpose(1, 0, 2)), r)

    def close(self) -> None:
        self.f.close()
        self.path.unlink(missing_ok=True)


#: Output sample types: nodata value and GDAL scale (reflectance = value x scale).
OUTPUT_DTYPES: dict[str, tuple[float, float | None]] = {
    "float32": (FLOAT_NODATA, None),
    "uint16": (65535.0, 1e-4),
}


def encode(data: npt.NDArray[np.float32], mask: npt.NDArray[np.uint8], dtype: str) -> npt.NDArray:
    """Output lines in the output's sample type, nodata where the mask says no data (a new
    array: the lines the stream hands out are views of its ring)."""
    nodata, scale = OUTPUT_DTYPES[dtype]
    if scale is None:
        out = data.copy()
        out[:, mask == 0] = nodata
        return out
    u16 = np.empty(data.shape, np.uint16)  # in one pass: no float temporaries of the lines
    _tk.encode_u16(
        data, np.ascontiguousarray(mask), np.float32(1.0 / scale), np.uint16(nodata), u16
    )
    return u16


def peak_rss_mb() -> float | None:
    """This process's peak resident memory since it started its program (``VmHWM``; unlike
    ``ru_maxrss`` it excludes what a forking parent held before ``exec``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def band_descriptions(bands: BandSet) -> list[str]:
    """GeoTIFF band descriptions: the band's name (where known) and centre wavelength."""
    return [
        f"{n} {c:.1f} nm".strip() if n else f"{c:.1f} nm"
        for n, c in zip(bands.names, bands.centers_nm, strict=True)
    ]


def output_writers(
    out: Path | None,
    mask: Path | None,
    width: int,
    height: int,
    bands: BandSet | None,
    out_dtype: str,
    compress: str,
    geo: dict[str, Any],
    overwrite: bool,
) -> tuple[GeoTiffWriter | None, GeoTiffWriter | None]:
    """The writers of a run's cleaned cube (``bands``, ``out_dtype``, nodata and scale declared,
    bands named) and class mask (colour table, category names), striped for streaming."""
    nodata, scales = OUTPUT_DTYPES[out_dtype]
    nb = len(bands) if out else 0
    w_out = (
        GeoTiffWriter(
            out,
            width=width,
            height=height,
            count=nb,
            dtype=out_dtype,
            bands=bands,
            nodata=nodata,
            scales=None if scales is None else [scales] * nb,
            descriptions=band_descriptions(bands),
            overwrite=overwrite,
            layout="striped",
            compress=compress,
            **geo,
        )
        if out
        else None
    )
    w_mask = (
        GeoTiffWriter(
            mask,
            width=width,
            height=height,
            count=1,
            dtype="uint8",
            nodata=0,
            tags={"KUMO_MASK_CLASSES": json.dumps(MASK_CLASSES)},
            descriptions=["cloud mask class"],
            colormap=MASK_COLOURS,
            categories=list(MASK_CLASSES.values()),
            overwrite=overwrite,
            layout="striped",
            **geo,
        )
        if mask
        else None
    )
    return w_out, w_mask


@functools.lru_cache(maxsize=32)
def file_sha256(path: Path, size: int, mtime_ns: int) -> str:  # size, mtime: the cache key
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def model_files(detector: Model, remover: Remover | None) -> dict[str, dict[str, str]]:
    """The model files of a run with their SHA-256 (report and STAC provenance)."""
    out = {}
    for role, m in (("detector", detector), ("remover", remover)):
        path = getattr(m, "path", None)
        if path is not None:
            st = Path(path).stat()
            out[role] = {
                # the folder too: swir6 runs with rgbn's remover (runtime.remover_source)
                "file": f"{Path(path).parent.name}/{Path(path).name}",
                "sha256": file_sha256(Path(path), st.st_size, st.st_mtime_ns),
            }
            if getattr(m, "view", None) is not None:
                out[role]["bands_read"] = [int(i) for i in m.view]  # of the detector's bands
    if getattr(detector, "uses_trees", False):
        trees = detector.trees
        st = trees.path.stat()  # the mask's second opinion (kumo_edge.trees)
        out["detector_trees"] = {
            "file": f"{trees.path.parent.name}/{trees.path.name}",
            "sha256": file_sha256(trees.path, st.st_size, st.st_mtime_ns),
        }
    return out


def run_stream(
    chunks: Iterator[Chunk],
    width: int,
    bands: BandSet,
    detector: Model,
    generator: Remover | None,
    config: StreamConfig,
    out: Path | None = None,
    mask: Path | None = None,
    report: Path | None = None,
    height: int | None = None,
    geo: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Any = None,
    meta: dict[str, Any] | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """Stream ``chunks`` through the models into the requested outputs; returns the report.

    With ``height`` known (a raster file) the GeoTIFFs are written as lines finish; without it
    (a byte stream) the lines are spooled to a temporary file beside the output and copied into
    the GeoTIFF at the end. Every output is written under a temporary name and appears only when
    complete.

    ``window = (first, stop, a, b)``: ``chunks`` are the pass's lines ``[first, stop)`` (from
    :func:`kumo_edge.stream.input_window`) and only the output lines ``[a, b)`` are written (the
    outputs are ``b - a`` lines high, georeferenced where those lines lie) and reported.
    """
    check_outputs({"OUTPUT": out, "--mask": mask, "--report": report}, [], overwrite)
    set_block_cache(STREAM_BLOCK_CACHE)
    proc = StreamProcessor(width, bands, detector, generator, config)
    nb = len(proc.out_bands)
    out_dtype = (meta or {}).get("output_dtype", "float32")
    if out_dtype not in OUTPUT_DTYPES:
        raise KumoError(f"output dtype {out_dtype!r}: choose one of {', '.join(OUTPUT_DTYPES)}")
    compress = (meta or {}).get("compress", "deflate")
    geo = geo or {}
    group = WriterGroup()
    spools: list[_Spool] = []
    t0 = time.perf_counter()
    first_line: list[float | None] = [None]  # wall-clock time the first output line was ready
    first, keep_from, keep_to = 0, 0, None
    if window is not None:
        if height is None:
            raise KumoError("a line range needs a file of known height")
        first, _, keep_from, keep_to = window
        height = keep_to - keep_from
        geo = shift_georeferencing(geo, keep_from)
    class_pixels = np.zeros(len(MASK_CLASSES), np.int64)

    def open_writers(h: int) -> tuple[GeoTiffWriter | None, GeoTiffWriter | None]:
        w_out, w_mask = output_writers(
            out, mask, width, h, proc.out_bands, out_dtype, compress, geo, overwrite
        )
        group.add(w_out)
        group.add(w_mask)
        return w_out, w_mask

    try:
        with group:
            if height is not None:
                w_out, w_mask = open_writers(height)
            else:
                s_out = _Spool(nb, width, out_dtype, out) if out else None
                s_mask = _Spool(1, width, "uint8", mask) if mask else None
                spools.extend(s for s in (s_out, s_mask) if s is not None)

            def sink(lines: Lines) -> None:
                if window is not None:  # keep the lines [keep_from, keep_to) of the pass
                    r0 = lines.row + first
                    lo, hi = max(r0, keep_from), min(r0 + lines.mask.shape[0], keep_to)
                    if lo >= hi:
                        return
                    i, j = lo - r0, hi - r0
                    lines = Lines(lo - keep_from, lines.data[:, i:j], lines.mask[i:j])
                if first_line[0] is None:
                    first_line[0] = time.time()
                class_pixels[:] += np.bincount(lines.mask.ravel(), minlength=len(class_pixels))
                if out is not None:
                    lines = Lines(lines.row, encode(lines.data, lines.mask, out_dtype), lines.mask)
                writer.submit(store, lines)  # written while the models go on
                if progress is not None:
                    progress.update(lines.data.shape[1])

            def store(lines: Lines) -> None:
                if height is not None:
                    if w_out:
                        w_out.write(lines.data, lines.row)
                    if w_mask:
                        w_mask.write(lines.mask[None], lines.row)
                else:
                    if s_out:
                        s_out.write(lines.data)
                    if s_mask:
                        s_mask.write(lines.mask[None])

            # the next strip is read and the finished lines written beside the models (one
            # strip and one piece of lines ahead); the stream's lines are new arrays, never
            # changed once handed out
            ahead = prefetch(iter(chunks), join_timeout=None if height is not None else 1.0)
            try:
                with Background() as writer:
                    for data, valid in ahead:
                        if isinstance(data, Counts):
                            proc.push_counts(data, sink)
                        else:
                            proc.push(data, valid, sink)
                        # dropped before the next strip is taken: else three strips are alive
                        # (this one, the one queued, the one being read)
                        del data, valid
                    proc.flush(sink)
            finally:
                ahead.close()
            if height is None:
                if not proc.received:
                    raise RasterReadError("the input stream is empty: no line was received")
                w_out, w_mask = open_writers(proc.received)
                if s_out and w_out:
                    s_out.copy_to(w_out)
                if s_mask and w_mask:
                    s_mask.copy_to(w_mask)
    finally:
        for s in spools:
            s.close()

    if window is not None:  # the tiles whose rows start in the range, in pass coordinates
        kept = []
        for t in proc.report.tiles:
            if "row" in t and keep_from <= t["row"] + first < keep_to:
                kept.append({**t, "row": t["row"] + first})
        proc.report.tiles = kept
        proc.report.lines = keep_to - keep_from
    rep = {
        **(meta or {}),
        **proc.report.to_dict(),
        # pixels written per mask class (no data, clear, thin, thick, shadow)
        "class_pixels": {c.name.lower(): int(class_pixels[c]) for c in MaskClass},
        "wall_seconds": time.perf_counter() - t0,
        "first_line_at": first_line[0],
        "peak_rss_mb": peak_rss_mb(),
        "mask_classes": MASK_CLASSES,
    }
    rep["width"] = width
    if report is not None:
        write_json_atomic(report, rep)
    return rep


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` under a temporary name, renamed when complete."""
    tmp = path.with_name(f"{_partial_prefix(path)}partial")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def stdin_binary() -> BinaryIO:
    return sys.stdin.buffer
