"""The training entry point end to end in --smoke mode, on the bundled sample scene only (no
../shared needed), then export and reload without torch in the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.onnx_export import export_checkpoint  # noqa: E402
from export.train import main as train_main  # noqa: E402
from kumo_edge.cli import sample_scene_path  # noqa: E402
from kumo_edge.errors import KumoError  # noqa: E402
from kumo_edge.runtime import load_model  # noqa: E402


@pytest.mark.parametrize("task", ["detector", "generator"])
def test_smoke_train_export_load(tmp_path: Path, task: str) -> None:
    scenes = tmp_path / "scenes.txt"
    scenes.write_text(f"{sample_scene_path()}\n")
    out = tmp_path / task
    train_main([task, "--bands", "rgbn", "--smoke", "--scenes", str(scenes), "--out", str(out)])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["smoke"] is True and cfg["bands"] == "rgbn"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    # resumable: continuing a finished run adds nothing and keeps the step count
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 4
    onnx_path = export_checkpoint(out / "best.pt", tmp_path / f"{task}.onnx", tile=64, halo=8)
    m = load_model(onnx_path)
    assert m.contract.kind == task and m.contract.training["smoke"] is True
    y = m.run(np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32))
    assert y.shape[0] == 1 and np.isfinite(y).all()


def test_rebuild_from_onnx_matches_the_export(tmp_path: Path) -> None:
    from export.from_onnx import check_parity, checkpoint_from_onnx
    from kumo_edge.errors import ModelContractError

    scenes = tmp_path / "scenes.txt"
    scenes.write_text(f"{sample_scene_path()}\n")
    out = tmp_path / "gen"
    train_main(
        ["generator", "--bands", "rgbn", "--smoke", "--scenes", str(scenes), "--out", str(out)]
    )
    path = export_checkpoint(out / "best.pt", tmp_path / "g.onnx", tile=64, halo=8)
    ck = checkpoint_from_onnx(path)
    assert ck["config"]["norm"] == "none"  # batch norms are folded into the convolutions
    assert tuple(ck["net"]["widths"]) == tuple(
        json.loads((out / "config.json").read_text())["widths"]
    )
    assert check_parity(ck, path) < 1e-4
    # a rebuild with one weight changed is caught by the parity check
    name = next(k for k in ck["model"] if k.endswith("head.weight"))
    ck["model"][name] = ck["model"][name] + 0.05
    with pytest.raises(ModelContractError, match="differs"):
        check_parity(ck, path)
    det_out = tmp_path / "det"
    train_main(
        ["detector", "--bands", "rgbn", "--smoke", "--scenes", str(scenes), "--out", str(det_out)]
    )
    with pytest.raises(ModelContractError, match="not an FP32 generator"):
        checkpoint_from_onnx(export_checkpoint(det_out / "best.pt", tmp_path / "d.onnx"))


def test_real_patch_split_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from export import train

    cfg, _ = train.parse(["detector", "--real-test", "Forest_08_0805,Water_02_1010"])
    assert cfg.real_split() == (["Forest_08_0805", "Water_02_1010"], train.REAL_VAL)
    assert train.parse(["detector"])[0].real_split() == (train.REAL_TEST, train.REAL_VAL)
    monkeypatch.setattr(train.loops, "_real_names", lambda: ["Forest_08_0805", "Water_02_1010"])
    bad, _ = train.parse(
        ["detector", "--real-val", "Nowhere_00", "--out", str(tmp_path), "--smoke"]
    )
    with pytest.raises(KumoError, match="unknown real patches.*Nowhere_00"):
        train.train_detector(bad)


def test_companion_release_ships_beside_the_physics_remover_on_its_own_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``export.release --companion``: the learned remover goes to brightness.onnx with its own
    card, tested on the held-out scenes of its own split and calibrated on its training scenes
    only, and the shipped physics remover beside it is not touched."""
    import shutil

    import onnx

    from export import release

    src = sample_scene_path()
    for name in ("scene_a", "scene_b"):  # two scenes: one to train on, one held out
        shutil.copyfile(src, tmp_path / f"{name}.tif")
    scenes = tmp_path / "scenes.txt"
    scenes.write_text(f"{tmp_path / 'scene_a.tif'}\n{tmp_path / 'scene_b.tif'}\n")
    run = tmp_path / "runs" / "gen"
    train_main(
        ["generator", "--bands", "rgbn", "--smoke", "--scenes", str(scenes), "--test", "scene_b"]
        + ["--out", str(run)]
    )
    ship, art = tmp_path / "models", tmp_path / "art"
    (ship / "rgbn").mkdir(parents=True)
    shipped = release.SHIP / "rgbn"
    for f in ("generator.onnx", "generator.json"):
        shutil.copyfile(shipped / f, ship / "rgbn" / f)
    physics_before = (ship / "rgbn" / "generator.onnx").read_bytes()
    monkeypatch.setattr(release, "ROOT", tmp_path)
    monkeypatch.setattr(release, "SHIP", ship)
    monkeypatch.setattr(release, "ART", art)
    (art / "rgbn").mkdir(parents=True)
    evaluated, calibrated = [], []
    real_eval, real_calib = release.eval_generator, release.calibration_batches

    def spy_eval(model, test, **kw):  # noqa: ANN001, ANN003, ANN202
        evaluated.append([s.name for s in test])
        return real_eval(model, test, **kw)

    def spy_calib(bands, **kw):  # noqa: ANN001, ANN003, ANN202
        calibrated.append([s.name for s in kw["scenes"]])
        return real_calib(bands, n_tiles=16, **kw)

    monkeypatch.setattr(release, "eval_generator", spy_eval)
    monkeypatch.setattr(release, "calibration_batches", spy_calib)
    q = release.release_companion("rgbn", "runs/gen", None)
    assert q == ship / "rgbn" / "brightness.onnx"
    assert (ship / "rgbn" / "generator.onnx").read_bytes() == physics_before
    assert evaluated and all(names == ["scene_b"] for names in evaluated)
    assert calibrated == [["scene_a"]]
    card = json.loads((ship / "rgbn" / "brightness.json").read_text())
    assert card["name"] == "rgbn/brightness" and card["file"] == "brightness.onnx"
    assert card["training"]["scenes"]["test"] == ["scene_b"]
    assert card["training"]["scenes"]["train"] == ["scene_a"]
    assert card["lineage"]["parent_fp32"] == "art/rgbn/brightness_parent_fp32.onnx"
    # no recipe made it: the card names the release, not the band set's cGAN recipe
    assert card["training"]["command"].startswith(
        "python -m export.release --bands rgbn --companion runs/gen"
    )
    assert card["training"]["steps"] == []
    m = load_model(q)
    assert m.contract.kind == "generator"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(q)).graph.node)
    # a band set whose shipped remover takes no companion is refused, nothing written
    card = json.loads((ship / "rgbn" / "generator.json").read_text())
    card["brightness_model"] = None
    (ship / "rgbn" / "generator.json").write_text(json.dumps(card))
    (ship / "rgbn" / "brightness.onnx").unlink()
    with pytest.raises(KumoError, match="no shipped physics remover"):
        release.release_companion("rgbn", "runs/gen", None)
    assert not (ship / "rgbn" / "brightness.onnx").exists()
