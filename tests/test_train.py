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
