"""Tiling: valid-footprint grids, overlapping inference tiles, and seamless blending.

Three jobs, each a validating front over a numba kernel in :mod:`kumo_edge._tiling_kernels`:

* :func:`footprint_tiles` -- on a raster whose valid footprint is a rotated shape with no-data
  corners, every ``size x size`` tile that lies wholly inside the footprint, on the grid
  offset that fits the most tiles. The search is exact and O(H x W): an integral image of
  no-data counts tells in O(1) whether a tile at any origin is clean, and each clean origin
  votes for the offset ``(row % stride, col % stride)`` of the grid it belongs to.
* :func:`inference_origins` / :func:`extract_tiles` -- overlapping tiles covering a whole
  image for a model, with ``halo`` pixels of context on each side (stride
  ``size - 2 * halo``; the last tile is aligned to the far edge). Images smaller than a tile
  are padded by reflection (:func:`pad_to`), never refused.
* :class:`GridBlender` / :func:`blend_tiles` -- recombination of tile outputs with a
  separable sin^2 taper across each overlap. Across an overlap of ``2 * halo`` the tapers of two
  neighbours sum to exactly one; each axis's weights are divided by their sum beforehand
  (:func:`axis_weights`), so the effective weights at every pixel sum to one and no seam shows.

Arrays are ``(band, row, col)`` float32; masks are bool or uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _tiling_kernels as _k
from .errors import DataTypeError, ShapeError

#: Smallest blending weight; keeps the outer ring of an image (covered only by tile edges) defined.
MIN_WEIGHT = 1e-3


def _check_image(img: npt.NDArray, name: str = "image") -> npt.NDArray[np.float32]:
    if not isinstance(img, np.ndarray):
        raise DataTypeError(f"`{name}` must be a numpy array, got {type(img).__name__}")
    if img.ndim != 3:
        raise ShapeError(f"`{name}` must be (bands, rows, cols), got shape {img.shape}")
    if img.dtype != np.float32:
        raise DataTypeError(f"`{name}` must be float32 reflectance, got {img.dtype}")
    return np.ascontiguousarray(img)


def _check_size(size: int, halo: int = 0) -> None:
    if size < 1:
        raise ValueError(f"`size` must be >= 1, got {size}")
    if halo < 0 or 2 * halo >= size:
        raise ValueError(f"`halo` must be >= 0 and < size / 2 ({size / 2:g}), got {halo}")


# -- valid-footprint grids ------------------------------------------------------------------
@dataclass(frozen=True)
class FootprintGrid:
    """Tiles that lie wholly inside a valid footprint.

    Attributes:
        size: Tile side in pixels.
        stride: Grid period in pixels (``size`` for edge-to-edge tiles).
        offset: ``(row, col)`` offset of the chosen grid, each in ``[0, stride)``.
        origins: ``(N, 2)`` int64 upper-left ``(row, col)`` of each tile, row-major.
        counts: ``(stride, stride)`` number of clean tiles for every grid offset.
    """

    size: int
    stride: int
    offset: tuple[int, int]
    origins: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.origins.shape[0])


def footprint_tiles(
    valid: npt.NDArray, size: int = 256, stride: int | None = None
) -> FootprintGrid:
    """All ``size x size`` tiles inside the valid footprint, on the best grid offset.

    Args:
        valid: ``(rows, cols)`` bool or uint8, nonzero where the pixel holds data.
        size: Tile side in pixels.
        stride: Grid period (default ``size``: non-overlapping tiles).

    Returns:
        The chosen grid; ties between offsets go to the smallest ``(row, col)`` offset.
    """
    if not isinstance(valid, np.ndarray) or valid.ndim != 2:
        raise ShapeError(
            f"`valid` must be a 2-D mask, got {getattr(valid, 'shape', type(valid).__name__)}"
        )
    if valid.dtype not in (np.bool_, np.uint8):
        raise DataTypeError(f"`valid` must be bool or uint8, got {valid.dtype}")
    stride = size if stride is None else stride
    _check_size(size)
    if stride < 1:
        raise ValueError(f"`stride` must be >= 1, got {stride}")
    s = _k.integral_invalid(np.ascontiguousarray(valid != 0, dtype=np.uint8))
    counts = _k.offset_counts(s, size, stride)
    oy, ox = np.unravel_index(int(np.argmax(counts)), counts.shape)
    origins = _k.grid_origins(s, size, stride, int(oy), int(ox))
    return FootprintGrid(size, stride, (int(oy), int(ox)), origins, counts)


# -- inference tiles ------------------------------------------------------------------------
def axis_origins(length: int, size: int, halo: int) -> npt.NDArray[np.int64]:
    """Tile starts along one axis: stride ``size - 2*halo``, the last aligned to the end.

    ``length <= size`` gives ``[0]`` (the caller pads to ``size``).
    """
    _check_size(size, halo)
    if length < 1:
        raise ValueError(f"`length` must be >= 1, got {length}")
    if length <= size:
        return np.zeros(1, dtype=np.int64)
    step = size - 2 * halo
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.asarray(starts, dtype=np.int64)


def inference_origins(rows: int, cols: int, size: int, halo: int) -> npt.NDArray[np.int64]:
    """``(N, 2)`` int64 ``(row, col)`` origins of overlapping tiles covering a ``rows x cols`` image
    (after padding to at least ``size`` on each axis), row-major."""
    ys = axis_origins(rows, size, halo)
    xs = axis_origins(cols, size, halo)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def pad_to(img: npt.NDArray[np.float32], rows: int, cols: int) -> npt.NDArray[np.float32]:
    """Pad ``(bands, r, c)`` at the bottom/right by reflection to at least ``rows x cols``."""
    img = _check_image(img)
    pr = max(0, rows - img.shape[1])
    pc = max(0, cols - img.shape[2])
    if pr == 0 and pc == 0:
        return img
    mode = "symmetric" if min(img.shape[1:]) == 1 else "reflect"
    return np.pad(img, ((0, 0), (0, pr), (0, pc)), mode=mode)


def extract_tiles(
    img: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    origins: npt.NDArray[np.int64],
    size: int,
    out: npt.NDArray[np.float32] | None = None,
    step: float | None = None,
) -> npt.NDArray[np.float32]:
    """Cut tiles from an image.

    Args:
        img: ``(bands, rows, cols)`` float32, or uint16 counts of ``step`` (then the tiles are
            ``counts * step``, as float32).
        origins: ``(N, 2)`` int ``(row, col)`` upper-left corners; every tile must fit.
        size: Tile side.
        out: Optional ``(N, bands, size, size)`` float32 buffer to fill (reused between calls).

    Returns:
        ``(N, bands, size, size)`` float32, the model's ``(N, C, H, W)`` layout.
    """
    if (
        step is not None
        and isinstance(img, np.ndarray)
        and img.dtype == np.uint16
        and img.ndim == 3
    ):
        img = np.ascontiguousarray(img)
    else:
        img = _check_image(img)
    origins = _check_origins(origins, img.shape[1], img.shape[2], size)
    shape = (origins.shape[0], img.shape[0], size, size)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ShapeError(
            f"`out` must be a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}"
        )
    if img.dtype == np.uint16:
        _k.extract_dequantized(
            img, origins[:, 0].copy(), origins[:, 1].copy(), size, float(step), out
        )
    else:
        _k.extract(img, origins[:, 0].copy(), origins[:, 1].copy(), size, out)
    return out


def _check_origins(origins: npt.NDArray, rows: int, cols: int, size: int) -> npt.NDArray[np.int64]:
    origins = np.asarray(origins)
    if origins.ndim != 2 or origins.shape[1] != 2:
        raise ShapeError(f"`origins` must be (N, 2), got shape {origins.shape}")
    origins = origins.astype(np.int64, copy=False)
    if origins.size and (
        origins.min() < 0 or origins[:, 0].max() + size > rows or origins[:, 1].max() + size > cols
    ):
        raise ShapeError(
            f"a {size}-pixel tile at some origin does not fit in the {rows} x {cols} image"
        )
    return origins


# -- blending -------------------------------------------------------------------------------
def taper(size: int, halo: int) -> npt.NDArray[np.float64]:
    """``(size,)`` 1-D taper: sin^2 over the ``2*halo`` pixels at each end, 1 inside, never below
    :data:`MIN_WEIGHT`. ``halo=0`` gives ones."""
    _check_size(size, halo)
    if halo == 0:
        return np.ones(size)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5
    t = np.clip(d / (2 * halo), 0.0, 1.0)
    return np.maximum(np.sin(0.5 * np.pi * t) ** 2, MIN_WEIGHT)


def blend_weights(size: int, halo: int) -> npt.NDArray[np.float32]:
    """``(size, size)`` float32 separable taper (outer product of :func:`taper`), unnormalised."""
    w1 = taper(size, halo)
    return np.outer(w1, w1).astype(np.float32)


def axis_weights(
    length: int, starts: npt.NDArray[np.int64], size: int, halo: int
) -> npt.NDArray[np.float32]:
    """``(len(starts), size)`` float32 tapers divided by their sum at every position of the axis,
    so that the weights of the tiles covering any position sum to one."""
    w1 = taper(size, halo)
    total = np.zeros(length)
    for s in starts:
        total[s : s + size] += w1
    if (total[: int(starts.max()) + size] <= 0).any():
        raise ShapeError("the tile starts leave gaps on the axis")
    return np.stack([w1 / total[s : s + size] for s in starts]).astype(np.float32)


class GridBlender:
    """Blends a grid of overlapping tile outputs into an image, seamlessly.

    The tiles form a product grid (every row start with every column start, row-major, as
    :func:`inference_origins` gives them). The 2-D weight is the outer product of 1-D tapers,
    so the sum of weights at any pixel is the product of the per-axis sums; dividing each axis
    by its own sum in advance makes the effective weights sum to exactly one with no
    normalisation pass, and the kernel streams the tiles once.

    Args:
        rows, cols: Output size (the padded size if the image was padded).
        size, halo: Tile side and halo.
        row_starts, col_starts: Tile starts per axis (default :func:`axis_origins`).
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        size: int,
        halo: int,
        row_starts: npt.NDArray[np.int64] | None = None,
        col_starts: npt.NDArray[np.int64] | None = None,
    ) -> None:
        self.rows, self.cols, self.size, self.halo = rows, cols, size, halo
        self.row_starts = (
            axis_origins(rows, size, halo)
            if row_starts is None
            else np.asarray(row_starts, np.int64)
        )
        self.col_starts = (
            axis_origins(cols, size, halo)
            if col_starts is None
            else np.asarray(col_starts, np.int64)
        )
        for starts, length, name in (
            (self.row_starts, rows, "row"),
            (self.col_starts, cols, "col"),
        ):
            if (
                starts.ndim != 1
                or starts.size == 0
                or starts.min() < 0
                or starts.max() + size > length
            ):
                raise ShapeError(
                    f"{name} starts must lie in [0, {length - size}], got {starts.tolist()}"
                )
        self.wy = axis_weights(rows, self.row_starts, size, halo)
        self.wx = axis_weights(cols, self.col_starts, size, halo)

    @property
    def origins(self) -> npt.NDArray[np.int64]:
        """``(N, 2)`` row-major ``(row, col)`` origins of the tiles :meth:`blend` expects."""
        yy, xx = np.meshgrid(self.row_starts, self.col_starts, indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=1)

    def blend(
        self, tiles: npt.NDArray[np.float32], out: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        """Blend ``(N, bands, size, size)`` float32 tiles (order of :attr:`origins`) into
        ``(bands, rows, cols)``; pixels no tile covers are 0."""
        n = self.row_starts.size * self.col_starts.size
        if (
            not isinstance(tiles, np.ndarray)
            or tiles.ndim != 4
            or tiles.shape[0] != n
            or tiles.shape[2:] != (self.size, self.size)
        ):
            raise ShapeError(
                f"`tiles` must be ({n}, bands, {self.size}, {self.size}), got {getattr(tiles, 'shape', None)}"
            )
        if tiles.dtype != np.float32:
            raise DataTypeError(f"`tiles` must be float32, got {tiles.dtype}")
        shape = (tiles.shape[1], self.rows, self.cols)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ShapeError(f"`out` must be a C-contiguous float32 array of shape {shape}")
        _k.blend_grid(
            np.ascontiguousarray(tiles), self.row_starts, self.col_starts, self.wy, self.wx, out
        )
        return out


def accumulate_tile_row(
    acc: npt.NDArray[np.float32],
    tiles: npt.NDArray[np.float32],
    col_starts: npt.NDArray[np.int64],
    wy: npt.NDArray[np.float32],
    wx: npt.NDArray[np.float32],
) -> None:
    """Add tiles of one tile row into a ``(bands, T, width)`` accumulator with weights
    ``wy[r] * wx[m, x]`` (``wx`` from :func:`axis_weights`, rows of the chosen tiles). The stream
    uses it batch by batch, so a whole tile row of tiles never has to exist at once."""
    if (
        tiles.ndim != 4
        or tiles.shape[0] != col_starts.shape[0]
        or tiles.shape[1] != acc.shape[0]
        or tiles.shape[2] != acc.shape[1]
    ):
        raise ShapeError(
            f"tiles {tiles.shape} do not fit the accumulator {acc.shape} and {col_starts.shape[0]} starts"
        )
    _k.accumulate_row(
        acc,
        np.ascontiguousarray(tiles, dtype=np.float32),
        np.ascontiguousarray(col_starts, dtype=np.int64),
        wy.astype(np.float32),
        np.ascontiguousarray(wx, dtype=np.float32),
    )


def blend_tiles(
    tiles: npt.NDArray[np.float32], origins: npt.NDArray[np.int64], rows: int, cols: int, halo: int
) -> npt.NDArray[np.float32]:
    """Blend ``(N, bands, size, size)`` tile outputs at a product grid of ``origins`` (row-major,
    as :func:`inference_origins` gives) into a ``(bands, rows, cols)`` image."""
    if not isinstance(tiles, np.ndarray) or tiles.ndim != 4:
        raise ShapeError(
            f"`tiles` must be (N, bands, size, size), got {getattr(tiles, 'shape', None)}"
        )
    origins = _check_origins(origins, rows, cols, tiles.shape[2])
    ys, xs = np.unique(origins[:, 0]), np.unique(origins[:, 1])
    blender = GridBlender(rows, cols, tiles.shape[2], halo, ys, xs)
    if origins.shape != (ys.size * xs.size, 2) or not np.array_equal(origins, blender.origins):
        raise ShapeError("`origins` must be a full row-major grid (as inference_origins gives)")
    return blender.blend(tiles)


def tile_image(
    img: npt.NDArray[np.float32], size: int, halo: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], tuple[int, int]]:
    """Pad an image if needed and cut it into overlapping inference tiles.

    Returns:
        ``(tiles, origins, padded_shape)``; blend with :func:`blend_tiles` on ``padded_shape``
        and crop to the original size.
    """
    img = _check_image(img)
    padded = pad_to(img, size, size)
    origins = inference_origins(padded.shape[1], padded.shape[2], size, halo)
    return extract_tiles(padded, origins, size), origins, (padded.shape[1], padded.shape[2])


def batch_index(idx: npt.NDArray[np.int64]) -> slice | npt.NDArray[np.int64]:
    """Index of a batch of tiles ``idx`` (ascending): consecutive tiles (the usual case) as a
    slice, so that ``tiles[sel]`` is a view, not a copy of the batch."""
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == len(idx) else idx
