"""Cloud removal under cloud models that are not ours, on scenes the networks never saw.

    python -m bench.other_clouds [--bands hsi32,rgbn,rgb] [--tiles 24]

The removal cross-validation (``bench.removal_cv``) draws its test clouds from our own model
(``observed = surface x illum x t + albedo x (1 - t)``) with every parameter outside the
training ranges. Here the clouds follow other laws, over the same held-out scenes and with the
same fold networks (``runs/removal_cv/<bands>-<variant>/fold<k>``, the variant the band set's
``removal_cv`` result names; skipped where absent), run as the stream runs them (the shipped
detector's blend, the do-no-harm gate, the shipped companion where the band set has one):

* ``alpha``: grey alpha blending with a white cloud (the seed project's Perlin-noise clouds):
  ``(1 - a) surface + a white``, ``a`` up to 0.3-0.8, ``white`` 0.75-1.0, and a shadow beside
  each cloud that dims the ground by up to 60 % in every band alike.
* ``haze``: additive haze, no attenuation: ``surface + a h(l)``, ``h`` 0.1-0.35 at 550 nm
  falling as ``(l / 550 nm) ** -b``, ``b`` 0.5-2.0.

Opacity maps from the project's fractal noise (:class:`kumo_edge.clouds.CloudField`, cover
0.3-0.7). Scored over every pixel of 24 64-px tiles per scene: PSNR gain over the cloudy
input, spectral angle. Beside the shipped recipe: its physics network alone and HOT. Writes
``bench/results/other_clouds.json``.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json

KINDS = ("alpha", "haze")


def opacity(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """``(size, size)`` cloud opacity in [0, peak]: fractal noise above a cover threshold."""
    from kumo_edge.clouds import CloudField, CloudParams

    cover = rng.uniform(0.3, 0.7)
    p = CloudParams(cover=cover, thickness=1.0, gamma=1.0, feature_px=48.0, shadows=False)
    u = CloudField(p, size, size, int(rng.integers(2**31))).tau550(0, size)
    return (u * rng.uniform(0.3, 0.8)).astype(np.float32)


def other_clouds(clear: np.ndarray, centers: np.ndarray, rng, kind: str) -> np.ndarray:  # noqa: ANN001
    """``clear`` ``(C, H, W)`` under a cloud of ``kind`` (module docstring)."""
    a = opacity(rng, clear.shape[1])
    if kind == "alpha":
        out = clear * (1 - a[None]) + rng.uniform(0.75, 1.0) * a[None]
        shadow = np.roll(a, (int(rng.integers(4, 12)), int(rng.integers(4, 12))), (0, 1)) * 0.6
        shadow[a > 0.05] = 0.0  # no shadow under the cloud itself
        out = out * (1 - shadow[None])
    elif kind == "haze":
        h = rng.uniform(0.1, 0.35) * (centers / 550.0) ** -rng.uniform(0.5, 2.0)
        out = clear + a[None] * h[:, None, None]
    else:
        raise ValueError(kind)
    return np.clip(out, 0, 1).astype(np.float32)


def _cubes(x: np.ndarray) -> np.ndarray:
    """``(N, C, T, T)`` tiles -> one ``(C, N*T, T)`` cube for the metrics."""
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1, x.shape[3])


def evaluate(bands: str, tiles: int, variant: str | None = None) -> dict:
    """One band set's scenes under every cloud kind; the fold networks of ``variant`` (default:
    the one the band set's committed ``removal_cv`` result names)."""
    from bench.removal_cv import FOLDS, _stream, fold_dir
    from export.data import clean_origins
    from export.physics import corpus
    from export.train import band_set
    from kumo_edge import metrics
    from kumo_edge.baselines import remover
    from kumo_edge.physics import PhysicsRemover, as_remover
    from kumo_edge.runtime import load_model, shipped_models

    cv = json.loads((RESULTS / f"removal_cv_{bands}.json").read_text())
    bs = band_set(bands)
    scenes = {s.name: s for s in corpus(bs)}
    ship = shipped_models()[bands]
    det = load_model(ship["detector"])
    bright = getattr(as_remover(load_model(ship["generator"])), "brightness", None)
    hot = _stream(det, remover("hot", bs))
    variant = cv["variant"] if variant is None else variant
    out: dict = {"variant": variant, "scenes": {}}
    for k, held in enumerate(FOLDS):
        f = fold_dir(bands, k, variant=variant) / "physics_int8.onnx"
        if not f.exists():
            continue
        net = load_model(f)
        methods = {
            "shipped recipe": _stream(det, PhysicsRemover(net, brightness=bright)),
            "physics alone": _stream(det, PhysicsRemover(net)),
            "hot": hot,
        }
        for name in held:
            if name not in scenes:
                continue
            s = scenes[name]
            origins = clean_origins(s.valid, 64)
            rec: dict = {"fold": k}
            for kind in KINDS:
                rng = np.random.default_rng([zlib.crc32(name.encode()), KINDS.index(kind)])
                clear, cloudy = [], []
                for _ in range(tiles):
                    y, x = origins[rng.integers(len(origins))]
                    c = np.ascontiguousarray(s.cube[:, y : y + 64, x : x + 64], np.float32)
                    clear.append(c)
                    cloudy.append(other_clouds(c, bs.centers, rng, kind))
                truth, x_in = _cubes(np.stack(clear)), np.stack(cloudy)
                cube_in = _cubes(x_in)
                p_in = metrics.psnr(cube_in, truth)
                row = {"input_sam_deg": metrics.sam(cube_in, truth)}
                for m, run in methods.items():
                    y_out = _cubes(run(x_in))
                    row[m] = {
                        "gain_db": metrics.psnr(y_out, truth) - p_in,
                        "sam_deg": metrics.sam(y_out, truth),
                    }
                rec[kind] = row
            out["scenes"][name] = rec
            print(
                f"{bands:5s} {name:18s} "
                + "  ".join(
                    f"{kind}: {rec[kind]['shipped recipe']['gain_db']:+.2f} dB "
                    f"(alone {rec[kind]['physics alone']['gain_db']:+.2f}, "
                    f"HOT {rec[kind]['hot']['gain_db']:+.2f})"
                    for kind in KINDS
                ),
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", default="hsi32,rgbn,rgb")
    ap.add_argument("--tiles", type=int, default=24, help="64-px tiles per scene and cloud model")
    ap.add_argument(
        "--variant",
        help="fold networks runs/removal_cv/<bands>-<variant> (default: each band set's in its "
        "committed removal_cv result); writes to variants/ unless --json is given",
    )
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.json is None:
        a.json = (
            RESULTS / "variants" / f"other_clouds_{a.variant}.json"
            if a.variant
            else RESULTS / "other_clouds.json"
        )
    doc = {
        "benchmark": "other_clouds",
        "environment": environment(),
        "tiles_per_scene": a.tiles,
        "band_sets": {b: evaluate(b, a.tiles, a.variant) for b in a.bands.split(",") if b},
    }
    print("->", write_json(doc, a.json))


if __name__ == "__main__":
    main()
