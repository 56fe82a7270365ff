"""Does cloud removal generalise? Cross-validation by place over the hyperspectral corpus, with
clouds from outside the training ranges and from another cloud model.

    python -m bench.removal_cv --bands hsi32 [--steps 2000] [--jobs 2] [--tiles 24]

Folds are whole places (:data:`FOLDS`; every scene is held out exactly once, and no place is in
its own fold's training set): one physics remover (``export.physics``) is trained per fold on
the other folds' scenes, exported to ONNX (FP32), and run through the runtime on the held-out
scenes' tiles with clouds from :func:`export.physics.alien_clouds`. Beside it, on the same
tiles: the untouched input, the physics remover through the stream's blend with the shipped
detector, HOT and harmonic inpainting (driven by the shipped detector), and the shipped cGAN.
Scores are over the recoverable pixels (true two-way transmittance at 550 nm >= 0.2; thick
cloud is kept as input by every method): PSNR gain over the input (pooled MSE per scene, 95 %
bootstrap interval over tiles), SAM against the input's, and the gain by true thickness.
With ``--knees`` the physics remover's depth knee (:func:`kumo_edge.physics.soften_depth`) is
also chosen per fold on the other folds' scenes, and that nested choice is reported beside the
shipped constant.
Writes ``bench/results/removal_cv_<bands>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench._common import RESULTS, ROOT, environment, run_jobs, write_json
from export.data import clean_origins
from kumo_edge.baselines import remover
from kumo_edge.physics import DEPTH_KNEE, PhysicsRemover, as_remover
from kumo_edge.runtime import load_model, shipped_models
from kumo_edge.stream import StreamConfig, process_tiles

#: Whole places per fold (Los Angeles; the Gulf coast; other coastal towns; California and
#: SAMSON; HYDICE and ROSIS).
FOLDS = (
    (
        "aviris_airport_1",
        "aviris_airport_2",
        "aviris_airport_3",
        "aviris_urban_4",
        "aviris_urban_5",
    ),
    ("aviris_airport_4", "aviris_beach_1", "aviris_beach_3"),
    ("aviris_urban_1", "aviris_urban_2", "aviris_urban_3"),
    ("jasper_ridge", "samson"),
    ("hydice_urban", "rosis_beach"),
)
#: The physics remover with the cGAN as its brightness model (kumo_edge.physics, module
#: docstring): the spectral direction of the one, the length of the other.
BRIGHT_ROW = "physics INT8+cgan brightness+detector"
#: The same with the fold's own residual network (``--method residual``, trained on the fold's
#: scenes only, INT8) as the brightness companion: no held-out scene in its training.
RES_BRIGHT_ROW = "physics INT8+residual (corpus) brightness+detector"
#: The same with each fold's own learned remover (``--fold-companions``), FP32.
FOLD_BRIGHT_ROW = "physics INT8+fold companion brightness+detector"
#: The same two rows with the runtime's direction check off (kumo_edge.physics, module
#: docstring, "The direction check"): what the check changes.
NODIR_ROW = "physics INT8+detector, no direction check"
NODIR_BRIGHT_ROW = f"{BRIGHT_ROW}, no direction check"
#: The shipped pair without the shadow gate (kumo_edge.physics.gate_shadow): what it changes.
NOGATE_BRIGHT_ROW = f"{BRIGHT_ROW}, no shadow gate"
#: Rows of the depth-knee study (``--knees``): one per knee, and each fold's choice.
KNEE_ROW = "physics INT8+detector, knee"
NESTED_ROW = "physics INT8+detector, knee nested"
#: The remover's settings swept by options (--direction-shades: the direction check's shadow
#: point, kumo_edge.physics.DIRECTION_SHADE; --direction-unsures: the share of its weight a
#: tile keeps whose only evidence is suspect, kumo_edge.physics.DIRECTION_UNSURE, 1 = every
#: block counts; --direction-darks and --sure-depths were measured and removed on 2026-12-07,
#: see README): option attribute, PhysicsRemover keyword, row word. One row per value
#: evaluated ("physics INT8+detector, <word> <value>", and with the brightness companion), and
#: the value each fold chose on the other folds' scenes ("..., <word> nested").
SWEEPS = (
    ("direction_shades", "direction_shade", "shade"),
    ("direction_unsures", "direction_unsure", "unsure"),
)
#: An analysis row, not a method: the shipped physics row with every truly cloud-free pixel
#: (two-way transmittance >= 0.98) put back to its input, i.e. what the remover would score if
#: it never touched clear ground.
ORACLE_ROW = "physics INT8+detector, clear pixels left alone (oracle)"
#: Analysis rows (``--analysis``), not methods: the physics remover (INT8, no detector; compare
#: with the "physics INT8" row) given the TRUE optical depth map instead of its network's, the
#: true cloud albedo (at 550 nm), or both; the per-tile spectral fit still runs. How much of
#: what is left is the network's estimates.
DEPTH_ROW = "physics INT8, true depth (analysis)"
ALBEDO_ROW = "physics INT8, true albedo (analysis)"
DEPTH_ALBEDO_ROW = "physics INT8, true depth and albedo (analysis)"
#: Thickness breakdown: bins of the true two-way transmittance at 550 nm.
BINS = {"clear": (0.98, 1.01), "thin": (0.5, 0.98), "medium": (0.2, 0.5)}
#: Cloud-free shadow: no cloud on top (the "clear" bin) and the direct sun dimmed, ground
#: illumination at 550 nm below this. Its truth is brighter than what is seen, so it measures
#: the do-no-harm promise on the pixels a haze correction most easily makes worse.
SHADOW_ILLUM = 0.9


def fold_dir(bands: str, k: int, method: str = "physics", variant: str = "") -> Path:
    sub = bands if method == "physics" else f"{bands}-{method}"
    sub += f"-{variant}" if variant else ""
    return ROOT / "runs" / "removal_cv" / sub / f"fold{k}"


def train_folds(
    bands: str,
    steps: int,
    jobs: int,
    method: str = "physics",
    variant: str = "",
    extra: tuple[str, ...] = (),
    holdout: tuple[str, ...] = (),
) -> None:
    """Train the folds not yet trained to ``steps``; ``variant`` names their folder suffix,
    ``extra`` are further ``export.physics train`` arguments (e.g. ``--clear-fraction 0.3``) and
    ``holdout`` scenes left out of every fold's training besides the fold's own (e.g. a
    multispectral scene to test on outside the cross-validation)."""
    todo = []
    for k, held in enumerate(FOLDS):
        out = fold_dir(bands, k, method, variant)
        log = out / "log.jsonl"
        if log.exists() and f'"step": {steps},' in log.read_text():
            continue
        argv = [
            sys.executable, "-m", "export.physics", "train", "--bands", bands, "--steps", str(steps),
            "--out", str(out), "--holdout", ",".join((*held, *holdout)), "--threads", "1",
            "--method", method,
            *extra,
        ]  # fmt: skip
        todo.append((argv, out.parent / f"fold{k}.log"))
    run_jobs(todo, jobs)


def companion_fold_argv(
    bands: str, k: int, steps: int, out: Path, extra: tuple[str, ...] = ()
) -> list[str]:
    """The command that trains fold ``k``'s learned remover for ``--fold-companions``: the cGAN
    trainer on the band set's clear scenes and the hyperspectral corpus (``--corpus``), the
    fold's scenes held out beside the band set's own test scenes; ``extra`` are further trainer
    arguments (e.g. ``--cloudy-eolearn``)."""
    from export.train.config import DEFAULT_SPLITS

    split = DEFAULT_SPLITS.get(bands, {"val": [], "test": []})
    test = list(dict.fromkeys([*FOLDS[k], *split["test"]]))
    argv = [
        sys.executable, "-m", "export.train", "generator", "--bands", bands, "--steps", str(steps),
        "--batch", "16", "--eval-every", "250", "--eval-tiles", "48", "--threads", "1",
        "--corpus", "--val", ",".join(split["val"]), "--test", ",".join(test), "--out", str(out),
        *extra,
    ]  # fmt: skip
    return [*argv, "--resume"] if (out / "last.pt").exists() else argv


def train_companion_folds(
    bands: str, steps: int, folder: Path, jobs: int, extra: tuple[str, ...] = ()
) -> None:
    """Train (or resume) the per-fold learned removers of ``folder`` not yet at ``steps``
    (``extra``: further trainer arguments, :func:`companion_fold_argv`)."""
    todo = []
    for k in range(len(FOLDS)):
        out = folder / f"fold{k}"
        log = out / "log.jsonl"
        if log.exists() and f'"step": {steps},' in log.read_text():
            continue
        todo.append((companion_fold_argv(bands, k, steps, out, extra), folder / f"fold{k}.log"))
    run_jobs(todo, jobs)


class _GivenParams(PhysicsRemover):
    """The physics remover with some of its network's parameters replaced by given maps
    (``given``: parameter index -> ``(N, H, W)``, the tiles of the next call)."""

    given: dict[int, np.ndarray] = {}  # noqa: RUF012

    def params(self, tiles: np.ndarray) -> np.ndarray:
        p = self.model.run(tiles)
        for i, v in self.given.items():
            p[:, i] = v
        return p


def _trained_steps(folder: Path) -> int:
    """The last step a fold's training log records."""
    return json.loads(folder.joinpath("log.jsonl").read_text().splitlines()[-1])["step"]


