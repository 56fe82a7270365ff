"""Pruning and INT8 quantisation: structure, contract, and INT8-vs-FP32 agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("torch_pruning")

from export.nets import UNet, UNetConfig, count_macs  # noqa: E402
from export.onnx_export import contract_for, to_onnx, write_model  # noqa: E402
from export.prune import prune_unet  # noqa: E402
from export.quantize import quantize_model, thin_convs  # noqa: E402
from export.train import TrainConfig  # noqa: E402
from kumo_edge.runtime import load_model  # noqa: E402

#: Stated tolerance of INT8 vs FP32 generator outputs, in reflectance (max abs over pixels):
#: per-channel int8 weights and uint8 activations calibrated on the same distribution.
INT8_TOLERANCE = 0.03


def _trained_like(widths: tuple[int, ...]) -> UNet:
    """A UNet with non-trivial weights and BN statistics (no training needed for structure tests)."""
    torch.manual_seed(0)
    net = UNet(UNetConfig(4, 4, widths))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.out_channels % 2 == 0 and m is not net.head:
                m.weight[m.out_channels // 2 :] *= 0.05  # clearly unimportant half
    net.train()
    net(torch.rand(8, 4, 32, 32) * 0.5)
    return net.eval()


def test_prune_halves_channels_and_keeps_important_ones() -> None:
    net = _trained_like((16, 24, 32))
    before = count_macs(net, (1, 4, 64, 64))
    x = torch.rand(2, 4, 64, 64) * 0.5
    slim = prune_unet(net, 0.5)
    assert slim.cfg.widths == (8, 12, 16)
    assert count_macs(slim, (1, 4, 64, 64)) < 0.35 * before
    assert slim(x).shape == x.shape
    # the kept channels are the strong ones: the pruned net's first conv equals the parent's first half
    parent_w = net.down[0][0][0].weight[:8]
    assert torch.allclose(slim.down[0][0][0].weight, parent_w)


def test_int8_quantisation(tmp_path: Path) -> None:
    net = _trained_like((16, 24, 32))
    cfg = TrainConfig(task="generator", bands="rgbn", widths=(16, 24, 32))
    fp32 = write_model(to_onnx(net, 4, 64), contract_for(net, cfg, 64, 8), tmp_path / "fp32.onnx")
    rng = np.random.default_rng(0)
    calib = [rng.random((4, 4, 64, 64), dtype=np.float32) * 0.5 for _ in range(4)]
    q = quantize_model(fp32, tmp_path / "int8.onnx", calib, ("Conv",))
    model = onnx.load(str(q))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert q.stat().st_size < fp32.stat().st_size
    m32, m8 = load_model(fp32), load_model(q)
    assert m8.contract.precision == "int8" and m8.contract.kind == "generator"
    assert m8.contract.bands == m32.contract.bands
    x = rng.random((2, 4, 64, 64), dtype=np.float32) * 0.5
    diff = np.abs(m32.run(x) - m8.run(x))
    assert diff.max() < INT8_TOLERANCE
    assert diff.mean() < INT8_TOLERANCE / 5


def test_thin_convs_stay_in_float(tmp_path: Path) -> None:
    net = _trained_like((4, 8, 16))
    cfg = TrainConfig(task="generator", bands="rgbn", widths=(4, 8, 16))
    fp32 = write_model(to_onnx(net, 4, 64), contract_for(net, cfg, 64, 8), tmp_path / "fp32.onnx")
    src = onnx.load(str(fp32))
    init = {i.name: i for i in src.graph.initializer}
    thin = thin_convs(src, 64)
    convs = [n for n in src.graph.node if n.op_type == "Conv"]
    assert thin and len(thin) < len(convs)  # some thin (4 x 4, 8 x 4, ...), some not (16 x 8)
    for n in convs:
        w = init[n.input[1]].dims
        assert (n.name in thin) == (w[0] * w[1] <= 64)
    rng = np.random.default_rng(0)
    calib = [rng.random((4, 4, 64, 64), dtype=np.float32) * 0.5 for _ in range(2)]
    q = quantize_model(fp32, tmp_path / "mixed.onnx", calib, ("Conv",), float_convs_upto=64)
    qm = onnx.load(str(q))
    # a Conv in float reads its weight initializer directly; a quantised one through a
    # DequantizeLinear
    produced_by = {o: n.op_type for n in qm.graph.node for o in n.output}
    float_names = {n.name for n in qm.graph.node if n.op_type == "Conv" and n.input[1] in init}
    assert float_names == set(thin)
    for n in qm.graph.node:
        if n.op_type == "Conv" and n.name not in thin:
            assert produced_by.get(n.input[1]) == "DequantizeLinear"
    assert load_model(q).contract.extra["float_convs"].split(",") == thin
    x = rng.random((1, 4, 64, 64), dtype=np.float32) * 0.5
    assert np.abs(load_model(q).run(x) - load_model(fp32).run(x)).max() < INT8_TOLERANCE


def test_channel_softmax_becomes_primitives_with_the_same_values(tmp_path: Path) -> None:
    """ONNX Runtime's Softmax over a non-last axis is ~10x slower than the primitive ops;
    exports rewrite it. The values must not change, and a softmax over another axis stays."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from export.onnx_export import primitive_softmax, rewrite_softmax

    def model(axis: int) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "h", "w"])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "h", "w"])
        node = helper.make_node("Softmax", ["x"], ["y"], "sm", axis=axis)
        g = helper.make_graph([node], "g", [x], [y])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    x = (np.random.default_rng(0).standard_normal((2, 4, 8, 8)) * 30).astype(np.float32)
    before = ort.InferenceSession(model(1).SerializeToString()).run(None, {"x": x})[0]
    m = model(1)
    assert primitive_softmax(m) == 1
    assert "Softmax" not in {n.op_type for n in m.graph.node}
    onnx.checker.check_model(m)
    after = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert np.isfinite(after).all()  # logits of +-100 would overflow exp without the max
    other = model(-1)
    assert primitive_softmax(other) == 0
    path = tmp_path / "m.onnx"
    onnx.save(model(1), str(path))
    card = path.with_suffix(".json")
    card.write_text(json.dumps({"file": "m.onnx", "size_bytes": 1, "lineage": {}}))
    assert rewrite_softmax(path) and not rewrite_softmax(path)
    doc = json.loads(card.read_text())
    assert doc["size_bytes"] == path.stat().st_size and "softmax" in doc["lineage"]


def test_shipped_detectors_carry_no_softmax_node() -> None:
    """Every export and the shipped detectors compute the softmax in primitive ops."""
    root = Path(__file__).resolve().parents[1] / "kumo_edge" / "models"
    files = sorted(root.glob("*/detector.onnx"))
    assert files
    for f in files:
        ops = {n.op_type for n in onnx.load(str(f)).graph.node}
        assert "Softmax" not in ops and {"Exp", "ReduceSum"} <= ops, f
    from export.nets import CloudDetector, DetectorConfig

    torch.manual_seed(0)
    det = CloudDetector(DetectorConfig(4, (8, 16))).eval()
    ops = {n.op_type for n in to_onnx(det, 4, 32).graph.node}
    assert "Softmax" not in ops and "Exp" in ops
