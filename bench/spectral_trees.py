"""The hsi32 detector with and without its spectral trees, scene by scene, under three cloud laws.

    python -m bench.spectral_trees [--tiles 48]

No real hyperspectral cloud is labelled, so the hsi32 detector and its spectral trees
(``export.trees``, view ``hsi32``) are scored on synthetic clouds over each of the 15 clear
hyperspectral crops in turn. Each scene's trees are fitted WITHOUT it (on the other crops that
are not ``SYNTH_TEST`` scenes; the two ``SYNTH_TEST`` scenes, held out of every fit, get the
trees fitted on all 13 others). The network is the shipped one: it was trained on synthetic
clouds over the 13 non-``SYNTH_TEST`` crops, so on those its figures are in sample; the trees'
are not. Cloud laws:

* ``ours``: our cloud law, the detector's default ranges (:class:`export.data.CloudRanges`),
  as ``export.detector.synthetic_scores`` draws it: every pixel scored, the invisible edges
  (optical depth 0.02-0.08) counted as cloud; ``accuracy_visible`` without them;
* ``alien``: our law with every parameter outside the training ranges, a curved Angstrom law
  and a tilted albedo (``export.physics.alien_clouds``, as the removal cross-validation draws
  its test clouds): cloud where the transmittance at 550 nm is below 0.92, unscored from 0.92 to
  0.98;
* ``alpha`` and ``haze``: grey alpha blending with a white cloud and a grey shadow, and additive
  haze (``bench.other_clouds``): cloud where the cloud brightens the pixel by more than 0.03 on
  average over the bands, unscored from 0.005 to 0.03 (the shadows count as not cloud).

Scores: pixel accuracy, clear called cloud (false-positive rate) and cloud found (recall),
pooled over the scene's tiles and over all scenes; with the trees as their file pools them
(``with_trees``) and pooled by the geometric mean, the rule until 2026-12-07, tenth session
(``with_trees_geometric``). Writes ``bench/results/spectral_trees.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench._common import RESULTS, environment, write_json

LAWS = ("ours", "alien", "alpha", "haze")
#: Transmittance at 550 nm below which an alien cloud is cloud, and above which clear.
ALIEN_CLOUD_T, ALIEN_CLEAR_T = 0.92, 0.98
#: Mean brightening over the bands above which an alpha or haze cloud is cloud, below which
#: (and wherever the pixel darkens) not cloud.
OTHER_CLOUD, OTHER_CLEAR = 0.03, 0.005


def _tiles(scene, n: int, seed: int) -> list[np.ndarray]:
    from export.data import clean_origins

    rng = np.random.default_rng(seed)
    origins = clean_origins(scene.valid, 64)
    return [
        np.ascontiguousarray(scene.cube[:, y : y + 64, x : x + 64])
        for y, x in (origins[rng.integers(len(origins))] for _ in range(n))
    ]


def cloudy_tiles(scene, law: str, n: int, seed: int) -> tuple[np.ndarray, ...]:
    """``n`` 64-px tiles of ``scene`` under ``law``: cloudy ``(n, C, 64, 64)``, cloud truth,
    scored pixels and the visible-cloud pixels ``(n, 64, 64)`` (module docstring)."""
    from bench.other_clouds import other_clouds
    from export.data import CloudyTiles
    from export.detector import invisible
    from export.physics import alien_clouds

    if law == "ours":
        ds = CloudyTiles([scene], 64, n, seed=seed, augment=False)
        items = [ds[i] for i in range(n)]
        x = np.stack([it["cloudy"] for it in items])
        cloud = np.isin(np.stack([it["classes"] for it in items]), (1, 2))
        scored = np.ones_like(cloud)
        visible = ~invisible(np.stack([it["tau"] for it in items]))
        return x, cloud, scored, visible
    rng = np.random.default_rng(seed)
    xs, clouds, scored = [], [], []
    for clear in _tiles(scene, n, seed + 1):
        if law == "alien":
            d = alien_clouds(clear, scene.bands, rng, scene.gsd_m)
            x, t = d["cloudy"], d["t550"]
            clouds.append(t < ALIEN_CLOUD_T)
            scored.append((t < ALIEN_CLOUD_T) | (t >= ALIEN_CLEAR_T))
        else:
            x = other_clouds(clear, np.asarray(scene.bands.centers, float), rng, law)
            lift = (x - clear).mean(0)
            clouds.append(lift > OTHER_CLOUD)
            scored.append((lift > OTHER_CLOUD) | (lift < OTHER_CLEAR))
        xs.append(x)
    cloud, ok = np.stack(clouds), np.stack(scored)
    return np.stack(xs).astype(np.float32), cloud, ok, ok


def scores(model, x: np.ndarray, cloud: np.ndarray, scored: np.ndarray, visible) -> dict:  # noqa: ANN001
    """The detector's mask (``Model.detect`` and ``classify``, cloud = thin or thick) against
    the truth on the scored pixels."""
    pred = np.concatenate(
        [np.isin(model.classify(model.detect(x[i : i + 16])), (1, 2)) for i in range(0, len(x), 16)]
    )
    c, cl = cloud & scored, ~cloud & scored
    return {
        "accuracy": float((pred == cloud)[scored].mean()),
        "false_positive_rate": float(pred[cl].mean()) if cl.any() else None,
        "recall": float(pred[c].mean()) if c.any() else None,
        "accuracy_visible": float((pred == cloud)[visible].mean()),
        "pixels": int(scored.sum()),
        "cloud_pixels": int(c.sum()),
        "clear_pixels": int(cl.sum()),
    }


def pooled(rows: list[dict]) -> dict:
    """Pixel-weighted pool of :func:`scores` rows."""
    n = sum(r["pixels"] for r in rows)
    nc = sum(r["cloud_pixels"] for r in rows)
    ncl = sum(r["clear_pixels"] for r in rows)
    return {
        "accuracy": sum(r["accuracy"] * r["pixels"] for r in rows) / n,
        "false_positive_rate": sum(
            (r["false_positive_rate"] or 0) * r["clear_pixels"] for r in rows
        )
        / max(ncl, 1),
        "recall": sum((r["recall"] or 0) * r["cloud_pixels"] for r in rows) / max(nc, 1),
        "pixels": n,
    }


def run(tiles: int, seed: int = 0) -> dict:
    from export.detector import SYNTH_TEST, release_bands
    from export.scenes import hyperspectral_corpus
    from export.trees import save, spectral_scenes, train_spectral
    from kumo_edge.errors import BandMappingError
    from kumo_edge.runtime import load_model, shipped_models
    from kumo_edge.trees import load_trees

    bands = release_bands("hsi32")
    model = load_model(shipped_models()["hsi32"]["detector"], threads=2)
    fitted = {s.name for s in spectral_scenes("hsi32")}
    scenes = []
    for s in hyperspectral_corpus():
        try:
            scenes.append(s.to(bands))
        except BandMappingError:
            continue
    per_scene: dict[str, dict] = {}
    trees_cache: dict[tuple[str, ...], object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, scene in enumerate(scenes):
            leave = (scene.name,) if scene.name in fitted else ()
            if leave not in trees_cache:
                t0 = time.perf_counter()
                booster, names = train_spectral("hsi32", seed, leave)
                path = Path(tmp) / f"fold{len(trees_cache)}.trees.npz"
                save(booster, path, "hsi32", {"trained_on": names})
                trees_cache[leave] = load_trees(path)
                print(
                    f"trees without {leave or 'the SYNTH_TEST scenes'}: {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
            op = trees_cache[leave]
            row: dict[str, dict] = {
                "held_out_of_network": scene.name in SYNTH_TEST,
                "trees_fitted_on": list(op.meta["trained_on"]),
            }
            for li, law in enumerate(LAWS):
                x, cloud, ok, visible = cloudy_tiles(scene, law, tiles, 1000 * k + 17 * li + seed)
                model.use_trees(None)
                net = scores(model, x, cloud, ok, visible)
                model.use_trees(op)
                both = scores(model, x, cloud, ok, visible)
                model.use_trees(replace(op, pool="geometric"))
                geo = scores(model, x, cloud, ok, visible)
                row[law] = {"network": net, "with_trees": both, "with_trees_geometric": geo}
            per_scene[scene.name] = row
            print(
                scene.name,
                "  ".join(
                    f"{law} {100 * row[law]['network']['accuracy']:.1f}/{100 * (row[law]['network']['false_positive_rate'] or 0):.1f}"
                    f" -> {100 * row[law]['with_trees']['accuracy']:.1f}/{100 * (row[law]['with_trees']['false_positive_rate'] or 0):.1f}"
                    for law in LAWS
                ),
                flush=True,
            )
    summary = {}
    for law in LAWS:
        for who in ("network", "with_trees", "with_trees_geometric"):
            summary.setdefault(law, {})[who] = pooled([r[law][who] for r in per_scene.values()])
        summary[law]["scenes_less_accurate_with_trees"] = sorted(
            n
            for n, r in per_scene.items()
            if r[law]["with_trees"]["accuracy"] < r[law]["network"]["accuracy"] - 0.005
        )
    return {"per_scene": per_scene, "summary": summary}


def table(res: dict) -> str:
    """The per-scene results as a markdown table: accuracy / clear called cloud, the network
    alone -> with the trees, per law (scenes held out of the network's training marked)."""
    head = "| scene | " + " | ".join(LAWS) + " |\n|---|" + "---|" * len(LAWS)
    rows = []

    def cell(r: dict) -> str:
        n, w = r["network"], r["with_trees"]
        return (
            f"{100 * n['accuracy']:.1f} / {100 * (n['false_positive_rate'] or 0):.1f} -> "
            f"{100 * w['accuracy']:.1f} / {100 * (w['false_positive_rate'] or 0):.1f}"
        )

    for name, r in res["per_scene"].items():
        mark = " (held out)" if r["held_out_of_network"] else ""
        rows.append(f"| {name}{mark} | " + " | ".join(cell(r[law]) for law in LAWS) + " |")
    rows.append(
        "| **all, pooled** | " + " | ".join(cell(res["summary"][law]) for law in LAWS) + " |"
    )
    if all("with_trees_geometric" in res["summary"][law] for law in LAWS):
        rows.append(
            "| *pooled by the geometric mean* | "
            + " | ".join(
                cell(
                    {
                        "network": res["summary"][law]["network"],
                        "with_trees": res["summary"][law]["with_trees_geometric"],
                    }
                )
                for law in LAWS
            )
            + " |"
        )
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=48, help="64-px tiles per scene and law")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=RESULTS / "spectral_trees.json")
    ap.add_argument("--table", action="store_true", help="print the table of --json and exit")
    a = ap.parse_args(argv)
    if a.table:
        print(table(json.loads(a.json.read_text())))
        return
    t0 = time.perf_counter()
    res = run(a.tiles, a.seed)
    doc = {
        "benchmark": "spectral_trees",
        "command": f"python -m bench.spectral_trees --tiles {a.tiles} --seed {a.seed}",
        "what": __doc__.split("\n\n")[1].strip(),
        "environment": environment(),
        "seconds": round(time.perf_counter() - t0, 1),
        **res,
    }
    write_json(doc, a.json)
    for law, s in res["summary"].items():
        n, w = s["network"], s["with_trees"]
        print(
            f"{law}: {100 * n['accuracy']:.1f} % / {100 * n['false_positive_rate']:.1f} % (recall {100 * n['recall']:.1f} %)"
            f" -> {100 * w['accuracy']:.1f} % / {100 * w['false_positive_rate']:.1f} % (recall {100 * w['recall']:.1f} %);"
            f" less accurate: {', '.join(s['scenes_less_accurate_with_trees']) or 'none'}"
        )
    print(table(res))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