def _tiles(
    scene,
    n: int,
    size: int,
    seed: int,
    ranges=None,  # noqa: ANN001
) -> tuple[np.ndarray, list[dict]]:
    from export.physics import AlienRanges, alien_clouds

    ranges = ranges or AlienRanges()

    rng = np.random.default_rng(seed)
    origins = clean_origins(scene.valid, size)
    clear, clouds = [], []
    for _ in range(n):
        y, x = origins[rng.integers(len(origins))]
        c = np.ascontiguousarray(scene.cube[:, y : y + size, x : x + size])
        clear.append(c)
        clouds.append(alien_clouds(c, scene.bands, rng, scene.gsd_m, ranges))
    return np.stack(clear), clouds


def _given(rem: _GivenParams, x: np.ndarray, given: dict[int, np.ndarray]) -> np.ndarray:
    rem.given = given
    return rem.correct(x)[0]


def _stream(det, rem, blend: str = "detector"):  # noqa: ANN001, ANN202
    cfg = StreamConfig(tile=64, halo=0, batch=8, blend=blend)

    def run(x: np.ndarray) -> np.ndarray:
        out, _ = process_tiles(x.copy(), np.ones((len(x), *x.shape[2:]), bool), det, rem, cfg)
        return out

    return run


def score(
    out: np.ndarray,
    clear: np.ndarray,
    cloudy: np.ndarray,
    t550: np.ndarray,
    illum: np.ndarray | None = None,
) -> dict:
    """Per-tile squared errors and spectral angles over recoverable pixels, for pooling; with
    ``illum`` (ground illumination at 550 nm) also over the cloud-free shadow pixels."""
    rec = t550 >= 0.2
    se = ((out - clear) ** 2).mean(1)  # (N, H, W)
    num = (out * clear).sum(1)
    den = np.linalg.norm(out, axis=1) * np.linalg.norm(clear, axis=1)
    ang = np.degrees(np.arccos(np.clip(num / np.maximum(den, 1e-9), -1, 1)))
    d = {
        "se": [float(se[i][rec[i]].sum()) for i in range(len(out))],
        "n": [int(rec[i].sum()) for i in range(len(out))],
    }
    d["ang"] = [float(ang[i][rec[i]].sum()) for i in range(len(out))]
    for b, (lo, hi) in BINS.items():
        m = (t550 >= lo) & (t550 < hi)
        d[f"se_{b}"], d[f"n_{b}"] = float(se[m].sum()), int(m.sum())
        d[f"ang_{b}"] = float(ang[m].sum())
    if illum is not None:
        m = (t550 >= BINS["clear"][0]) & (illum < SHADOW_ILLUM)
        d["se_shadow"], d["n_shadow"] = float(se[m].sum()), int(m.sum())
    return d


