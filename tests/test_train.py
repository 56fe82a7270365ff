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
