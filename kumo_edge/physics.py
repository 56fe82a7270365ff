"""The physics-constrained cloud remover: a network estimates the parameters of the thin-cloud
model per pixel, and the runtime inverts the model analytically.

The model (the same one :mod:`kumo_edge.clouds` renders, with its free parameters left free):

    observed(l) = surface(l) * illum(l) * t(l) + A * (1 - t(l))
    t(l)        = exp(-k * (l / 550 nm) ** -alpha)            two-way transmittance
    illum(l)    = fd(l) + (1 - fd(l)) * d,  fd(l) = min(f * (l / 550 nm) ** -q, 0.95)

with six parameters per pixel, whatever the number of bands: ``k`` the two-way optical depth
at 550 nm (air mass times optical thickness), ``alpha`` the Angstrom exponent, ``A`` the cloud
albedo (flat: clouds are white in the VNIR), ``d`` the direct-sun transmittance of a shadowing
cloud (1: no shadow), ``f`` the diffuse-light fraction at 550 nm and ``q`` how fast the
diffuse sky light falls towards the red (about 4 for a clean Rayleigh sky, less with aerosol). The model file (contract
output ``cloud_params_half``) returns them at half resolution, already in physical units;
:class:`PhysicsRemover` resizes them x2 and solves for the surface:

    surface(l) = (observed(l) - A * (1 - t(l))) / max(t(l), T_MIN) / max(illum(l), 0.05)

So the output is the input seen through an explicit, bounded correction: a pixel the network
calls cloud-free (``k = 0``, ``d = 1``) comes back unchanged, and the correction can only add or
remove what a cloud of the estimated thickness can add or remove.

**The cloud's spectrum, fitted per tile.** How fast a cloud grows transparent towards the
infrared (the Angstrom exponent) and how thick it is overall are properties of the cloud, not of
a pixel, and a network only knows the range it was trained on: outside it, it answers with what
it learned (measured: it returns alpha 0.7-1.0 for clouds of alpha 0.1 and 2.6). So each tile
fits them from its own data (:func:`fit_spectrum`): the network's thickness MAP is kept, and the
exponent ``alpha`` and a gain ``g`` on ``k`` are chosen so that the corrected surface no longer
follows the cloud, i.e. in every band its regression slope on the estimated ``k`` across the
tile is as small as possible (least squares over the bands; a coarse grid, then a finer one
around the best point). Surfaces do not know where clouds are, so a correct removal leaves no
trace of the cloud pattern; a wrong exponent leaves one that grows with ``k``, positive in the
bands it under-corrects and negative in those it over-corrects. The fit extrapolates where a
network cannot, and it needs contrast: tiles with fewer than 64 thin-cloud samples or a flat
``k`` map (standard deviation below 0.02) keep the network's values.

**The cloud's albedo, fitted per tile (an option).** A model trained with
``export.physics train --fit-albedo`` (contract ``kumo.fit_albedo`` = 1) was trained to pair
its depth map with an albedo fitted per tile, not with its own albedo map, and gets the same
fit here: for each exponent tried, the albedo in :data:`FIT_ALBEDO` that minimises the same
criterion, in closed form (the corrected surface ``x / t - A (1 / t - 1)`` is linear in ``A``),
with the gain held at 1 (gain and albedo trade off against each other where the cloud is thin).
Why: on the removal cross-validation, given the true depth and albedo the inversion gains
15-16 dB over the cloudy input in every band set, and either true map alone does not help (the
network's two estimates are fitted to each other, and its albedo only knows its training
range); given the true depth, this fit recovers the albedo. But a network trained this way
(rgb, 1,500 steps) did worse than the shipped recipe (+2.55 dB, the angle below the input's
on 7/15 scenes, against +3.24 and 8/15), so no shipped model uses it.

**Small depths are the network's noise floor.** On scenes it never saw, the network reads a
small optical depth on cloud-free ground too (measured on held-out AVIRIS tiles: median 0.03,
90th percentile 0.1, where the truth is 0), and every such pixel gets a small correction that
bends its spectrum. Depths below :data:`DEPTH_KNEE` are therefore softened before the fit
(:func:`soften_depth`: ``k -> k**2 / knee``, continuous at the knee and unchanged above it):
a pixel the network is unsure about is corrected less, one it calls clearly cloudy as before.

**Thick cloud** is decided by the estimated transmittance, not the detector's hard class: where
``exp(-k) < thick_transmittance`` (contract ``kumo.thick_transmittance``, 0.2 if absent) the
surface contributes too little to recover and the pixel keeps its input (flagged thick). And
where the detector is SURE of thick cloud (P(thick) >= :data:`THICK_VETO`, passed by the
stream), whatever the transmittance: on real clouds the network, trained on synthetic ones,
reads a bright, flat thick cloud as a thin cloud of albedo 1 over dark ground (optical depth
0.6-0.8) and "removes" it into a spectrum no ground has (a real Landsat-8 patch of thick cloud
over barren land: 0.69 0.63 0.66 0.69 -> 0.99 0.59 0.47 0.26), where the detector said thick
with P 0.73. Measured 2026-12-06 (``bench.removal_real``): on the 20 real L8 Biome patches
with thick cloud the mean change of the pixels the truth calls thick falls from 0.034 to 0.020
(rgbn), and the removal cross-validation loses 0.05-0.22 dB (README, "Thick cloud the detector
is sure of").

**Brightness from a learned remover (optional).** Where the network under-reads the optical
depth (measured with four bands: a tenth of the true depth on clouds finer than it was trained
on), the inversion keeps the right spectral shape but removes too little brightness. A physics
model file may name a companion learned remover (contract ``kumo.brightness_model``, a file
beside it): then each corrected pixel keeps the physics correction's spectral direction and
takes its length (the Euclidean norm over bands) from the companion's output, blended in by the
same weights. The spectral angle is the physics correction's; most of the PSNR, the learned
remover's. The learned remover may only change a pixel's brightness as far as the physics
remover sees cloud there: in full where its depth (after the knee and the fit) reaches
:data:`BRIGHTNESS_DEPTH`, in proportion below, not at all where it sees none (measured on 21
real Landsat-8 patches: the clear pixels' mean change 0.004 without this rule, as much as the
learned remover alone makes, and 0.0004 with it). Thick pixels and tiles the gate keeps are
not rescaled.

**The direction check.** A correction's spectral direction comes from the network's depth and
albedo, and where they are wrong (an albedo outside the range it was trained on, a
thickness read badly with three bands) it bends the spectrum further from the truth than the
cloud did: on grey ground (roads, roofs, airfields), whose colour a white cloud hardly
changes, the input's angle is already small and a wrong correction easily doubles it. A tile
carries its own evidence: clouds do not know where the land cover is, so the surface under
the cloud should look like the clear ground beside it. Per block of
:data:`DIRECTION_BLOCK` pixels holding both pixels the correction left (nearly) alone and
pixels it corrected, the runtime compares the mean unit spectrum of the corrected pixels with
that of the untouched ones, for each weight ``s`` in :data:`DIRECTION_WEIGHTS` on the
correction's direction (``unit((1 - s) unit(x) + s unit(y))``; every pixel keeps the
correction's length, so the brightness is unchanged), and keeps the weight of least cost,
summed over blocks by corrected pixels (ties: the larger weight). A block's cost is ``1 - cos``
of the angle between the two mean unit spectra plus the scatter the correction adds beyond the
clear ground's: ``max(0, rho_clear - rho_corrected)``, where ``rho`` is the length of a mean
unit spectrum (1 where every pixel has one colour, shorter the more the colours scatter). The
angle of the means alone cannot see a correction that gets a block's mean colour right and
bends each pixel its own way, as a depth and albedo read pixel by pixel from three bands do;
measured on the removal cross-validation (README, "The direction check", since 2026-12-07,
sixth session), the term lowers the mean ratio of output to input angle for rgb by
0.007-0.010 in every fold seed and cloud draw, for hsi32 by 0.002, leaves rgbn's within
0.001, and PSNR within 0.002 dB. Tiles without such
blocks (all cloud, or no cloud the correction touched) keep ``s = 1``, and pixels the
correction left alone are not touched. Pixels the detector calls cloud shadow (P(shadow) at
:data:`DIRECTION_SHADE` or above, passed by the stream) are no evidence: a cloud's shadow is
lit by the sky alone, bluer than the sunlit ground the check compares the correction with, and
as the reference it pulled right corrections towards blue. The detector finds only part of some
shadows, so a block whose reference it gives a mean P(shadow) of :data:`DIRECTION_SUSPECT` or
more AND which is darker on average than the block's corrected pixels is suspect. With three
bands (:data:`DIRECTION_UNSURE_BANDS`), whose depth and albedo leave a correction's colour
least constrained, a suspect block is left out, and a tile whose only evidence is suspect
keeps :data:`DIRECTION_UNSURE` (half) of the weight that evidence chooses, between trusting it
and keeping the input's colour; and such a remover keeps the least weight whose cost lies
within :data:`DIRECTION_MARGIN` of the way from the least cost to the input colour's, so it
moves a colour only as far as the evidence clearly asks. With more bands every block counts
and the least cost decides (measured: README, "The direction check", since 2026-12-07,
seventh session: it puts rgb's worst scenes below the input's angle, at a small cost in the
mean angle; on rgbn and hsi32 it would only cost). The correction pass gathers this
evidence as it writes each sampled row (:func:`_correct`); where the brightness companion changes the output
afterwards, it is read from the output instead (:func:`_direction_evidence`), with the same
sums. The report gives each tile whose weight fell below 1 its ``direction_weight`` (and
``direction_doubt`` where it was taken unsure). The
check cannot make a pixel worse than both the input and the full correction: its direction
lies on the arc between theirs, and for non-negative spectra the angle to any true spectrum
along that arc is largest at one of its ends (up to the clipping of values above 1).
Measured on the removal cross-validation (``bench.removal_cv``, the ``no direction check``
rows): the angle below the input's on 13/15 held-out scenes for rgb (8/15 without), and the
mean ratio of output to input angle lower in every band set, for PSNR changes within 0.01 dB.

**The shadow gate.** A network trained to read cloud shadow (``export.physics train
--illum-weight``; the rgbn remover since 2026-12-07) also reads some sunlit ground beside a
cloud as shadowed and brightens it, and the detector's blend alone (``1 - P(clear)``) lets a
part of that through wherever the detector is unsure. So, where the correction is blended by
the detector, its shadow part is taken in proportion to the detector's share of shadow in
what it sees as not cloud (:func:`gate_shadow`: ``d -> 1 - (1 - d) P(shadow) / (P(shadow) +
P(clear))``; under cloud, where that sum is below :data:`SHADOW_GATE_MIN`, ``d`` stands: a
shadow there is cast on cloudy ground, which the detector calls cloud). Measured on the rgbn
removal cross-validation (``bench.removal_cv``, the ``no shadow gate`` row) and on the real
L8 Biome patches (``bench.removal_real``): README, "The shadow gate". Removers whose network
reads no shadow (``d`` = 1) are unchanged by it.

**Do no harm.** Every tile's correction is checked before it is used (:func:`check_tile`); a
tile that fails keeps its input unchanged and is reported ``kept`` with the reason:

* ``out_of_range``: where the network estimates thin cloud (two-way transmittance at 550 nm
  >= 0.5, so the inversion divides by at most 2 and small errors stay small), the MAJORITY of
  the corrected pixels would need a reflectance below -0.05 in some band: the estimated cloud
  is brighter than the data allows, so it is not there (a uniform bright roof or sand read as
  haze). Negative values at medium thickness, or in a minority of pixels, are expected from a
  cloud that differs from the model and are clipped instead (measured: tiles with a third of
  such pixels still gained 6-7 dB).
* ``disagrees_with_detector``: where the detector is sure the sky is clear (P(clear) >= 0.9,
  at least 64 pixels) the correction changes reflectance by more than 0.01 on average: the two
  models contradict each other and the input is the safe answer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from . import _runtime_kernels as _rk
from .bands import BandSet, band_indices
from .errors import BandMappingError, ConfigError, ModelContractError, ShapeError
from .tiling import batch_index

if TYPE_CHECKING:
    from .runtime import Model

#: Number of per-pixel parameters the network returns: k, alpha, A, d, f, q.
N_PARAMS = 6
#: Smallest transmittance the inversion divides by.
T_MIN = 0.05
#: Default thick-cloud rule: two-way transmittance at 550 nm below this is not recovered.
THICK_TRANSMITTANCE = 0.2
#: ... and pixels the detector calls thick with at least this probability are not either
#: (module docstring, "Thick cloud").
THICK_VETO = 0.7
#: Gate thresholds (module docstring).
OUT_OF_RANGE_FRACTION = 0.5
OUT_OF_RANGE_VALUE = -0.05
THIN_TRANSMITTANCE = 0.5
CLEAR_P = 0.9
CLEAR_MIN_PIXELS = 64
CLEAR_CHANGE = 0.01
CHANGED = 0.005
#: Per-tile spectral fit (:func:`fit_spectrum`): samples per tile, the least contrast it needs,
#: and its search grid (Angstrom exponent; gain on the network's optical depth).
FIT_SAMPLES = 512
FIT_MIN_SAMPLES = 64
FIT_MIN_STD = 0.02
FIT_ALPHA = (-0.5, 3.5)
FIT_GAIN = (0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)
#: The range of a cloud albedo fitted per tile (models whose contract asks for it,
#: ``kumo.fit_albedo``; module docstring).
FIT_ALBEDO = (0.3, 1.0)
#: The brightness companion's length is taken in full where the physics remover's optical
#: depth reaches this, in proportion below (module docstring).
BRIGHTNESS_DEPTH = 0.05
#: The direction check (:func:`check_direction`): the weights on the correction's spectral
#: direction it tries; pixels whose correction moved them by less than DIRECTION_REFERENCE
#: (relative to their length) are the clear reference, by more than DIRECTION_MOVED the
#: corrected pixels; the blocks (pixels) in which the two are compared, and the samples of each
#: a block needs; it reads every DIRECTION_STRIDE-th row and column (its statistics are means).
DIRECTION_WEIGHTS = tuple(i / 8 for i in range(9))
DIRECTION_REFERENCE = 0.02
DIRECTION_MOVED = 0.05
DIRECTION_BLOCK = 32
DIRECTION_MIN_PIXELS = 16
DIRECTION_STRIDE = 2
#: Pixels the detector gives at least this P(shadow) are no evidence for the direction check
#: (the removal's own shadow point, kumo_edge.stream.REMOVAL_SHADOW_THRESHOLD).
DIRECTION_SHADE = 0.5
#: A block whose reference pixels the detector gives a mean P(shadow) of at least this, and
#: which are darker on average than the block's corrected pixels, may be lit by the sky alone
#: (a shadow the detector half sees): its reference is suspect (:func:`_evidence_cost`). For
#: removers of at most DIRECTION_UNSURE_BANDS bands, suspect blocks are left out and a tile
#: whose only evidence is suspect takes DIRECTION_UNSURE of the weight that evidence chooses;
#: with more bands (a correction's colour better constrained) every block counts as before.
DIRECTION_SUSPECT = 0.3
DIRECTION_UNSURE = 0.5
DIRECTION_UNSURE_BANDS = 3
#: Where unsure (removers of at most DIRECTION_UNSURE_BANDS bands), the direction check keeps
#: the least weight whose cost lies within this share of the way from the least cost to the
#: input colour's cost: it moves a colour only as far as the evidence clearly asks (the
#: smallest of 0.05, 0.1, ... that kept every rgb fold seed and cloud draw it was chosen on
#: 0.005 deg below the input's angle; confirmed on a draw it was not chosen on, README).
DIRECTION_MARGIN = 0.15
#: Optical depths below this are softened (:func:`soften_depth`); chosen by nested
#: cross-validation over the hyperspectral corpus (bench.removal_cv, ``--knees``).
DEPTH_KNEE = 0.15
#: The shadow gate (:func:`gate_shadow`): where the detector's P(shadow) + P(clear) is below
#: this, it sees cloud there, and the network's shadow estimate stands as it is.
SHADOW_GATE_MIN = 0.2


def spectral_terms(bands: BandSet) -> npt.NDArray[np.float32]:
    """Per band: ``ln(l / 550 nm)``."""
    return np.log(bands.centers / 550.0).astype(np.float32)


@nb.njit(inline="always")
def _exp(z):  # pragma: no cover - numba
    """``exp(z)`` for float32 without a libm call, so that the band loops vectorise (numba has
    no vector exp without Intel SVML): ``exp(z / 16) ** 16``, the inner one a degree-8 Taylor
    polynomial. Relative error below 2e-6 for |z| <= 4 (every value the inversion keeps: a
    pixel with a larger exponent is thick cloud, kept as input) and below 2e-4 down to z = -16;
    clamped to [-16, 4] (exp(-16) = 1e-7, below the smallest transmittance used)."""
    s = min(max(z, np.float32(-16.0)), np.float32(4.0)) * np.float32(0.0625)
    p = np.float32(1.0 / 40320.0)
    p = p * s + np.float32(1.0 / 5040.0)
    p = p * s + np.float32(1.0 / 720.0)
    p = p * s + np.float32(1.0 / 120.0)
    p = p * s + np.float32(1.0 / 24.0)
    p = p * s + np.float32(1.0 / 6.0)
    p = p * s + np.float32(0.5)
    p = p * s + np.float32(1.0)
    p = p * s + np.float32(1.0)
    p = p * p
    p = p * p
    p = p * p
    return p * p


@nb.njit(inline="always")
def _surface_e(x, k, e, alb, d, f, q, lb, t_min):  # pragma: no cover - numba
    """:func:`_surface` given the cloud's spectral factor ``e = exp(-a * lb)`` of the band."""
    one = np.float32(1.0)
    t = _exp(-k * e)
    fd = min(f * _exp(-q * lb), np.float32(0.95))
    illum = max(fd + (one - fd) * d, np.float32(0.05))
    return (x - alb * (one - t)) / (max(t, t_min) * illum)


