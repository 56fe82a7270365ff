"""Stored integer values and the scale that makes them reflectance, and the check that a scale
is right.

A file or sensor stores reflectance as integer counts (uint16 DN of reflectance x 10,000, say)
with a per-band scale and offset. :class:`Counts` carries a strip of them unconverted, so that
the stream can turn them into its line ring in one pass
(:meth:`kumo_edge.stream.StreamProcessor.push_counts`) instead of first making a float32 strip
twice their size; :meth:`Counts.reflectance` makes that strip where one is needed. Both give
the same values, and both refuse values that cannot be reflectance
(:func:`judge_reflectance`) before any of them is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _tiling_kernels as _tk
from .errors import InvalidDataError

#: Scaled values outside this range mean the scale/offset is wrong, not that the scene is odd.
REFLECTANCE_SANITY_RANGE = (-0.5, 2.0)
#: Reflectance below this is beyond noise; a strip where more than NEGATIVE_SHARE of the valid
#: samples fall below it is not reflectance (a wrong offset or scale).
NEGATIVE_NOISE = -0.05
NEGATIVE_SHARE = 0.05


def judge_reflectance(vmin: float, vmax: float, negative: int, values: int, what: str) -> None:
    """Refuse a strip whose ``values`` valid samples range ``vmin..vmax`` with ``negative`` of
    them below :data:`NEGATIVE_NOISE`: outside :data:`REFLECTANCE_SANITY_RANGE`, or mostly
    negative beyond noise. ``what`` names the strip in the message."""
    if not values:
        return
    lo, hi = REFLECTANCE_SANITY_RANGE
    if vmin < lo or vmax > hi:
        raise InvalidDataError(
            f"{what}: values {vmin:.4g}..{vmax:.4g} are not reflectance; check --scale/--offset"
            + (
                " (at-sensor radiance, as in an L1B product, needs atmospheric correction to "
                "surface reflectance first)"
                if hi < vmax <= 1000.0 and vmin >= lo  # radiance units; 10,000s are scaled counts
                else ""
            )
            + (
                # a fill value the file does not declare (-9999 of reflectance x 10,000, say)
                f", or, if {vmin:.4g} marks pixels without data, give its stored value with "
                "--nodata"
                if vmin < lo
                else ""
            )
        )
    share = negative / values
    if share > NEGATIVE_SHARE:
        raise InvalidDataError(
            f"{what}: {share:.0%} of the values are below {NEGATIVE_NOISE} (negative beyond noise): "
            "not reflectance; check --scale/--offset"
        )


def check_reflectance(
    data: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_] | None, what: str
) -> None:
    """Refuse ``(bands, rows, cols)`` reflectance that cannot be reflectance (see
    :func:`judge_reflectance`), counting only the ``valid`` pixels."""
    # band by band: no temporary larger than one band of the strip
    n = int(valid.sum()) if valid is not None else data[0].size
    if not n:
        return
    vmin, vmax, neg = math.inf, -math.inf, 0
    for b in data:
        v = b[valid] if valid is not None and not valid.all() else b
        vmin, vmax = min(vmin, float(v.min())), max(vmax, float(v.max()))
        neg += int(np.count_nonzero(v < NEGATIVE_NOISE))
    judge_reflectance(vmin, vmax, neg, n * len(data), what)


@dataclass(frozen=True)
class Counts:
    """Consecutive full-width lines as stored integers, with what makes them reflectance.

    Attributes:
        raw: ``(bands, n, width)`` integer values (a view is fine; never written).
        valid: ``(n, width)`` bool, True where every band holds data.
        scale, offset: ``(bands,)`` float32; reflectance = ``float32(raw) * scale + offset``
            (two float32 roundings, as :meth:`reflectance` computes it), 0 where not valid,
            clipped to [0, 1].
        what: Names the lines in error messages (file and rows).
    """

    raw: npt.NDArray[np.integer]
    valid: npt.NDArray[np.bool_]
    scale: npt.NDArray[np.float32]
    offset: npt.NDArray[np.float32]
    what: str

    def __post_init__(self) -> None:
        if self.raw.ndim != 3 or self.raw.dtype.kind not in "iu":
            raise TypeError(f"Counts need (bands, n, width) integers, got {self.raw.dtype}")
        c, n, w = self.raw.shape
        if self.valid.shape != (n, w) or self.valid.dtype != np.bool_:
            raise ValueError(f"`valid` must be a bool array of shape {(n, w)}")
        for name in ("scale", "offset"):
            v = getattr(self, name)
            if v.shape != (c,) or v.dtype != np.float32:
                raise ValueError(f"`{name}` must be float32 of shape ({c},)")

    def check(self) -> None:
        """Refuse lines that cannot be reflectance (:func:`judge_reflectance`), in one pass over
        the stored values."""
        stats = np.empty((self.raw.shape[0], 3), np.float64)
        _tk.counts_stats(
            self.raw, self.valid, self.scale, self.offset, np.float32(NEGATIVE_NOISE), stats
        )
        n = int(np.count_nonzero(self.valid))
        judge_reflectance(
            float(stats[:, 0].min()),
            float(stats[:, 1].max()),
            int(stats[:, 2].sum()),
            n * self.raw.shape[0],
            self.what,
        )

    def reflectance(self) -> npt.NDArray[np.float32]:
        """``(bands, n, width)`` float32 reflectance in [0, 1], invalid pixels 0 (checked)."""
        out = self.raw.astype(np.float32, copy=True)
        out *= self.scale[:, None, None]
        out += self.offset[:, None, None]
        out[:, ~self.valid] = 0.0
        check_reflectance(out, self.valid, self.what)
        np.clip(out, 0.0, 1.0, out=out)
        return out
