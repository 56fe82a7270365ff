"""Networks: the edge cloud detector, the cloud-removal U-Net generator, the PatchGAN
discriminator, and the full-size pix2pix U-Net used as the speed reference.

All are fully convolutional over ``(N, C, H, W)`` float32 reflectance; the detector and the
generator take any H, W divisible by ``2 ** depth`` and export to ONNX with dynamic batch and
spatial axes. Operators are chosen for CPU inference and INT8: 3x3 convolutions, ReLU /
LeakyReLU, nearest or bilinear resizing (``upsample="transposed"`` is offered for pix2pix
fidelity), BatchNorm folded into the convolutions at export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"`norm` must be 'batch', 'instance' or 'none', got {kind!r}")


def conv_block(cin: int, cout: int, norm: str, stride: int = 1, act: str = "relu") -> nn.Sequential:
    """3x3 convolution, normalisation, activation."""
    a: nn.Module = nn.ReLU(inplace=True) if act == "relu" else nn.LeakyReLU(0.2, inplace=True)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=norm == "none"), _norm(norm, cout), a
    )


class Up(nn.Module):
    """x2 up-sampling: ``nearest``, ``bilinear`` or a learned ``transposed`` convolution."""

    def __init__(self, ch: int, mode: str) -> None:
        super().__init__()
        if mode not in ("nearest", "bilinear", "transposed"):
            raise ValueError(f"`upsample` must be nearest, bilinear or transposed, got {mode!r}")
        self.mode = mode
        self.tconv = nn.ConvTranspose2d(ch, ch, 2, 2) if mode == "transposed" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tconv is not None:
            return self.tconv(x)
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class EncoderDecoder(nn.Module):
    """The trunk shared by the generator and the detector: level ``i`` a strided 3x3 block then a
    3x3 block at 1/2**(i+1) resolution; the decoder up-samples and merges each skip with a 3x3
    block. :meth:`features` returns the half-resolution features of width ``widths[0]``."""

    def __init__(
        self, in_ch: int, widths: tuple[int, ...], norm: str, upsample: str, down_act: str
    ) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = in_ch
        for ch in widths:
            self.down.append(
                nn.Sequential(
                    conv_block(cin, ch, norm, 2, down_act), conv_block(ch, ch, norm, 1, down_act)
                )
            )
            cin = ch
        levels = range(len(widths) - 1, 0, -1)
        self.ups = nn.ModuleList(Up(widths[i], upsample) for i in levels)
        self.dec = nn.ModuleList(
            conv_block(widths[i] + widths[i - 1], widths[i - 1], norm) for i in levels
        )
        #: applied to the deepest level's features (no parameters unless a subclass sets one)
        self.context: nn.Module = nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for d in self.down:
            h = d(h)
            skips.append(h)
        h = self.context(h)
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips[:-1]), strict=True):
            h = dec(torch.cat([up(h), skip], dim=1))
        return h


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet`: ``widths[i]`` channels at 1/2**(i+1) resolution."""

    in_ch: int
    out_ch: int
    widths: tuple[int, ...] = (32, 48, 64, 96)
    upsample: str = "bilinear"
    norm: str = "batch"
    head: str = "residual"

    def __post_init__(self) -> None:
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"`widths` must be positive, got {self.widths}")
        if self.head not in ("affine", "affine_lowres", "residual", "direct"):
            raise ValueError(
                f"`head` must be affine, affine_lowres, residual or direct, got {self.head!r}"
            )
        if self.head != "direct" and self.in_ch < self.out_ch:
            raise ValueError("affine and residual heads need in_ch >= out_ch")

    @property
    def depth(self) -> int:
        return len(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)


