"""File-level runs of the stream: sources (raster files strip by strip, numpy iterators, a raw
band-interleaved-by-line byte stream as a pushbroom sensor emits it), sinks (cleaned cube and
class mask as GeoTIFFs written incrementally, a JSON report), and model selection."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from .bands import BandSet, resampling_matrix
from .baselines import METHODS, Remover, remover
from .errors import BandMappingError, ConfigError, KumoError, RasterReadError
from .io import GeoTiffWriter, Raster, WriterGroup, check_output_path
from .runtime import Model, load_model, shipped_models
from .stream import Lines, StreamConfig, StreamProcessor

#: Preference order when the caller does not name a model set.
PREFERENCE = ("hsi32", "rgbn", "rgb")
MASK_CLASSES = {
    "0": "no data",
    "1": "clear",
    "2": "thin cloud (removed)",
    "3": "thick cloud (unrecoverable)",
    "4": "cloud shadow (corrected)",
}

Chunk = tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_] | None]


def load_models(
    models: str | None,
    bands: BandSet,
    providers: list[str] | None = None,
    threads: int | None = None,
    need_generator: bool = True,
    method: str = "cgan",
) -> tuple[Model, Remover | None, str]:
    """The detector (and cloud remover) for data in ``bands``.

    ``models``: a shipped band set name (``hsi32``, ``rgbn``, ``rgb``), a folder holding
    ``detector.onnx`` / ``generator.onnx``, or None to pick the first shipped set the data can be
    resampled to (in the order hsi32, rgbn, rgb). ``method``: ``cgan`` (the generator model) or a
    classical remover of :mod:`kumo_edge.baselines` (``hot``, ``inpaint``) working in the
    detector's band set.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    det, gen, name = _load_models(
        models, bands, providers, threads, need_generator and method == "cgan"
    )
    if need_generator and method != "cgan":
        gen = remover(method, det.bands)
    return det, gen, name


def _load_models(
    models: str | None,
    bands: BandSet,
    providers: list[str] | None,
    threads: int | None,
    need_generator: bool,
) -> tuple[Model, Model | None, str]:
    shipped = shipped_models()
    if models is None:
        reasons = []
        for name in PREFERENCE:
            if name not in shipped:
                continue
            det = load_model(shipped[name]["detector"], providers, threads)
            try:
                resampling_matrix(bands, det.contract.bands)
            except BandMappingError as exc:
                reasons.append(f"{name}: {exc}")
                continue
            gen = (
                load_model(shipped[name]["generator"], providers, threads)
                if need_generator and "generator" in shipped[name]
                else None
            )
            return det, gen, name
        raise BandMappingError(
            "no shipped model set fits this data: " + "; ".join(reasons or ["no models shipped"])
        )
    folder = Path(models)
    if folder.is_dir():
        files = {k: folder / f"{k}.onnx" for k in ("detector", "generator")}
        name = str(folder)
    elif models in shipped:
        files, name = shipped[models], models
    else:
        raise ConfigError(
            f"--models {models!r} is neither a folder with detector.onnx nor a shipped set ({', '.join(sorted(shipped)) or 'none'})"
        )
    if not Path(files["detector"]).exists():
        raise ConfigError(f"{files['detector']}: no detector model")
    det = load_model(files["detector"], providers, threads)
    gen = None
    if need_generator:
        if not Path(files.get("generator", "")).exists():
            raise ConfigError(f"no generator.onnx beside {files['detector']}")
        gen = load_model(files["generator"], providers, threads)
    resampling_matrix(bands, det.contract.bands)  # refuse early, with the band named
    return det, gen, name


def raster_chunks(r: Raster, lines: int) -> Iterator[Chunk]:
    for strip in r.strips(lines):
        yield strip.data, strip.valid


