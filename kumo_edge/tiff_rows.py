"""Full-width rows of a tiled GeoTIFF, decoded a few rows at a time, so that a block row of
tiles is never held whole.

A tiled file stores 256 x 256 (say) tiles; a stream needs full-width lines, 8 at a time. Read
through GDAL, every tile of a block row must be decompressed before the first line of it is
out, and the decompressed block row (65 MB at 32 bands x 4000 px x 256 rows of uint16) is
held until its last line is: the largest buffer of the file path. A deflate stream can be
decompressed in order, any number of bytes at a time, and a pixel-interleaved tile stores its
rows in order, so each tile of the block row gets its own decompressor and gives up its next
rows when asked: what is held is the decompressors (a 32 KB window each) and one strip.

Only what this covers is read this way (:meth:`TileRows.open`): a GeoTIFF, little-endian,
tiled, pixel-interleaved (or one band), uncompressed or deflate, no predictor or horizontal
differencing (predictor 2), integer samples. Anything else returns None, and the caller reads
through GDAL as before; a block row with a tile not stored (a sparse file) is read whole through
GDAL. The values are the file's stored values, the same as GDAL reads.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: Compressed bytes read from the file at a time per tile.
CHUNK = 1 << 16
#: Threads that inflate the tiles of a strip (as GDAL decodes a read on every core).
THREADS = min(4, os.cpu_count() or 1)


def strip_cuts(start: int, lo: int, hi: int, lines: int) -> Iterator[tuple[int, int]]:
    """``(a, b)``: the rows ``[lo, hi)`` of a block row starting at ``start``, cut every
    ``lines`` rows from ``start`` (the first and last piece may be shorter): how the file path
    cuts every read into strips, whoever reads it."""
    for g in range(start, hi, lines):
        a, b = max(g, lo), min(g + lines, hi)
        if a < b:
            yield a, b


class _Tile:
    """One tile's rows, in order: its compressed bytes read and decompressed as they are asked
    for (or, uncompressed, read directly)."""

    def __init__(self, fd: int, offset: int, size: int, row_bytes: int, deflate: bool) -> None:
        self.fd, self.pos, self.end = fd, offset, offset + size
        self.row_bytes = row_bytes
        self.z = zlib.decompressobj() if deflate else None
        self.pending = b""  # decompressed bytes not handed out yet
        self.tail = b""  # compressed bytes not decompressed yet

    def rows(self, n: int) -> bytes:
        want = n * self.row_bytes
        if self.z is None:
            got = os.pread(self.fd, want, self.pos)
            self.pos += len(got)
            if len(got) != want:
                raise OSError(f"tile data ends early ({len(got)} of {want} bytes)")
            return got
        parts, have = [self.pending], len(self.pending)
        while have < want:
            if not self.tail:
                if self.pos >= self.end:
                    raise OSError("a deflate tile ends early")
                self.tail = os.pread(self.fd, min(CHUNK, self.end - self.pos), self.pos)
                self.pos += len(self.tail)
                if not self.tail:
                    raise OSError("the file ends inside a tile")
            out = self.z.decompress(self.tail, want - have)
            self.tail = self.z.unconsumed_tail
            parts.append(out)
            have += len(out)
            if not out and not self.tail and self.pos >= self.end:
                raise OSError("a deflate tile ends early")
        blob = b"".join(parts)
        self.pending = blob[want:]
        return blob[:want]


class TileRows:
    """Strips of full-width rows of a tiled GeoTIFF (module docstring)."""

    def __init__(
        self,
        ds: Any,  # noqa: ANN401 - a rasterio dataset, kept open by its owner
        shape: tuple[int, int, int],
        tile: tuple[int, int],
        dtype: np.dtype,
        deflate: bool,
        predictor: int,
    ) -> None:
        self.ds = ds
        self.path = Path(ds.name)
        self.bands, self.height, self.width = shape
        self.th, self.tw = tile
        self.dtype = dtype
        self.deflate, self.predictor = deflate, predictor

    @classmethod
    def open(cls, ds: Any) -> TileRows | None:  # noqa: ANN401 - a rasterio dataset
        """A reader for the rasterio dataset ``ds``, or None when its layout is not one this
        module reads (module docstring)."""
        if ds.driver != "GTiff" or not ds.profile.get("tiled"):
            return None
        dtype = np.dtype(ds.dtypes[0])
        if dtype.kind not in "iu" or len(set(ds.dtypes)) != 1:
            return None
        st = ds.tags(ns="IMAGE_STRUCTURE")
        comp = st.get("COMPRESSION", "NONE").upper()
        predictor = int(st.get("PREDICTOR", "1"))
        if comp not in ("NONE", "DEFLATE") or predictor not in (1, 2):
            return None
        if ds.count > 1 and st.get("INTERLEAVE", "PIXEL").upper() != "PIXEL":
            return None
        try:
            with open(ds.name, "rb") as f:
                if f.read(2) != b"II":  # little-endian only
                    return None
        except OSError:
            return None
        th, tw = ds.block_shapes[0]
        reader = cls(
            ds,
            (ds.count, ds.height, ds.width),
            (th, tw),
            dtype.newbyteorder("<"),
            comp == "DEFLATE",
            predictor,
        )
        return reader

    def block_row(self, ty: int) -> list[tuple[int, int]] | None:
        """``(offset, size)`` in the file of the tiles of block row ``ty`` (from GDAL's TIFF
        metadata, asked for one block row at a time: a long pass has thousands of tiles), or
        None where one is not stored (a sparse file: GDAL reads those as no data) or the
        metadata is not there."""
        out = []
        for tx in range(-(-self.width // self.tw)):
            o = self.ds.get_tag_item(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF", bidx=1)
            n = self.ds.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=1)
            if not o or not n or int(o) == 0 or int(n) == 0:
                return None
            out.append((int(o), int(n)))
        return out

    def strips(
        self, lines: int, first: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, npt.NDArray[Any]]]:
        """``(row, values)`` for the rows ``[first, stop)`` in strips of up to ``lines`` rows,
        ``values`` ``(bands, n, width)`` in the file's dtype; cut every ``lines`` rows from the
        start of each block row, as :meth:`kumo_edge.io.Raster.natural_strips` cuts them."""
        stop = self.height if stop is None else stop
        row_bytes = self.tw * self.bands * self.dtype.itemsize
        fd = os.open(self.path, os.O_RDONLY)
        pool = ThreadPoolExecutor(THREADS) if self.deflate and THREADS > 1 else None
        try:
            for ty in range(first // self.th, -(-stop // self.th)):
                y0 = ty * self.th
                where = self.block_row(ty)
                if where is None:  # a tile not stored (sparse): GDAL reads this block row
                    yield from self._gdal_block_row(y0, lines, first, stop)
                    continue
                tiles = [_Tile(fd, o, n, row_bytes, self.deflate) for o, n in where]
                at = y0  # rows of this block row decoded so far
                hi = min(y0 + self.th, stop)
                for a, b in strip_cuts(y0, max(y0, first), hi, lines):
                    if a > at:  # rows before the range: decoded and dropped
                        for t in tiles:
                            t.rows(a - at)
                        at = a
                    yield a, self._strip(tiles, b - a, pool)
                    at = b
        finally:
            if pool is not None:
                pool.shutdown()
            os.close(fd)

    def _gdal_block_row(
        self, y0: int, lines: int, first: int, stop: int
    ) -> Iterator[tuple[int, npt.NDArray[Any]]]:
        """The strips of the block row at ``y0`` read whole through GDAL (as before this
        module), for a block row this reader cannot read."""
        from rasterio.windows import Window

        lo, hi = max(y0, first), min(y0 + self.th, stop)
        block = self.ds.read(window=Window(0, lo, self.width, hi - lo))
        for a, b in strip_cuts(y0, lo, hi, lines):
            yield a, block[:, a - lo : b - lo].copy()

    def _strip(self, tiles: list[_Tile], n: int, pool: Any = None) -> npt.NDArray[Any]:  # noqa: ANN401
        out = np.empty((self.bands, n, self.width), self.dtype.newbyteorder("="))

        def one(j: int) -> None:
            t = tiles[j]
            block = np.frombuffer(t.rows(n), self.dtype).reshape(n, self.tw, self.bands)
            if self.predictor == 2:  # horizontal differencing, per band, wrapping
                block = np.cumsum(block, axis=1, dtype=self.dtype)
            x0 = j * self.tw
            w = min(self.tw, self.width - x0)
            out[:, :, x0 : x0 + w] = block[:, :w, :].transpose(2, 0, 1)

        if pool is None:
            for j in range(len(tiles)):
                one(j)
        else:  # zlib lets go of Python's lock while it inflates: the tiles in parallel
            for f in [pool.submit(one, j) for j in range(len(tiles))]:
                f.result()
        return out
