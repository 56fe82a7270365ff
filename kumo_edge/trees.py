"""A second opinion on cloud: gradient-boosted trees on coarse multi-scale features.

The detector network and a tree ensemble make different mistakes on real clouds. Out of fold on
the 36 labelled real patches (README, "A second opinion from trees"), the network misses whole
featureless ice clouds and calls clear textured ice cloud in some training runs; trees on
brightness, colour and local statistics at three scales get those right and miss the hazy
overcast the network finds. The runtime combines the two: the cloud probability becomes the
geometric mean of the network's and the trees' (:func:`combine`), and the network's split of
cloud into thin/thick and of the rest into clear/shadow is kept.

What the trees see (:func:`features`): each tile is block-averaged by ``down`` (4: a 256-px
tile becomes 64 x 64), mapped onto canonical bands (blue 490, green 560, red 665 and, where
present, NIR 842 nm) by the band set's resampling matrix, clipped to [0, 1], and described per
coarse pixel by its bands, visible mean, whiteness, two colour ratios, a haze index, NDVI and
NIR/green, and for the visible mean and the NIR: the local mean, standard deviation and
contrast over three windows, the local minimum and maximum, and a fine-texture term. The
trees' probability is given to every pixel of its block. The cost per 256-px tile is a few
milliseconds on two cores (``python -m bench.detector_real`` measures it beside the network).

The ensemble is a plain ``.npz`` beside the detector (``<detector>.trees.npz``): complete
binary trees of one depth (split feature and threshold per internal node, breadth first; leaf
values left to right), walked without branches, and the feature settings; ``export.trees`` writes it from LightGBM, which the runtime
never imports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np
import numpy.typing as npt

from .bands import BandSet, resampling_matrix
from .config import sensor_profile
from .errors import BandMappingError, ModelContractError

#: The canonical bands the trees read: the first four of the detector's canonical six (the
#: ``rgbn-swir`` profile: blue, green, red, NIR).
CANONICAL = sensor_profile("rgbn-swir").bands.subset(range(4))
#: File format version of ``*.trees.npz``.
FORMAT = 1
_EPS = np.float32(1e-4)


def _box(a: npt.NDArray[np.float32], w: int) -> npt.NDArray[np.float32]:
    """Mean over a ``w`` x ``w`` window (reflected at the edges) of each plane of ``a`` (N, h, w)."""
    r = w // 2
    p = np.pad(a, ((0, 0), (r, r), (r, r)), mode="reflect").astype(np.float64)
    c = np.zeros((p.shape[0], p.shape[1] + 1, p.shape[2] + 1))
    np.cumsum(np.cumsum(p, 1), 2, out=c[:, 1:, 1:])
    h, wd = a.shape[1:]
    s = c[:, w : w + h, w : w + wd] - c[:, :h, w : w + wd] - c[:, w : w + h, :wd] + c[:, :h, :wd]
    return (s / (w * w)).astype(np.float32)


def _extreme(a: npt.NDArray[np.float32], w: int, op: np.ufunc) -> npt.NDArray[np.float32]:
    """Minimum or maximum (``op``) over a ``w`` x ``w`` window (edges repeated), per plane."""
    r = w // 2
    h, wd = a.shape[1:]
    p = np.pad(a, ((0, 0), (r, r), (r, r)), mode="edge")
    rows = p[:, :, 0:wd].copy()
    for d in range(1, w):
        op(rows, p[:, :, d : d + wd], out=rows)
    out = rows[:, 0:h].copy()
    for d in range(1, w):
        op(out, rows[:, d : d + h], out=out)
    return out


def features(
    canon: npt.NDArray[np.float32], windows: tuple[int, ...], extreme: int
) -> npt.NDArray[np.float32]:
    """Per-pixel features ``(N, F, h, w)`` of coarse canonical tiles ``canon`` ``(N, K, h, w)``
    (K = 3: blue, green, red; 4: and NIR), reflectance in [0, 1]."""
    b, g, r = canon[:, 0], canon[:, 1], canon[:, 2]
    n = canon[:, 3] if canon.shape[1] > 3 else None
    vis = (b + g + r) / np.float32(3)
    f = [
        b,
        g,
        r,
        vis,
        (np.abs(b - vis) + np.abs(g - vis) + np.abs(r - vis)) / (vis + _EPS),
        (b - r) / (b + r + _EPS),
        b - np.float32(0.5) * r,
    ]
    if n is not None:
        f += [n, (n - r) / (n + r + _EPS), n / (g + _EPS)]
    for base in [vis] if n is None else [vis, n]:
        for w in windows:
            m = _box(base, w)
            s = np.sqrt(np.maximum(_box(base * base, w) - m * m, 0))
            f += [m, s, base - m]
        f += [_extreme(base, extreme, np.minimum), _extreme(base, extreme, np.maximum)]
        f += [np.abs(base - _box(base, 3))]
    return np.stack(f, 1).astype(np.float32, copy=False)


def coarse_canonical(
    tiles: npt.NDArray[np.float32], matrix: npt.NDArray[np.float32], down: int
) -> npt.NDArray[np.float32]:
    """Tiles ``(N, C, H, W)`` block-averaged by ``down`` and mapped by ``matrix`` ``(K, C)``
    onto the canonical bands, clipped to [0, 1]: ``(N, K, H / down, W / down)``."""
    n, _, h, w = tiles.shape
    out = np.empty((n, matrix.shape[0], h // down, w // down), np.float32)
    _coarse(
        np.ascontiguousarray(tiles, np.float32), np.ascontiguousarray(matrix, np.float32), down, out
    )
    return out


@nb.njit(parallel=True, cache=True)
def _coarse(tiles, matrix, down, out):  # pragma: no cover - numba
    n, c, h, w = tiles.shape
    k = matrix.shape[0]
    hh, ww = h // down, w // down
    inv = np.float32(1.0 / (down * down))
    for j in nb.prange(n * hh):
        t, y = j // hh, j % hh
        acc = np.zeros((c, ww), np.float32)
        for b in range(c):
            for dy in range(down):
                row = tiles[t, b, y * down + dy]
                for x in range(ww):
                    s = np.float32(0)
                    for dx in range(down):
                        s += row[x * down + dx]
                    acc[b, x] += s
        for q in range(k):
            for x in range(ww):
                v = np.float32(0)
                for b in range(c):
                    v += matrix[q, b] * acc[b, x]
                v *= inv
                out[t, q, y, x] = min(max(v, np.float32(0)), np.float32(1))


#: Pixels per parallel chunk of :func:`_predict`.
_CHUNK = 256


@nb.njit(parallel=True, cache=True)
def _predict(x, feat, thr, leaf, out):  # pragma: no cover - numba
    """Summed leaf values of every tree for each column of ``x`` ``(F, P)``. The trees are
    complete (``feat``/``thr`` ``(T, 2**D - 1)`` in breadth-first order, ``leaf`` ``(T, 2**D)``):
    D steps without branches per tree, taken level by level over a chunk of pixels (the
    pixels' independent steps overlap; 30 % faster than walking each pixel to its leaf)."""
    n_trees, n_int = feat.shape
    depth = 0
    while (1 << depth) - 1 < n_int:
        depth += 1
    p = x.shape[1]
    for c in nb.prange((p + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        m = min(p, lo + _CHUNK) - lo
        k = np.zeros(m, np.int32)
        acc = np.zeros(m, np.float64)
        for t in range(n_trees):
            ft, th, lv = feat[t], thr[t], leaf[t]
            k[:] = 0
            for _ in range(depth):
                for i in range(m):
                    kk = k[i]
                    k[i] = 2 * kk + 1 + (x[ft[kk], lo + i] > th[kk])
            for i in range(m):
                acc[i] += lv[k[i] - n_int]
        out[lo : lo + m] = acc


@dataclass
class TreeOpinion:
    """A loaded ``*.trees.npz`` (see the module docstring)."""

    path: Path
    feat: npt.NDArray[np.int32]
    thr: npt.NDArray[np.float32]
    leaf: npt.NDArray[np.float64]
    down: int
    windows: tuple[int, ...]
    extreme: int
    bands: BandSet  # the canonical bands it reads
    meta: dict

    @property
    def n_features(self) -> int:
        return (
            7
            + (3 if len(self.bands) > 3 else 0)
            + (2 if len(self.bands) > 3 else 1) * (3 * len(self.windows) + 3)
        )

    def matrix(self, bands: BandSet) -> npt.NDArray[np.float32]:
        """The map from ``bands`` onto the trees' canonical bands (raises
        :class:`~kumo_edge.errors.BandMappingError` where ``bands`` cannot feed them)."""
        return resampling_matrix(bands, self.bands, tolerance_nm=60.0).astype(np.float32)

    def predict(
        self, tiles: npt.NDArray[np.float32], matrix: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """P(cloud) ``(N, H, W)`` for tiles ``(N, C, H, W)`` (sides multiples of ``down``)."""
        n, _, h, w = tiles.shape
        d = self.down
        f = features(coarse_canonical(tiles, matrix, d), self.windows, self.extreme)
        x = np.ascontiguousarray(f.transpose(1, 0, 2, 3).reshape(f.shape[1], -1))
        raw = np.empty(x.shape[1], np.float64)
        _predict(x, self.feat, self.thr, self.leaf, raw)
        p = (1.0 / (1.0 + np.exp(-raw))).astype(np.float32).reshape(n, h // d, w // d)
        return np.repeat(np.repeat(p, d, 1), d, 2)


def load_trees(path: str | os.PathLike[str]) -> TreeOpinion:
    """Load a ``*.trees.npz``; :class:`~kumo_edge.errors.ModelContractError` where it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        meta = json.loads(str(d["meta"]))
        op = TreeOpinion(
            path=path,
            feat=np.ascontiguousarray(d["feat"], np.int32),
            thr=np.ascontiguousarray(d["thr"], np.float32),
            leaf=np.ascontiguousarray(d["leaf"], np.float64),
            down=int(meta["down"]),
            windows=tuple(int(w) for w in meta["windows"]),
            extreme=int(meta["extreme"]),
            bands=CANONICAL.subset(range(int(meta["canonical_bands"]))),
            meta=meta,
        )
    except Exception as exc:  # noqa: BLE001 - zip, key, JSON and value errors alike, one line
        raise ModelContractError(f"{path}: not a readable tree ensemble ({exc})") from None
    if int(meta.get("format", 0)) != FORMAT:
        raise ModelContractError(f"{path}: tree file format {meta.get('format')} (want {FORMAT})")
    n_int = op.feat.shape[-1]
    if (
        op.feat.ndim != 2
        or op.thr.shape != op.feat.shape
        or op.leaf.shape != (op.feat.shape[0], n_int + 1)
        or (n_int + 1) & n_int  # 2**D - 1 internal nodes
        or op.feat.min(initial=0) < 0
        or op.feat.max(initial=0) >= op.n_features
        or not np.isfinite(op.leaf).all()
    ):
        raise ModelContractError(f"{path}: inconsistent tree arrays (corrupt file?)")
    return op


def trees_path(detector: str | os.PathLike[str]) -> Path:
    """Where a detector's tree ensemble lies: ``detector.onnx`` -> ``detector.trees.npz``."""
    p = Path(detector)
    return p.with_name(p.stem + ".trees.npz")


def combine(probs: npt.NDArray[np.float32], p_trees: npt.NDArray[np.float32]) -> None:
    """Cloud probability of ``probs`` ``(N, 4, H, W)`` (clear, thin, thick, shadow) replaced,
    in place, by the geometric mean of the network's and the trees' ``p_trees`` ``(N, H, W)``;
    thin:thick and clear:shadow keep the network's ratios."""
    pc = probs[:, 1] + probs[:, 2]
    new = np.sqrt(np.clip(pc, 0, 1) * np.clip(p_trees, 0, 1))
    up = np.where(pc > 1e-6, new / np.maximum(pc, 1e-6), 0).astype(np.float32)
    rest = 1 - pc
    down = np.where(rest > 1e-6, (1 - new) / np.maximum(rest, 1e-6), 0).astype(np.float32)
    # where the network gave all to one side, the trees' share goes to thick / clear
    probs[:, 1] *= up
    probs[:, 2] = np.where(pc > 1e-6, probs[:, 2] * up, new)
    probs[:, 3] *= down
    probs[:, 0] = np.where(rest > 1e-6, probs[:, 0] * down, 1 - new)


def try_bands(op: TreeOpinion, bands: BandSet) -> npt.NDArray[np.float32] | None:
    """The trees' matrix for ``bands``, or None where the bands cannot feed them."""
    try:
        return op.matrix(bands)
    except BandMappingError:
        return None