class UNet(EncoderDecoder):
    """Encoder-decoder with skips. Level ``i`` runs at 1/2**(i+1) of the input resolution: the
    stem is strided and no convolution runs at full resolution, so compute stays small on wide
    hyperspectral inputs and the memory-bound full-resolution work is a resize and a few
    element-wise operations.

    Heads (``cfg.head``), all evaluated at half resolution and resized x2:

    * ``affine``: per-band gain ``g`` and offset ``o``; ``y = clip(g * x + o, 0, 1)``.
      Under the cloud model a thin cloud is ``x = t * y + A * (1 - t)`` and a shadow
      ``x = s * y`` with smooth ``t``, ``A``, ``s``, so the clear scene is an affine function of
      the cloudy one with smooth coefficients: the network only has to estimate those.
    * ``affine_lowres``: the same correction applied at half resolution,
      ``y = clip(x + up((g - 1) * pool(x) + o), 0, 1)``: only the fine detail of ``x`` is not
      re-gained, and the full-resolution work drops to one pooling, one resize of ``C``
      channels, an addition and a clip (measured: the full-resolution element-wise work, not
      the convolutions, bounds the speed of small generators in ONNX Runtime).
    * ``residual`` (default): ``y = clip(x + up(delta), 0, 1)``, the cheapest tail: measured on
      the 2-core development CPU, a generator's floor (the full-resolution element-wise work) is
      ~3.8 ms per 32-band 256 x 256 tile with this head against ~6-7 ms for the affine ones.
    * ``direct``: ``y = sigmoid(out)``.
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__(cfg.in_ch, cfg.widths, cfg.norm, cfg.upsample, "lrelu")
        self.cfg = cfg
        w = cfg.widths
        n_out = 2 * cfg.out_ch if cfg.head.startswith("affine") else cfg.out_ch
        self.head = nn.Conv2d(w[0], n_out, 3, 1, 1)
        nn.init.zeros_(self.head.weight)  # start as the identity (affine/residual)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        c = self.cfg.out_ch
        xc = x if self.cfg.in_ch == c else x[:, :c]  # no copy in the usual in_ch == out_ch case
        head = self.head(h)
        if self.cfg.head == "affine_lowres":
            d = head[:, :c] * F.avg_pool2d(xc, 2) + head[:, c:]
            return torch.clamp(xc + _up2(d), 0.0, 1.0)
        out = _up2(head)
        if self.cfg.head == "affine":
            return torch.clamp((1.0 + out[:, :c]) * xc + out[:, c:], 0.0, 1.0)
        if self.cfg.head == "residual":
            return torch.clamp(xc + out, 0.0, 1.0)
        return torch.sigmoid(out)


@dataclass(frozen=True)
class DetectorConfig:
    """Shape of a :class:`CloudDetector`."""

    in_ch: int
    widths: tuple[int, ...] = (8, 16, 32)
    classes: int = 4
    #: width of a per-pixel 1x1 "spectral stem" (convolution + ReLU) before the trunk; 0: none
    stem: int = 0
    #: a tile-wide context at the deepest level (:class:`GlobalContext`)
    context: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class GlobalContext(nn.Module):
    """``relu(h + W mean(h))``: every position of the deepest level sees a summary of the whole
    tile (a uniform bright tile is snow or cloud by what surrounds it, not by its colour). ``W``
    starts at zero, so a new block is the identity. Exports as GlobalAveragePool, a 1x1
    convolution and a broadcast addition."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.mix(F.adaptive_avg_pool2d(h, 1)))


class CloudDetector(EncoderDecoder):
    """Small VGG-style fully convolutional detector: a strided encoder of 3x3 convolutions, a
    light decoder with skips, per-pixel logits for clear / thin / thick / shadow at half
    resolution, resized bilinearly to the input size. ``forward`` returns logits; the exported
    model returns softmax probabilities (:class:`Probabilities`).

    With ``cfg.stem`` the bands first pass a 1x1 convolution and ReLU: that is the layer the
    band-agnostic detector (:class:`SpectralDetector`) builds from a band set's wavelengths."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg.stem or cfg.in_ch, cfg.widths, "batch", "bilinear", "relu")
        self.cfg = cfg
        self.stem = nn.Conv2d(cfg.in_ch, cfg.stem, 1) if cfg.stem else None
        self.head = nn.Conv2d(cfg.widths[0], cfg.classes, 1)
        if cfg.context:
            self.context = GlobalContext(cfg.widths[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = F.relu(self.stem(x))
        return super().features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _up2(self.head(self.features(x)))


class SpectralDetector(nn.Module):
    """One detector for any band set.

    The input is first mapped onto a fixed set of canonical bands (``n_canon``: blue, green, red,
    NIR, SWIR 1.6 um, SWIR 2.2 um in :mod:`export.detector`) by a band set's resampling matrix
    ``R`` (``(n_canon, n_bands)``, built from its wavelengths and widths); canonical bands the
    band set cannot feed are zero, and a ``present`` vector (1 per canonical band fed) adds a
    learned bias to the stem. Since ``stem(R x) + E present`` is linear in ``x``, :meth:`fold`
    turns it into a plain :class:`CloudDetector` for that band set whose 1x1 stem has
    ``W R`` as weights and ``b + E present`` as bias: one set of weights, one ONNX per band set,
    no run-time cost for the mapping."""

    def __init__(
        self, n_canon: int, widths: tuple[int, ...], stem: int = 16, context: bool = False
    ) -> None:
        super().__init__()
        self.net = CloudDetector(DetectorConfig(n_canon, tuple(widths), 4, stem, context))
        self.presence = nn.Linear(n_canon, stem, bias=False)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, n_canon, H, W)`` canonical reflectance (0 where absent); ``present``
        ``(N, n_canon)`` 0/1. Returns logits at full size."""
        assert self.net.stem is not None
        h = F.relu(self.net.stem(x) + self.presence(present)[:, :, None, None])
        return _up2(self.net.head(EncoderDecoder.features(self.net, h)))

    @torch.no_grad()
    def fold(
        self, matrix: torch.Tensor, present: torch.Tensor, temperature: float = 1.0
    ) -> CloudDetector:
        """The plain detector for one band set: ``matrix`` ``(n_canon, n_bands)`` maps the band
        set to canonical bands (zero rows where absent), ``present`` ``(n_canon,)``; logits are
        divided by ``temperature`` (calibration)."""
        assert self.net.stem is not None
        cfg = self.net.cfg
        out = CloudDetector(
            DetectorConfig(matrix.shape[1], cfg.widths, cfg.classes, cfg.stem, cfg.context)
        )
        state = {k: v for k, v in self.net.state_dict().items() if not k.startswith("stem.")}
        w = self.net.stem.weight[:, :, 0, 0] @ matrix.float()
        state["stem.weight"] = w[:, :, None, None]
        state["stem.bias"] = self.net.stem.bias + self.presence.weight @ present.float()
        state["head.weight"] = state["head.weight"] / temperature
        state["head.bias"] = state["head.bias"] / temperature
        out.load_state_dict(state)
        return out.eval()