def _nested(per_scene: dict, knees: list[float], grid: list[str]) -> dict[str, float]:
    """Each held-out scene's value of a setting (the depth knees ``knees``, or the direction
    check's shadow points, evaluated as the rows ``grid``), chosen on the scenes of the OTHER
    folds only: the value with the lowest mean ratio of output to input SAM there (ties: the
    first listed)."""
    out = {}
    for k, held in enumerate(FOLDS):
        other = [n for n, v in per_scene.items() if v["fold"] != k]
        crit = [
            np.mean([per_scene[n][m]["sam_deg"] / per_scene[n]["input"]["sam_deg"] for n in other])
            for m in grid
        ]
        best = knees[int(np.argmin(crit))]
        out.update({n: best for n in held if n in per_scene})
    return out


def _add_nested(
    per_scene: dict,
    raws: dict,
    chosen: dict[str, float],
    rows: dict[str, dict[float, str]],
    key: str,
) -> None:
    """Each scene's nested rows (``rows``: row name -> value -> the row that evaluated it)
    copied from the row of the value :func:`_nested` chose for it (``chosen``), the value
    recorded as ``key``."""
    for name, v in chosen.items():
        for row, source in rows.items():
            per_scene[name][row] = {**per_scene[name][source[v]], key: v}
            raws[name][row] = raws[name][source[v]]
        print(f"fold {per_scene[name]['fold']} {name:18s} nested {key} {v:g}")


