"""Shared by every section of the quality report: paths, seeds, tiles (the bootstrap is
:func:`bench._common.bootstrap`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench._common import bootstrap
from export.data import CloudyTiles, Scene
from kumo_edge import metrics
from kumo_edge.bands import resample
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import blend_removed

ROOT = Path(__file__).resolve().parents[2]
ART = ROOT / "export" / "artifacts"
DOCS = ROOT / "docs"
#: Per-pixel optical thickness (550 nm) bins of recoverable cloud; pixels the truth calls thick
#: (unrecoverable) are not in any bin.
TAU_BINS = {
    "thin (tau < 0.2)": (0.02, 0.2),
    "medium (0.2-0.45)": (0.2, 0.45),
    "thick (>= 0.45)": (0.45, 99.0),
}
SEED = 30_000  # cloud fields of the report (no training or selection ever used this seed)


# -- tiles and methods ---------------------------------------------------------------------------
def test_tiles(scenes: list[Scene], n: int, tile: int) -> dict[str, np.ndarray]:
    ds = CloudyTiles(scenes, tile, n, seed=SEED, augment=False)
    items = [ds[i] for i in range(n)]
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def per_tile(
    pred: np.ndarray, t: dict[str, np.ndarray], project: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """PSNR/SSIM/SAM per tile on recoverable pixels; ``project`` resamples both sides first."""
    rows = []
    for i in range(len(pred)):
        keep = t["classes"][i] != 2
        p, c = pred[i], t["clear"][i]
        if project is not None:
            p, c = resample(p, project), resample(c, project)
        if keep.sum() < 64:
            rows.append((np.nan, np.nan, np.nan))
            continue
        rows.append(
            (
                min(metrics.psnr(p, c, mask=keep), 60.0),
                metrics.ssim(p, c),
                metrics.sam(p, c, mask=keep),
            )
        )
    a = np.array(rows)
    return {"psnr": a[:, 0], "ssim": a[:, 1], "sam_deg": a[:, 2]}


def per_bin(
    pred: np.ndarray, t: dict[str, np.ndarray], project: np.ndarray | None = None
) -> dict[str, dict]:
    """PSNR and SAM per thickness bin: per tile over the bin's pixels (tiles with >= 64 of them)."""
    out = {}
    for name, (lo, hi) in TAU_BINS.items():
        ps, ss = [], []
        for i in range(len(pred)):
            sel = (t["tau"][i] >= lo) & (t["tau"][i] < hi) & (t["classes"][i] != 2)
            if sel.sum() < 64:
                continue
            p, c = pred[i], t["clear"][i]
            if project is not None:
                p, c = resample(p, project), resample(c, project)
            ps.append(min(metrics.psnr(p, c, mask=sel), 60.0))
            ss.append(metrics.sam(p, c, mask=sel))
        out[name] = {"psnr": bootstrap(np.array(ps)), "sam_deg": bootstrap(np.array(ss))}
    return out


def _summary(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    return {k: bootstrap(v) for k, v in scores.items()}


def _paired(a: np.ndarray, b: np.ndarray) -> dict:
    ok = np.isfinite(a) & np.isfinite(b)
    return bootstrap(a[ok] - b[ok])


def _as_runtime(
    x: np.ndarray, removed: np.ndarray, probs: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """The remover's output as the stream applies it (:func:`kumo_edge.stream.blend_removed`)."""
    out = x.copy()
    blend_removed(out, removed, probs, classes)
    return out


def cgan_path(bands: str) -> Path:
    """The cGAN generator of a band set: the shipped one, or, where a physics remover replaced
    it, the copy kept in export/artifacts (this report compares the cGAN with the baselines; the
    physics remover's own evaluation is bench/removal_cv.py)."""
    kept = ART / bands / "cgan_int8.onnx"
    return kept if kept.exists() else shipped_models()[bands]["generator"]


def physics_rows(bands: str, x: np.ndarray, probs: np.ndarray, det) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The shipped physics remover (if this band set ships one) as the stream applies it."""
    from kumo_edge.physics import as_remover
    from kumo_edge.stream import StreamConfig, process_tiles

    rem = as_remover(load_model(shipped_models()[bands]["generator"], threads=2))
    if not getattr(rem, "physics", False):
        return {}
    valid = np.ones((len(x), *x.shape[2:]), bool)
    cfg = StreamConfig(tile=x.shape[-1], halo=0)
    out = np.concatenate(
        [
            process_tiles(x[i : i + 8].copy(), valid[i : i + 8], det, rem, cfg)[0]
            for i in range(0, len(x), 8)
        ]
    )
    return {"physics INT8 shipped": out}
