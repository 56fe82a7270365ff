"""TensorRT engines for Jetson-class targets (FP16, or INT8 with a calibration cache).

    python -m export.tensorrt kumo_edge/models/rgbn/generator.onnx gen.plan --fp16
    python -m export.tensorrt export/artifacts/rgbn/generator_pruned_fp32.onnx gen_int8.plan --int8 --bands rgbn --calib-cache gen.cache

Needs the ``tensorrt`` Python package (extra ``trt``) and a CUDA device: on a machine without
them, :func:`build_engine` raises :class:`~kumo_edge.errors.KumoError` with the equivalent
``trtexec`` command instead of failing somewhere inside TensorRT. Not exercised on the 2-core
development machine (no GPU); its tests are marked ``trt`` and skip there.

Equivalent ``trtexec`` commands on a Jetson (JetPack ships trtexec in /usr/src/tensorrt/bin):

    trtexec --onnx=generator.onnx --saveEngine=generator_fp16.plan --fp16 \
            --minShapes=reflectance:1x4x256x256 --optShapes=reflectance:4x4x256x256 --maxShapes=reflectance:8x4x256x256
    # INT8 from the QDQ model (explicit quantisation, no calibrator needed):
    trtexec --onnx=generator.onnx --saveEngine=generator_int8.plan --int8 --fp16 ...same shapes...

The flight runtime can also let ONNX Runtime build and cache the engine itself:
``kumo-edge run ... --providers tensorrt,cuda`` (``onnxruntime-gpu`` with TensorRT).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kumo_edge.errors import KumoError


def trtexec_command(
    onnx_path: Path,
    engine: Path,
    precision: str,
    channels: int,
    tile: int = 256,
    max_batch: int = 8,
) -> str:
    shapes = f"--minShapes=reflectance:1x{channels}x{tile}x{tile} --optShapes=reflectance:{max(1, max_batch // 2)}x{channels}x{tile}x{tile} --maxShapes=reflectance:{max_batch}x{channels}x{tile}x{tile}"
    flag = "--fp16" if precision == "fp16" else "--int8 --fp16"
    return f"trtexec --onnx={onnx_path} --saveEngine={engine} {flag} {shapes}"


def cuda_device_count() -> int:
    """CUDA devices visible to TensorRT (0 when TensorRT or CUDA is missing)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return 0
    try:
        from cuda import cudart  # type: ignore[import-not-found]

        err, n = cudart.cudaGetDeviceCount()
        return int(n) if int(err) == 0 else 0
    except ImportError:
        pass
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str = "fp16",
    calib_batches: Sequence[np.ndarray] | None = None,
    calib_cache: Path | None = None,
    tile: int = 256,
    max_batch: int = 8,
    workspace_gb: float = 1.0,
) -> Path:
    """Build a serialized TensorRT engine with a dynamic batch/tile optimisation profile.

    ``precision``: ``fp16``, or ``int8`` (a QDQ model needs no calibration; a float model is
    calibrated from ``calib_batches``, the result cached in ``calib_cache`` for reuse).
    """
    if precision not in ("fp16", "int8"):
        raise KumoError(f"`precision` must be fp16 or int8, got {precision!r}")
    import onnx

    channels = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    try:
        import tensorrt as trt
    except ImportError:
        raise KumoError(
            "building a TensorRT engine needs the `tensorrt` package and a CUDA device (pip install 'kumo-edge[trt]' on the target); "
            f"equivalent: {trtexec_command(onnx_path, engine_path, precision, channels, tile, max_batch)}"
        ) from None
    if cuda_device_count() == 0:
        raise KumoError(
            f"no CUDA device found: build the engine on the target instead: {trtexec_command(onnx_path, engine_path, precision, channels, tile, max_batch)}"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KumoError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    config.set_flag(trt.BuilderFlag.FP16)
    name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(
        name,
        (1, channels, tile, tile),
        (max(1, max_batch // 2), channels, tile, tile),
        (max_batch, channels, tile, tile),
    )
    config.add_optimization_profile(profile)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        qdq = any(n.op_type == "QuantizeLinear" for n in onnx.load(str(onnx_path)).graph.node)
        if not qdq:
            if calib_batches is None and not (calib_cache and calib_cache.exists()):
                raise KumoError(
                    "INT8 from a float model needs calibration batches or an existing calibration cache"
                )
            config.int8_calibrator = _calibrator(trt, calib_batches or [], calib_cache)
            config.set_calibration_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise KumoError(f"TensorRT failed to build an engine from {onnx_path}")
    tmp = Path(str(engine_path) + ".tmp")
    tmp.write_bytes(bytes(blob))
    tmp.replace(engine_path)
    return Path(engine_path)


def _calibrator(trt, batches: Sequence[np.ndarray], cache: Path | None):  # noqa: ANN001, ANN202
    """An entropy calibrator over host batches, with an on-disk cache."""
    import torch  # device buffers via torch: no pycuda dependency

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = list(batches)
            self.i = 0
            self.buf = None

        def get_batch_size(self) -> int:
            return int(self.batches[0].shape[0]) if self.batches else 1

        def get_batch(self, names):  # noqa: ANN001, ANN202
            if self.i >= len(self.batches):
                return None
            self.buf = torch.from_numpy(
                np.ascontiguousarray(self.batches[self.i], dtype=np.float32)
            ).cuda()
            self.i += 1
            return [int(self.buf.data_ptr())]

        def read_calibration_cache(self):  # noqa: ANN202
            return cache.read_bytes() if cache and cache.exists() else None

        def write_calibration_cache(self, data) -> None:  # noqa: ANN001
            if cache:
                cache.write_bytes(bytes(data))

    return Calibrator()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("engine", type=Path)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--fp16", action="store_const", dest="precision", const="fp16")
    g.add_argument("--int8", action="store_const", dest="precision", const="int8")
    ap.add_argument("--bands", help="band set, for INT8 calibration of a float model")
    ap.add_argument("--calib-cache", type=Path)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--max-batch", type=int, default=8)
    a = ap.parse_args()
    batches = None
    if a.precision == "int8" and a.bands:
        from export.quantize import calibration_batches

        batches = calibration_batches(a.bands, tile=a.tile)
    try:
        print(
            build_engine(
                a.onnx, a.engine, a.precision or "fp16", batches, a.calib_cache, a.tile, a.max_batch
            )
        )
    except KumoError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
