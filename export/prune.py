"""Structured channel pruning of the generator, then fine-tuning.

    python -m export.prune runs/generator_hsi32/best.pt --ratio 0.5 --steps 1500 --out runs/generator_hsi32_p50

Channels are removed group by group with torch-pruning's dependency graph (a channel of a
convolution goes together with the matching BatchNorm entries, the input channels of the next
convolution and the concatenated skip), ranked by the L2 magnitude of the group's weights, the
same ratio at every level. The output head keeps its channels (one per band). Because every level
shrinks by the same ratio, the pruned network is exactly a narrower :class:`~export.nets.UNet`,
so checkpoints stay plain state dicts with their ``UNetConfig``. Fine-tuning reuses the
generator training loop (L1 + SAM + PatchGAN) starting from the pruned weights, optionally with
the unpruned parent as a teacher (``--distill``: L1 towards its output).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
import torch_pruning as tp

from export.nets import UNet, count_macs
from export.onnx_export import build_from_checkpoint
from export.train import band_set, train_generator


def prune_unet(net: UNet, ratio: float, tile: int = 64) -> UNet:
    """A narrower UNet holding the most important channels of ``net`` (``ratio`` removed)."""
    if not 0 < ratio < 1:
        raise ValueError(f"`ratio` must be in (0, 1), got {ratio}")
    net = net.eval()
    ex = torch.rand(1, net.cfg.in_ch, tile, tile)
    pruner = tp.pruner.MetaPruner(
        net,
        ex,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[net.head],
        round_to=4,
    )
    pruner.step()
    widths = tuple(int(level[0][0].out_channels) for level in net.down)
    slim = UNet(replace(net.cfg, widths=widths))
    slim.load_state_dict(net.state_dict())
    return slim


def _load_net(path: Path) -> UNet:
    return build_from_checkpoint(torch.load(path, weights_only=True, map_location="cpu"))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="best.pt of the unpruned parent")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gan-start", type=int, default=0)
    ap.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="weight of an L1 term towards the unpruned parent's output (knowledge distillation)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, help="fine-tuning seed (data order, clouds) [the parent's]")
    ap.add_argument("--tile", type=int, help="fine-tuning tile size [the parent's]")
    ap.add_argument(
        "--student",
        type=Path,
        help="best.pt of an already pruned network: prune IT by --ratio (the parent stays the "
        "teacher), e.g. to go further than a shipped model without retraining its parent",
    )
    ap.add_argument(
        "--resume-pruned",
        type=Path,
        help="best.pt of an already pruned network: fine-tune it further instead of pruning again",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    # denormal floats make CPU kernels crawl; flush them to zero
    torch.set_flush_denormal(True)
    ckpt = torch.load(a.checkpoint, weights_only=True, map_location="cpu")
    parent, cfg = build_from_checkpoint(ckpt)
    n = len(band_set(cfg.bands))
    before = count_macs(parent, (1, n, 256, 256))
    teacher = build_from_checkpoint(ckpt)[0] if a.distill > 0 else None  # unpruned copy
    if a.resume_pruned:
        slim = _load_net(a.resume_pruned).train()
    else:
        slim = prune_unet(_load_net(a.student) if a.student else parent, a.ratio)
    after = count_macs(slim, (1, n, 256, 256))
    print(
        f"pruned {a.ratio:.0%} of channels: widths {parent.cfg.widths} -> {slim.cfg.widths}, MACs per 256 tile {before / 1e9:.3f} -> {after / 1e9:.3f} G"
    )
    ft = replace(
        cfg,
        out=str(a.out),
        steps=a.steps,
        lr=a.lr,
        widths=slim.cfg.widths,
        gan_start=a.gan_start,
        tile=a.tile or cfg.tile,
        seed=cfg.seed if a.seed is None else a.seed,
        extra={
            "parent": str(a.checkpoint),
            "prune_ratio": a.ratio,
            "distill": a.distill,
            "continued_from": str(a.resume_pruned or ""),
            "pruned_from": str(a.student or a.checkpoint),
        },
    )
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "config.json").write_text(
        json.dumps({**ft.__dict__, "parent_widths": parent.cfg.widths}, indent=2, default=list)
    )
    train_generator(ft, model=slim, teacher=teacher, lambda_distill=a.distill)


if __name__ == "__main__":
    main()
