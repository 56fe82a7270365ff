"""The honesty-critical pieces of the removal cross-validation (bench/removal_cv.py)."""

from __future__ import annotations

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
