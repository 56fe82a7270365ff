"""The band-agnostic detector: the canonical band mapping, the set-valued loss, and that folding
the mapping into the stem gives the same output as the training graph, for any band set."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.detector import (  # noqa: E402
    CANON,
    LABEL_SETS,
    canonical_map,
    export_band_set,
    set_loss,
    views_for,
)
from export.nets import SpectralDetector  # noqa: E402
from kumo_edge.bands import BandSet  # noqa: E402
from kumo_edge.config import sensor_profile  # noqa: E402
from kumo_edge.errors import BandMappingError  # noqa: E402
from kumo_edge.runtime import load_model  # noqa: E402


def test_canonical_map_flags_what_a_band_set_can_feed() -> None:
    m, p = canonical_map(sensor_profile("rgb").bands)
    assert p.tolist() == [1, 1, 1, 0, 0, 0] and not m[3:].any()
    m, p = canonical_map(sensor_profile("landsat8-oli").bands)
    assert p.tolist() == [1] * 6
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
    # the 32 VNIR bands feed blue..NIR by integration, never SWIR
    m, p = canonical_map(sensor_profile("satellogic-hsi").bands)
    assert p.tolist() == [1, 1, 1, 1, 0, 0] and (m[:4] > 0).sum(1).min() >= 3
    assert views_for(p) == ["rgbn", "rgb"]
    with pytest.raises(BandMappingError, match="blue"):
        canonical_map(BandSet((560.0, 665.0, 842.0), (35.0, 30.0, 115.0)))


def test_set_loss_is_minus_log_of_the_allowed_set() -> None:
    logits = torch.randn(1, 4, 2, 3)
    labels = torch.tensor([[[0, 4, 5], [3, -1, 2]]])
    p = logits.softmax(1)[0]
    want = []
    for (i, j), lab in np.ndenumerate(labels[0].numpy()):
        if lab < 0:
            continue
        allowed = torch.from_numpy(LABEL_SETS[lab])
        w = [1.0, 1.5, 1.0, 1.5, 1.2, 1.0][lab]
        want.append((w, -torch.log(p[:, i, j][allowed].sum())))
    expect = sum(w * v for w, v in want) / sum(w for w, _ in want)
    assert set_loss(logits, labels).item() == pytest.approx(expect.item(), rel=1e-5)


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("profile", ["rgb", "rgbn", "satellogic-hsi", "sentinel2-msi"])
def test_folded_detector_equals_the_training_graph(profile: str, context: bool) -> None:
    torch.manual_seed(0)
    net = SpectralDetector(len(CANON), (8, 16), stem=8, context=context).eval()
    with torch.no_grad():
        net.presence.weight.normal_()  # an untrained presence embedding is all but zero
        if context:
            net.net.context.mix.weight.normal_()  # a new context block is the identity
    bands = sensor_profile(profile).bands
    m, present = canonical_map(bands)
    x = torch.rand(2, len(bands), 32, 32)
    canon = torch.einsum("cb,nbhw->nchw", torch.from_numpy(m), x)
    with torch.no_grad():
        want = net(canon, torch.from_numpy(present).expand(2, -1))
        got = net.fold(torch.from_numpy(m), torch.from_numpy(present))(x)
        hot = net.fold(torch.from_numpy(m), torch.from_numpy(present), temperature=2.0)(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hot, want / 2.0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("context", [False, True])
def test_context_block_lets_a_far_corner_change_the_answer(context: bool) -> None:
    """Without the block a pixel's answer depends on its neighbourhood only; with it, on the whole
    tile (here a corner 60 px away, far outside the receptive field of a 2-level trunk)."""
    torch.manual_seed(0)
    net = SpectralDetector(len(CANON), (8, 16), stem=8, context=context).eval()
    if context:
        with torch.no_grad():
            net.net.context.mix.weight.normal_()
    x = torch.rand(1, len(CANON), 64, 64)
    y = x.clone()
    y[:, :, 48:, 48:] += 0.5
    present = torch.ones(1, len(CANON))
    with torch.no_grad():
        a, b = net(x, present)[..., :8, :8], net(y, present)[..., :8, :8]
    assert (a - b).abs().max().item() > 1e-6 if context else torch.equal(a, b)


def test_export_band_set_writes_a_runtime_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SpectralDetector(len(CANON), (8, 16), stem=8).eval()
    paths = export_band_set(net, "rgbn", tmp_path, temperature=1.5, int8=False)
    m = load_model(paths["fp32"])
    assert m.contract.kind == "detector" and m.contract.band_set == "rgbn"
    assert m.contract.training["temperature"] == 1.5 and m.contract.multiple == 4
    x = np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32)
    p = m.run(x)
    assert p.shape == (1, 4, 64, 64)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)


def test_weight_average_follows_the_weights_and_keeps_counters() -> None:
    from export.detector import _Ema

    torch.manual_seed(0)
    net = SpectralDetector(len(CANON), (8, 16), stem=8)
    ema = _Ema(net, 0.9)
    before = {k: v.clone() for k, v in ema.state.items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net(torch.rand(2, len(CANON), 16, 16), torch.ones(2, len(CANON)))  # moves BN statistics
    ema.update(net)
    now = net.state_dict()
    for k, v in ema.state.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * now[k])
        else:
            assert torch.equal(v, now[k])  # batch counters are copied, not averaged


def test_screen_scores_each_fold_on_the_patches_it_held_out(tmp_path: Path, monkeypatch) -> None:
    """Two fold models, one of which calls everything cloud: each is scored on its own fold's
    held-out patch, and the pooled figures are those of the two patches together."""
    import export.detector as d

    rgbn = sensor_profile("rgbn").bands
    rng = np.random.default_rng(0)
    patches = []
    for i in range(4):
        labels = np.zeros((32, 32), np.int64)
        labels[:, : 8 * (i + 1)] = 4  # cloud, more of it in each patch
        patches.append(
            {
                "name": f"p{i}",
                "sensor": "s",
                "land": "l",
                "scheme": "cloud/not cloud",
                "cube": rng.random((4, 32, 32), dtype=np.float32) * 0.3,
                "bands": rgbn,
                "labels": labels,
            }  # fmt: skip
        )
    monkeypatch.setattr(d, "real_patches", lambda: patches)
    folds = d.cv_folds(patches, 4)
    for k, cloudy in ((0, False), (1, True)):
        torch.manual_seed(k)
        net = SpectralDetector(len(CANON), (8, 16), stem=8)
        with torch.no_grad():
            net.net.head.weight.zero_()
            net.net.head.bias.copy_(
                torch.tensor([0.0, 5.0, 5.0, 0.0] if cloudy else [5.0, 0, 0, 0])
            )
        out = tmp_path / f"f{k}"
        out.mkdir()
        torch.save(
            {"model": net.state_dict(), "run": {"widths": [8, 16], "stem": 8}}, out / "last.pt"
        )
    res = d.screen([str(tmp_path / "f{k}")], [0, 1], views=("rgbn",))[str(tmp_path / "f{k}")][
        "rgbn"
    ]
    clear_patch, cloud_patch = (patches[int(folds[k][0][1:])] for k in (0, 1))
    frac = {p["name"]: float(np.mean(p["labels"] == 4)) for p in (clear_patch, cloud_patch)}
    assert res["per_patch_accuracy"] == pytest.approx(
        {
            clear_patch["name"]: 1 - frac[clear_patch["name"]],
            cloud_patch["name"]: frac[cloud_patch["name"]],
        }
    )
    n_clear = sum(np.sum(p["labels"] == 0) for p in (clear_patch, cloud_patch))
    assert res["false_positive_rate"] == pytest.approx(np.sum(cloud_patch["labels"] == 0) / n_clear)


def test_invisible_cloud_edges_are_the_faint_band_only() -> None:
    """Training gives synthetic cloud too faint to see no answer, and the synthetic score
    reports the accuracy without it: exactly 0.02 <= tau < 0.08."""
    from export.detector import invisible

    tau = np.array([0.0, 0.019, 0.02, 0.05, 0.0799, 0.08, 1.0], np.float32)
    assert invisible(tau).tolist() == [False, False, True, True, True, False, False]


def test_saturate_clips_each_band_at_a_level_of_its_range() -> None:
    from export.detector import SATURATION, saturate

    rng = np.random.default_rng(0)
    x = np.tile(np.linspace(0, 1.2, 50 * 50, dtype=np.float32).reshape(1, 50, 50), (6, 1, 1))
    for _ in range(20):
        y = saturate(x, rng)
        for b, (lo, hi) in enumerate(SATURATION):
            top = float(y[b].max())
            assert lo - 1e-6 <= top <= hi + 1e-6
            below = x[b] <= top
            np.testing.assert_array_equal(y[b][below], x[b][below])  # dark pixels untouched
    # the visible bands do get clipped somewhere in the range, the SWIR bands never below 1
    y = saturate(x, np.random.default_rng(1))
    assert (y[:3].max((1, 2)) < 0.8 + 1e-6).all() and (y[4:].max((1, 2)) >= 1.0).all()
    # a four-band (rgbn) sample takes the first four levels
    assert saturate(x[:4], rng).shape == (4, 50, 50)


def test_cloud_threshold_curve_pools_patches_and_trades_false_cloud_for_misses() -> None:
    from bench.detector_real import CURVE_THRESHOLDS, cloud_threshold_curve

    # patch a: 4 pixels, labels clear, thin, thick, no label; patch b: cloud/not-cloud scheme
    la = np.array([[0, 1, 2, -1]])
    lb = np.array([[4, 5]])
    pa = np.zeros((4, 1, 4), np.float16)
    pa[1, 0] = [0.42, 0.3, 0.2, 0.9]  # P(thin)
    pa[2, 0] = [0.0, 0.3, 0.6, 0.0]  # P(thick): cloud 0.42, 0.6, 0.8, (0.9 unlabelled)
    pb = np.zeros((4, 1, 2), np.float16)
    pb[2, 0] = [0.52, 0.62]  # cloud truly, then not cloud
    rows = {
        r["cloud_threshold"]: r
        for r in cloud_threshold_curve(
            {"a": pa, "b": pb}, {"a": {"labels": la}, "b": {"labels": lb}}
        )
    }
    assert tuple(rows) == CURVE_THRESHOLDS
    # at 0.5: a's clear pixel (0.42) stays clear, its thin (0.6) and thick (0.8) are cloud; b's
    # cloud (0.52) is found and its not-cloud (0.62) called cloud: 4 of 5 right, 1 of 2 clear lost
    assert rows[0.5]["accuracy"] == pytest.approx(4 / 5)
    assert rows[0.5]["false_positive_rate"] == pytest.approx(1 / 2)
    # at 0.4 the clear pixel of a goes too; at 0.65 the false call and the 0.6 and 0.52 clouds go
    assert rows[0.4]["false_positive_rate"] == pytest.approx(1.0)
    assert rows[0.65]["false_positive_rate"] == 0 and rows[0.65]["accuracy"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("snow_views", ["all", "swir"])
def test_snow_is_painted_only_under_views_with_swir_when_asked(
    monkeypatch, snow_views: str
) -> None:
    """``snow_views="swir"``: a sample seen through a view without SWIR never has snow under it
    (in the VNIR painted snow looks like a soft-edged cloud); with SWIR it may. ``"all"``: any
    view may. Snow is painted here as a sentinel value the clouds cannot make."""
    import export.data as data
    from export.data import Scene
    from export.detector import SWIR_CANON, SynthSampler

    sentinel = np.float32(0.123456)

    def paint(clear, bands, rng):  # noqa: ANN001, ANN202
        out = clear.copy()
        out[:, :4, :4] = sentinel  # a marked corner, before the clouds are rendered over it
        return out

    monkeypatch.setattr(data, "add_snow", paint)
    rng = np.random.default_rng(0)
    six = sensor_profile("rgbn-swir").bands
    scene = Scene("six", rng.uniform(0.05, 0.3, (6, 80, 80)).astype(np.float32), six,
                  np.ones((80, 80), bool))  # fmt: skip
    sampler = SynthSampler([scene], 32, seed=3, snow_views=snow_views)
    x, present, _ = sampler.sample(np.random.default_rng(1), 200)
    # the corner's input is the sentinel wherever no cloud moved it: count those per sample
    marked = (np.abs(x[:, :4, :4, :4] - sentinel) < 1e-6).any(axis=(1, 2, 3))
    swir = present[:, SWIR_CANON].any(axis=1)
    assert swir.any() and (~swir).any()
    assert marked[swir].any()  # snow under views with SWIR in both modes
    if snow_views == "swir":
        assert not marked[~swir].any()
    else:
        assert marked[~swir].any()


def test_haze_is_drawn_only_under_views_without_swir_and_is_bluer(monkeypatch) -> None:
    """``haze``: that share of the samples seen without SWIR take their clouds from
    ``HAZE_RANGES``, samples with SWIR never; the default haze is bluer than the other clouds
    over the same grey ground. Routing checked by haze ranges that draw no cloud at all."""
    import export.detector as det
    from export.data import Scene

    six = sensor_profile("rgbn-swir").bands
    scene = Scene("six", np.full((6, 80, 80), 0.1, np.float32), six, np.ones((80, 80), bool))

    def draw(haze: float) -> tuple[np.ndarray, ...]:
        s = det.SynthSampler([scene], 32, seed=3, snow_views="all", haze=haze)
        return s.sample(np.random.default_rng(1), 200)

    def blue_over_red(x: np.ndarray, y: np.ndarray) -> float:
        cloud = np.isin(y, (1, 2))
        return float(x[:, 0][cloud].mean() / x[:, 2][cloud].mean())

    x0, p0, y0 = draw(0.0)
    x1, p1, y1 = draw(1.0)
    dry0, dry1 = ~p0[:, det.SWIR_CANON].any(axis=1), ~p1[:, det.SWIR_CANON].any(axis=1)
    assert dry0.any() and dry1.any() and not dry1.all()
    assert blue_over_red(x1[dry1], y1[dry1]) > blue_over_red(x0[dry0], y0[dry0]) + 0.05
    monkeypatch.setattr(det, "HAZE_RANGES", {"clear_fraction": 1.0})
    x, p, y = draw(1.0)
    dry = ~p[:, det.SWIR_CANON].any(axis=1)
    assert not np.isin(y[dry], (1, 2)).any()  # every view without SWIR drew the "haze"
    assert np.isin(y[~dry], (1, 2)).any()  # the views with SWIR their usual clouds
    x, p, y = draw(0.0)
    assert np.isin(y[~p[:, det.SWIR_CANON].any(axis=1)], (1, 2)).any()


def test_fold_commands_train_only_the_folds_asked_for(tmp_path: Path, monkeypatch) -> None:
    """``cv --only-folds 0,1`` (a screen on two folds): only those folds' jobs, each holding out
    its own patches; without it, every fold."""
    import export.detector as det

    patches = [
        {"name": f"p{i}", "sensor": "s", "land": "l"} for i in range(8)
    ]  # what cv_folds reads
    monkeypatch.setattr(det, "real_patches", lambda: patches)
    runs = str(tmp_path / "r_{k}")
    every = det.fold_commands(4, 10, runs)
    some = det.fold_commands(4, 10, runs, only=(0, 2))
    assert [log.name for _, log in every] == ["r_0.log", "r_1.log", "r_2.log", "r_3.log"]
    assert [log.name for _, log in some] == ["r_0.log", "r_2.log"]
    held = {log.name: argv[argv.index("--test-patches") + 1] for argv, log in some}
    folds = det.cv_folds(patches, 4)
    assert held == {"r_0.log": ",".join(folds[0]), "r_2.log": ",".join(folds[2])}


def test_real_mix_pastes_a_box_of_another_patch_with_its_labels() -> None:
    """CutMix of the real crops: a box of another patch's crop, its labels with it, seen through
    a view both patches allow; without --real-mix the samples are what they were."""
    from export.detector import RealSampler

    six, four = sensor_profile("landsat8-oli").bands, sensor_profile("rgbn").bands
    a = {"cube": np.full((len(six.centers), 64, 64), 0.1, np.float32), "bands": six,
         "labels": np.zeros((64, 64), np.int64)}  # fmt: skip
    b = {"cube": np.full((4, 64, 64), 0.8, np.float32), "bands": four,
         "labels": np.full((64, 64), 4, np.int64)}  # fmt: skip
    x, p, y = RealSampler([a, b], 32, mix=1.0).sample(np.random.default_rng(0), 40)
    bright = x[:, 0] > 0.45  # blue of patch b (0.8 x gain) against patch a's 0.1
    mixed = bright.any(axis=(1, 2)) & ~bright.all(axis=(1, 2))
    assert mixed.sum() >= 10  # two patches in one sample, often
    np.testing.assert_array_equal(y == 4, bright)  # the labels came with the pixels

    def is_box(m: np.ndarray) -> bool:
        rows, cols = np.nonzero(m)
        return bool(m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all())

    for i in np.flatnonzero(mixed):
        assert p[i, 4:].sum() == 0  # patch b has no SWIR: the view has none either
        assert is_box(bright[i]) or is_box(~bright[i])  # one of the two is the pasted box
    # no mixing: the same draws as a sampler without the option
    x0, p0, y0 = RealSampler([a, b], 32).sample(np.random.default_rng(1), 20)
    x1, p1, y1 = RealSampler([a, b], 32, mix=0.0).sample(np.random.default_rng(1), 20)
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)
    assert not ((x0[:, 0] > 0.45).any(axis=(1, 2)) & ~(x0[:, 0] > 0.45).all(axis=(1, 2))).any()


@pytest.mark.parametrize("arg", ["--overcast", "--real-mix", "--saturate", "--real-fraction"])
def test_training_shares_outside_zero_to_one_are_refused(arg: str, capsys) -> None:  # noqa: ANN001
    from export.detector import main

    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(SystemExit) as e:
            main(["cv", arg, bad, "--runs", "/nonexistent/{k}"])
        assert e.value.code == 2 and "expected a number in [0, 1]" in capsys.readouterr().err


def test_cv_hands_every_recipe_option_to_its_folds_train(monkeypatch) -> None:  # noqa: ANN001
    """The fold command `cv` builds, parsed by `train`, gives the run that `train` with the
    same options gives: no recipe option is lost on the way (each non-default here)."""
    import export.detector as det

    opts = ["--batch", "8", "--tile", "64", "--context", "--shadow-weight", "2.5",
            "--band-jitter", "0.05", "--ema", "0.99", "--saturate", "0.3", "--saturate-real-only",
            "--overcast", "0.2", "--snow-views", "swir", "--real-mix", "0.4", "--edges", "cloud",
            "--real-fraction", "0.8", "--seed", "7"]  # fmt: skip
    runs: list = []
    monkeypatch.setattr(det, "train", lambda run: runs.append(run) or "")
    jobs: list = []
    monkeypatch.setattr("bench._common.run_jobs", lambda j, n: jobs.extend(j))
    det.main(["cv", "--steps", "12", "--runs", "/tmp/kumo-test-nonexistent/f{k}", *opts])
    argv = jobs[0][0]
    det.main(argv[argv.index("train") :])  # the fold's own train, as run_jobs would start it
    det.main(["train", "--out", argv[argv.index("--out") + 1], "--test-patches",
              argv[argv.index("--test-patches") + 1], "--steps", "12", *opts])  # fmt: skip
    assert runs[0] == runs[1]
    assert (runs[0].context, runs[0].saturate_synthetic, runs[0].snow_views) == (
        True,
        False,
        "swir",
    )
    assert (runs[0].real_mix, runs[0].seed, runs[0].tile, runs[0].edges) == (0.4, 7, 64, "cloud")
    # the model card's training command (from the checkpoint's run record) trains it again
    card = det.recipe_command(asdict(runs[0])).split()
    det.main(["train", "--out", runs[0].out, "--test-patches", ",".join(runs[0].test_patches),
              *card])  # fmt: skip
    assert runs[2] == runs[0]
    # an older record without the newer options, all at their defaults: --steps alone
    old = {k: v for k, v in asdict(det.DetectorRun(out="x")).items() if k != "edges"}
    assert det.recipe_command(old) == f"--steps {det.DetectorRun.steps}"


def test_invisible_edges_are_labelled_thin_cloud_when_asked() -> None:
    """``edges="cloud"``: the same draws as ``"ignore"``, with the invisible edges labelled
    thin cloud instead of left without an answer."""
    from export.data import Scene
    from export.detector import SynthSampler

    rng = np.random.default_rng(0)
    scene = Scene("four", rng.uniform(0.05, 0.3, (4, 80, 80)).astype(np.float32),
                  sensor_profile("rgbn").bands, np.ones((80, 80), bool))  # fmt: skip
    draws = {
        e: SynthSampler([scene], 32, seed=3, edges=e).sample(np.random.default_rng(1), 40)
        for e in ("ignore", "cloud")
    }
    (xi, pi, yi), (xc, pc, yc) = draws["ignore"], draws["cloud"]
    assert np.array_equal(xi, xc) and np.array_equal(pi, pc)
    edge = yi == -1
    assert edge.any() and (yc >= 0).all()
    assert (yc[edge] == 1).all() and np.array_equal(yc[~edge], yi[~edge])


def test_real_patches_drawn_by_their_pixels_when_asked() -> None:
    """``RealSampler(weight="pixels")`` draws each patch in proportion to its labelled pixels
    (a patch four times the size four times as often); the default draws every patch alike."""
    from export.detector import RealSampler

    six = sensor_profile("rgbn-swir").bands
    rng = np.random.default_rng(0)

    def patch(name: str, side: int) -> dict:
        cube = rng.uniform(0, 0.5, (6, side, side)).astype(np.float32)
        cube[0] = {"small": 0.1, "big": 0.9}[name]  # which patch a crop came from
        return {
            "name": name,
            "cube": cube,
            "bands": six,
            "labels": np.zeros((side, side), np.int64),
        }

    patches = [patch("small", 32), patch("big", 64)]
    for weight, want in (("patch", 0.5), ("pixels", 0.8)):
        x, _, _ = RealSampler(patches, 16, weight=weight).sample(np.random.default_rng(1), 2000)
        big = (x[:, 0] > 0.5).mean((1, 2)) > 0.5  # blue 0.9 (or 0 where the view drops it)
        seen = x[:, 0].max((1, 2)) > 0  # crops seen with their blue band
        assert abs(big[seen].mean() - want) < 0.04, (weight, big[seen].mean())