@nb.njit(inline="always")
def _surface(x, k, a, alb, d, f, q, lb, t_min):  # pragma: no cover - numba
    """The model inverted for one band of one pixel (module docstring); ``d`` already in [0, 1],
    ``k`` >= 0, ``lb`` = ln(l / 550 nm)."""
    return _surface_e(x, k, _exp(-a * lb), alb, d, f, q, lb, t_min)


@nb.njit(inline="always")
def _gated_sun(d, ps, pc):  # pragma: no cover - numba
    """One pixel's direct-sun transmittance ``d`` (clipped to [0, 1]) through the shadow gate
    (:func:`gate_shadow`), given the detector's P(shadow) ``ps`` and P(clear) ``pc``."""
    one = np.float32(1.0)
    d = min(max(d, np.float32(0.0)), one)
    den = ps + pc
    if den >= np.float32(SHADOW_GATE_MIN):
        d = one - (one - d) * (ps / den)
    return d


@nb.njit(parallel=True, cache=True)
def _invert(x, p, lnr, t_min, y, t550):  # pragma: no cover - numba
    n, c, h, w = x.shape
    for job in nb.prange(n * h):
        i = job // h
        r = job % h
        for col in range(w):
            k = max(p[i, 0, r, col], np.float32(0.0))
            a = p[i, 1, r, col]
            alb = p[i, 2, r, col]
            d = min(max(p[i, 3, r, col], np.float32(0.0)), np.float32(1.0))
            f = p[i, 4, r, col]
            q = p[i, 5, r, col]
            t550[i, r, col] = np.exp(-k)
            for b in range(c):
                y[i, b, r, col] = _surface(x[i, b, r, col], k, a, alb, d, f, q, lnr[b], t_min)


