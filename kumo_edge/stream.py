"""The pushbroom streaming processor: lines in, finished lines out, in constant memory.

:class:`StreamProcessor` accepts sensor lines as they arrive (``push``, any number of lines at
a time) and returns finished output lines in order (or hands them to a sink as they are made);
``flush`` ends the pass. Whatever the length of the pass it holds: a ring of one tile height of
lines, stored as uint16 counts of 1/32768 reflectance (finished output rows are blended back
into the ring's rows that no tile reads any more, so there is no second full-size buffer), the
``2 * halo`` rows of output the next tile row still adds to, the class-probability accumulator,
and one batch of tiles. For 32 bands x 4000 px with 256-px tiles: 65 + 16 + 16 MB, plus
~17 MB per pair of tiles in flight.

Along the track, tile rows start every ``stride = tile - 2 * halo`` lines (0, s, 2s, ...);
when a tile row has been processed its first ``stride`` lines are final and leave. At the end
of the pass the missing lines of the last tile rows are padded by repeating the last line.
Across the track, tiles start as :func:`~kumo_edge.tiling.axis_origins` places them (the last
one aligned to the far edge; swaths narrower than a tile are padded). Tile outputs are blended
with separable tapers (:mod:`kumo_edge.tiling`), so no seam shows and the result does not depend
on how the lines were chunked: :func:`process_image` (the whole scene as one strip) gives the
same output (up to one step of the line ring's rounding, on the rare pixel whose blend sum lies
at float rounding from a step boundary: the two normalise the tapers in a different order).

For every tile the detector runs; the generator runs only where the detector finds thin cloud
or shadow (``StreamConfig.min_fraction``); clear tiles pass through; pixels the detector calls
thick cloud keep their input values and are flagged, never invented. The class mask uses the
fixed codes 0 no data, 1 clear, 2 thin cloud (removed), 3 thick cloud (unrecoverable), 4 cloud
shadow (corrected).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import _runtime_kernels as _rk
from . import _tiling_kernels as _tk
from ._runtime_kernels import fill_invalid
from .bands import BandSet, resample, resampling_matrix
from .config import DEFAULT_BATCH
from .counts import Counts
from .errors import (
    BandCountError,
    BandMappingError,
    ConfigError,
    DataTypeError,
    InvalidDataError,
    ShapeError,
)
from .physics import PhysicsRemover
from .remover import Remover
from .runtime import (
    INPUT_CLEAR,
    INPUT_CLOUD,
    INPUT_DIM_SNOW,
    INPUT_SNOWY,
    SPARE,
    Model,
    ambiguous_masks,
    classify,
    clear_mask_calls,
    dim_snow,
    force_spectral_clouds,
    input_flags,
    input_test_matrix,
    input_trees,
    shadow_over_clear,
    shadow_reference_band,
    shadow_rules,
    tests_snow,
)
from .tiling import (
    GridBlender,
    accumulate_tile_row,
    axis_origins,
    axis_weights,
    batch_index,
    extract_tiles,
    taper,
)
from .trees import combine

#: Class codes of the output mask.
NODATA, CLEAR, THIN, THICK, SHADOW = 0, 1, 2, 3, 4
#: The line ring holds reflectance as uint16 counts of 1/32768 (range 0 to 2, step 3e-5, some
#: 100 times below a sensor's noise): half the memory of float32 for the largest buffer.
RING_PER_UNIT = 32768.0
RING_STEP = 1.0 / RING_PER_UNIT
#: Output lines go to the sink in pieces of this many lines (small transient copies; 8 rather
#: than 16: stdin to file 394 -> 383 MB peak, 32 bands x 4000 px, 2026-12-05). A multiple of
#: the streamed output's strip height (``kumo_edge.io.STREAM_ROWS``).
EMIT_LINES = 8
#: Shadow operating point of the removal (which tiles go to the remover, and the classes a
#: class-driven remover such as HOT or inpainting is given): the balanced point, shadow where
#: P(shadow) > P(clear). The mask and the report use the detector's own point (its contract's
#: ``shadow_threshold`` or ``--shadow-threshold``), which the shipped detectors set for 70 %
#: shadow recall: measured, at that point HOT and inpainting lost their clear references (hsi32
#: removal CV: HOT +2.37 -> +0.00 dB, inpainting +1.90 -> -0.01), while a mask is meant to
#: catch the shadows.
REMOVAL_SHADOW_THRESHOLD = 0.5


def ring_round(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``x`` rounded as the line ring stores it (what :func:`process_image` applies to match
    the stream): clipped to [0, 2], to the nearest 1/32768."""
    x = np.ascontiguousarray(x, dtype=np.float32)  # (bands, rows, cols)
    q = np.empty(x.shape, np.uint16)
    _tk.quantize(x, np.ones(x.shape[1], np.float32), RING_PER_UNIT, q)
    out = np.empty_like(x)
    _tk.dequantize(q, RING_STEP, out)
    return out


