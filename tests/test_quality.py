"""The statistics of the quality report (bench/quality.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from bench.quality import TAU_BINS, bootstrap, per_bin, per_tile  # noqa: E402


def test_bootstrap_interval() -> None:
    c = bootstrap(np.full(10, 3.0))
    assert c["mean"] == c["lo"] == c["hi"] == 3.0
    rng = np.random.default_rng(1)
    small = bootstrap(rng.normal(5.0, 1.0, 20))
    large = bootstrap(rng.normal(5.0, 1.0, 2000))
    assert small["lo"] < 5.0 < small["hi"] and large["lo"] < 5.0 < large["hi"]
    assert large["hi"] - large["lo"] < (small["hi"] - small["lo"]) / 5  # ~ 1 / sqrt(n)
    assert bootstrap(np.array([np.nan, np.nan]))["n"] == 0


def test_per_tile_and_bins_leave_thick_pixels_out() -> None:
    rng = np.random.default_rng(0)
    clear = rng.uniform(0.1, 0.3, (2, 3, 32, 32)).astype(np.float32)
    classes = np.zeros((2, 32, 32), np.int64)
    classes[:, :8] = 2  # thick: excluded
    tau = np.zeros((2, 32, 32), np.float32)
    tau[:, 8:16] = 0.1  # thin bin
    tau[:, :8] = 5.0
    pred = clear.copy()
    pred[:, :, :8] += 0.5  # wrong only where thick
    t = {"clear": clear, "classes": classes, "tau": tau}
    s = per_tile(pred, t)
    assert np.allclose(s["psnr"], 60.0)  # capped: perfect on every recoverable pixel
    pred[:, :, 8:16] += 0.1  # error inside the thin bin
    b = per_bin(pred, t)
    thin = next(k for k in TAU_BINS if k.startswith("thin"))
    assert b[thin]["psnr"]["mean"] == pytest.approx(20.0, abs=0.01)  # 20 log10(1 / 0.1)
    assert all(b[k]["psnr"]["n"] == 0 for k in TAU_BINS if k != thin)


def test_cross_validation_folds_cover_every_land_type() -> None:
    from bench.detector_cv import folds

    names = [
        f"{land}_{i:02d}_0101"
        for land, n in (("Barren", 7), ("Forest", 6), ("Water", 2))
        for i in range(n)
    ]
    fs = folds(names, 4)
    assert sorted(n for f in fs for n in f) == sorted(names)  # every patch tested exactly once
    assert max(map(len, fs)) - min(map(len, fs)) <= 1
    for f in fs:  # land types with >= 4 patches appear in every fold
        assert {n.split("_")[0] for n in f} >= {"Barren", "Forest"}


def test_detector_table_adds_the_recipe_each_band_set_ships(tmp_path) -> None:  # noqa: ANN001
    """A band set whose detector comes from another recipe gets that recipe's rows, renamed, and
    the main file's rows stay as they were."""
    import json

    from bench.tables import SHIPPED_DETECTOR_RESULTS, with_shipped_recipes

    view = next(iter(SHIPPED_DETECTOR_RESULTS))
    mine, theirs = {"all": {"accuracy": 0.8}}, {"all": {"accuracy": 0.9}}
    (tmp_path / SHIPPED_DETECTOR_RESULTS[view]).write_text(
        json.dumps({"results": {f"ours/{view}": theirs, f"ours_shadow_op/{view}": theirs}})
    )
    doc = {"results": {f"ours/{view}": mine}, "patches": {}}
    out = with_shipped_recipes(doc, tmp_path)["results"]
    assert out[f"ours/{view}"] == mine
    assert out[f"shipped/{view}"] == theirs and out[f"shipped_shadow_op/{view}"] == theirs
    assert doc["results"] == {f"ours/{view}": mine}  # the input is not changed
    assert with_shipped_recipes(doc, tmp_path / "none")["results"] == doc["results"]


def test_weighted_bootstrap_pools_and_resamples_whole_entries() -> None:
    """With weights the mean is the pooled one (per-patch accuracies weighted by pixels) and
    the interval comes from resampling whole entries: a large patch moves it more."""
    from bench._common import bootstrap as weighted

    acc, px = np.array([1.0, 0.0, 0.5]), np.array([3.0, 1.0, 0.0])  # a weightless patch: out
    c = weighted(acc, weights=px)
    assert c["mean"] == pytest.approx(0.75) and c["n"] == 2
    assert 0.0 <= c["lo"] < 0.75 < c["hi"] <= 1.0
    same = weighted(acc[:2], weights=np.ones(2))
    assert same == weighted(acc[:2])  # unit weights: the plain bootstrap, draw for draw


def test_detector_table_gives_patch_intervals_and_the_difference_to_the_peer() -> None:
    from bench.tables import detector_real_table

    def row(accs: list[float]) -> dict:
        per = {f"p{i}": {"accuracy": a, "pixels": 100 * (i + 1)} for i, a in enumerate(accs)}
        pooled = sum(v["accuracy"] * v["pixels"] for v in per.values()) / 600
        a = {"accuracy": pooled, "false_positive_rate": 0.1}
        return {"all": a, "without_ukis_tests": a, "shadow": None, "snow_patches": {},
                "per_sensor": {}, "per_land": {}, "per_patch": per}  # fmt: skip

    doc = {"patches": ["p0", "p1", "p2"], "folds": [["p0"], ["p1"], ["p2"]],
           "results": {"ours/rgbn": row([0.9, 0.8, 0.7]), "ukis_csmask/rgbn": row([0.9, 0.9, 0.9])}}  # fmt: skip
    t = detector_real_table(doc)
    assert "| rgbn | ours (shadow at 0.5) | 76.7% [" in t
    assert "rgbn -13.3 points [" in t  # pooled: (0 * 100 - 0.1 * 200 - 0.2 * 300) / 600
    # the per-patch better of the two: each patch from whichever is right there
    doc["results"] = {"ours/rgbn": row([1.0, 0.5, 0.7]), "ukis_csmask/rgbn": row([0.5, 1.0, 0.6])}
    assert "oracle, not a method): rgbn 85.0%." in detector_real_table(doc)  # 510 / 600
