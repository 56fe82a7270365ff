"""Rebuild a torch checkpoint from an exported FP32 generator (``generator_*_fp32.onnx``).

    python -m export.from_onnx export/artifacts/hsi32/generator_parent_fp32.onnx runs/generator_hsi32/best.pt

The export folds each batch normalisation into its convolution, so the rebuilt network is the
same U-Net with ``norm="none"`` (biased convolutions) and computes the same function; the
training configuration comes from the file's contract (``kumo.training_config``). Use it when a
shipped model's training run is gone and it must serve again, e.g. as the teacher and starting
point of further pruning (``export/prune.py --student``). The rebuilt model is checked against
ONNX Runtime on random tiles before it is written.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.nets import UNet
from export.onnx_export import build_from_checkpoint
from export.train import TrainConfig, band_set, generator_config
from kumo_edge.errors import ModelContractError
from kumo_edge.runtime import load_model


def checkpoint_from_onnx(path: Path) -> dict:
    """A checkpoint dict (``config``, ``net``, ``model``) equivalent to the FP32 generator."""
    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    if meta.get("kumo.kind") != "generator" or meta.get("kumo.precision") != "fp32":
        raise ModelContractError(f"{path}: not an FP32 generator export")
    raw = json.loads(meta["kumo.training_config"])
    for k in ("widths", "train", "val", "test", "ignore_tau"):
        if isinstance(raw.get(k), list):
            raw[k] = tuple(raw[k])
    cfg = TrainConfig(**{k: v for k, v in raw.items() if k in TrainConfig.__dataclass_fields__})
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    # the conv weights give the widths: level i's strided conv has widths[i] outputs
    widths = tuple(int(inits[n.input[1]].shape[0]) for n in convs if "/down." in n.name)[::2]
    cfg = replace(cfg, widths=widths, norm="none")
    net = UNet(generator_config(cfg, len(band_set(cfg.bands))))
    state = net.state_dict()
    for n in convs:
        # "/down.0/down.0.0/down.0.0.0/Conv" -> "down.0.0.0"; "/head/Conv" -> "head"
        module = n.name.strip("/").split("/")[-2]
        for key, idx in (("weight", 1), ("bias", 2)):
            name = f"{module}.{key}"
            if name not in state or len(n.input) <= idx:
                raise ModelContractError(f"{path}: no place for {n.name} input {idx} ({name})")
            value = torch.from_numpy(inits[n.input[idx]].copy())
            if value.shape != state[name].shape:
                raise ModelContractError(
                    f"{path}: {name} is {tuple(value.shape)}, the network wants {tuple(state[name].shape)}"
                )
            state[name] = value
    net.load_state_dict(state)
    return {
        "config": asdict(cfg),
        "net": asdict(net.cfg),
        "model": net.state_dict(),
        "step": None,
        "rebuilt_from": str(path),
    }


def check_parity(ckpt: dict, path: Path, tile: int = 64, atol: float = 1e-4) -> float:
    """Largest difference between the rebuilt network and the ONNX file on random tiles."""
    net, _ = build_from_checkpoint(ckpt)
    model = load_model(path)
    x = np.random.default_rng(0).random((2, net.cfg.in_ch, tile, tile), dtype=np.float32) * 0.6
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model.run(x)
    err = float(np.abs(got - want).max())
    if err > atol:
        raise ModelContractError(f"{path}: rebuilt network differs by {err:.2e} (> {atol:g})")
    return err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path, help="an FP32 generator export")
    ap.add_argument("out", type=Path, help="checkpoint to write (best.pt)")
    a = ap.parse_args()
    ck = checkpoint_from_onnx(a.onnx)
    err = check_parity(ck, a.onnx)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, a.out)
    print(f"{a.out}: widths {ck['net']['widths']}, max difference to ONNX Runtime {err:.1e}")


if __name__ == "__main__":
    main()