@dataclass(frozen=True)
class StreamConfig:
    """Settings of the stream.

    Args:
        tile, halo: Tile side and halo (default: the detector's contract).
        batch: Tiles per inference call.
        min_fraction: A tile goes to the generator when at least this fraction of its pixels is
            thin cloud or shadow.
        drop_fraction: Tiles whose cloud fraction (thin + thick) exceeds this are marked
            ``drop`` in the report (downlink prioritisation). Cloud calls on ambiguous bright
            pixels (``ambiguous_bright``: snow, ice or cloud, the bands cannot tell) do not
            count: what might be ground is not thrown away.
        remove: Run the generator at all (False: detection only).
        output_bands: ``"model"`` (the models' band set) or ``"input"`` (resampled back to the
            input's band set; refused when the model bands cannot produce it, e.g. SWIR bands
            of the input that the model never saw).
        blend: How much of a physics remover's correction a pixel takes: ``"detector"``
            (``1 - P(clear)``, as for every remover) or ``"full"`` (all of it: the physics
            correction is the identity where it estimates no cloud). Thick pixels and tiles the
            do-no-harm gate keeps take none either way.
        spare_snow: Where the input has a green, a NIR and a SWIR-1 band, pixels its own
            bands call snow (:func:`kumo_edge.runtime.snow_test`) keep their input through the
            removal (:func:`process_tiles`, ``spare``). On by default since the test asks the
            NIR to be as bright as snow's (2026-12-06; before, synthetic clouds that grow
            transparent towards the infrared passed it, and the new-sensor benchmark lost
            3.2-4.8 dB on two of its three seeds with it on; README Limits).
        input_swir: Where the models' band set has no SWIR-1 band but the input has a blue,
            a green, a red and a SWIR-1 band (Landsat, Sentinel-2 and most hyperspectral files
            through the four-band or hyperspectral models), the input's own bands decide two
            things for the mask and the report (:func:`kumo_edge.runtime.input_flags`): the
            spectral cloud test has the last word on cloud, as in the ``swir6`` detector,
            cloud calls on pixels as snow-like as ice are ``ambiguous_bright`` (not counted by
            the ``drop`` rule), and cloud calls the input's pixel trees are sure are not cloud
            are clear (:func:`kumo_edge.runtime.input_trees`). The removal is the detector's
            either way.
    """

    tile: int | None = None
    halo: int | None = None
    batch: int = DEFAULT_BATCH
    min_fraction: float = 0.01
    drop_fraction: float = 0.7
    remove: bool = True
    output_bands: str = "model"
    blend: str = "detector"
    spare_snow: bool = True
    input_swir: bool = True

    def __post_init__(self) -> None:
        if self.blend not in ("detector", "full"):
            raise ConfigError(f"`blend` must be 'detector' or 'full', got {self.blend!r}")
        if self.batch < 1:
            raise ConfigError(f"`batch` must be >= 1, got {self.batch}")
        if self.output_bands not in ("model", "input"):
            raise ConfigError(
                f"`output_bands` must be 'model' or 'input', got {self.output_bands!r}"
            )
        for n in ("min_fraction", "drop_fraction"):
            if not 0 <= getattr(self, n) <= 1:
                raise ConfigError(f"`{n}` must be in [0, 1], got {getattr(self, n)}")