def bil_chunks(
    stream: BinaryIO,
    width: int,
    bands: int,
    dtype: str,
    lines: int,
    scale: float = 1.0,
    offset: float = 0.0,
) -> Iterator[Chunk]:
    """Band-interleaved-by-line records from a byte stream: each line is ``bands x width``
    samples of ``dtype`` (band 1's line, then band 2's, ...). A truncated final line is an error."""
    dt = np.dtype(dtype)
    line_bytes = bands * width * dt.itemsize
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
        arr = (
            np.frombuffer(blob, dtype=dt)
            .reshape(n, bands, width)
            .transpose(1, 0, 2)
            .astype(np.float32)
        )
        arr = arr * np.float32(scale) + np.float32(offset)
        valid = np.isfinite(arr).all(axis=0)
        if not valid.all():
            raise KumoError(
                f"NaN or infinite samples in lines {got}-{got + n - 1} of the input stream"
            )
        yield np.clip(arr, 0.0, 1.0), None
        got += n


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

    def __init__(self, bands: int, width: int, dtype: str, folder: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".kumo-spool.", dir=folder)
        self.f = os.fdopen(fd, "w+b")
        self.path = Path(name)
        self.bands, self.width, self.dtype, self.rows = bands, width, np.dtype(dtype), 0

    def write(self, data: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(data.astype(self.dtype).transpose(1, 0, 2)).tobytes())
        self.rows += data.shape[1]

    def copy_to(self, writer: GeoTiffWriter, lines: int = 256) -> None:
        self.f.flush()
        mm = np.memmap(
            self.path, dtype=self.dtype, mode="r", shape=(self.rows, self.bands, self.width)
        )
        for r in range(0, self.rows, lines):
            writer.write(np.ascontiguousarray(mm[r : r + lines].transpose(1, 0, 2)), r)
        del mm

    def close(self) -> None:
        self.f.close()
        self.path.unlink(missing_ok=True)


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
) -> dict[str, Any]:
    """Stream ``chunks`` through the models into the requested outputs; returns the report.

    With ``height`` known (a raster file) the GeoTIFFs are written as lines finish; without it
    (a byte stream) the lines are spooled to a temporary file beside the output and copied into
    the GeoTIFF at the end. Every output is written under a temporary name and appears only when
    complete.
    """
    for p in (out, mask, report):
        if p is not None:
            check_output_path(p, overwrite)
    proc = StreamProcessor(width, bands, detector, generator, config)
    nb = len(proc.out_bands)
    geo = geo or {}
    tags = {"KUMO_MASK_CLASSES": json.dumps(MASK_CLASSES)}
    group = WriterGroup()
    spools: list[_Spool] = []
    t0 = time.perf_counter()

    def open_writers(h: int) -> tuple[GeoTiffWriter | None, GeoTiffWriter | None]:
        w_out = (
            GeoTiffWriter(
                out,
                width=width,
                height=h,
                count=nb,
                dtype="float32",
                bands=proc.out_bands,
                nodata=None,
                overwrite=overwrite,
                **geo,
            )
            if out
            else None
        )
        w_mask = (
            GeoTiffWriter(
                mask,
                width=width,
                height=h,
                count=1,
                dtype="uint8",
                nodata=0,
                tags=tags,
                overwrite=overwrite,
                **geo,
            )
            if mask
            else None
        )
        group.add(w_out)
        group.add(w_mask)
        return w_out, w_mask

    try:
        with group:
            if height is not None:
                w_out, w_mask = open_writers(height)
            else:
                folder = (out or mask or Path(".")).resolve().parent
                s_out = _Spool(nb, width, "float32", folder) if out else None
                s_mask = _Spool(1, width, "uint8", folder) if mask else None
                spools.extend(s for s in (s_out, s_mask) if s is not None)

            def sink(lines: Lines) -> None:
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
                if progress is not None:
                    progress.update(lines.data.shape[1])

            for data, valid in chunks:
                for done in proc.push(data, valid):
                    sink(done)
            for done in proc.flush():
                sink(done)
            if height is None:
                w_out, w_mask = open_writers(proc.received)
                if s_out and w_out:
                    s_out.copy_to(w_out)
                if s_mask and w_mask:
                    s_mask.copy_to(w_mask)
    finally:
        for s in spools:
            s.close()

    rep = {
        **(meta or {}),
        **proc.report.to_dict(),
        "wall_seconds": time.perf_counter() - t0,
        "mask_classes": MASK_CLASSES,
    }
    rep["width"] = width
    if report is not None:
        tmp = report.with_name(f".{report.name}.partial")
        tmp.write_text(json.dumps(rep, indent=1))
        os.replace(tmp, report)
    return rep


def stdin_binary() -> BinaryIO:
    return sys.stdin.buffer