@nb.njit(parallel=True, cache=True, fastmath=True)
def _correct(
    x,
    p,
    lnr,
    t_min,
    thick_t,
    pclear,
    pshadow,
    gate,
    valid,
    shade,
    veto,
    weigh,
    one_alpha,
    alpha,
    y,
    t550,
    stats,
    ev,
):  # pragma: no cover - numba
    """The runtime's whole correction in one pass: inversion, clip to [0, 1], input kept where
    the estimated cloud is thick, blended in by ``1 - pclear`` when ``weigh`` (else taken whole;
    where ``gate``, each pixel's direct-sun transmittance first through the shadow gate,
    :func:`_gated_sun`, with ``pshadow``, the detector's P(shadow), zeros where it gave none),
    and per tile row the counts the gate needs (``stats[i, r]``: thin changed pixels, those
    below OUT_OF_RANGE_VALUE, sure-clear pixels, their summed mean absolute change, all of the
    unblended correction). Loops run along columns, so they vectorise. Where ``one_alpha[i]``,
    tile ``i``'s pixels share the Angstrom exponent ``alpha[i]`` (:func:`fit_spectrum` set it),
    so its spectral factor is computed once per band instead of once per pixel and band (the
    same values: what :func:`_surface` computes). A flag, not NaN: under ``fastmath`` a NaN
    test may be compiled away. Each job is one band of rows of one tile, the height of a
    direction-check block (:class:`_Evidence` ``ev``): where ``ev.on``, the sampled rows'
    evidence is gathered while they are in cache (:func:`_evidence_row`), on the pixels that
    are valid, not thick and not in ``shade`` (the detector's shadow calls), with their
    P(shadow), as :func:`_direction_evidence` reads it from the output."""
    n, c, h, w = x.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    # taken out before the parallel loop: inside one, writes to arrays held in a tuple argument
    # are lost (numba 0.68; numba issues #7135, #10338, open)
    on, st, bb = ev.on, ev.st, ev.bb
    ref_lim, moved_lim, weights = ev.ref_lim, ev.moved_lim, ev.weights
    ref, cor, n_ref, n_cor = ev.ref, ev.cor, ev.n_ref, ev.n_cor
    shade_ref, len_ref, len_cor = ev.shade_ref, ev.len_ref, ev.len_cor
    band = bb * st  # rows per job: one row of direction-check blocks
    nbh = (h + band - 1) // band
    for job in nb.prange(n * nbh):
        i = job // nbh
        br = job % nbh
        tile_alpha = alpha[i]
        same_alpha = one_alpha[i]
        k = np.empty(w, np.float32)
        a = np.empty(w, np.float32)
        alb = np.empty(w, np.float32)
        dd = np.empty(w, np.float32)
        ff = np.empty(w, np.float32)
        qq = np.empty(w, np.float32)
        lo = np.empty(w, np.float32)
        dmax = np.empty(w, np.float32)
        dsum = np.empty(w, np.float32)
        wgt = np.empty(w, np.float32)
        ws = (w + st - 1) // st if on else 0  # scratch of the evidence
        px = np.empty((ws, c))
        py = np.empty((ws, c))
        fa = np.empty(weights.shape[0])
        fb = np.empty(weights.shape[0])
        for r in range(br * band, min(br * band + band, h)):
            for col in range(w):
                k[col] = max(p[i, 0, r, col], zero)
                a[col] = p[i, 1, r, col]
                alb[col] = p[i, 2, r, col]
                dd[col] = (
                    _gated_sun(p[i, 3, r, col], pshadow[i, r, col], pclear[i, r, col])
                    if gate
                    else min(max(p[i, 3, r, col], zero), one)
                )
                ff[col] = p[i, 4, r, col]
                qq[col] = p[i, 5, r, col]
                t550[i, r, col] = np.exp(-k[col])
                lo[col] = np.float32(np.inf)
                dmax[col] = zero
                dsum[col] = zero
                wgt[col] = one - pclear[i, r, col] if weigh else one
                if t550[i, r, col] < thick_t or veto[i, r, col]:  # thick: the input is kept
                    wgt[col] = zero
            for b in range(c):
                lb = lnr[b]
                xr = x[i, b, r]
                yr = y[i, b, r]
                e_tile = _exp(-tile_alpha * lb) if same_alpha else one
                for col in range(w):
                    e = e_tile if same_alpha else _exp(-a[col] * lb)
                    v = _surface_e(
                        xr[col], k[col], e, alb[col], dd[col], ff[col], qq[col], lb, t_min
                    )
                    lo[col] = min(lo[col], v)
                    diff = abs(v - xr[col])
                    dmax[col] = max(dmax[col], diff)
                    dsum[col] += diff
                    yr[col] = xr[col] + wgt[col] * (min(max(v, zero), one) - xr[col])
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for col in range(w):
                if not valid[i, r, col] or veto[i, r, col]:
                    continue
                if t550[i, r, col] >= THIN_TRANSMITTANCE and dmax[col] > CHANGED:
                    s0 += one
                    if lo[col] < OUT_OF_RANGE_VALUE:
                        s1 += one
                if t550[i, r, col] >= thick_t and pclear[i, r, col] >= CLEAR_P:
                    s2 += one
                    s3 += dsum[col] / c
            stats[i, r, 0] = s0
            stats[i, r, 1] = s1
            stats[i, r, 2] = s2
            stats[i, r, 3] = s3
            if on and r % st == 0:
                for col in range(w):  # the pixels the check may use: valid, not thick, lit
                    use = valid[i, r, col] and not shade[i, r, col] and not veto[i, r, col]
                    wgt[col] = one if use and t550[i, r, col] >= thick_t else zero
                _evidence_row(
                    x[i], y[i], r, wgt, pshadow[i, r], st, bb, ref_lim, moved_lim, weights,
                    ref[i], cor[i], n_ref[i], n_cor[i], shade_ref[i], len_ref[i], len_cor[i],
                    br, px, py, fa, fb,
                )  # fmt: skip


