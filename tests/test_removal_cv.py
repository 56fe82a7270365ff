"""The honesty-critical pieces of the removal cross-validation (bench/removal_cv.py)."""

from __future__ import annotations

import pytest

from bench.removal_cv import FOLDS, _nested


def _per_scene(sam: dict[int, dict[str, float]]) -> dict:
    """Every corpus scene with input SAM 1 and, per knee row, the output SAM of its fold."""
    return {
        name: {
            "fold": k,
            "input": {"sam_deg": 1.0},
            **{row: {"sam_deg": v} for row, v in sam[k].items()},
        }
        for k, held in enumerate(FOLDS)
        for name in held
    }


def test_nested_knee_is_chosen_without_the_held_out_folds_scenes() -> None:
    grid = ["knee 0.1", "knee 0.2"]
    # fold 0's own scenes would pick 0.1 by a wide margin; every other fold prefers 0.2
    sam = {k: {"knee 0.1": 1.0, "knee 0.2": 0.9} for k in range(len(FOLDS))}
    sam[0] = {"knee 0.1": 0.1, "knee 0.2": 0.9}
    chosen = _nested(_per_scene(sam), [0.1, 0.2], grid)
    assert {chosen[n] for n in FOLDS[0]} == {0.2}  # not its own favourite
    # every other fold sees fold 0 among the others: its strong vote for 0.1 wins there
    for k in range(1, len(FOLDS)):
        assert {chosen[n] for n in FOLDS[k]} == {0.1}
    assert set(chosen) == {n for held in FOLDS for n in held}


def test_analysis_rows_correct_with_the_given_maps_not_the_networks() -> None:
    import numpy as np

    from bench.removal_cv import _given, _GivenParams
    from kumo_edge.bands import BandSet

    bands = BandSet.uniform(450, 850, 8, 50)
    rng = np.random.default_rng(0)
    surface = rng.uniform(0.05, 0.45, (1, 8, 32, 32)).astype(np.float32)
    k = np.tile(np.linspace(0.0, 1.2, 32, dtype=np.float32), (32, 1))[None]  # clear to medium
    t = np.exp(-k[:, None] * ((bands.centers / 550.0) ** -1.0)[None, :, None, None])
    x = (surface * t + 0.6 * (1 - t)).astype(np.float32)

    class _Net:  # a network that reads a third of the depth and the wrong albedo
        def run(self, tiles: np.ndarray) -> np.ndarray:
            p = np.empty((len(tiles), 6, *tiles.shape[2:]), np.float32)
            p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 5] = k / 3, 1.0, 0.9, 1.0, 0.15, 2.0
            return p

    rem = object.__new__(_GivenParams)  # no model file: only what correct() needs
    rem.model, rem.bands, rem.thick_transmittance = _Net(), bands, 0.2
    err = lambda y: float(np.abs(y - surface).mean())  # noqa: E731
    truth = _given(rem, x.copy(), {0: k, 2: np.full_like(k, 0.6)})
    net = _given(rem, x.copy(), {})
    assert err(truth) < 0.1 * err(x)  # the true maps recover the surface
    assert err(net) > 3 * err(truth)  # and they, not the network's, were used


def test_cloud_free_shadow_is_scored_apart_from_shadow_under_cloud() -> None:
    import numpy as np

    from bench.removal_cv import score

    clear = np.full((1, 3, 4, 4), 0.3, np.float32)
    t550 = np.ones((1, 4, 4), np.float32)
    t550[0, 0] = 0.6  # row 0 under thin cloud
    illum = np.ones((1, 4, 4), np.float32)
    illum[0, :2] = 0.5  # rows 0-1 in shadow: only row 1 is cloud-free shadow
    out = clear.copy()
    out[0, :, 1] -= 0.1  # a correction that darkens the cloud-free shadow row
    d = score(out, clear, clear, t550, illum)
    assert d["n_shadow"] == 4
    assert d["se_shadow"] == pytest.approx(0.04, rel=1e-5)  # 4 pixels x 0.1 ** 2
    assert "se_shadow" not in score(out, clear, clear, t550)


def test_each_fold_companion_is_trained_with_its_folds_scenes_held_out(tmp_path) -> None:  # noqa: ANN001
    """A fold's companion may train on no scene of its fold (nor on the band set's own test
    scenes); a fold cut off resumes instead of starting again."""
    from bench.removal_cv import companion_fold_argv
    from export.train.cli import parse
    from export.train.config import DEFAULT_SPLITS

    for k, held in enumerate(FOLDS):
        argv = companion_fold_argv("rgbn", k, 1500, tmp_path / f"fold{k}")
        cfg, resume = parse(argv[argv.index("generator") :])
        assert set(held) | set(DEFAULT_SPLITS["rgbn"]["test"]) <= set(cfg.test)
        assert cfg.corpus and cfg.steps == 1500 and not resume and not cfg.cloudy_eolearn
        others = {n for j, h in enumerate(FOLDS) if j != k for n in h}
        own_test = set(DEFAULT_SPLITS["rgbn"]["test"])  # rosis_beach: held out everywhere
        assert not (others - own_test) & set(cfg.test)  # the other folds' scenes train it
    argv = companion_fold_argv("rgbn", 0, 1500, tmp_path / "fold0", ("--cloudy-eolearn",))
    assert parse(argv[argv.index("generator") :])[0].cloudy_eolearn  # further trainer arguments
    (tmp_path / "fold0").mkdir()
    (tmp_path / "fold0" / "last.pt").write_bytes(b"")
    assert companion_fold_argv("rgbn", 0, 1500, tmp_path / "fold0")[-1] == "--resume"


def test_clear_scenes_table_lists_every_remover_and_marks_training_scenes() -> None:
    """The README's clear-scene table (bench.removal_real section 3): one row per scene and band
    set, every remover's cloud-free change and gain in order, training scenes starred."""
    from bench.tables import clear_scenes_table

    def rem(change: float, gain: float) -> dict:
        return {"cloud_free_change": change, "gain_db": gain, "sam_deg": 3.1, "tiles_kept": 0}

    doc = {
        "rgbn": {
            "ben_57_38": {
                "in_remover_training": True,
                "pixels": 100,
                "input": {"sam_deg": 3.0},
                "shipped (physics)": rem(0.0273, -1.92),
                "hot": rem(0.0408, -2.34),
                "shipped_native_bands": {"bands": 6, "cloud_free_change": 0.0},
            },
            "landsat7_nc": {
                "in_remover_training": False,
                "pixels": 100,
                "input": {"sam_deg": 4.6},
                "shipped (physics)": rem(0.0, 4.18),
                "hot": rem(0.0001, 2.0),
            },
        }
    }
    rows = [r for r in clear_scenes_table(doc).splitlines() if r.startswith("| rgbn")]
    assert rows[0].startswith(
        "| rgbn | ben_57_38* | 0.0273 / 0.0408 | 0.0000 (6) | -1.92 / -2.34 | 3.00 -> 3.10"
    )
    assert rows[1].startswith("| rgbn | landsat7_nc | 0.0000 / 0.0001 | - | +4.18 / +2.00 | 4.60")