class ResidualTrunk(nn.Module):
    """A residual-head :class:`UNet` without its full-resolution tail: outputs the half-resolution
    residual. The flight runtime applies ``clip(x + up2(residual), 0, 1)`` itself
    (``kumo_edge.runtime``), in one fused pass instead of four memory-bound graph operators."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        if net.cfg.head != "residual":
            raise ValueError("only residual-head generators have a separable tail")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.features(x))


class Probabilities(nn.Module):
    """Wraps a detector so that the exported graph outputs softmax probabilities at full size."""

    def __init__(self, det: CloudDetector) -> None:
        super().__init__()
        self.det = det

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.det(x), dim=1)


class HalfProbabilities(nn.Module):
    """The exported detector graph: softmax probabilities at half resolution. The runtime resizes
    them x2 (bilinear) in one numba pass: measured, the full-resolution resize and softmax were
    most of the detector's time per tile."""

    def __init__(self, det: CloudDetector) -> None:
        super().__init__()
        self.det = det

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.det.head(self.det.features(x)), dim=1)


def detector_probabilities(det: CloudDetector, x: torch.Tensor) -> torch.Tensor:
    """What the flight runtime computes from an exported detector: up2(softmax(half-res logits))."""
    return _up2(HalfProbabilities(det)(x))


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix): judges overlapping patches of ``cat(condition, image)``."""

    def __init__(self, in_ch: int, ndf: int = 32, layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, layers):
            nxt = ndf * min(2**i, 8)
            seq += [
                nn.Conv2d(ch, nxt, 4, 2, 1, bias=False),
                nn.InstanceNorm2d(nxt, affine=True),
                nn.LeakyReLU(0.2, True),
            ]
            ch = nxt
        nxt = ndf * min(2**layers, 8)
        seq += [
            nn.Conv2d(ch, nxt, 4, 1, 1, bias=False),
            nn.InstanceNorm2d(nxt, affine=True),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(nxt, 1, 4, 1, 1),
        ]
        self.net = nn.Sequential(*seq)

    def forward(self, cond: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([cond, img], dim=1))


class Pix2PixUNet(nn.Module):
    """The full-size pix2pix U-Net generator (Isola et al. 2017: ngf 64, 8 levels, 4x4 strided
    convolutions, transposed-convolution decoder), used only as the speed reference."""

    def __init__(self, in_ch: int, out_ch: int, ngf: int = 64, levels: int = 8) -> None:
        super().__init__()
        chs = [min(ngf * 2**i, ngf * 8) for i in range(levels)]
        self.down = nn.ModuleList()
        cin = in_ch
        for i, ch in enumerate(chs):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(cin, ch, 4, 2, 1, bias=i == 0))
            if 0 < i < levels - 1:
                layers.append(nn.BatchNorm2d(ch))
            self.down.append(nn.Sequential(*layers))
            cin = ch
        self.up = nn.ModuleList()
        for i in range(levels - 1, -1, -1):
            cin = chs[i] if i == levels - 1 else chs[i] * 2
            cout = out_ch if i == 0 else chs[i - 1]
            layers = [nn.ReLU(True), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=i == 0)]
            layers.append(nn.Tanh() if i == 0 else nn.BatchNorm2d(cout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for d in self.down:
            h = d(h)
            skips.append(h)
        h = self.up[0](skips[-1])
        for up, skip in zip(self.up[1:], reversed(skips[:-1]), strict=True):
            h = up(torch.cat([h, skip], 1))
        return h


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a zero input of ``shape`` (convolutions and
    transposed convolutions; the rest is negligible here)."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            total += out.numel() // out.shape[0] * k * out.shape[0]
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            total += inp[0].numel() * k

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(shape))
    model.train(was)
    for h in hooks:
        h.remove()
    return total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