def invert(
    x: npt.NDArray[np.float32], params: npt.NDArray[np.float32], bands: BandSet
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The surface under the estimated cloud, unclipped, and the 550 nm transmittance.

    Args:
        x: ``(N, C, H, W)`` observed reflectance.
        params: ``(N, 6, H, W)`` full-resolution parameters (k, alpha, A, d, f, q).
        bands: The band set of ``x``.
    """
    if params.shape != (x.shape[0], N_PARAMS, *x.shape[2:]):
        raise ShapeError(
            f"params must be {(x.shape[0], N_PARAMS, *x.shape[2:])}, got {params.shape}"
        )
    y = np.empty_like(x)
    t550 = np.empty((x.shape[0], *x.shape[2:]), np.float32)
    _invert(
        np.ascontiguousarray(x),
        np.ascontiguousarray(params),
        spectral_terms(bands),
        np.float32(T_MIN),
        y,
        t550,
    )
    return y, t550


@nb.njit(inline="always")
def _fit_cost(xs, ks, kc, den, As, lnr, g, alpha, ns):  # pragma: no cover - numba
    """Sum over bands of the squared regression slope, on the centred ``k`` (``den`` its sum of
    squares), of the surface corrected with gain ``g`` and exponent ``alpha``; samples
    ``[:ns]``."""
    c = xs.shape[0]
    cost = 0.0
    for b in range(c):
        u = np.float32(g) * _exp(-np.float32(alpha) * lnr[b])
        acc = np.float32(0.0)
        for j in range(ns):
            t = max(_exp(-u * ks[j]), np.float32(T_MIN))
            acc += ((xs[b, j] - As[j]) / t + As[j]) * kc[j]
        slope = acc / den
        cost += slope * slope
    return cost


@nb.njit(inline="always")
def _fit_cost_albedo(xs, ks, kc, den, lnr, g, alpha, ns, lo, hi):  # pragma: no cover - numba
    """:func:`_fit_cost` with one albedo for the tile, the value in ``[lo, hi]`` with the least
    cost: the corrected surface ``x / t - A (1 / t - 1)`` is linear in it, so that value has a
    closed form. Returns ``(cost, albedo)``."""
    c = xs.shape[0]
    pb = np.empty(c, np.float32)
    qb = np.empty(c, np.float32)
    for b in range(c):
        u = np.float32(g) * _exp(-np.float32(alpha) * lnr[b])
        acc = np.float32(0.0)
        acq = np.float32(0.0)
        for j in range(ns):
            t = max(_exp(-u * ks[j]), np.float32(T_MIN))
            acc += xs[b, j] / t * kc[j]
            acq += (np.float32(1.0) / t - np.float32(1.0)) * kc[j]
        pb[b] = acc / den
        qb[b] = acq / den
    num = 0.0
    q2 = 0.0
    for b in range(c):
        num += pb[b] * qb[b]
        q2 += qb[b] * qb[b]
    a_best = min(max(num / q2 if q2 > 0 else lo, lo), hi)
    cost = 0.0
    for b in range(c):
        slope = pb[b] - a_best * qb[b]
        cost += slope * slope
    return cost, a_best


@nb.njit(inline="always")
def _tile_cost(xs, ks, kc, den, As, lnr, g, alpha, ns, alb):  # pragma: no cover - numba
    """``(cost, albedo)``: :func:`_fit_cost_albedo` when ``alb`` is a range (``lo < hi``), else
    :func:`_fit_cost` with the samples' network albedo (albedo NaN)."""
    if alb[0] < alb[1]:
        return _fit_cost_albedo(xs, ks, kc, den, lnr, g, alpha, ns, alb[0], alb[1])
    return _fit_cost(xs, ks, kc, den, As, lnr, g, alpha, ns), np.nan


@nb.njit(parallel=True, cache=True, fastmath=True)
def _fit_spectrum(
    x, p, valid, lnr, thick_t, alphas, gains, gain_steps, nsamp, min_n, min_std, alb, out
):  # pragma: no cover - numba
    """Per tile ``(alpha, g, fitted, albedo)`` into ``out[i]`` (:func:`fit_spectrum`);
    ``gain_steps``: the factors on the gain each refinement tries."""
    n, c, h, w = x.shape
    kmax = -np.log(thick_t)
    for i in nb.prange(n):
        out[i, 0] = np.nan
        out[i, 1] = 1.0
        out[i, 2] = 0.0
        out[i, 3] = np.nan
        cnt = 0
        for r in range(h):
            for col in range(w):
                if valid[i, r, col] and p[i, 0, r, col] <= kmax:
                    cnt += 1
        if cnt < min_n:
            continue
        step = max(1, cnt // nsamp)
        ns = min(nsamp, cnt // step)
        xs = np.empty((c, ns), np.float32)
        ks = np.empty(ns, np.float32)
        As = np.empty(ns, np.float32)
        kc = np.empty(ns, np.float32)
        seen = 0
        j = 0
        for r in range(h):
            for col in range(w):
                kk = p[i, 0, r, col]
                if valid[i, r, col] and kk <= kmax:
                    if seen % step == 0 and j < ns:
                        ks[j] = max(kk, np.float32(0.0))
                        As[j] = p[i, 2, r, col]
                        for b in range(c):
                            xs[b, j] = x[i, b, r, col]
                        j += 1
                    seen += 1
        mean = 0.0
        for j in range(ns):
            mean += ks[j]
        mean /= ns
        var = np.float32(0.0)
        for j in range(ns):
            kc[j] = ks[j] - mean
            var += kc[j] * kc[j]
        if np.sqrt(var / ns) < min_std:
            continue
        best = np.inf
        ba = 0.0
        bg = 1.0
        bal = np.nan
        for gi in range(gains.size):
            for ai in range(alphas.size):
                cost, al = _tile_cost(xs, ks, kc, var, As, lnr, gains[gi], alphas[ai], ns, alb)
                if cost < best:
                    best, ba, bg, bal = cost, alphas[ai], gains[gi], al
        da = (alphas[1] - alphas[0]) / 2.0
        for _ in range(2):  # two refinements around the best point
            a0, g0 = ba, bg
            for fa in (-1.0, 0.0, 1.0):
                for fg in gain_steps:
                    if fa == 0.0 and fg == 1.0:
                        continue
                    cost, al = _tile_cost(xs, ks, kc, var, As, lnr, g0 * fg, a0 + fa * da, ns, alb)
                    if cost < best:
                        best, ba, bg, bal = cost, a0 + fa * da, g0 * fg, al
            da /= 2.0
        out[i, 0] = ba
        out[i, 1] = bg
        out[i, 2] = 1.0
        out[i, 3] = bal


def fit_spectrum(
    x: npt.NDArray[np.float32],
    params: npt.NDArray[np.float32],
    bands: BandSet,
    valid: npt.NDArray[np.bool_] | None = None,
    thick_transmittance: float = THICK_TRANSMITTANCE,
    albedo: tuple[float, float] | None = None,
) -> npt.NDArray[np.float32]:
    """Fit each tile's Angstrom exponent and optical-depth gain to its own data (module
    docstring) and write them into ``params`` in place (``k *= g``, ``alpha = fitted``).

    Args:
        x: ``(N, C, H, W)`` observed reflectance.
        params: ``(N, 6, H, W)`` full-resolution parameters from the network.
        bands: The band set of ``x``.
        valid: ``(N, H, W)`` pixels to fit on (default all).
        thick_transmittance: Pixels estimated thicker than this are left out of the fit.
        albedo: ``(lo, hi)``: also fit one cloud albedo per tile in this range (it replaces
            the network's map where the tile is fitted); None: keep the network's.

    Returns:
        ``(N, 4)``: per tile the fitted ``alpha`` (NaN where not fitted), ``g``, whether the
        tile was fitted (1) or kept the network's values (0), and the fitted albedo (NaN: the
        network's).
    """
    n, _, h, w = x.shape
    ok = np.ones((n, h, w), bool) if valid is None else np.ascontiguousarray(valid)
    out = np.empty((n, 4), np.float32)
    step = 0.5
    alphas = np.arange(FIT_ALPHA[0], FIT_ALPHA[1] + step / 2, step, dtype=np.float32)
    # with the albedo fitted, the gain stays 1: the two trade off (module docstring)
    gains, gain_steps = ((1.0,), (1.0,)) if albedo else (FIT_GAIN, (0.9, 1.0, 1.1))
    _fit_spectrum(
        np.ascontiguousarray(x, dtype=np.float32),
        params,
        ok,
        spectral_terms(bands),
        np.float32(thick_transmittance),
        alphas,
        np.array(gains, np.float32),
        np.array(gain_steps, np.float64),  # the factors as the float literals they were
        FIT_SAMPLES,
        FIT_MIN_SAMPLES,
        np.float32(FIT_MIN_STD),
        np.array(albedo or (0.0, 0.0), np.float32),
        out,
    )
    for i in np.flatnonzero(out[:, 2] > 0):
        params[i, 0] *= out[i, 1]
        params[i, 1] = out[i, 0]
        if not np.isnan(out[i, 3]):
            params[i, 2] = out[i, 3]
    return out


def gate_shadow(
    params: npt.NDArray[np.float32],
    p_clear: npt.NDArray[np.float32],
    p_shadow: npt.NDArray[np.float32],
) -> None:
    """In place: the shadow part of the correction in proportion to the detector's share of
    shadow in what it sees as not cloud (module docstring, "The shadow gate"): the direct-sun
    transmittance ``d = params[:, 3]`` becomes ``1 - (1 - d) * g`` with ``g = P(shadow) /
    (P(shadow) + P(clear))``, where that sum reaches :data:`SHADOW_GATE_MIN`; elsewhere (the
    detector sees cloud) ``d`` stands. ``p_clear``, ``p_shadow``: ``(N, H, W)``. The runtime
    does not call this: :meth:`PhysicsRemover.correct` gates each pixel inside its correction
    pass (:func:`_gated_sun`, the same arithmetic), leaving the estimate as it was."""
    _gate_params(params, np.asarray(p_clear, np.float32), np.asarray(p_shadow, np.float32))


@nb.njit(cache=True)
def _gate_params(p, pc, ps):  # pragma: no cover - numba
    n, _, h, w = p.shape
    for i in range(n):
        for r in range(h):
            for col in range(w):
                p[i, 3, r, col] = _gated_sun(p[i, 3, r, col], ps[i, r, col], pc[i, r, col])


def soften_depth(params: npt.NDArray[np.float32], knee: float = DEPTH_KNEE) -> None:
    """In place: the optical depth ``params[:, 0]`` below ``knee`` becomes ``k**2 / knee``
    (module docstring); negative depths become 0. ``knee`` 0 leaves the depths as they are.
    float32 ``(N, P, H, W)`` params in one numba pass (the same values as the numpy rule:
    0.30 -> 0.03 ms per hsi32 tile), anything else in numpy."""
    if params.dtype == np.float32 and params.ndim == 4 and params.flags.c_contiguous:
        _soften(params, np.float32(knee))
        return
    k = params[:, 0]
    np.maximum(k, 0.0, out=k)
    if knee > 0:
        small = k < knee
        k[small] = k[small] * k[small] / np.float32(knee)


@nb.njit(parallel=True, cache=True)
def _soften(params, knee):  # pragma: no cover - numba
    """:func:`soften_depth` on C-contiguous float32 ``(N, P, H, W)`` params."""
    n, _, h, w = params.shape
    zero = np.float32(0.0)
    for r in nb.prange(n * h):
        row = params[r // h, 0, r % h]
        for x in range(w):
            k = max(row[x], zero)
            row[x] = k * k / knee if knee > zero and k < knee else k


def check_tile(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    t550: npt.NDArray[np.float32],
    p_clear: npt.NDArray[np.float32] | None,
    valid: npt.NDArray[np.bool_] | None = None,
    thick_transmittance: float = THICK_TRANSMITTANCE,
) -> str | None:
    """The do-no-harm check of one tile's correction (module docstring): None if it passes,
    else the reason. ``x``/``y`` ``(C, H, W)`` input and unclipped correction, ``t550`` the
    estimated two-way transmittance at 550 nm, ``p_clear`` the detector's P(clear) or None."""
    ok = np.ones(t550.shape, bool) if valid is None else valid
    diff = np.abs(y - x)
    thin = ok & (t550 >= THIN_TRANSMITTANCE) & (diff.max(0) > CHANGED)
    if (
        thin.any()
        and float((y[:, thin].min(0) < OUT_OF_RANGE_VALUE).mean()) > OUT_OF_RANGE_FRACTION
    ):
        return "out_of_range"
    if p_clear is not None:
        sure = ok & (t550 >= thick_transmittance) & (p_clear >= CLEAR_P)
        if int(sure.sum()) >= CLEAR_MIN_PIXELS and float(diff[:, sure].mean()) > CLEAR_CHANGE:
            return "disagrees_with_detector"
    return None


class _Evidence(NamedTuple):
    """The direction check's evidence (:func:`check_direction`) as :func:`_correct` gathers
    it: ``on`` (gather at all), stride ``st``, block ``bb`` (samples), the reference and moved
    limits, the weights, and per tile and block the sums of the reference pixels' unit spectra
    ``ref`` ``(N, B, C)``, of each weight's blended corrected directions ``cor``
    ``(N, B, W, C)``, the counts ``n_ref``, ``n_cor`` ``(N, B)``, and ``(N, B)`` sums of the
    reference pixels' P(shadow) ``shade_ref`` and lengths (Euclidean norm over bands)
    ``len_ref``, and of the corrected pixels' lengths ``len_cor``."""

    on: bool
    st: int
    bb: int
    ref_lim: float
    moved_lim: float
    weights: npt.NDArray[np.float64]
    ref: npt.NDArray[np.float64]
    cor: npt.NDArray[np.float64]
    n_ref: npt.NDArray[np.int64]
    n_cor: npt.NDArray[np.int64]
    shade_ref: npt.NDArray[np.float64]
    len_ref: npt.NDArray[np.float64]
    len_cor: npt.NDArray[np.float64]


def _evidence(
    n: int, c: int, h: int, w: int, on: bool, stride: int = DIRECTION_STRIDE
) -> _Evidence:
    """Empty :class:`_Evidence` for ``n`` tiles of ``c`` bands x ``h`` x ``w`` (with one block
    per tile where not ``on``: nothing is gathered)."""
    bb = max(DIRECTION_BLOCK // stride, 1)
    hs, ws = (h + stride - 1) // stride, (w + stride - 1) // stride
    nblk = ((hs + bb - 1) // bb) * ((ws + bb - 1) // bb) if on else 1
    nw = len(DIRECTION_WEIGHTS)
    return _Evidence(
        bool(on),
        int(stride),
        int(bb),
        float(DIRECTION_REFERENCE),
        float(DIRECTION_MOVED),
        np.asarray(DIRECTION_WEIGHTS, np.float64),
        np.zeros((n, nblk, c)),
        np.zeros((n, nblk, nw, c)),
        np.zeros((n, nblk), np.int64),
        np.zeros((n, nblk), np.int64),
        np.zeros((n, nblk)),
        np.zeros((n, nblk)),
        np.zeros((n, nblk)),
    )


@nb.njit(inline="always")
def _evidence_pixel(u, v, ref_lim, moved_lim, weights, refk, cork, fa, fb):  # pragma: no cover
    """One sampled pixel's part of the direction check (:func:`check_direction`): ``u``/``v``
    its input and corrected spectra (float64). A pixel the correction moved by less than
    ``ref_lim`` of its length adds its unit spectrum to ``refk`` and returns 1 and its length;
    one moved by more than ``moved_lim`` adds, per weight ``s``, ``unit((1 - s) unit(u) + s
    unit(v))`` to ``cork[m]`` and returns 2 and its corrected length; else 0 (and 0).
    ``fa``/``fb``: scratch, one per weight."""
    c = u.shape[0]
    xx = 0.0
    yy = 0.0
    xy = 0.0
    for b in range(c):
        xx += u[b] * u[b]
        yy += v[b] * v[b]
        xy += u[b] * v[b]
    nx = max(np.sqrt(xx), 1e-6)
    ny = max(np.sqrt(yy), 1e-6)
    moved = np.sqrt(max(xx + yy - 2.0 * xy, 0.0) / max(xx, 1e-12))
    if moved < ref_lim:
        for b in range(c):
            refk[b] += u[b] / nx
        return 1, nx
    if moved <= moved_lim:
        return 0, 0.0
    cos = xy / (nx * ny)
    nw = weights.shape[0]
    for m in range(nw):
        s = weights[m]
        norm = np.sqrt(max((1 - s) ** 2 + s * s + 2 * s * (1 - s) * cos, 1e-12))
        fa[m] = (1 - s) / norm / nx
        fb[m] = s / norm / ny
    for m in range(nw):
        acc = cork[m]
        a_ = fa[m]
        b_ = fb[m]
        for b in range(c):
            acc[b] += a_ * u[b] + b_ * v[b]
    return 2, ny


@nb.njit(cache=True, fastmath=True)
def _evidence_row(
    x,
    y,
    r,
    use,
    shade,
    st,
    bb,
    ref_lim,
    moved_lim,
    weights,
    ref,
    cor,
    n_ref,
    n_cor,
    shade_ref,
    len_ref,
    len_cor,
    br,
    px,
    py,
    fa,
    fb,
):  # pragma: no cover - numba
    """Row ``r`` of one tile's input ``x`` and output ``y`` ``(C, H, W)`` into that tile's
    evidence (:class:`_Evidence`: ``ref``, ``cor``, ``n_ref``, ``n_cor``, ``shade_ref``,
    ``len_ref``, ``len_cor`` of the tile), block row ``br``: every ``st``-th pixel where
    ``use`` (> 0; ``shade``: the row's P(shadow)), copied pixel by pixel into
    ``px``/``py`` ``(>= W / st, C)`` first, so the band loops vectorise. One compiled function
    that both :func:`_correct` and :func:`_direction_evidence` call (inlined into each, it
    doubled their compile time)."""
    c, _, w = x.shape
    ws = (w + st - 1) // st
    bw = (ws + bb - 1) // bb
    for b in range(c):  # each band's row is contiguous: read it once
        xr = x[b, r]
        yr = y[b, r]
        for j in range(ws):
            px[j, b] = xr[j * st]
            py[j, b] = yr[j * st]
    for j in range(ws):
        if not use[j * st] > 0:
            continue
        k = br * bw + j // bb
        got, length = _evidence_pixel(
            px[j], py[j], ref_lim, moved_lim, weights, ref[k], cor[k], fa, fb
        )
        if got == 1:
            n_ref[k] += 1
            shade_ref[k] += shade[j * st]
            len_ref[k] += length
        elif got == 2:
            n_cor[k] += 1
            len_cor[k] += length


@nb.njit(cache=True)
def _evidence_cost(
    ref, cor, n_ref, n_cor, shade_ref, len_ref, len_cor, min_n, suspect
):  # pragma: no cover - numba
    """The direction check's cost per weight from one tile's block sums (:class:`_Evidence`,
    ``ref`` ``(B, C)``, ``cor`` ``(B, W, C)``): the corrected count times ``1 - cos`` of the
    angle between each weight's corrected sum and the reference sum, plus the mean resultant
    length (a sum's length over its count) by which the corrected pixels' falls short of the
    reference's (the colour scatter the correction adds beyond the clear ground's), summed
    over the blocks with at least ``min_n`` of each. Returned twice, each with whether any
    block counted: over every such block, and over those whose reference is not suspect (a
    suspect one has a mean P(shadow) of at least ``suspect`` and a mean length below the
    corrected pixels': ground a shadow the detector half sees may light by the sky alone)."""
    nblk, nw, c = cor.shape
    cost = np.zeros(nw)
    trusted = np.zeros(nw)
    any_good = False
    any_trusted = False
    for k in range(nblk):
        if n_ref[k] < min_n or n_cor[k] < min_n:
            continue
        any_good = True
        doubt = shade_ref[k] >= suspect * n_ref[k] and len_ref[k] * n_cor[k] < len_cor[k] * n_ref[k]
        any_trusted = any_trusted or not doubt
        rr = 0.0
        for b in range(c):
            rr += ref[k, b] * ref[k, b]
        rho_ref = np.sqrt(rr) / n_ref[k]
        for m in range(nw):
            cc = 0.0
            rc = 0.0
            for b in range(c):
                cc += cor[k, m, b] * cor[k, m, b]
                rc += cor[k, m, b] * ref[k, b]
            rho = np.sqrt(cc) / n_cor[k]
            part = n_cor[k] * (1.0 - rc / max(np.sqrt(rr * cc), 1e-12) + max(rho_ref - rho, 0.0))
            cost[m] += part
            if not doubt:
                trusted[m] += part
    return cost, any_good, trusted, any_trusted


@nb.njit(parallel=True, cache=True, fastmath=True)
def _direction_evidence(x, y, use, shade, ev):  # pragma: no cover - numba
    """The direction check's evidence read from a corrected tile ``y`` of input ``x``
    ``(C, H, W)`` into tile 0 of ``ev``, on the pixels ``use`` ``(H, W)`` (what :func:`_correct`
    gathers as it writes; used where the output changes after it: the brightness companion);
    ``shade`` ``(H, W)`` the detector's P(shadow)."""
    c, h, w = x.shape
    # taken out before the parallel loop: inside one, writes to arrays held in a tuple argument
    # are lost (numba 0.68; numba issues #7135, #10338, open)
    st, bb = ev.st, ev.bb
    ref_lim, moved_lim, weights = ev.ref_lim, ev.moved_lim, ev.weights
    ref, cor, n_ref, n_cor = ev.ref, ev.cor, ev.n_ref, ev.n_cor
    shade_ref, len_ref, len_cor = ev.shade_ref, ev.len_ref, ev.len_cor
    nbh = (h + bb * st - 1) // (bb * st)
    ws = (w + st - 1) // st
    nw = weights.shape[0]
    for br in nb.prange(nbh):  # each block row's sums are its own
        px = np.empty((ws, c))
        py = np.empty((ws, c))
        fa = np.empty(nw)
        fb = np.empty(nw)
        u = np.empty(w, np.float32)
        for r in range(br * bb * st, min((br + 1) * bb * st, h), st):
            for col in range(w):
                u[col] = 1.0 if use[r, col] else 0.0
            _evidence_row(
                x, y, r, u, shade[r], st, bb, ref_lim, moved_lim, weights, ref[0], cor[0],
                n_ref[0], n_cor[0], shade_ref[0], len_ref[0], len_cor[0], br, px, py, fa, fb,
            )  # fmt: skip


@nb.njit(parallel=True, cache=True, fastmath=True)
def _direction_apply(x, y, s, out):  # pragma: no cover - numba
    """Every pixel of ``y`` that differs from ``x`` written to ``out`` as
    ``|y| * unit((1 - s) unit(x) + s unit(y))``, at most 1, every other pixel as ``y``
    (:func:`check_direction`); ``out`` may be ``x`` or ``y``. Two passes per row: the first
    sums ``x.x``, ``y.y``, ``x.y`` and ``|x - y|`` per pixel, from which the blended direction's
    length follows without a pass of its own; the second writes ``a x + b y``, capped, where a
    pixel the correction left alone takes ``a = 0``, ``b = 1`` and no cap, so it stays exactly
    as it was (1.5 -> 1.2 ms per 32-band 256-px tile, against three passes in place)."""
    c, h, w = x.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for r in nb.prange(h):
        xx = np.zeros(w, np.float32)  # then the weight on x
        yy = np.zeros(w, np.float32)  # then the weight on y
        xy = np.zeros(w, np.float32)
        cap = np.zeros(w, np.float32)  # sum of |x - y|, then the cap
        for b in range(c):  # band by band: each band's row is contiguous
            for q in range(w):
                u = x[b, r, q]
                v = y[b, r, q]
                xx[q] += u * u
                yy[q] += v * v
                xy[q] += u * v
                cap[q] += abs(u - v)
        for q in range(w):
            ny = np.sqrt(yy[q])
            a = (one - s) / max(np.sqrt(xx[q]), np.float32(1e-6))
            bb = s / max(ny, np.float32(1e-6))
            dd = a * a * xx[q] + bb * bb * yy[q] + np.float32(2.0) * a * bb * xy[q]
            f = ny / max(np.sqrt(max(dd, zero)), np.float32(1e-9))  # gives the length back
            if cap[q] > zero:
                xx[q] = a * f
                yy[q] = bb * f
                cap[q] = one
            else:
                xx[q] = zero
                yy[q] = one
                cap[q] = np.float32(np.inf)
        for b in range(c):
            for q in range(w):
                out[b, r, q] = min(xx[q] * x[b, r, q] + yy[q] * y[b, r, q], cap[q])


def check_direction(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    use: npt.NDArray[np.bool_],
    stride: int = DIRECTION_STRIDE,
    out: npt.NDArray[np.float32] | None = None,
    p_shadow: npt.NDArray[np.float32] | None = None,
    unsure: float = 1.0,
) -> float:
    """How much of the correction's spectral direction ``y`` keeps, on one tile (module
    docstring, "The direction check"). ``x``/``y`` ``(C, H, W)`` input and corrected tile,
    ``use`` ``(H, W)`` the pixels that may serve as evidence (valid, not thick), ``p_shadow``
    ``(H, W)`` the detector's P(shadow) (None: 0, no reference is suspect); ``unsure`` below 1:
    suspect blocks are left out, a tile with only those takes ``unsure`` of the weight they
    choose, and the weight is the least within :data:`DIRECTION_MARGIN` of the least cost
    (1: every block counts and the least cost decides). Returns the
    weight ``s`` applied: every pixel becomes ``|y| * unit((1 - s) unit(x) + s unit(y))``
    (at most 1); 1 leaves ``y`` as it was. The result is written to ``out`` (default: ``y``
    itself, in place; it may also be ``x``). ``stride``: every how many rows and columns the
    evidence is sampled."""
    return _check_direction(x, y, use, stride, out, p_shadow, unsure)[0]


def _check_direction(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    use: npt.NDArray[np.bool_],
    stride: int,
    out: npt.NDArray[np.float32] | None,
    p_shadow: npt.NDArray[np.float32] | None,
    unsure: float,
) -> tuple[float, bool]:
    """:func:`check_direction`, with whether its weight was taken ``unsure``."""
    ev = _evidence(1, *x.shape, on=True, stride=stride)
    shade = (
        np.zeros(use.shape, np.float32)
        if p_shadow is None
        else np.ascontiguousarray(p_shadow, np.float32)
    )
    _direction_evidence(x, y, np.ascontiguousarray(use), shade, ev)
    return _apply_direction(x, y, ev, 0, out, unsure)


def _least_weight(cost: npt.NDArray[np.float64], margin: float) -> int:
    """The index of the direction check's weight to keep, given its ``cost`` per weight: the
    least cost (ties: the larger weight) or, with a ``margin`` above 0, the least weight whose
    cost lies within ``margin`` of the way from the least cost to the cost of weight 0 (the
    input's colour)."""
    if margin <= 0.0:
        return len(cost) - 1 - int(np.argmin(cost[::-1]))
    lo = float(cost.min())
    return int(np.flatnonzero(cost <= lo + margin * (float(cost[0]) - lo))[0])


def _apply_direction(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    ev: _Evidence,
    i: int,
    out: npt.NDArray[np.float32] | None,
    unsure: float = 1.0,
) -> tuple[float, bool]:
    """:func:`check_direction` given tile ``i``'s evidence: the weight chosen, applied, and
    whether it was taken ``unsure`` (the tile's only evidence suspect)."""
    cost, any_good, trusted, any_trusted = _evidence_cost(
        ev.ref[i],
        ev.cor[i],
        ev.n_ref[i],
        ev.n_cor[i],
        ev.shade_ref[i],
        ev.len_ref[i],
        ev.len_cor[i],
        DIRECTION_MIN_PIXELS,
        DIRECTION_SUSPECT,
    )
    weights = ev.weights
    # the least cost: the angle between corrected and clear mean directions and the scatter
    # the correction adds (ties: the larger weight); where unsure, on the blocks whose
    # reference is not suspect, or where every block's is, ``unsure`` of what they choose,
    # and the least weight whose cost is within DIRECTION_MARGIN of the way from the least
    # cost to the input's
    best, doubt = 1.0, False
    if unsure < 1.0 and any_trusted:
        best = float(weights[_least_weight(trusted, DIRECTION_MARGIN)])
    elif unsure < 1.0 and any_good:
        best, doubt = unsure * float(weights[_least_weight(cost, DIRECTION_MARGIN)]), True
    elif any_good:
        best = float(weights[_least_weight(cost, 0.0)])
    if best < 1.0:
        _direction_apply(x, y, np.float32(best), y if out is None else out)
    elif out is not None and out is not y:
        out[...] = y
    return best, doubt


def _same_view(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> bool:
    """Whether two arrays are the same elements of the same memory."""
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


class PhysicsRemover:
    """A ``cloud_params_half`` model behind the remover interface of the stream.

    :meth:`correct` is what the stream calls: it returns the corrected tiles (clipped to
    [0, 1], thick pixels and kept tiles unchanged), the 550 nm transmittance, the thick mask and
    each tile's gate verdict. :meth:`run` returns only the corrected tiles (benchmarks).
    """

    needs_classes = False
    physics = True
    #: Fit each tile's Angstrom exponent and optical-depth gain (:func:`fit_spectrum`).
    fit = True
    #: Optical depths below this are softened (:func:`soften_depth`; 0: off).
    depth_knee = DEPTH_KNEE
    #: Gate the shadow part of a blended correction by the detector (:func:`gate_shadow`).
    shadow_gate = True
    #: ``(lo, hi)``: fit one cloud albedo per tile (contract ``kumo.fit_albedo``), or None.
    fit_albedo: tuple[float, float] | None = None
    #: The companion learned remover whose output length each pixel takes (module
    #: docstring), or None.
    brightness: Model | None = None
    #: Check each corrected tile's spectral direction against its clear pixels
    #: (:func:`check_direction`), sampling every ``direction_stride``-th row and column.
    direction = True
    direction_stride = DIRECTION_STRIDE
    #: The detector's P(shadow) from which a pixel is no evidence for the direction check.
    direction_shade = DIRECTION_SHADE
    #: Below 1, the share of its weight a tile keeps whose only evidence is suspect, and the
    #: direction check keeps the least weight within DIRECTION_MARGIN of the least cost (module
    #: docstring; DIRECTION_UNSURE for removers of at most DIRECTION_UNSURE_BANDS bands).
    direction_unsure = 1.0
    #: The detector's P(thick) from which a pixel keeps its input whatever its estimated
    #: transmittance (``correct(p_thick=)``; module docstring).
    thick_veto = THICK_VETO
    #: Indices of the networks' bands among :attr:`bands` (None: the same bands; :meth:`widen`).
    view: npt.NDArray[np.int64] | None = None

    def __init__(
        self,
        model: Model,
        fit: bool = True,
        depth_knee: float = DEPTH_KNEE,
        brightness: Model | None = None,
        direction: bool = True,
        direction_stride: int = DIRECTION_STRIDE,
        direction_shade: float = DIRECTION_SHADE,
        shadow_gate: bool = True,
        direction_unsure: float | None = None,
    ) -> None:
        if model.contract.output != "cloud_params_half":
            raise ModelContractError(
                f"{model.path.name}: a physics remover needs output 'cloud_params_half', got {model.contract.output!r}"
            )
        self.model = model
        self.fit = fit
        self.direction = direction
        self.shadow_gate = bool(shadow_gate)
        if not 1 <= direction_stride <= DIRECTION_BLOCK:
            raise ConfigError(
                f"direction_stride must lie in [1, {DIRECTION_BLOCK}], got {direction_stride}"
            )
        self.direction_stride = int(direction_stride)
        if not 0.0 < direction_shade <= 1.0:
            raise ConfigError(f"direction_shade must lie in (0, 1], got {direction_shade}")
        self.direction_shade = float(direction_shade)
        if direction_unsure is None:  # module docstring, "The direction check"
            few = len(model.bands) <= DIRECTION_UNSURE_BANDS
            direction_unsure = DIRECTION_UNSURE if few else 1.0
        if not 0.0 <= direction_unsure <= 1.0:
            raise ConfigError(f"direction_unsure must lie in [0, 1], got {direction_unsure}")
        self.direction_unsure = float(direction_unsure)
        if not 0.0 <= depth_knee < 1.0:
            raise ConfigError(f"depth_knee must lie in [0, 1), got {depth_knee}")
        self.depth_knee = float(depth_knee)
        if brightness is not None:
            if brightness.contract.kind != "generator" or brightness.contract.output in (
                "cloud_params_half",
                "probabilities_half",
            ):
                raise ModelContractError(
                    f"{brightness.path.name}: a brightness model must be a generator returning "
                    f"reflectance, got kind {brightness.contract.kind!r} output {brightness.contract.output!r}"
                )
            brightness.check_bands(model.bands)
        self.brightness = brightness
        self.bands = model.bands
        # tiles must suit both networks
        self.contract = (
            model.contract
            if brightness is None
            else replace(
                model.contract,
                multiple=math.lcm(model.contract.multiple, brightness.contract.multiple),
            )
        )
        self.path = model.path
        self.thick_transmittance = float(
            model.contract.extra.get("thick_transmittance", THICK_TRANSMITTANCE)
        )
        if not 0.0 < self.thick_transmittance < 1.0:
            raise ModelContractError(
                f"{model.path.name}: thick_transmittance must lie in (0, 1), got {self.thick_transmittance}"
            )
        # a network trained with its tile's albedo fitted (export.physics --fit-albedo) needs
        # the same fit at run time: its own albedo map is not what it was trained to pair with
        self.fit_albedo = FIT_ALBEDO if model.contract.extra.get("fit_albedo") == "1" else None

    def _tile_alpha(
        self, p: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
        """Per tile whether its pixels share one Angstrom exponent after the fit, and that
        exponent (see :func:`_correct`)."""
        if self.last_fit is None:
            return np.zeros(p.shape[0], bool), np.zeros(p.shape[0], np.float32)
        fitted = self.last_fit[:, 2] > 0
        return fitted, np.where(fitted, self.last_fit[:, 0], 0.0).astype(np.float32)

    def widen(self, bands: BandSet) -> PhysicsRemover:
        """This remover for data in ``bands``, a band set holding every one of the networks'
        bands (same centres and widths) and more: the networks read the cloud from their own
        bands, and the model is inverted, and the tile's cloud spectrum fitted, in every band
        of ``bands`` (the parameters are the cloud's, whatever the bands). So a file with two
        SWIR bands keeps them, corrected, through a four-band remover, and the detector that
        reads SWIR can drive it. The brightness companion's length is taken over the networks'
        bands and applied to every band (the direction stays the physics correction's).
        Raises :class:`~kumo_edge.errors.BandMappingError` where a band is missing."""
        view = band_indices(self.model.bands, bands)
        if view is None:
            raise BandMappingError(
                f"{self.path.name}: its bands ({', '.join(f'{c:.0f}' for c in self.model.bands.centers_nm)} nm) "
                f"are not all among the {len(bands)} bands it was asked to correct"
            )
        out = copy.copy(self)
        out.bands = bands
        out.view = np.asarray(view, np.int64)
        return out

    def _own(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(N, C, H, W)`` tiles in :attr:`bands` -> the networks' bands."""
        return x if self.view is None else np.ascontiguousarray(x[:, self.view])

    def params(self, tiles: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(N, 6, H, W)`` parameters at full resolution, the network run tile by tile, as the
        stream has run it since it corrects one tile at a time (a batch of two was not faster
        on the 2-core host, and changes a few output pixels by one line-ring step)."""
        tiles = self._own(tiles)
        if len(tiles) == 1:
            return self.model.run(tiles)
        return np.concatenate([self.model.run(tiles[i : i + 1]) for i in range(len(tiles))])

    def estimate(
        self, tiles: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """``(params, fit)`` of ``(N, C, H, W)`` tiles: the network's parameters at full
        resolution with the depth softened and each tile's spectral fit applied, and the fit's
        record (:func:`fit_spectrum`; None where the remover does not fit), the fit on all
        tiles at once (one thread per tile). What :meth:`correct` computes first; the stream
        estimates a batch's tiles together, then corrects them one at a time (``estimate=``)."""
        x = np.ascontiguousarray(tiles, dtype=np.float32)
        ok = np.ones((x.shape[0], *x.shape[2:]), bool) if valid is None else valid
        p = np.ascontiguousarray(self.params(x), dtype=np.float32)
        soften_depth(p, self.depth_knee)
        fit = (
            fit_spectrum(
                x,
                p,
                self.bands,
                np.ascontiguousarray(ok),
                self.thick_transmittance,
                self.fit_albedo,
            )
            if self.fit
            else None
        )
        return p, fit

    def correct(
        self,
        tiles: npt.NDArray[np.float32],
        p_clear: npt.NDArray[np.float32] | None = None,
        valid: npt.NDArray[np.bool_] | None = None,
        weigh: bool = False,
        estimate: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None] | None = None,
        out: npt.NDArray[np.float32] | None = None,
        p_shadow: npt.NDArray[np.float32] | None = None,
        p_thick: npt.NDArray[np.float32] | None = None,
    ) -> tuple[
        npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_], list[str | None]
    ]:
        """``(corrected, t550, thick, verdicts)`` for ``(N, C, H, W)`` tiles (class docstring);
        with ``weigh`` each pixel takes ``1 - p_clear`` of its correction (the stream's
        detector blend), computed in the same pass. ``estimate``: these tiles'
        :meth:`estimate`, where already made (left as it is: with ``weigh`` and ``p_shadow``,
        the shadow gate, :func:`gate_shadow`, acts inside the correction pass). ``out``: where the corrected tiles go (it may be
        ``tiles`` itself: the stream corrects its batch in place, without a copy back), and
        what is returned as ``corrected``; default a new array. ``p_shadow`` ``(N, H, W)``: the
        detector's P(shadow); pixels at :attr:`direction_shade` or above are never evidence
        for the direction check (a cloud's shadow is lit by the sky alone, bluer than the
        sunlit ground the check compares the correction with). ``p_thick`` ``(N, H, W)``: the
        detector's P(thick cloud); pixels at :attr:`thick_veto` or above keep their input and
        are returned thick, whatever the estimated transmittance (module docstring)."""
        x = np.ascontiguousarray(tiles, dtype=np.float32)
        n, _, h, w = x.shape
        y = np.empty_like(x)
        t550 = np.empty((n, h, w), np.float32)
        stats = np.zeros((n, h, 4), np.float32)
        pc = (
            np.zeros((n, h, w), np.float32)
            if p_clear is None
            else np.ascontiguousarray(p_clear, np.float32)
        )
        ok = np.ones((n, h, w), bool) if valid is None else np.ascontiguousarray(valid)
        shaded = (
            np.zeros((n, h, w), bool)
            if p_shadow is None
            else np.ascontiguousarray(p_shadow >= self.direction_shade)
        )
        vetoed = (
            np.zeros((n, h, w), bool)
            if p_thick is None
            else np.ascontiguousarray(p_thick >= self.thick_veto)
        )
        # per tile of the last call: fitted alpha, gain, whether fitted (see fit_spectrum)
        p, self.last_fit = self.estimate(x, ok) if estimate is None else estimate
        gate = bool(weigh and self.shadow_gate and p_clear is not None and p_shadow is not None)
        ps = (
            np.zeros((n, h, w), np.float32)
            if p_shadow is None
            else np.ascontiguousarray(p_shadow, np.float32)
        )
        # the direction check's evidence gathered in the same pass, unless the brightness
        # companion changes the output after it
        ev = _evidence(
            n, x.shape[1], h, w, self.direction and self.brightness is None, self.direction_stride
        )
        _correct(
            x,
            p,
            spectral_terms(self.bands),
            np.float32(T_MIN),
            np.float32(self.thick_transmittance),
            pc,
            ps,
            gate,
            ok,
            shaded,
            vetoed,
            bool(weigh),
            *self._tile_alpha(p),
            y,
            t550,
            stats,
            ev,
        )
        tot = stats.sum(axis=1, dtype=np.float64)
        verdicts: list[str | None] = []
        for i in range(n):
            why = None
            if tot[i, 0] and tot[i, 1] / tot[i, 0] > OUT_OF_RANGE_FRACTION:
                why = "out_of_range"
            elif tot[i, 2] >= CLEAR_MIN_PIXELS and tot[i, 3] / tot[i, 2] > CLEAR_CHANGE:
                why = "disagrees_with_detector"
            if why is not None and out is None:
                y[i] = x[i]  # the input itself is never clipped
            verdicts.append(why)
        thick = (t550 < self.thick_transmittance) | vetoed
        if self.brightness is not None:
            self._rescale(x, y, p[:, 0], pc if weigh else None, thick, verdicts)
        # per tile of the last call: the weight the direction check left on the correction,
        # and the evidence the correction pass gathered for it (``on`` False: none)
        self.last_direction = np.ones(n, np.float32)
        # and whether that weight was taken unsure (the tile's only evidence suspect)
        self.last_doubt = np.zeros(n, bool)
        self.last_evidence = ev
        # the evidence's pixels, where the pass could not gather it (it did, on the same ones)
        use = ok & ~thick & ~shaded if self.direction and not ev.on else None
        for i, why in enumerate(verdicts):
            if why is not None:  # kept: the input, unless out is the input itself
                if out is not None and not _same_view(out[i], x[i]):
                    out[i] = x[i]
            elif self.direction:
                dst = None if out is None else out[i]
                self.last_direction[i], self.last_doubt[i] = (
                    _check_direction(
                        x[i], y[i], use[i], self.direction_stride, dst, ps[i], self.direction_unsure
                    )
                    if use is not None
                    else _apply_direction(x[i], y[i], ev, i, dst, self.direction_unsure)
                )
            elif out is not None:
                out[i] = y[i]
        return (y if out is None else out), t550, thick, verdicts

    def _rescale(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.float32],
        k: npt.NDArray[np.float32],
        p_clear: npt.NDArray[np.float32] | None,
        thick: npt.NDArray[np.bool_],
        verdicts: list[str | None],
    ) -> None:
        """In place: each corrected pixel of ``y`` takes the length of the brightness model's
        output, blended in by the same weights, in full where the physics depth ``k`` reaches
        :data:`BRIGHTNESS_DEPTH` and in proportion below (module docstring)."""
        assert self.brightness is not None
        todo = np.array([i for i, why in enumerate(verdicts) if why is None], np.int64)
        if not todo.size:
            return
        sel = batch_index(todo)
        xs, ys = x[sel], y[sel]
        xo = self._own(xs)
        g = self.brightness.run(xo)
        w = np.ones(thick[sel].shape, np.float32) if p_clear is None else 1.0 - p_clear[sel]
        w[thick[sel]] = 0.0
        g -= xo
        g *= w[:, None]
        g += xo  # the learned correction, blended as the physics one
        yo = self._own(ys)  # lengths over the companion's bands, applied to every band
        scale = np.sqrt(np.einsum("nchw,nchw->nhw", g, g))
        scale /= np.maximum(np.sqrt(np.einsum("nchw,nchw->nhw", yo, yo)), np.float32(1e-6))
        scale -= 1.0
        scale *= np.minimum(k[sel] / np.float32(BRIGHTNESS_DEPTH), np.float32(1.0))
        scale += 1.0
        scale[w == 0] = 1.0
        if self.view is None:
            ys *= scale[:, None]
        else:  # the companion's length is its bands'; the others keep the physics correction
            ys[:, self.view] *= scale[:, None]
        moved = (w > 0)[:, None] & (ys > 1.0)
        ys[moved] = 1.0  # clipped like every correction (thick pixels keep their input)
        if not isinstance(sel, slice):  # a slice gave a view of y, already written
            y[sel] = ys

    def run(self, tiles: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return self.correct(tiles)[0]


def as_remover(model: Model) -> Model | PhysicsRemover:
    """A loaded generator file as the stream's remover: physics models are wrapped, with the
    companion brightness model their contract names (``kumo.brightness_model``, a file beside
    them) loaded alike."""
    if model.contract.output != "cloud_params_half":
        return model
    name = model.contract.extra.get("brightness_model")
    bright = None
    if name:
        from .runtime import Model

        path = model.path.with_name(Path(name).name)
        if not path.is_file():
            raise ModelContractError(
                f"{model.path.name}: its brightness model {path.name} is missing beside it"
            )
        bright = Model(path, model.requested_providers, model.threads)
    return PhysicsRemover(model, brightness=bright)


def upsample_params(half: npt.NDArray[np.float32], h: int, w: int) -> npt.NDArray[np.float32]:
    """``(N, 6, h/2, w/2)`` -> ``(N, 6, h, w)`` with the runtime's bilinear x2."""
    out = np.empty((half.shape[0], half.shape[1], h, w), np.float32)
    _rk.upsample2(np.ascontiguousarray(half, dtype=np.float32), out)
    return out
