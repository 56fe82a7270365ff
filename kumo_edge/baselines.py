"""Classical cloud removers, behind the same interface as the learned generator.

A remover has ``bands`` (the band set it works in), ``needs_classes`` and
``run(tiles, classes=None)``: ``(N, C, T, T)`` float32 reflectance in, the same shape out;
``classes`` ``(N, T, T)`` are the detector's class indices (0 clear, 1 thin cloud, 2 thick
cloud, 3 shadow). The stream runtime calls a remover exactly where it would call the cGAN
(tiles with thin cloud or shadow; thick-cloud pixels keep their input either way), so
``kumo-edge run --method hot|inpaint`` swaps it in. No torch, no model file.

* :class:`HazeOptimizedTransform` (``hot``): the Haze Optimized Transform of Zhang, Guindon and
  Cihlar (2002). Per tile, the "clear line" is fitted in blue-red space on the pixels the
  detector calls clear; ``HOT = blue sin(theta) - red cos(theta)`` measures haze. Pixels are
  binned by HOT level; in every bin and band the dark-object value (a low percentile) is found,
  and its rise over the clear pixels' dark object is subtracted (dark-object subtraction per HOT
  level, per band). HOT measures haze only: shadow pixels are left as they are (matching their
  per-band mean and spread to the clear pixels' was tried and made shadows worse on synthetic
  shadows: 32 -> 26 dB, because the clear pixels are other land cover).
* :class:`HarmonicInpainting` (``inpaint``): mask-then-inpaint. Pixels the detector marks as
  cloud or shadow are unknown; they are filled with the harmonic interpolant of the surrounding
  clear pixels (the solution of Laplace's equation with the clear pixels as boundary values:
  pull-push pyramid start, then Gauss-Seidel sweeps), band by band. Everything below the cloud
  is discarded, which is what the learned model should beat for thin cloud.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from .bands import BandSet
from .errors import BandCountError, BandMappingError, ShapeError
from .remover import Remover as Remover  # noqa: PLC0414 - re-exported (older import path)

CLEAR, THIN, THICK, SHADOW = 0, 1, 2, 3
#: ``model``: the band set's shipped remover (``generator.onnx``: the physics remover or the
#: cGAN); ``cgan`` is its older name, kept so that existing scripts run unchanged.
METHODS = ("model", "cgan", "hot", "inpaint")
MODEL_METHODS = ("model", "cgan")


class _Remover:
    needs_classes = True

    def __init__(self, bands: BandSet) -> None:
        self.bands = bands

    def _check(self, tiles: npt.NDArray[np.float32], classes: npt.NDArray | None) -> None:
        if not isinstance(tiles, np.ndarray) or tiles.ndim != 4 or tiles.dtype != np.float32:
            raise ShapeError(
                f"tiles must be float32 (N, C, H, W), got {getattr(tiles, 'dtype', '?')} {getattr(tiles, 'shape', '?')}"
            )
        if tiles.shape[1] != len(self.bands):
            raise BandCountError(
                f"tiles have {tiles.shape[1]} bands, the remover was built for {len(self.bands)}"
            )
        if classes is None or classes.shape != (tiles.shape[0], *tiles.shape[2:]):
            raise ShapeError(
                f"{type(self).__name__} needs the detector's classes, shaped (N, H, W) = {(tiles.shape[0], *tiles.shape[2:])}"
            )

    def run(
        self, tiles: npt.NDArray[np.float32], classes: npt.NDArray | None = None
    ) -> npt.NDArray[np.float32]:
        self._check(tiles, classes)
        assert classes is not None
        return np.stack([self.tile(t, c) for t, c in zip(tiles, classes, strict=True)])

    def tile(
        self, x: npt.NDArray[np.float32], cls: npt.NDArray
    ) -> npt.NDArray[np.float32]:  # pragma: no cover - abstract
        raise NotImplementedError


def _nearest(bands: BandSet, lo: float, hi: float, want: float, what: str) -> int:
    c = bands.centers
    inside = np.flatnonzero((c >= lo) & (c <= hi))
    if not len(inside):
        raise BandMappingError(
            f"the HOT method needs a {what} band ({lo:.0f}-{hi:.0f} nm); the band set has {', '.join(f'{v:.0f}' for v in c)} nm"
        )
    return int(inside[np.argmin(np.abs(c[inside] - want))])


class HazeOptimizedTransform(_Remover):
    """HOT thin-cloud correction (see the module docstring).

    Args:
        bands: The band set (needs a blue band in 420-520 nm and a red band in 600-700 nm).
        bins: HOT levels the hazy pixels are divided into.
        percentile: The dark-object percentile.
        min_clear: Fewest clear pixels a tile needs to fit its own clear line; with fewer the
            tile is returned unchanged (nothing to measure haze against).
    """

    def __init__(
        self, bands: BandSet, bins: int = 12, percentile: float = 2.0, min_clear: int = 256
    ) -> None:
        super().__init__(bands)
        self.blue = _nearest(bands, 420, 520, 480, "blue")
        self.red = _nearest(bands, 600, 700, 660, "red")
        self.bins, self.percentile, self.min_clear = bins, percentile, min_clear

    def tile(self, x: npt.NDArray[np.float32], cls: npt.NDArray) -> npt.NDArray[np.float32]:
        out = x.copy()
        clear = (cls == CLEAR) & (x.max(0) > 0)
        if clear.sum() < self.min_clear:
            return out
        b, r = x[self.blue], x[self.red]
        # clear line: blue = a + k * red on clear pixels; theta is its angle to the red axis
        rb, bb = r[clear], b[clear]
        var = float(rb.var())
        k = float(((rb - rb.mean()) * (bb - bb.mean())).mean() / var) if var > 1e-10 else 1.0
        theta = math.atan(max(k, 1e-3))
        hot = b * math.sin(theta) - r * math.cos(theta)
        ref = self._dark(x[:, clear])
        hazy = cls == THIN
        if hazy.sum() >= 16:
            h = hot[hazy]
            h0 = float(np.median(hot[clear]))
            edges = np.unique(np.quantile(h, np.linspace(0, 1, self.bins + 1)))
            centres, rises = [h0], [np.zeros(len(ref), np.float32)]
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                sel = hazy & (hot >= lo) & (hot <= hi)
                if sel.sum() < 16:
                    continue
                centres.append(float(np.median(hot[sel])))
                rises.append(np.maximum(self._dark(x[:, sel]) - ref, 0.0))
            order = np.argsort(centres)
            cs, rs = np.asarray(centres)[order], np.stack(rises)[order]
            for i in range(len(ref)):
                out[i][hazy] = x[i][hazy] - np.interp(h, cs, rs[:, i]).astype(np.float32)
        return np.clip(out, 0.0, 1.0)

    def _dark(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.percentile(pixels, self.percentile, axis=1).astype(np.float32)


class HarmonicInpainting(_Remover):
    """Mask-then-inpaint: cloud and shadow pixels filled from the clear ones (see the module docstring).

    Args:
        bands: The band set (any).
        sweeps: Gauss-Seidel sweeps after the pull-push start.
    """

    def __init__(self, bands: BandSet, sweeps: int = 60) -> None:
        super().__init__(bands)
        self.sweeps = sweeps

    def tile(self, x: npt.NDArray[np.float32], cls: npt.NDArray) -> npt.NDArray[np.float32]:
        fill = cls != CLEAR
        known = ~fill & (x.max(0) > 0)  # all-zero pixels are no data: neither source nor target
        if not fill.any() or not known.any():
            return x.copy()  # nothing to fill, or nothing to fill from
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = _pull_push(x[i], known)
        _gauss_seidel(out, known, self.sweeps)
        return np.where(fill[None], out, x)


def _pull_push(
    img: npt.NDArray[np.float32], known: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """Holes filled with the known mean of ever coarser 2 x 2 blocks (a smooth first guess)."""
    levels = [(np.where(known, img, 0.0).astype(np.float64), known.astype(np.float64))]
    while min(levels[-1][0].shape) > 1:
        v, w = levels[-1]
        h, wd = v.shape
        v = np.pad(v, ((0, h % 2), (0, wd % 2)))
        w = np.pad(w, ((0, h % 2), (0, wd % 2)))
        vs = v.reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2).sum((1, 3))
        ws = w.reshape(w.shape[0] // 2, 2, w.shape[1] // 2, 2).sum((1, 3))
        levels.append((vs, ws))
    v, w = levels[-1]
    filled = np.where(w > 0, v / np.maximum(w, 1e-12), 0.0)
    for v, w in reversed(levels[:-1]):
        up = np.repeat(np.repeat(filled, 2, 0), 2, 1)[: v.shape[0], : v.shape[1]]
        filled = np.where(w > 0, v / np.maximum(w, 1e-12), up)
    return np.where(known, img, filled).astype(np.float32)


@nb.njit(cache=True, parallel=True)
def _gauss_seidel(x, known, sweeps):  # pragma: no cover - numba
    """Relax the unknown pixels of every band towards the mean of their 4 neighbours (red-black
    ordering, so that the sweep can run in parallel)."""
    c, h, w = x.shape
    for b in nb.prange(c):
        for _ in range(sweeps):
            for colour in range(2):
                for r in range(h):
                    for q in range((r + colour) % 2, w, 2):
                        if known[r, q]:
                            continue
                        s = 0.0
                        n = 0
                        if r > 0:
                            s += x[b, r - 1, q]
                            n += 1
                        if r < h - 1:
                            s += x[b, r + 1, q]
                            n += 1
                        if q > 0:
                            s += x[b, r, q - 1]
                            n += 1
                        if q < w - 1:
                            s += x[b, r, q + 1]
                            n += 1
                        x[b, r, q] = s / n


def remover(method: str, bands: BandSet) -> _Remover:
    """A classical remover by name (``hot`` or ``inpaint``)."""
    if method == "hot":
        return HazeOptimizedTransform(bands)
    if method == "inpaint":
        return HarmonicInpainting(bands)
    raise ValueError(f"unknown classical method {method!r}; known: hot, inpaint")
