"""TensorRT: clear refusal here (no GPU); real engine builds only where TensorRT and CUDA exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from export.nets import UNet, UNetConfig  # noqa: E402
from export.onnx_export import contract_for, to_onnx, write_model  # noqa: E402
from export.tensorrt import build_engine, cuda_device_count  # noqa: E402
from export.train import TrainConfig  # noqa: E402
from kumo_edge.errors import KumoError  # noqa: E402


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = UNet(UNetConfig(4, 4, (8, 8)))
    cfg = TrainConfig(task="generator", bands="rgbn", widths=(8, 8))
    return write_model(
        to_onnx(net, 4, 64),
        contract_for(net, cfg, 64, 8),
        tmp_path_factory.mktemp("trt") / "g.onnx",
    )


@pytest.mark.skipif(
    cuda_device_count() > 0, reason="a CUDA device is present: the refusal path does not apply"
)
def test_without_cuda_the_build_is_refused_with_the_trtexec_command(
    onnx_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        KumoError, match=r"trtexec --onnx=.*g\.onnx .*--fp16 .*reflectance:1x4x256x256"
    ):
        build_engine(onnx_model, tmp_path / "g.plan", "fp16")
    assert not (tmp_path / "g.plan").exists()


@pytest.mark.trt
@pytest.mark.skipif(cuda_device_count() == 0, reason="needs TensorRT and a CUDA device")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_and_matches_onnx(onnx_model: Path, tmp_path: Path, precision: str) -> None:
    batches = [np.random.default_rng(0).random((2, 4, 256, 256), dtype=np.float32)]
    engine = build_engine(
        onnx_model,
        tmp_path / f"g_{precision}.plan",
        precision,
        batches,
        tmp_path / "cache.bin",
        max_batch=2,
    )
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    eng = runtime.deserialize_cuda_engine(engine.read_bytes())
    assert eng is not None  # a loadable engine, not just bytes
    name = eng.get_tensor_name(0)
    assert name == "reflectance" and tuple(eng.get_tensor_shape(name))[1] == 4
    if precision == "int8":
        assert (tmp_path / "cache.bin").exists()


@pytest.mark.trt
@pytest.mark.skipif(cuda_device_count() == 0, reason="needs TensorRT and a CUDA device")
def test_tensorrt_provider_matches_cpu(onnx_model: Path) -> None:
    """The same model through ONNX Runtime's TensorRT provider and on the CPU: outputs agree
    within FP16 rounding."""
    from kumo_edge.runtime import Model, available_providers

    if "tensorrt" not in available_providers():
        pytest.skip("onnxruntime without the TensorRT provider")
    x = np.random.default_rng(1).random((2, 4, 256, 256), dtype=np.float32) * 0.5
    cpu = Model(onnx_model, ["cpu"]).run(x)
    trt_out = Model(onnx_model, ["tensorrt", "cuda"]).run(x)
    assert trt_out.shape == cpu.shape
    assert float(np.abs(trt_out - cpu).max()) < 0.05
