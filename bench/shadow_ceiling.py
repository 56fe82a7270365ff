"""What the uncorrected cloud shadows cost the shipped recipe, out of fold (same folds,
scenes, tiles and alien clouds as bench.removal_cv). Rows: the shipped recipe; the same with
true-shadow pixels (illum550 < 0.9) put back to the truth (the ceiling of a perfect shadow
correction); and a crude runtime candidate: pixels the removal's classes call shadow divided by
the tile's per-band ratio median(shadow-called) / median(clear-called).

``python -m bench.shadow_ceiling rgbn`` (and rgb, hsi32); about a minute per band set with the
fold checkpoints of ``python -m bench.removal_cv`` in place. Prints; no JSON (an analysis, not
a benchmark)."""

import sys
import zlib

import numpy as np

from bench.removal_cv import FOLDS, ROOT, _stream, _tiles, fold_dir, score, summarise
from export.physics import AlienRanges, corpus
from export.train import band_set
from kumo_edge.physics import PhysicsRemover
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import removal_classify


def main() -> None:
    name_bs = sys.argv[1]
    bs = band_set(name_bs)
    scenes = {s.name: s for s in corpus(bs)}
    det = load_model(shipped_models()[name_bs]["detector"])
    gen = load_model(ROOT / "export" / "artifacts" / name_bs / "cgan_int8.onnx")
    rng = np.random.default_rng(0)
    res = {}
    for k, held in enumerate(FOLDS):
        ckpt = fold_dir(name_bs, k) / "best.pt"
        rem8 = PhysicsRemover(load_model(ckpt.with_name("physics_int8.onnx")))
        shipped = _stream(
            det, PhysicsRemover(rem8.model, brightness=gen) if name_bs != "hsi32" else rem8
        )
        for name in held:
            if name not in scenes:
                continue
            seed = zlib.crc32(name.encode())
            clear, clouds = _tiles(scenes[name], 48, 64, seed, AlienRanges())
            cloudy = np.stack([c["cloudy"] for c in clouds])
            t550 = np.stack([c["t550"] for c in clouds])
            illum = np.stack([c["illum550"] for c in clouds])
            out = shipped(cloudy)
            shadow = (illum < 0.9)[:, None]
            oracle = np.where(shadow, clear, out)
            probs = np.concatenate(
                [det.removal_probabilities(cloudy[i : i + 8]) for i in range(0, len(cloudy), 8)]
            )
            cls = removal_classify(det, probs)
            crude = out.copy()
            for i in range(len(cloudy)):
                s, c = cls[i] == 3, cls[i] == 0
                if s.sum() < 64 or c.sum() < 64:
                    continue
                ratio = np.median(cloudy[i][:, s], axis=1) / np.maximum(
                    np.median(cloudy[i][:, c], axis=1), 1e-4
                )
                if not (0.05 < ratio).all() or not (ratio < 1).all():
                    continue
                crude[i][:, s] = np.clip(cloudy[i][:, s] / ratio[:, None], 0, 1)
            sc = {
                m: score(o, clear, cloudy, t550)
                for m, o in (
                    ("input", cloudy),
                    ("shipped", out),
                    ("oracle", oracle),
                    ("crude", crude),
                )
            }
            r = {m: summarise(sc[m], sc["input"], rng) for m in sc}
            sh = shadow[:, 0] & (t550 >= 0.2)
            res[name] = r
            print(
                f"{name:18s} input {r['input']['psnr']:.2f}/{r['input']['sam_deg']:.2f}  shipped {r['shipped']['gain_db']:+.2f}/{r['shipped']['sam_deg']:.2f}  "
                f"shadow oracle {r['oracle']['gain_db']:+.2f}/{r['oracle']['sam_deg']:.2f}  crude {r['crude']['gain_db']:+.2f}/{r['crude']['sam_deg']:.2f}  "
                f"shadow px {sh.mean():.2f} called {((cls == 3) & sh).sum() / max(sh.sum(), 1):.2f}",
                flush=True,
            )
    for m in ("shipped", "oracle", "crude"):
        g = [v[m]["gain_db"] for v in res.values()]
        s = sum(v[m]["sam_deg"] < v["input"]["sam_deg"] for v in res.values())
        print(
            name_bs,
            m,
            f"mean {np.mean(g):+.2f} min {np.min(g):+.2f} SAM better {s}/{len(res)}",
        )


if __name__ == "__main__":
    main()
