"""Static INT8 quantisation in ONNX Runtime (QDQ, per-channel weights, calibrated on real tiles).

    python -m export.quantize FP32.onnx INT8.onnx --bands rgbn [--ops Conv] [--tiles 64]
        [--float-convs-upto 64]

Calibration data are clear tiles of the training scenes (real imagery) with synthetic clouds
rendered over them, resampled to the model's band set, so that activations see the cloudy
inputs the model meets in flight. Only the operator types in ``--ops`` are quantised (default:
``Conv``); the rest (resizes, concatenations, the residual tail) stay in float. Which ops pay
off is measured by ``bench/models.py``, not assumed. Thin convolutions may stay in float
too (``--float-convs-upto``: output x input channels at most this; ``python -m bench.quant``
times FP32, every Conv in INT8 and the thin ones in float): on the 2-core EPYC with 1 ORT
thread, an rgbn generator of widths 8-24 ran 3.36 ms per 256-px tile with every Conv in INT8,
3.20 ms in FP32 and 2.92 ms with its five thin Convs in float (their quantise/dequantise pairs
cost more than the INT8 arithmetic saves); the shipped hsi32 (widths 8-24) gains 1 % and rgb
(16-48) 5 %, but the shipped rgbn (16-48) loses 4 %, so its recipe quantises every Conv.
The Kumo Edge contract is copied to the INT8 model
with ``precision = int8`` and the float Convs listed in ``float_convs``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from kumo_edge.runtime import PREFIX, ModelContract

#: Convolutions this thin (output x input channels) stay in float by default (measured above).
FLOAT_CONVS_UPTO = 64


class ArrayReader(CalibrationDataReader):
    """Feeds ``(N, C, H, W)`` float32 batches to the calibrator."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else {self.input_name: np.ascontiguousarray(b, dtype=np.float32)}


def calibration_batches(
    bands: str,
    n_tiles: int = 64,
    tile: int = 64,
    batch: int = 8,
    seed: int = 123,
    scenes: Sequence | None = None,
) -> list[np.ndarray]:
    """Cloudy tiles from the training scenes of a band set (real clear imagery + synthetic
    clouds): its default split's, or ``scenes`` (a model trained on another split is calibrated
    on its own training scenes, never on a scene it is tested on)."""
    from export.data import CloudyTiles
    from export.train import TrainConfig, load_scenes

    if scenes is None:
        scenes = load_scenes(TrainConfig(bands=bands))[0]["train"]
    ds = CloudyTiles(list(scenes), tile, n_tiles, seed=seed, augment=False)
    xs = np.stack([ds[i]["cloudy"] for i in range(n_tiles)])
    return [xs[i : i + batch] for i in range(0, n_tiles, batch)]


def thin_convs(model: onnx.ModelProto, upto: int) -> list[str]:
    """Names of the Conv nodes whose weight has (output x input) channels <= ``upto``."""
    init = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        w = init.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        if w is not None and w.dims[0] * w.dims[1] <= upto:
            out.append(n.name)
    return out


def quantize_model(
    fp32: Path,
    int8: Path,
    batches: Sequence[np.ndarray],
    op_types: Sequence[str] = ("Conv",),
    per_channel: bool = True,
    method: CalibrationMethod = CalibrationMethod.MinMax,
    float_convs_upto: int = 0,
) -> Path:
    """Quantise ``fp32`` to ``int8`` (QDQ; uint8 activations, int8 per-channel weights); Convs
    with (output x input per group) channels <= ``float_convs_upto`` stay in float."""
    src = onnx.load(str(fp32))
    meta = {p.key: p.value for p in src.metadata_props}
    input_name = src.graph.input[0].name
    thin = thin_convs(src, float_convs_upto)
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        out = Path(td) / "int8.onnx"
        quantize_static(
            str(pre),
            str(out),
            ArrayReader(input_name, batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=thin,
        )
        q = onnx.load(str(out))
    contract = ModelContract.from_metadata(meta, str(fp32)) if meta else None
    del q.metadata_props[:]
    if contract is not None:
        new = {
            **{
                k: v for k, v in meta.items() if k.startswith(PREFIX)
            },  # fields beyond the contract too
            **contract.to_metadata(),
            PREFIX + "precision": "int8",
            PREFIX + "quantized_ops": ",".join(op_types),
            PREFIX + "float_convs": ",".join(thin),
        }
        for k, v in new.items():
            p = q.metadata_props.add()
            p.key, p.value = k, v
    int8.parent.mkdir(parents=True, exist_ok=True)
    tmp = int8.with_suffix(".onnx.tmp")
    onnx.save(q, str(tmp))
    tmp.replace(int8)
    return int8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32", type=Path)
    ap.add_argument("int8", type=Path)
    ap.add_argument("--bands", required=True)
    ap.add_argument("--ops", default="Conv", help="comma-separated operator types to quantise")
    ap.add_argument("--tiles", type=int, default=64)
    ap.add_argument(
        "--float-convs-upto",
        type=int,
        default=FLOAT_CONVS_UPTO,
        help="Convs with output x input channels at most this stay in float (0: none)",
    )
    a = ap.parse_args()
    quantize_model(
        a.fp32,
        a.int8,
        calibration_batches(a.bands, a.tiles),
        tuple(a.ops.split(",")),
        float_convs_upto=a.float_convs_upto,
    )
    print(a.int8)


if __name__ == "__main__":
    main()