def input_window(rows: tuple[int, int], height: int, tile: int, halo: int) -> tuple[int, int]:
    """The input lines ``[first, stop)`` a stream needs so that its output lines ``rows = (a, b)``
    equal those of a stream over the whole pass of ``height`` lines.

    Tile rows start every ``stride = tile - 2 * halo`` lines from line 0, and a line's value is
    the blend of the tile rows that cover it. Starting at a tile row (``a`` a multiple of the
    stride), the window begins at the first tile row that covers line ``a`` (blend sums then add
    the same terms in the same order) and ends with the last tile row that covers line ``b - 1``
    (its later padding changes only lines ``>= b``).
    """
    a, b = rows
    s = tile - 2 * halo
    if not 0 <= a < b <= height:
        raise ConfigError(f"line range {a}-{b} is not inside a pass of {height} lines")
    if a % s:
        raise ConfigError(f"a line range must start at a multiple of the stride {s}, not {a}")
    first = max(0, a - s * ((tile - 1) // s))
    stop = min(height, (b - 1) // s * s + tile)
    return first, stop


def split_rows(height: int, lines: int, tile: int, halo: int) -> list[tuple[int, int]]:
    """``height`` lines cut into ranges of about ``lines`` lines that start at tile rows (see
    :func:`input_window`)."""
    s = tile - 2 * halo
    step = max(s, round(lines / s) * s)
    return [(a, min(a + step, height)) for a in range(0, height, step)]


@dataclass
class Lines:
    """Finished output lines.

    Attributes:
        row: Index of the first line in the pass.
        data: ``(bands, n, width)`` float32 reflectance (the model's band set, or the input's
            with ``StreamConfig.output_bands="input"``).
        mask: ``(n, width)`` uint8 class codes.
    """

    row: int
    data: npt.NDArray[np.float32]
    mask: npt.NDArray[np.uint8]


@dataclass
class Report:
    """Per-tile decisions and per-stage timings of a pass."""

    tiles: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"resample": 0.0, "detect": 0.0, "generate": 0.0, "blend": 0.0}
    )
    lines: int = 0
    #: Called with each tile's record as soon as it is decided (see :class:`StreamProcessor`).
    on_tile: Callable[[dict], None] | None = None

    def add(self, rec: dict) -> None:
        self.tiles.append(rec)
        if self.on_tile is not None:
            self.on_tile(rec)

    def to_dict(self) -> dict:
        n = len(self.tiles)
        return {
            "lines": self.lines,
            "tiles": n,
            "tiles_removed": sum(t["decision"] == "removed" for t in self.tiles),
            "tiles_unrecoverable": sum(t["decision"] == "unrecoverable" for t in self.tiles),
            "tiles_kept": sum(t["decision"] == "kept" for t in self.tiles),
            "kept_by_reason": {
                r: sum(t.get("kept_reason") == r for t in self.tiles)
                for r in sorted({t["kept_reason"] for t in self.tiles if t.get("kept_reason")})
            },
            "tiles_drop": sum(t["drop"] for t in self.tiles),
            # tiles where at least 5 % of the pixels are bright and the bands cannot call them
            "tiles_ambiguous_bright": sum(
                t.get("ambiguous_bright", 0.0) >= 0.05 for t in self.tiles
            ),
            "seconds": self.seconds,
            "per_tile": self.tiles,
        }


class StreamProcessor:
    """Streams lines of a pass through the detector and the generator.

    Args:
        width: Pixels per line (cross-track).
        bands: Band set of the incoming lines; resampled to the models' band set when different
            (refused with :class:`~kumo_edge.errors.BandMappingError` when impossible).
        detector: The detector model.
        generator: The cloud remover (optional; same band set as the detector): the generator
            model, or a classical remover of :mod:`kumo_edge.baselines`.
        config: Stream settings.
        on_tile: Called with each tile's decision record (``row``, ``col``, cloud fraction,
            ``decision``, ``drop``, ...) as soon as the tile is processed, before its lines are
            final: a downlink program can act on decisions without waiting for the pass.

    Embedding without files (lines from another program's buffers, cleaned lines and
    decisions back through callbacks)::

        proc = StreamProcessor(width, bands, det, gen, on_tile=decisions.append)
        for buf in sensor_buffers():                  # (bands, n, width) float32 reflectance
            proc.push(buf, sink=downlink.send_lines)  # Lines(row, data, mask), in order
        proc.flush(sink=downlink.send_lines)
    """

    def __init__(
        self,
        width: int,
        bands: BandSet,
        detector: Model,
        generator: Remover | None = None,
        config: StreamConfig | None = None,
        on_tile: Callable[[dict], None] | None = None,
    ) -> None:
        cfg = config or StreamConfig()
        if width < 1:
            raise ShapeError(f"`width` must be >= 1, got {width}")
        self.cfg = cfg
        self.detector, self.generator = detector, generator if cfg.remove else None
        c = detector.contract
        if self.generator is not None:
            if self.generator.bands != c.bands:
                raise ConfigError(
                    "the detector and the generator were trained for different band sets"
                )
        self.model_bands = c.bands
        self.in_bands = bands
        #: Band set of the emitted lines.
        self.out_bands = bands if cfg.output_bands == "input" else c.bands
        self.matrix = None if _same_bands(bands, c.bands) else resampling_matrix(bands, c.bands)
        self.back = None
        if cfg.output_bands == "input" and self.matrix is not None:
            try:  # refuses what the model bands cannot give
                self.back = resampling_matrix(c.bands, bands)
            except BandMappingError as exc:
                lo, hi = min(c.bands.centers_nm), max(c.bands.centers_nm)
                raise BandMappingError(
                    f"output bands 'input': the models' {len(c.bands.centers_nm)} bands "
                    f"({lo:.0f}-{hi:.0f} nm) cannot give the input's bands back: "
                    f"{str(exc).split(';')[0]}; use output bands 'model'"
                ) from None
        self.T = cfg.tile or c.tile
        self.h = c.halo if cfg.halo is None else cfg.halo
        multiple = c.multiple
        if self.generator is not None and getattr(self.generator, "contract", None) is not None:
            multiple = math.lcm(multiple, self.generator.contract.multiple)
        if self.T % multiple:
            raise ConfigError(
                f"tile {self.T} is not a multiple of {multiple}, which the models need"
            )
        self.s = self.T - 2 * self.h
        self.width = width
        self.wp = max(width, self.T)
        self.col_starts = axis_origins(self.wp, self.T, self.h)
        self.wx = axis_weights(
            self.wp, self.col_starts, self.T, self.h
        )  # normalised across the swath
        self.wy = taper(self.T, self.h).astype(np.float32)
        nb = len(c.bands)
        self.buf = np.zeros((nb, self.T, self.wp), np.uint16)  # counts of RING_STEP
        self._ones = np.ones(self.T, np.float32)  # row scale of plain input lines
        self.vbuf = np.zeros((self.T, self.wp), bool)
        # what the INPUT's own bands tell where the models' band set may lack SWIR: snow that
        # keeps its input through the removal (a green, a NIR and a SWIR-1 band), and the
        # spectral cloud and snow tests of the mask (runtime.input_flags): the ring of those
        # bits beside the valid one (process_tiles, ``flags``)
        self.spare = self.generator is not None and cfg.spare_snow and tests_snow(bands)
        self.test_matrix = input_test_matrix(bands, c.bands) if cfg.input_swir else None
        self.input_trees = input_trees() if self.test_matrix is not None else None
        self.sbuf = (
            np.zeros((self.T, self.wp), np.uint8)
            if self.spare or self.test_matrix is not None
            else None
        )
        if self.s < 1:
            raise ConfigError(f"halo {self.h} leaves no stride in a {self.T} px tile")
        # Output of the current tile row: finished rows are blended straight into the dead input
        # rows of ``buf``; only the rows the next tile row still adds to are kept aside
        # (``carry``), with the pending columns of the last batch (see _tile_row).
        self.carry = np.zeros((nb, self.T - self.s, self.wp), np.float32)
        self.pacc = np.zeros((4, self.T, self.wp), np.float32)
        self.wacc = np.zeros(self.T, np.float32)
        self.filled = 0  # lines of the current tile row in buf
        self.y0 = 0  # pass line at buf[0]
        self.received = 0
        self.report = Report(on_tile=on_tile)
        self._done = False

    # -- input ------------------------------------------------------------------------------
    def push(
        self,
        lines: npt.NDArray[np.floating],
        valid: npt.NDArray[np.bool_] | None = None,
        sink: Callable[[Lines], None] | None = None,
    ) -> list[Lines]:
        """Add ``(bands, n, width)`` float32 reflectance lines; returns the lines now finished.

        With ``sink``, finished lines are handed to ``sink`` as they are made, in pieces of
        ``EMIT_LINES`` lines, instead of being returned: a sink that writes them out keeps memory
        at one piece instead of a tile row of lines (115 MB for 32 bands x 4000 px).
        """
        if self._done:
            raise ShapeError("the pass was flushed; start a new StreamProcessor")
        lines = self._check(lines, valid)
        n = lines.shape[1]
        if valid is None:
            valid = np.ones((n, self.width), bool)
        t0 = time.perf_counter()
        flags = self.input_flags(lines)
        if self.matrix is not None:
            lines = resample(lines, self.matrix)
        if not valid.all():
            lines = np.where(valid[None], lines, np.float32(0.0))
        self.report.seconds["resample"] += time.perf_counter() - t0

        def fill(i: int, k: int, row: int) -> None:
            _tk.quantize(lines, self._ones[:k], RING_PER_UNIT, self.buf, i, row, 0)

        return self._fill(n, valid, fill, sink, flags)

    def push_counts(
        self, counts: Counts, sink: Callable[[Lines], None] | None = None
    ) -> list[Lines]:
        """Add lines given as stored integer values (:class:`kumo_edge.counts.Counts`): the same
        as ``push(counts.reflectance(), counts.valid, sink)``, bitwise, but converted straight
        into the line ring, without a float32 strip (where the models' band set is the input's
        and nothing is read of the input's own bands (``input_flags``); else through that
        strip)."""
        if self._done:
            raise ShapeError("the pass was flushed; start a new StreamProcessor")
        raw = counts.raw
        self._check_layout(raw.shape)
        if self.matrix is not None or self.sbuf is not None:  # resampled in float32 anyway
            return self.push(counts.reflectance(), counts.valid, sink)
        counts.check()

        def fill(i: int, k: int, row: int) -> None:
            _tk.quantize_counts(
                raw, counts.valid[i : i + k], counts.scale, counts.offset, RING_PER_UNIT,
                self.buf, i, row,
            )  # fmt: skip

        return self._fill(raw.shape[1], counts.valid, fill, sink)

    def input_flags(self, cube: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8] | None:
        """What the input's own bands tell of ``cube`` ``(C, H, W)`` (in the input's bands)
        before the models resample it (:func:`kumo_edge.runtime.input_flags`), where this pass
        keeps it; else None."""
        if self.sbuf is None:
            return None
        return input_flags(cube, self.in_bands, self.spare, self.test_matrix, self.input_trees)

    def _fill(
        self,
        n: int,
        valid: npt.NDArray[np.bool_],
        fill: Callable[[int, int, int], None],
        sink: Callable[[Lines], None] | None,
        flags: npt.NDArray[np.uint8] | None = None,
    ) -> list[Lines]:
        """Put ``n`` lines into the ring, ``fill(i, k, row)`` writing lines ``i .. i + k - 1``
        into the ring's rows from ``row`` on (its first ``width`` columns; the kernels take the
        ring whole, see :mod:`kumo_edge._tiling_kernels`), and run every tile row they complete;
        ``flags``: what the lines' own bands tell (:func:`kumo_edge.runtime.input_flags`), where
        the ring keeps it (``sbuf``)."""
        out: list[Lines] = []
        i = 0
        while i < n:
            k = min(n - i, self.T - self.filled)
            f = self.filled
            fill(i, k, f)
            self.vbuf[f : f + k, : self.width] = valid[i : i + k]
            if self.sbuf is not None and flags is not None:
                self.sbuf[f : f + k, : self.width] = flags[i : i + k]
            if self.wp > self.width:  # narrow swath: repeat the last column
                self.buf[:, f : f + k, self.width :] = self.buf[
                    :, f : f + k, self.width - 1 : self.width
                ]
            self.filled += k
            i += k
            self.received += k
            if self.filled == self.T:
                self._tile_row(self.s, sink or out.append)
        return out

    def flush(self, sink: Callable[[Lines], None] | None = None) -> list[Lines]:
        """End the pass: pad the last tile rows by repeating the last line and finish them
        (``sink`` as in :meth:`push`)."""
        out: list[Lines] = []
        if self._done:
            return out
        self._done = True
        while self.y0 < self.received:
            last = self.filled - 1
            if last >= 0:
                # from a copy of the line: read from the same array, numpy would first copy
                # the whole broadcast source (~30 MB at 32 bands x 4000 px)
                self.buf[:, self.filled :] = self.buf[:, last : last + 1].copy()
                self.vbuf[self.filled :] = False
                if self.sbuf is not None:
                    self.sbuf[self.filled :] = False
            self._tile_row(min(self.s, self.received - self.y0), sink or out.append)
            self.filled = max(self.filled, 0)
        self.report.lines = self.received
        return out

    def _check_layout(self, shape: tuple[int, ...]) -> None:
        """Refuse ``(bands, n, width)`` lines whose band count or width is not the stream's."""
        if shape[0] != len(self.in_bands):
            raise BandCountError(
                f"lines have {shape[0]} bands but the stream was opened with {len(self.in_bands)}"
            )
        if shape[2] != self.width:
            raise ShapeError(
                f"lines are {shape[2]} pixels wide but the stream was opened with width {self.width}"
            )

    def _check(self, lines: npt.NDArray, valid: npt.NDArray | None) -> npt.NDArray[np.float32]:
        if not isinstance(lines, np.ndarray) or lines.ndim != 3:
            raise ShapeError(
                f"lines must be (bands, n, width), got {getattr(lines, 'shape', type(lines).__name__)}"
            )
        if lines.dtype != np.float32:
            raise DataTypeError(f"lines must be float32 reflectance, got {lines.dtype}")
        self._check_layout(lines.shape)
        if valid is not None and (valid.shape != lines.shape[1:] or valid.dtype != np.bool_):
            raise ShapeError(f"`valid` must be a bool array of shape {lines.shape[1:]}")
        # the whole strip first (one numba pass, no temporary; 1.6 -> 0.5 ms per 64 lines of
        # 32 bands x 4000 px); only where that fails, its valid pixels
        if not _tk.all_finite(lines) and (valid is None or not np.isfinite(lines[:, valid]).all()):
            r = int(np.argwhere(~np.isfinite(lines).all(axis=(0, 2)))[0, 0]) + self.received
            raise InvalidDataError(
                f"NaN or infinite values in line {r}; mark such pixels invalid instead"
            )
        return lines

    # -- one tile row -----------------------------------------------------------------------
    def _tile_row(self, emit: int, sink: Callable[[Lines], None]) -> None:
        """Process the tile row in ``buf`` and hand its first ``emit`` finished lines to ``sink``.

        Tiles go through the models one batch at a time, left to right. Once a batch is done,
        every column left of the next batch's first tile is final for this tile row: its rows
        ``[0, s)`` are written, normalised, into ``buf`` (whose input there no batch reads any
        more), its rows ``[s, T)`` replace those columns of ``carry`` for the next tile row, and
        the columns the next batch still adds to wait in a small window. So the output needs no
        second ``(bands, T, width)`` array."""
        b, T, s = self.cfg.batch, self.T, self.s
        t_blend = 0.0
        self.wacc += self.wy
        inv = (1.0 / self.wacc[:s]).astype(np.float32)
        pending = None  # the columns the next batch adds to
        starts = self.col_starts
        for j in range(0, len(starts), b):
            xs = starts[j : j + b]
            origins = np.stack([np.zeros_like(xs), xs], axis=1)
            tiles = extract_tiles(self.buf, origins, T, step=RING_STEP)
            valid_tiles = np.stack([self.vbuf[:, x : x + T] for x in xs])
            flags = None if self.sbuf is None else np.stack([self.sbuf[:, x : x + T] for x in xs])
            out_tiles, prob_tiles = self._process(tiles, valid_tiles, origins, flags)
            t0 = time.perf_counter()
            x0, x_end = int(xs[0]), int(xs[-1]) + T
            x_next = int(starts[j + b]) if j + b < len(starts) else self.wp
            accumulate_tile_row(self.pacc, prob_tiles, xs, self.wy, self.wx[j : j + b])
            # the window [x0, x_end): columns [x0, x_next) are final (rows [0, s) to the ring,
            # [s, T) to the carry), the rest waits for the next batch
            c = out_tiles.shape[1]
            nxt = np.empty((c, T, x_end - x_next), np.float32)
            _tk.blend_batch(
                np.ascontiguousarray(out_tiles, dtype=np.float32),
                (xs - x0).astype(np.int64),
                self.wy,
                np.ascontiguousarray(self.wx[j : j + b], dtype=np.float32),
                np.empty((c, T, 0), np.float32) if pending is None else pending,
                self.carry,  # whole, with the window's first column (x0): see _tiling_kernels
                inv,
                RING_PER_UNIT,
                self.buf,
                nxt,
                s,
                x0,
            )
            pending = nxt if nxt.shape[2] else None
            # freed now, not when the next batch rebinds the names: else two batches' tiles are
            # alive while the next one runs through the models (~17 MB at 32 bands)
            del tiles, valid_tiles, out_tiles, prob_tiles, flags
            t_blend += time.perf_counter() - t0
        for r in range(0, emit, EMIT_LINES):
            t0 = time.perf_counter()
            n = min(EMIT_LINES, emit - r)
            vmask = self.vbuf[r : r + n, : self.width]
            probs = self.pacc[:, r : r + n, : self.width] * inv[None, r : r + n, None]
            mask = self.detector.classify(probs, axis=0) + np.uint8(1)
            mask[~vmask] = NODATA
            data = np.empty((self.buf.shape[0], n, self.width), np.float32)
            _tk.dequantize(self.buf, RING_STEP, data, r)
            data[:, ~vmask] = 0.0
            if self.back is not None:
                data = resample(data, self.back)
                data[:, ~vmask] = 0.0
            t_blend += time.perf_counter() - t0
            sink(Lines(self.y0 + r, data, mask))
        t0 = time.perf_counter()
        # shift by one stride: the next tile row starts at line y0 + s
        _shift_rows(self.pacc, s)
        self.pacc[:, T - s :] = 0.0
        self.wacc[: T - s] = self.wacc[s:]
        self.wacc[T - s :] = 0.0
        _shift_rows(self.buf, s)
        self.vbuf[: T - s] = self.vbuf[s:]
        if self.sbuf is not None:
            self.sbuf[: T - s] = self.sbuf[s:]
        self.filled -= s
        self.y0 += s
        self.report.seconds["blend"] += t_blend + time.perf_counter() - t0

    def _process(
        self,
        tiles: npt.NDArray[np.float32],
        valid: npt.NDArray[np.bool_],
        origins: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint8] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return process_tiles(
            tiles,
            valid,
            self.detector,
            self.generator,
            self.cfg,
            self.report,
            origins + [self.y0, 0],
            flags,
        )


def _shift_rows(a: npt.NDArray, s: int) -> None:
    """In place: the rows ``[s, H)`` of ``(C, H, W)`` ``a`` move to ``[0, H - s)``, plane by
    plane. Within a plane the two ranges never share memory, so numpy copies directly; on the
    whole array it would first copy the source (8 MB per tile row at 32 bands x 4000 px)."""
    for plane in a:
        plane[: plane.shape[0] - s] = plane[s:]


def blend_removed(
    tiles: npt.NDArray[np.float32],
    removed: npt.NDArray[np.float32],
    probs: npt.NDArray[np.float32],
    classes: npt.NDArray[np.uint8],
) -> None:
    """Put the remover's output into ``tiles`` (in place) where the detector sees cloud or shadow:
    ``tiles + (1 - p_clear) * (removed - tiles)``, and nothing where the detector's class is thick
    cloud (``classes`` from :func:`kumo_edge.runtime.classify`: flagged, never invented). Clear pixels keep their own values instead of being
    regenerated. Measured on the held-out synthetic tiles (bench/quality.py, 96 px) against the
    previous rule (generator output everywhere except detected thick cloud): +0.75 dB PSNR and
    SAM 11.6 -> 10.2 deg (hsi32), +1.4 dB and 4.2 -> 3.1 deg (rgbn)."""
    w = 1.0 - probs[:, 0]
    w[classes == 2] = 0.0
    removed -= tiles
    removed *= w[:, None]
    tiles += removed


def drop_flags(
    cloud: npt.NDArray[np.bool_],
    ambiguous: npt.NDArray[np.bool_],
    valid: npt.NDArray[np.bool_],
    drop_fraction: float,
) -> npt.NDArray[np.bool_]:
    """Per tile of ``(N, H, W)`` masks, the downlink ``drop`` rule: its cloud calls, not counting
    those on ambiguous bright pixels (snow, ice or cloud: what might be ground is never thrown
    away), cover more than ``drop_fraction`` of its valid pixels."""
    return _drop(
        (cloud & ~ambiguous & valid).sum(axis=(1, 2)), valid.sum(axis=(1, 2)), drop_fraction
    )


def _drop(
    cloud_counts: npt.NDArray[np.int64], valid_counts: npt.NDArray[np.int64], drop_fraction: float
) -> npt.NDArray[np.bool_]:
    """The :func:`drop_flags` rule from per-tile counts of cloud calls not on ambiguous pixels
    and of valid pixels (the stream's come from :func:`tile_counts`)."""
    return cloud_counts / np.maximum(valid_counts, 1) > drop_fraction


def _fractions(
    counts: npt.NDArray[np.int64],
) -> tuple[dict[int, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """From :func:`tile_counts`: per tile, the fraction of its valid pixels in each class 1-3,
    and in the removal's shadow."""
    n_valid = np.maximum(counts[:, _rk.N_VALID], 1)
    frac = {k: counts[:, _rk.N_CLEAR + k] / n_valid for k in (1, 2, 3)}
    return frac, counts[:, _rk.N_REMOVAL_SHADOW] / n_valid


def _physics_batch(
    tiles: npt.NDArray[np.float32],
    probs: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    idx: npt.NDArray[np.int64],
    remover: PhysicsRemover,
    blend: str,
    kept: dict[int, str],
    fields: dict[int, dict[str, float]],
) -> None:
    """A physics remover on the tiles ``idx`` (in place): the corrected tiles blended in, thick
    decided by the estimated transmittance (the detector's cloud probability is moved to the
    thick class there, to the thin class elsewhere), tiles the gate refuses left as they were
    and recorded in ``kept``, each fitted tile's cloud spectrum (Angstrom exponent, gain on the
    optical depth) and the weight the direction check left on its correction (where below 1)
    in ``fields``, as report fields. The batch's cloud parameters and spectral fits are
    estimated together (the fit runs one tile per thread: 9.3 -> 8.4 ms per hsi32 tile,
    2026-12-05), the corrections made one tile at a time: a tile's correction (8 MB at 32
    bands x 256 px) lives only until the remover has written it into the batch, in place
    (peak RSS 8 MB less than a batch's; no copy back)."""
    # the batch's parameters and spectral fits at once (the fit runs one tile per thread)
    sel = batch_index(idx)
    params, fits = remover.estimate(tiles[sel], valid[sel])
    veto = getattr(remover, "thick_veto", None)
    for j, n in enumerate(int(i) for i in idx):
        sel = slice(n, n + 1)
        # the detector's sure thick calls, read before the probabilities are moved below
        sure = None if veto is None else (probs[n, 2] >= veto) & valid[n]
        _, _, thick, verdicts = remover.correct(
            tiles[sel],
            probs[sel, 0],
            valid[sel],
            weigh=blend != "full",
            estimate=(params[j : j + 1], None if fits is None else fits[j : j + 1]),
            out=tiles[sel],
            # shadow calls are no clear ground for the direction check, and gate the shadow
            # part of the correction (kumo_edge.physics.gate_shadow)
            p_shadow=probs[sel, 3],
            p_thick=probs[sel, 2],  # sure thick calls keep their input (THICK_VETO)
        )  # blended in the kernel: x + w * (correction - x), w = 0 on thick pixels
        direction = getattr(remover, "last_direction", None)
        doubt = getattr(remover, "last_doubt", None)
        rec: dict[str, float] = {}
        if fits is not None and fits[j, 2] > 0:
            rec["cloud_angstrom"] = round(float(fits[j, 0]), 3)
            rec["optical_depth_gain"] = round(float(fits[j, 1]), 3)
        if direction is not None and direction[0] < 1:
            rec["direction_weight"] = round(float(direction[0]), 3)
            if doubt is not None and doubt[0]:  # its only clear reference maybe in shadow
                rec["direction_doubt"] = True
        if sure is not None and sure.any():  # kept as input as the detector is sure of thick
            rec["thick_by_detector"] = round(float(sure.sum() / max(int(valid[n].sum()), 1)), 4)
        if rec:
            fields[n] = rec
        if verdicts[0] is not None:
            kept[n] = verdicts[0]
            continue
        cloud = probs[n, 1] + probs[n, 2]
        probs[n, 2] = np.where(thick[0], cloud, 0.0)
        probs[n, 1] = cloud - probs[n, 2]


def _some(m: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_] | None:
    """``m`` where it marks any pixel, else None (an opinion with nothing to say is skipped)."""
    return m if m is not None and m.any() else None


def process_tiles(
    tiles: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    detector: Model,
    generator: Remover | None,
    cfg: StreamConfig,
    report: Report | None = None,
    origins: npt.NDArray[np.int64] | None = None,
    flags: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Detector on every tile, generator where thin cloud or shadow is found.

    ``flags`` ``(N, T, T)`` uint8: what the input's own bands tell, where the models' band set
    has no SWIR (:func:`kumo_edge.runtime.input_flags`). Pixels with the ``SPARE`` bit keep
    their input through the removal whatever the models say, the snow the input's own SWIR band
    found (:func:`kumo_edge.runtime.snow_test`): without SWIR the detector calls snow cloud and
    the remover reads it as haze (a clear snowy Sentinel-2 scene came out changed by 0.027 in
    rgbn), and a thin cloud over snow hardly changes it; each tile's spared share is reported
    (``snow_spared``). ``INPUT_CLEAR`` pixels are not cloud in the mask and the report (the
    input's pixel trees are sure) unless the mask is sure of cloud, ``INPUT_DIM_SNOW`` pixels
    are not cloud there at all (snow too dark to be cloud: :func:`kumo_edge.runtime.dim_snow`,
    which the mask also applies to the tiles of models whose bands have SWIR),
    ``INPUT_CLOUD`` pixels are cloud there (the spectral test's last word, as where the models'
    bands have SWIR), and cloud calls on ``INPUT_SNOWY`` pixels are ``ambiguous_bright``; the
    removal is the detector's.

    Returns ``(outputs, probabilities)``: ``(N, C, T, T)`` reflectance (thick-cloud pixels and
    clear tiles keep their input values) and ``(N, 4, T, T)`` class probabilities. ``tiles`` is
    overwritten with the outputs (no copy of the batch is made); its pixels that ``valid`` marks
    as no data are filled first (:func:`kumo_edge._runtime_kernels.fill_invalid`), and what is
    returned there means nothing.
    """
    rep = report or Report()
    # no data (zeros) beside data reads as a dark edge: the detector called the valid pixels
    # along a swath edge thin cloud and the remover corrected them; filled (each row mirrored
    # about its nearest valid pixel), the models see land go on (their outputs there are
    # discarded)
    if not valid.all():
        fill_invalid(tiles, valid)
    t0 = time.perf_counter()
    probs = np.concatenate(
        [detector.run(tiles[i : i + cfg.batch]) for i in range(0, len(tiles), cfg.batch)]
    )
    sure = force_spectral_clouds(tiles, probs, detector.bands)  # as Model.detect
    spare = in_sure = snowy = in_clear = in_dim = None
    if flags is not None:
        spare = (flags & SPARE).astype(bool)
        if sure is None:  # the input's own SWIR tests, for the mask only
            in_sure, snowy, in_clear, in_dim = (
                _some((flags & b).astype(bool))
                for b in (INPUT_CLOUD, INPUT_SNOWY, INPUT_CLEAR, INPUT_DIM_SNOW)
            )
    # the trees' second opinion (where the detector has one) shapes the mask and the report,
    # not the removal: the removal's weights and tiles stay the network's (measured: weighted
    # by the combined probability, the rgbn removal cross-validation fell 4.09 -> 3.89 dB)
    p_trees = detector.tree_probability(tiles) if hasattr(detector, "tree_probability") else None
    # the pixel trees read the tiles where the models' bands have SWIR (else the input's bands)
    if sure is not None:
        if hasattr(detector, "pixel_clear"):
            in_clear = _some(detector.pixel_clear(tiles))
        in_dim = _some(dim_snow(tiles, detector.bands))
    rep.seconds["detect"] += time.perf_counter() - t0
    cls = detector.classify(probs, axis=1)
    # the mask's probabilities differ from the removal's where the trees or the input's own
    # tests have a say: the pixel trees clear the unsure cloud calls they are sure are clear,
    # snow too dark to be cloud is not cloud, and the spectral test (the detector's, else the
    # input's) has the last word
    own_mask = (
        p_trees is not None or in_sure is not None or in_clear is not None or in_dim is not None
    )
    last = sure if sure is not None else in_sure

    def mask_opinions(p: npt.NDArray[np.float32]) -> None:
        if p_trees is not None:
            combine(p, p_trees, detector.trees.pool)
        clear_mask_calls(p, in_clear, in_dim)
        if last is not None:  # (after the removal, the tiles no longer are the test's input)
            force_spectral_clouds(tiles, p, detector.bands, last)

    # on the input, before removal: bright pixels the bands cannot call (snow, ice or cloud)
    mask_probs = probs
    if own_mask:
        mask_probs = probs.copy()
        mask_opinions(mask_probs)
    amb_px = ambiguous_masks(tiles, mask_probs, detector.bands, snowy)
    counts = tile_counts(detector, probs, cls, valid, amb_px)
    frac, rshadow = _fractions(counts)
    n_valid = np.maximum(counts[:, _rk.N_VALID], 1)
    contract = getattr(detector, "contract", None)
    darker = getattr(contract, "shadow_darker", 0.0)
    # the darkness rule compares the input, which the removal below overwrites
    ref = tiles[:, shadow_reference_band(detector.bands)].copy() if darker else None
    todo = (
        np.flatnonzero((frac[1] + rshadow) >= cfg.min_fraction)
        if generator is not None
        else np.zeros(0, int)
    )
    t0 = time.perf_counter()
    spared = None
    if spare is not None and len(todo):
        spare = spare & valid
        if spare.any():  # the input of those pixels, put back after the removal
            spared = tiles.transpose(0, 2, 3, 1)[spare]
    kept: dict[int, str] = {}
    fields: dict[int, dict[str, float]] = {}
    rcls = None  # the classes a learned remover acts on
    for i in range(0, len(todo), cfg.batch):
        idx = todo[i : i + cfg.batch]
        if getattr(generator, "physics", False):
            _physics_batch(tiles, probs, valid, idx, generator, cfg.blend, kept, fields)
            continue
        if rcls is None:
            rcls = removal_classes(detector, probs, cls)
        sel = batch_index(idx)
        generated = (
            generator.run(tiles[sel], rcls[sel])
            if getattr(generator, "needs_classes", False)
            else generator.run(tiles[sel])
        )
        if isinstance(sel, slice):
            blend_removed(tiles[sel], generated, probs[sel], rcls[sel])
        else:
            part = tiles[sel]
            blend_removed(part, generated, probs[sel], rcls[sel])
            tiles[sel] = part
    if spared is not None:
        tiles.transpose(0, 2, 3, 1)[spare] = spared
    rep.seconds["generate"] += time.perf_counter() - t0
    out = tiles
    removed = set(todo.tolist()) - set(kept)
    if own_mask:  # the mask's probabilities from here on
        mask_opinions(probs)
    if own_mask or (getattr(generator, "physics", False) and len(todo)):
        # the physics remover moved thin/thick by transmittance, the trees cloud or not
        # cloud: count again
        cls = detector.classify(probs, axis=1)
        counts = tile_counts(detector, probs, cls, valid, amb_px)
        frac, rshadow = _fractions(counts)
    amb = counts[:, _rk.N_AMBIGUOUS] / n_valid
    # the physics remover may move cloud between thin and thick, never in or out of cloud
    drop = _drop(counts[:, _rk.N_CLOUD_NOT_AMBIGUOUS], counts[:, _rk.N_VALID], cfg.drop_fraction)
    gone = np.zeros(len(tiles), np.int64)
    if shadow_rules(probs, ref, valid, darker, classes=cls, withdrawn_valid=gone):
        # shadow calls without cloud in the tile, or on ground as bright as the tile's clear
        # ground, withdrawn (mask, report): the valid shadow calls counted less those withdrawn
        frac[3] = (counts[:, _rk.N_SHADOW] - gone) / n_valid
    for i in range(len(tiles)):
        cloud = float(frac[1][i] + frac[2][i])
        decision = (
            "kept"
            if i in kept
            else "removed"
            if i in removed
            else (
                "unrecoverable"
                if frac[2][i] >= 0.5
                else "clear"
                if cloud + rshadow[i] < cfg.min_fraction
                else "passed"
            )
        )
        rec = {
            "cloud_fraction": round(cloud, 4),
            "thick_fraction": round(float(frac[2][i]), 4),
            "shadow_fraction": round(float(frac[3][i]), 4),
            "ambiguous_bright": round(float(amb[i]), 4),
            "decision": decision,
            "drop": bool(drop[i]),
        }
        if i in kept:
            rec["kept_reason"] = kept[i]
        if spared is not None and spare[i].any():
            rec["snow_spared"] = round(float(spare[i].sum() / n_valid[i]), 4)
        # the cloud's spectrum as this tile's data fitted it, the direction check's weight
        rec.update(fields.get(i, {}))
        if origins is not None:
            rec["row"], rec["col"] = int(origins[i, 0]), int(origins[i, 1])
        rep.add(rec)
    return out, probs.astype(np.float32, copy=False)


def removal_classify(detector: Model, probs: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """The classes the removal acts on, for probabilities ``(N, 4, T, T)``: the detector's cloud
    point, shadow at :data:`REMOVAL_SHADOW_THRESHOLD` (what the stream gives a class-driven
    remover; benchmarks that run removers outside the stream use it to run them as it does)."""
    return classify(probs, detector.contract.cloud_threshold, 1, REMOVAL_SHADOW_THRESHOLD)


def removal_classes(
    detector: Model, probs: npt.NDArray[np.float32], cls: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """The classes the removal acts on: shadow at :data:`REMOVAL_SHADOW_THRESHOLD`, cloud as
    in ``cls``, the detector's classes of ``probs`` ``(N, 4, T, T)`` (each tile's fraction of
    that shadow: :func:`tile_counts`)."""
    point = _detector_shadow_point(detector)
    if point < REMOVAL_SHADOW_THRESHOLD:  # fewer shadows: only the mask's shadow calls can go
        where = np.flatnonzero(cls == 3)
        p0, p3 = probs[:, 0].reshape(-1)[where], probs[:, 3].reshape(-1)[where]
        cls = cls.copy()
        cls.reshape(-1)[where[~shadow_over_clear(p3, p0, REMOVAL_SHADOW_THRESHOLD)]] = 0
    elif point > REMOVAL_SHADOW_THRESHOLD:
        cls = removal_classify(detector, probs)
    return cls


def _detector_shadow_point(detector: Model) -> float:
    """The detector's own shadow operating point (its contract's; the balanced point without)."""
    contract = getattr(detector, "contract", None)
    return float(getattr(contract, "shadow_threshold", REMOVAL_SHADOW_THRESHOLD))


def tile_counts(
    detector: Model,
    probs: npt.NDArray[np.float32],
    cls: npt.NDArray[np.uint8],
    valid: npt.NDArray[np.bool_],
    ambiguous: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int64]:
    """``(N, 8)`` counts of the valid pixels of each tile, in one numba pass
    (:func:`kumo_edge._runtime_kernels.tile_counts`, whose ``N_*`` constants name the columns):
    all, per class of ``cls``, ``ambiguous`` ones, cloud calls not ambiguous (the downlink
    ``drop`` rule), and the removal's shadow (the shadow calls of :func:`removal_classes`)
    (the bookkeeping of a pair of hsi32 tiles 3.6 -> 2.9 ms, 2026-12-06)."""
    rt = np.float32(REMOVAL_SHADOW_THRESHOLD)
    out = np.empty((len(cls), 8), np.int64)
    _rk.tile_counts(
        cls,
        np.ascontiguousarray(valid, dtype=bool),
        np.ascontiguousarray(ambiguous, dtype=bool),
        np.ascontiguousarray(probs, dtype=np.float32),
        np.float32(1) - rt,
        rt,
        _detector_shadow_point(detector) > REMOVAL_SHADOW_THRESHOLD,
        out,
    )
    return out


def process_image(
    cube: npt.NDArray[np.float32],
    bands: BandSet,
    detector: Model,
    generator: Remover | None = None,
    config: StreamConfig | None = None,
    valid: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], Report]:
    """The whole scene at once, with the same tiles and weights as the stream (the reference
    the stream is tested against; fine for small scenes, memory grows with the scene).

    Returns ``(data, mask, report)`` like the concatenated output of a :class:`StreamProcessor`.
    """
    proc = StreamProcessor(
        cube.shape[2], bands, detector, generator, config
    )  # validates and sets the geometry
    cube = proc._check(cube, valid)
    h_img, w_img = cube.shape[1:]
    if valid is None:
        valid = np.ones((h_img, w_img), bool)
    flags = proc.input_flags(cube)
    if proc.matrix is not None:
        cube = resample(cube, proc.matrix)
    cube = ring_round(np.where(valid[None], cube, 0.0))  # as the stream's line ring holds it
    t, s = proc.T, proc.s
    k = -(-h_img // s)
    rows = (k - 1) * s + t
    padded = np.pad(cube, ((0, 0), (0, rows - h_img), (0, proc.wp - w_img)), mode="edge")
    pvalid = np.pad(valid, ((0, rows - h_img), (0, proc.wp - w_img)), mode="constant")
    row_starts = np.arange(k, dtype=np.int64) * s
    blender = GridBlender(rows, proc.wp, t, proc.h, row_starts, proc.col_starts)
    origins = blender.origins
    tiles = extract_tiles(padded, origins, t)
    vt = np.stack([pvalid[y : y + t, x : x + t] for y, x in origins])
    st = None
    if flags is not None:
        pflags = np.pad(flags, ((0, rows - h_img), (0, proc.wp - w_img)), mode="constant")
        st = np.stack([pflags[y : y + t, x : x + t] for y, x in origins])
    out, probs = process_tiles(
        tiles, vt, proc.detector, proc.generator, proc.cfg, proc.report, origins, st
    )
    data = ring_round(blender.blend(out)[:, :h_img, :w_img])
    p = blender.blend(probs)[:, :h_img, :w_img]
    mask = proc.detector.classify(p, axis=0) + np.uint8(1)
    mask[~valid] = NODATA
    data[:, ~valid] = 0.0
    proc.report.lines = h_img
    return data, mask, proc.report


def _same_bands(a: BandSet, b: BandSet) -> bool:
    return len(a) == len(b) and bool(np.all(np.abs(a.centers - b.centers) <= 0.5))


def stream_lines(
    proc: StreamProcessor,
    chunks: Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_] | None]],
) -> Iterator[Lines]:
    """Push every chunk, then flush; yield finished lines in order."""
    for lines, valid in chunks:
        yield from proc.push(lines, valid)
    yield from proc.flush()