def _psnr(se: float, n: int) -> float:
    return 10 * math.log10(n / se) if se > 0 and n else math.inf


def summarise(per_tile: dict, base: dict, rng: np.random.Generator) -> dict:
    se, n = np.array(per_tile["se"]), np.array(per_tile["n"])
    se0 = np.array(base["se"])
    keep = n > 0
    se, n, se0 = se[keep], n[keep], se0[keep]
    gain = _psnr(se.sum(), n.sum()) - _psnr(se0.sum(), n.sum())
    boots = []
    for _ in range(500):
        i = rng.integers(len(se), size=len(se))
        boots.append(_psnr(se[i].sum(), n[i].sum()) - _psnr(se0[i].sum(), n[i].sum()))
    return {
        "psnr": _psnr(se.sum(), n.sum()),
        "gain_db": gain,
        "gain_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "sam_deg": float(np.sum(np.array(per_tile["ang"])[keep]) / n.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bands", default="hsi32")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2, help="folds trained at once (one core each)")
    ap.add_argument("--tiles", type=int, default=48, help="64-px tiles per held-out scene")
    ap.add_argument(
        "--draw",
        type=int,
        default=0,
        help="which cloud draw: 0 (the tables') seeds each scene's tiles and clouds by its name, "
        "K > 0 by '<name>/draw<K>', clouds no setting was chosen on",
    )
    ap.add_argument("--eval-only", action="store_true", help="use the fold checkpoints as they are")
    ap.add_argument(
        "--knees",
        default="",
        help="comma-separated depth knees (kumo_edge.physics.soften_depth) to evaluate beside the "
        "shipped one; each fold's knee is then chosen on the OTHER folds' scenes (lowest mean "
        "SAM ratio to the input) and reported as the 'knee, nested' row",
    )
    ap.add_argument(
        "--method",
        default="physics",
        choices=["physics", "residual"],
        help="which remover's folds to train (both are evaluated where their checkpoints exist)",
    )
    ap.add_argument(
        "--direction-strides",
        default="",
        help="comma-separated sampling strides of the runtime's direction check to evaluate beside "
        "the shipped one (kumo_edge.physics.DIRECTION_STRIDE): one row each, with and without "
        "the brightness companion",
    )
    ap.add_argument(
        "--direction-shades",
        default="",
        help="comma-separated P(shadow) points from which the direction check takes no evidence "
        "(kumo_edge.physics.DIRECTION_SHADE; 1 leaves only certain shadow out) to evaluate beside "
        "the shipped one: one row each, with and without the brightness companion, and the point "
        "each fold chooses on the OTHER folds' scenes ('shade nested')",
    )
    ap.add_argument(
        "--direction-unsures",
        default="",
        help="comma-separated shares of its weight a tile keeps whose only direction-check "
        "evidence is suspect (kumo_edge.physics.DIRECTION_UNSURE, shipped for three-band removers; "
        "1: every block counts, as removers of more bands do) to evaluate beside the shipped "
        "setting: one row each, with and without the brightness companion, and each fold's "
        "choice on the OTHER folds' scenes ('unsure nested')",
    )
    ap.add_argument(
        "--variant",
        default="",
        help="folder suffix of the physics folds to train and evaluate (runs/removal_cv/<bands>-<variant>)",
    )
    ap.add_argument(
        "--train-args",
        default="",
        help="further `export.physics train` arguments for the folds, e.g. '--clear-fraction 0.3'",
    )
    ap.add_argument(
        "--holdout-also",
        default="",
        help="comma-separated scenes left out of every fold's training besides the fold's own "
        "(e.g. ben_57_38, the snow scene, to test the folds on it outside the CV)",
    )
    ap.add_argument(
        "--clouds",
        default="alien",
        choices=["alien", "alien-flat"],
        help="test clouds: export.physics.AlienRanges, or the same draws with a flat albedo and a "
        "straight Angstrom law (no tilt, no curvature): what the alien cloud model's shape costs",
    )
    ap.add_argument(
        "--analysis",
        action="store_true",
        help="also the analysis rows: the physics remover given the true optical depth, the true "
        "cloud albedo, or both, instead of its network's",
    )
    ap.add_argument(
        "--fold-companions",
        type=Path,
        help="a folder of learned removers trained per fold (FOLDER/fold<k>/best.pt, "
        "kumo-edge-train generator ... --test <the fold's scenes>): a row with each fold's own "
        "as the brightness companion, FP32, so that no held-out scene is in its training",
    )
    ap.add_argument(
        "--companion-steps",
        type=int,
        help="first train (or resume) the --fold-companions folds not yet at this many steps "
        "(companion_fold_argv: the cGAN trainer with --corpus, --jobs at a time)",
    )
    ap.add_argument(
        "--companion-args",
        default="",
        help="further `kumo-edge-train generator` arguments for the --companion-steps folds, "
        "written with '=' when they start with a dash: --companion-args=--cloudy-eolearn",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="result file (default bench/results/removal_cv_<bands>.json, or for a variant "
        "bench/results/variants/removal_cv_<bands>-<variant>.json)",
    )
    a = ap.parse_args(argv)
    import torch

    from export.physics import AlienRanges, corpus, export, quantize
    from export.train import band_set

    if a.companion_steps:
        if not a.fold_companions:
            ap.error("--companion-steps needs --fold-companions DIR")
        extra = tuple(a.companion_args.split())
        train_companion_folds(a.bands, a.companion_steps, a.fold_companions, a.jobs, extra)
    if not a.eval_only:
        train_folds(
            a.bands,
            a.steps,
            a.jobs,
            a.method,
            a.variant,
            tuple(a.train_args.split()),
            tuple(n for n in a.holdout_also.split(",") if n),
        )
    bs = band_set(a.bands)
    scenes = {s.name: s for s in corpus(bs)}
    shipped = shipped_models()[a.bands]
    det = load_model(shipped["detector"])
    # the cGAN shipped before the physics remover (kept in export/artifacts once replaced)
    previous = ROOT / "export" / "artifacts" / a.bands / "cgan_int8.onnx"
    gen = load_model(previous if previous.exists() else shipped["generator"])
    # the brightness row's learned remover: the companion the shipped remover's contract names
    # (kumo_edge.physics.as_remover), else that previous cGAN
    bright_model = getattr(as_remover(load_model(shipped["generator"])), "brightness", None) or gen
    methods = [
        "input",
        "physics",
        "physics+detector",
        "physics INT8",
        "physics INT8+detector",
        "hot",
        "inpaint",
        "cgan (previous shipped)",
        BRIGHT_ROW,
        ORACLE_ROW,
        NODIR_ROW,
        NODIR_BRIGHT_ROW,
        NOGATE_BRIGHT_ROW,
    ]
    residual = all(
        (fold_dir(a.bands, k, "residual") / "best.pt").exists() for k in range(len(FOLDS))
    )
    if residual:
        methods += ["residual (corpus)+detector", RES_BRIGHT_ROW]
    if a.fold_companions:
        from export.onnx_export import export_checkpoint

        methods.append(FOLD_BRIGHT_ROW)
    if a.analysis:
        methods += [DEPTH_ROW, ALBEDO_ROW, DEPTH_ALBEDO_ROW]
    ranges = AlienRanges()
    if a.clouds == "alien-flat":
        # u() still draws the tilt and curvature: every other parameter is the same draw
        ranges = replace(ranges, tilt=(0.0, 0.0), curvature=(0.0, 0.0))
    knees = [float(v) for v in a.knees.split(",") if v]
    grid = [f"{KNEE_ROW} {v:g}" for v in knees]
    methods += grid
    strides = [int(v) for v in a.direction_strides.split(",") if v]
    stride_rows = {
        v: (f"physics INT8+detector, direction stride {v}", f"{BRIGHT_ROW}, direction stride {v}")
        for v in strides
    }
    methods += [r for pair in stride_rows.values() for r in pair]
    # per swept setting: value -> (row without, row with the brightness companion)
    sweeps = {
        (kw, word): {
            v: (f"physics INT8+detector, {word} {v:g}", f"{BRIGHT_ROW}, {word} {v:g}")
            for v in (float(x) for x in getattr(a, opt).split(",") if x)
        }
        for opt, kw, word in SWEEPS
    }
    methods += [r for rows in sweeps.values() for pair in rows.values() for r in pair]
    per_scene: dict = {}
    raws: dict = {}  # per scene and method: the per-tile sums (score)
    rng = np.random.default_rng(0)
    # the oracle row draws its bootstrap from its own generator: the other rows' intervals
    # stay as they were before it existed
    oracle_rng = np.random.default_rng(1)
    for k, held in enumerate(FOLDS):
        ckpt = fold_dir(a.bands, k, variant=a.variant) / "best.pt"
        fp32 = export(ckpt, ckpt.with_name("physics_fp32.onnx"))
        rem = PhysicsRemover(load_model(fp32))
        meta = torch.load(ckpt, map_location="cpu", weights_only=True)["meta"]
        rem8 = PhysicsRemover(load_model(quantize(fp32, ckpt.with_name("physics_int8.onnx"), meta)))
        run = {
            "input": lambda x: x.copy(),
            "physics": lambda x, rem=rem: rem.correct(x)[0],
            "physics INT8": lambda x, rem=rem8: rem.correct(x)[0],
            "physics INT8+detector": _stream(det, rem8),
            "physics+detector": _stream(det, rem),
            "hot": _stream(det, remover("hot", bs)),
            "inpaint": _stream(det, remover("inpaint", bs)),
            "cgan (previous shipped)": _stream(det, gen),
            BRIGHT_ROW: _stream(det, PhysicsRemover(rem8.model, brightness=bright_model)),
            NODIR_ROW: _stream(det, PhysicsRemover(rem8.model, direction=False)),
            NODIR_BRIGHT_ROW: _stream(
                det, PhysicsRemover(rem8.model, brightness=bright_model, direction=False)
            ),
            NOGATE_BRIGHT_ROW: _stream(
                det, PhysicsRemover(rem8.model, brightness=bright_model, shadow_gate=False)
            ),
        }
        for v, m in zip(knees, grid, strict=True):
            run[m] = _stream(det, PhysicsRemover(rem8.model, depth_knee=v))
        for v, (plain, bright) in stride_rows.items():
            run[plain] = _stream(det, PhysicsRemover(rem8.model, direction_stride=v))
            run[bright] = _stream(
                det, PhysicsRemover(rem8.model, brightness=bright_model, direction_stride=v)
            )
        for (kw, _), rows in sweeps.items():
            for v, (plain, bright) in rows.items():
                run[plain] = _stream(det, PhysicsRemover(rem8.model, **{kw: v}))
                run[bright] = _stream(
                    det, PhysicsRemover(rem8.model, brightness=bright_model, **{kw: v})
                )
        if a.fold_companions:
            cck = a.fold_companions / f"fold{k}" / "best.pt"
            held_by = torch.load(cck, map_location="cpu", weights_only=True)["splits"]
            if set(held) - set(held_by["test"]) - set(held_by["val"]):
                raise SystemExit(f"{cck} was trained on scenes of fold {k}: {held_by['train']}")
            comp = load_model(export_checkpoint(cck, cck.with_name("companion_fp32.onnx")))
            run[FOLD_BRIGHT_ROW] = _stream(det, PhysicsRemover(rem8.model, brightness=comp))
        if residual:
            rck = fold_dir(a.bands, k, "residual") / "best.pt"
            rfp = export(rck, rck.with_name("residual_fp32.onnx"))
            run["residual (corpus)+detector"] = _stream(det, load_model(rfp))
            # the fold's residual network, INT8 as it would ship, as the brightness companion
            rmeta = torch.load(rck, map_location="cpu", weights_only=True)["meta"]
            res8 = load_model(quantize(rfp, rck.with_name("residual_int8.onnx"), rmeta))
            run[RES_BRIGHT_ROW] = _stream(det, PhysicsRemover(rem8.model, brightness=res8))
        for name in held:
            if name not in scenes:
                continue
            # every scene its own cloud draws
            seed = zlib.crc32((f"{name}/draw{a.draw}" if a.draw else name).encode())
            clear, clouds = _tiles(scenes[name], a.tiles, 64, seed, ranges)
            cloudy = np.stack([c["cloudy"] for c in clouds])
            t550 = np.stack([c["t550"] for c in clouds])
            illum = np.stack([c["illum550"] for c in clouds])
            if a.analysis:
                given = _GivenParams(rem8.model)
                depth = -np.log(np.maximum(t550, 1e-6))
                albedo = np.stack(
                    [
                        np.full(t550.shape[1:], c["params"]["cloud_albedo"], np.float32)
                        for c in clouds
                    ]
                )
                run[DEPTH_ROW] = lambda x, r=given, d=depth: _given(r, x, {0: d})
                run[ALBEDO_ROW] = lambda x, r=given, al=albedo: _given(r, x, {2: al})
                run[DEPTH_ALBEDO_ROW] = lambda x, r=given, d=depth, al=albedo: _given(
                    r, x, {0: d, 2: al}
                )
            outs = {m: run[m](cloudy) for m in methods if m != ORACLE_ROW}
            untouched = (t550 >= BINS["clear"][0])[:, None]
            outs[ORACLE_ROW] = np.where(untouched, cloudy, outs["physics INT8+detector"])
            raw = {m: score(outs[m], clear, cloudy, t550, illum) for m in methods}
            del outs
            per_scene[name] = {
                "fold": k,
                **{
                    m: summarise(raw[m], raw["input"], oracle_rng if m == ORACLE_ROW else rng)
                    for m in methods
                },
            }
            for m in methods:  # squared error on cloud-free shadow, against the input's
                base_se = raw["input"]["se_shadow"]
                per_scene[name][m]["cloud_free_shadow_se_ratio"] = (
                    raw[m]["se_shadow"] / base_se if base_se > 0 else None
                )
            raws[name] = raw
            row = "  ".join(
                f"{m} {per_scene[name][m]['gain_db']:+.2f} dB/{per_scene[name][m]['sam_deg']:.1f}"
                for m in methods[1:]
            )
            print(
                f"fold {k} {name:18s} input {per_scene[name]['input']['psnr']:.2f} dB/{per_scene[name]['input']['sam_deg']:.1f} deg  {row}",
                flush=True,
            )
    if grid:
        chosen = _nested(per_scene, knees, grid)
        methods.append(NESTED_ROW)
        _add_nested(
            per_scene, raws, chosen, {NESTED_ROW: dict(zip(knees, grid, strict=True))}, "knee"
        )
    for (_, word), rows in sweeps.items():
        if not rows:
            continue
        chosen = _nested(per_scene, list(rows), [plain for plain, _ in rows.values()])
        nested = (f"physics INT8+detector, {word} nested", f"{BRIGHT_ROW}, {word} nested")
        methods += list(nested)
        _add_nested(
            per_scene,
            raws,
            chosen,
            {
                nested[0]: {v: plain for v, (plain, _) in rows.items()},
                nested[1]: {v: bright for v, (_, bright) in rows.items()},
            },
            word,
        )
    pooled: dict = {m: {} for m in methods}
    for raw in raws.values():
        for m in methods:
            for key, v in raw[m].items():
                pooled[m].setdefault(key, [])
                pooled[m][key] += v if isinstance(v, list) else [v]
    breakdown, sam_bins = {}, {}
    for m in methods:
        p = pooled[m]
        breakdown[m] = {
            b: _psnr(sum(p[f"se_{b}"]), sum(p[f"n_{b}"]))
            - _psnr(sum(pooled["input"][f"se_{b}"]), sum(p[f"n_{b}"]))
            for b in BINS
        }
        # the spectral angle by thickness: where the input's is small (grey ground under thin
        # cloud), a correction's colour error shows more than the cloud did
        sam_bins[m] = {b: sum(p[f"ang_{b}"]) / max(sum(p[f"n_{b}"]), 1) for b in BINS}
    summary = {}
    for m in methods[1:]:
        gains = np.array([v[m]["gain_db"] for v in per_scene.values()])
        sam_better = [v[m]["sam_deg"] < v["input"]["sam_deg"] for v in per_scene.values()]
        tcrit = 2.145 if len(gains) == 15 else 2.0
        summary[m] = {
            "mean_gain_db": float(gains.mean()),
            "mean_gain_ci95": [
                float(gains.mean() - tcrit * gains.std(ddof=1) / math.sqrt(len(gains))),
                float(gains.mean() + tcrit * gains.std(ddof=1) / math.sqrt(len(gains))),
            ],
            "min_gain_db": float(gains.min()),
            "scenes_below_1db": [n for n, v in per_scene.items() if v[m]["gain_db"] < 1.0],
            "sam_lower_than_input": int(sum(sam_better)),
            "scenes": len(gains),
            # cloud-free shadow (SHADOW_ILLUM): pooled gain, and the scenes where it got worse
            "cloud_free_shadow_gain_db": _psnr(
                sum(pooled[m]["se_shadow"]), sum(pooled[m]["n_shadow"])
            )
            - _psnr(sum(pooled["input"]["se_shadow"]), sum(pooled["input"]["n_shadow"])),
            "cloud_free_shadow_scenes_worse": int(
                sum(r[m]["se_shadow"] > r["input"]["se_shadow"] for r in raws.values())
            ),
            "gain_by_thickness_db": breakdown[m],
            "sam_by_thickness_deg": sam_bins[m],
            "input_sam_by_thickness_deg": sam_bins["input"],
        }
        print(
            f"{m:18s} mean {gains.mean():+.2f} dB  min {gains.min():+.2f}  SAM better on {sum(sam_better)}/{len(gains)}  by thickness {breakdown[m]}"
        )
    doc = {
        "benchmark": "removal_cv",
        "bands": a.bands,
        "folds": [list(f) for f in FOLDS],
        # what the evaluated fold checkpoints were trained for (not --steps: with --eval-only
        # the folds are used as they are)
        "steps": sorted(
            {_trained_steps(fold_dir(a.bands, k, variant=a.variant)) for k in range(len(FOLDS))}
        ),
        "tiles_per_scene": a.tiles,
        "cloud_draw": a.draw,
        "tile": 64,
        "clouds": "export.physics.alien_clouds (AlienRanges: outside TRAIN_RANGES, curved Angstrom law, tilted albedo, r^-3 sky light)"
        + (", with a flat albedo and a straight Angstrom law" if a.clouds == "alien-flat" else ""),
        "scored_pixels": "true two-way transmittance at 550 nm >= 0.2",
        "depth_knee": DEPTH_KNEE,
        "brightness_model": str(
            bright_model.path.relative_to(ROOT)
            if bright_model.path.is_relative_to(ROOT)
            else bright_model.path
        ),
        "variant": a.variant,
        "train_args": a.train_args,
        "knees": knees,
        "summary": summary,
        "per_scene": per_scene,
        "environment": environment(),
    }
    # a variant's or an analysis's result goes beside, not over, the shipped recipe's (README
    # tables read those)
    tag = "-".join(
        t
        for t in (
            a.variant,
            "" if a.clouds == "alien" else a.clouds,
            "analysis" * a.analysis,
            "dirstride" * bool(a.direction_strides),
            "shade" * bool(a.direction_shades),
            "unsure" * bool(a.direction_unsures),
            "foldcompanion" * bool(a.fold_companions),
            f"draw{a.draw}" if a.draw else "",
        )
        if t
    )
    out = a.out or (
        RESULTS / "variants" / f"removal_cv_{a.bands}-{tag}.json"
        if tag
        else RESULTS / f"removal_cv_{a.bands}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    print(write_json(doc, out))


if __name__ == "__main__":
    main()
