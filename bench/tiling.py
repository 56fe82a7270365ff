"""Tiling throughput as a fraction of this machine's memcpy bandwidth.

    python -m bench.tiling [--json bench/results/tiling.json] [--repeats 15]

Cases, all on a strip of the reference sensor (satellogic-hsi: 32 bands x 4000 px), tile 256,
halo 16, float32:

* memcpy: ``np.copyto`` of a buffer the size of the tile batch (one thread: the reference), and a
  numba-parallel copy on all threads (the best a kernel could hope for);
* extract: cutting one row of overlapping tiles across the swath into an (N, C, T, T) batch;
  throughput = bytes of tiles written per second;
* blend: blending the same batch into the strip with pre-normalised separable weights
  (``GridBlender``); throughput = bytes of tiles consumed per second;
* footprint: the valid-footprint grid search on a 2041 x 1860 rotated mask (Mpx/s).

Cases alternate within one process so that the ratios compare like with like. Nothing is
asserted: the figures go to JSON (and bench/results/tiling.png when matplotlib is present).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numba as nb
import numpy as np

from bench._common import RESULTS, environment, pyplot, save_figure, time_it, write_json
from kumo_edge.tiling import GridBlender, extract_tiles, footprint_tiles


@nb.njit(parallel=True, cache=True)
def _parallel_copy(src, dst):  # both (N, C, T, T)
    for i in nb.prange(src.shape[0]):
        dst[i] = src[i]


def _rotated_mask(rows: int, cols: int, angle: float = 12.0) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    a = np.radians(angle)
    u = (xx - cols / 2) * np.cos(a) + (yy - rows / 2) * np.sin(a)
    v = -(xx - cols / 2) * np.sin(a) + (yy - rows / 2) * np.cos(a)
    return (np.abs(u) < cols * 0.4) & (np.abs(v) < rows * 0.4)


def run(
    repeats: int = 15, bands: int = 32, width: int = 4000, size: int = 256, halo: int = 16
) -> dict:
    rng = np.random.default_rng(0)
    strip = rng.random((bands, size, width), dtype=np.float32)
    blender = GridBlender(size, width, size, halo)
    origins = blender.origins
    tiles = np.empty((len(origins), bands, size, size), dtype=np.float32)
    nbytes = tiles.nbytes
    src = rng.random(tiles.shape, dtype=np.float32)
    dst = np.empty_like(src)
    out = np.empty((bands, size, width), dtype=np.float32)
    mask = _rotated_mask(1860, 2041)

    cases = {
        "memcpy_numpy_1thread": lambda: np.copyto(dst, src),
        "memcpy_numba_parallel": lambda: _parallel_copy(src, dst),
        "extract": lambda: extract_tiles(strip, origins, size, out=tiles),
        "blend": lambda: blender.blend(tiles, out=out),
    }
    # alternate: one timing round of every case, repeated, then pool the rounds
    rounds: dict[str, list[dict]] = {k: [] for k in cases}
    for _ in range(3):
        for name, fn in cases.items():
            rounds[name].append(time_it(fn, max(1, repeats // 3), warmup=2))
    results = {}
    for name, rs in rounds.items():
        med = float(np.median([r["median_s"] for r in rs]))
        results[name] = {
            "n": sum(r["n"] for r in rs),
            "median_s": med,
            "p95_s": float(max(r["p95_s"] for r in rs)),
            "bytes": nbytes,
            "gb_per_s": nbytes / med / 1e9,
        }
    ref = results["memcpy_numpy_1thread"]["gb_per_s"]
    par = results["memcpy_numba_parallel"]["gb_per_s"]
    for name in ("extract", "blend"):
        results[name]["fraction_of_memcpy"] = results[name]["gb_per_s"] / ref
        results[name]["fraction_of_parallel_copy"] = results[name]["gb_per_s"] / par
    fp = time_it(lambda: footprint_tiles(mask, 256), repeats, warmup=1)
    results["footprint_search"] = {
        **fp,
        "pixels": mask.size,
        "mpx_per_s": mask.size / fp["median_s"] / 1e6,
        "tiles": len(footprint_tiles(mask, 256)),
    }
    return {
        "benchmark": "tiling",
        "environment": environment(),
        "config": {
            "bands": bands,
            "width": width,
            "tile": size,
            "halo": halo,
            "tiles_per_strip": len(origins),
            "repeats": repeats,
        },
        "results": results,
        "target": "extract and blend >= 0.5 x memcpy_numpy_1thread",
    }


def plot(doc: dict, path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    r = doc["results"]
    names = ["memcpy_numpy_1thread", "memcpy_numba_parallel", "extract", "blend"]
    vals = [r[n]["gb_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, vals, color=["#999", "#bbb", "#2a7", "#27a"])
    ax.axvline(
        0.5 * r["memcpy_numpy_1thread"]["gb_per_s"],
        color="k",
        ls="--",
        lw=1,
        label="target 0.5 x memcpy",
    )
    ax.set_xlabel("GB/s (median)")
    ax.set_title(
        f"tiling, {doc['config']['bands']} bands x {doc['config']['width']} px, tile {doc['config']['tile']}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=RESULTS / "tiling.json")
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    doc = run(a.repeats)
    write_json(doc, a.json)
    png = plot(doc, a.json.with_suffix(".png"))
    r = doc["results"]
    print(f"memcpy (numpy, 1 thread)  {r['memcpy_numpy_1thread']['gb_per_s']:6.2f} GB/s")
    print(
        f"copy (numba, {doc['environment']['numba_threads']} threads)    {r['memcpy_numba_parallel']['gb_per_s']:6.2f} GB/s"
    )
    for n in ("extract", "blend"):
        print(
            f"{n:<25} {r[n]['gb_per_s']:6.2f} GB/s = {r[n]['fraction_of_memcpy']:.2f} x memcpy ({r[n]['fraction_of_parallel_copy']:.2f} x parallel copy)"
        )
    fp = r["footprint_search"]
    print(
        f"footprint search          {fp['mpx_per_s']:6.1f} Mpx/s ({fp['tiles']} tiles of 256 in {fp['pixels'] / 1e6:.1f} Mpx)"
    )
    print(f"-> {a.json}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
