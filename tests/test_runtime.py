"""Model contract, loading, refusal of mismatches; torch <-> ONNX parity (needs the train extra)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from kumo_edge.bands import BandSet
from kumo_edge.config import sensor_profile
from kumo_edge.errors import (
    BandCountError,
    DataTypeError,
    KumoError,
    ModelContractError,
    ShapeError,
)
from kumo_edge.runtime import ModelContract, classify, load_model, resolve_providers

from conftest import fixture_models


@pytest.fixture(scope="module")
def models() -> dict:
    return fixture_models("seed0")


def test_contract_roundtrip(models: dict) -> None:  # noqa: ANN001
    m = load_model(models["generator"])
    c = m.contract
    assert c.kind == "generator" and c.band_set == "rgbn"
    assert c.bands.centers_nm == sensor_profile("rgbn").bands.centers_nm
    assert (c.tile, c.halo, c.multiple) == (64, 8, 8)
    assert c.metrics == {"psnr": 30.0}
    assert ModelContract.from_metadata(c.to_metadata()) == c
    d = load_model(models["detector"]).contract
    assert d.classes == ("clear", "thin", "thick", "shadow")


def test_classify_uses_the_operating_point() -> None:
    # pixels: clear, shadow, cloud split between thin and thick (no class alone wins), faint thin
    p = np.array(
        [
            [0.9, 0.05, 0.05, 0.0],
            [0.2, 0.0, 0.1, 0.7],
            [0.4, 0.35, 0.25, 0.0],
            [0.6, 0.4, 0.0, 0.0],
        ],
        np.float32,
    ).T  # (4, pixels)
    assert classify(p).tolist() == [0, 3, 1, 0]  # an argmax would call pixel 2 clear
    assert classify(p, 0.35).tolist() == [0, 3, 1, 1]
    assert classify(p, 0.7).tolist() == [0, 3, 0, 0]
    assert classify(p[None], 0.5, axis=1).tolist() == [[0, 3, 1, 0]]
    with pytest.raises(ShapeError, match="4 class probabilities"):
        classify(p[:3])


def test_operating_point_in_the_contract(models: dict, tmp_path: Path) -> None:  # noqa: ANN001
    d = load_model(models["detector"]).contract
    assert d.cloud_threshold == 0.5  # a file that does not say
    meta = {**d.to_metadata(), "kumo.cloud_threshold": "0.62"}
    c = ModelContract.from_metadata(meta)
    assert c.cloud_threshold == 0.62 and ModelContract.from_metadata(c.to_metadata()) == c
    assert any("P(thin) + P(thick) >= 0.62" in ln for ln in c.describe())
    for bad in ("1.5", "0", "high"):
        with pytest.raises(ModelContractError, match="cloud_threshold|unreadable contract"):
            ModelContract.from_metadata({**meta, "kumo.cloud_threshold": bad})


def test_parity_torch_vs_onnx(models: dict, tmp_path: Path) -> None:  # noqa: ANN001
    """The networks rebuilt from the fixtures' recipe match the committed ONNX files (so the
    fixtures are what tests/fixtures/make_models.py makes, and the export is faithful)."""
    pytest.importorskip("torch")
    from export.onnx_export import parity

    from conftest import random_models

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_models import FIXTURES

    nets = random_models(tmp_path, **FIXTURES["seed0"])
    assert parity(nets["generator_net"], models["generator"], 4) < 1e-5
    assert parity(nets["detector_net"], models["detector"], 4) < 1e-5


def test_detector_outputs_probabilities(models: dict) -> None:  # noqa: ANN001
    m = load_model(models["detector"])
    p = m.run(np.random.default_rng(0).random((3, 4, 32, 48), dtype=np.float32))
    assert p.shape == (3, 4, 32, 48)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_band_mismatch_is_refused(models: dict) -> None:  # noqa: ANN001
    m = load_model(models["generator"])
    m.check_bands(sensor_profile("rgbn").bands)
    with pytest.raises(BandCountError, match="expects 4 bands.*has 32"):
        m.check_bands(sensor_profile("satellogic-hsi").bands)
    shifted = BandSet((490.0, 560.0, 665.0, 865.0), (65.0, 35.0, 30.0, 20.0))
    with pytest.raises(ModelContractError, match="band 4 is at 865.0 nm"):
        m.check_bands(shifted)
    with pytest.raises(BandCountError):
        m.run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ShapeError, match="multiples of 8"):
        m.run(np.zeros((1, 4, 30, 32), np.float32))
    with pytest.raises(DataTypeError):
        m.run(np.zeros((1, 4, 32, 32), np.float64))


def test_corrupt_and_foreign_models(tmp_path: Path, models: dict) -> None:  # noqa: ANN001
    onnx = pytest.importorskip("onnx")  # rewrites models (the train extra)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(models["generator"].read_bytes()[:300])
    with pytest.raises(ModelContractError, match="not a loadable ONNX model"):
        load_model(bad)
    with pytest.raises(ModelContractError, match="no such model file"):
        load_model(tmp_path / "none.onnx")
    plain = onnx.load(str(models["generator"]))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelContractError, match="no Kumo Edge contract"):
        load_model(tmp_path / "plain.onnx")
    # a contract that lists 3 wavelengths on a graph that takes 4 bands
    liar = onnx.load(str(models["detector"]))
    for p in liar.metadata_props:
        if p.key in ("kumo.wavelengths_nm", "kumo.fwhm_nm"):
            p.value = json.dumps(json.loads(p.value)[:3])
        if p.key == "kumo.band_names":
            p.value = json.dumps(json.loads(p.value)[:3])
    onnx.save(liar, str(tmp_path / "liar.onnx"))
    with pytest.raises(ModelContractError, match="graph takes 4 bands but its contract lists 3"):
        load_model(tmp_path / "liar.onnx")


def test_unavailable_provider_is_an_error() -> None:
    with pytest.raises(KumoError, match="not available"):
        resolve_providers(["tensorrt"])
    with pytest.raises(KumoError, match="unknown execution provider"):
        resolve_providers(["tpu"])
    assert resolve_providers(None) == ["CPUExecutionProvider"]


def test_cli_info_prints_contract(models: dict) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from kumo_edge.cli import cli

    r = CliRunner().invoke(cli, ["info", str(models["detector"])])
    assert r.exit_code == 0, r.output
    assert "detector (fp32)" in r.output and "clear, thin, thick, shadow" in r.output
    j = json.loads(CliRunner().invoke(cli, ["info", "--json", str(models["generator"])]).output)
    assert j["kumo.kind"] == "generator"


def test_operating_point_is_chosen_on_validation(models: dict) -> None:  # noqa: ANN001
    pytest.importorskip("torch")
    from export.data import Scene
    from export.evaluate import THRESHOLDS, choose_operating_point

    rng = np.random.default_rng(3)
    bands = sensor_profile("rgbn").bands
    scene = Scene(
        "val", rng.random((4, 96, 96), dtype=np.float32) * 0.3, bands, np.ones((96, 96), bool)
    )
    loose = choose_operating_point(models["detector"], [scene], n=8, fpr_budget=1.0)
    assert loose["threshold"] == THRESHOLDS[0]  # every threshold is within budget: the lowest
    fpr = [c["false_positive_rate"] for c in loose["curve"]]
    assert np.all(np.diff(fpr) <= 0)  # a higher threshold never adds alarms
    budget = fpr[len(fpr) // 2]
    mid = choose_operating_point(models["detector"], [scene], n=8, fpr_budget=budget)
    first = next(c for c in mid["curve"] if c["false_positive_rate"] <= budget)
    assert mid["threshold"] == first["threshold"] and mid["rule"].startswith("lowest")
    none = choose_operating_point(models["detector"], [scene], n=8, fpr_budget=-1.0)
    best = max(c["accuracy"] - c["false_positive_rate"] for c in none["curve"])
    at = none["at_threshold"]
    assert (
        none["rule"].startswith("no threshold")
        and at["accuracy"] - at["false_positive_rate"] == best
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_sessions_share_one_cpu_arena():
    """The remover's first run after the detector's, on the same batch, takes its blocks from
    the arena the detector's run grew (one arena per process), not from an arena of its own."""
    import subprocess

    code = (
        "import numpy as np\n"
        "from kumo_edge.runtime import load_model, shipped_models\n"
        "def rss():\n"
        "    for l in open('/proc/self/status'):\n"
        "        if l.startswith('VmRSS'): return int(l.split()[1]) / 1024\n"
        "m = shipped_models()['hsi32']\n"
        "det, gen = load_model(m['detector'], threads=1), load_model(m['generator'], threads=1)\n"
        "z = np.zeros((4, 32, 256, 256), np.float32)\n"
        "det.run(z); r = rss(); gen.run(z); print(rss() - r)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown = float(out.stdout.strip().splitlines()[-1])
    # measured: 0.4 MB with the shared arena, 17 MB with an arena per session
    assert grown < 8.0, f"the generator's first run grew RSS by {grown:.1f} MB"


def _six_band_tile() -> np.ndarray:
    """(1, 6, 32, 32) canonical six-band reflectance: dark vegetation, with a bright white
    patch bright in the SWIR (cloud), one bright white and dark in the SWIR (snow), and one
    bright but red (sand)."""
    x = np.empty((1, 6, 32, 32), np.float32)
    x[0, :, :, :] = np.array([0.05, 0.07, 0.05, 0.3, 0.15, 0.08], np.float32)[:, None, None]
    x[0, :, :8, :8] = np.array([0.45, 0.42, 0.43, 0.45, 0.35, 0.25], np.float32)[:, None, None]
    x[0, :, 8:16, :8] = np.array([0.8, 0.75, 0.72, 0.7, 0.1, 0.08], np.float32)[:, None, None]
    x[0, :, 16:24, :8] = np.array([0.2, 0.3, 0.5, 0.55, 0.6, 0.5], np.float32)[:, None, None]
    return x


def test_the_spectral_cloud_test_calls_cloud_only_where_a_swir_band_spares_snow() -> None:
    """With green and SWIR-1, bright white pixels that are not snow-like become thick cloud
    whatever the detector said (clear and shadow probability moved, the sum kept); snow, red
    sand and dark ground keep the detector's answer. Without a SWIR band nothing changes."""
    from kumo_edge.runtime import force_spectral_clouds

    x = _six_band_tile()
    six = sensor_profile("rgbn-swir").bands
    probs = np.zeros((1, 4, 32, 32), np.float32)
    probs[:, 0] = 0.7  # the detector: clear, some shadow
    probs[:, 3] = 0.3
    before = probs.copy()
    sure = force_spectral_clouds(x, probs, six)
    assert sure.sum() == 64 and sure[0, :8, :8].all()  # the cloud patch only
    assert (probs[0, 2, :8, :8] == 1).all() and (probs[0, [0, 1, 3], :8, :8] == 0).all()
    assert np.array_equal(probs[0, :, 8:], before[0, :, 8:])  # snow, sand, ground
    assert np.allclose(probs.sum(1), 1)
    # the claimed pixels, given back, force changed probabilities again (the cube unread)
    again = before.copy()
    force_spectral_clouds(np.zeros_like(x), again, six, sure=sure)
    assert np.array_equal(again, probs)
    rgbn = before.copy()
    assert force_spectral_clouds(x[:, :4], rgbn, sensor_profile("rgbn").bands) is None
    assert np.array_equal(rgbn, before)


def test_the_spectral_test_kernel_is_numpys_float32_arithmetic() -> None:
    """The numba pass over float32 tiles (the runtime's) gives numpy's float32 answer pixel
    for pixel, near every threshold (bright, white, NDSI, NIR / SWIR-1), and the forced
    probabilities too."""
    from kumo_edge import runtime as rt

    six = sensor_profile("rgbn-swir").bands
    rng = np.random.default_rng(11)
    x = rng.random((2, 6, 64, 64), dtype=np.float32) * 0.6
    # visible bands near white (whiteness around its limit), SWIR around the NDSI limit
    x[:, :3] = x[:, :1] * rng.uniform(0.75, 1.25, (2, 3, 64, 64)).astype(np.float32)
    vis, g, s1 = rt._ambiguous_bands(six)
    v = x[:, vis]
    mean = v.mean(1)
    white = np.abs(v - mean[:, None]).sum(1) / np.maximum(mean, 1e-6)
    ndsi = (x[:, g] - x[:, s1]) / np.maximum(x[:, g] + x[:, s1], 1e-6)
    want = (mean > rt.BRIGHT_REFLECTANCE) & (white < rt.WHITENESS_MAX) & (ndsi <= rt.SNOW_NDSI)
    rock = ~(x[:, 3] > np.float32(rt.NIR_SWIR_MIN) * x[:, s1])  # NIR darker than the SWIR-1
    assert (want & rock).mean() > 0.02  # the NIR / SWIR-1 rule removes some
    want &= ~rock
    assert 0.05 < want.mean() < 0.5  # both answers well represented
    got = rt.spectral_cloud_test(x, six)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(rt.spectral_cloud_test(x[0], six), want[0])  # (C, H, W)
    p = rng.random((2, 4, 64, 64), dtype=np.float32)
    p /= p.sum(1, keepdims=True)
    fast, slow = p.copy(), p.copy()
    rt.force_spectral_clouds(x, fast, six)
    clear, thick, shadow = slow[:, 0], slow[:, 2], slow[:, 3]
    thick[want] += clear[want] + shadow[want]
    clear[want] = 0
    shadow[want] = 0
    np.testing.assert_array_equal(fast, slow)


def test_detect_is_the_network_then_the_spectral_test(models: dict) -> None:  # noqa: ANN001
    """A detector's ``detect`` is ``run``, with the cloud calls its pixel trees are sure are
    clear cleared, then the spectral test applied on its band set (the swir6 detector has
    SWIR of its own, so the input's pixel trees read its tiles; rgbn has none)."""
    from kumo_edge.runtime import clear_cloud_calls, force_spectral_clouds, shipped_models

    det = load_model(shipped_models()["swir6"]["detector"])
    assert det.pixel_trees is not None
    assert load_model(shipped_models()["rgbn"]["detector"]).pixel_trees is None
    x = _six_band_tile()
    want = det.run(x)
    clear = det.pixel_clear(x)
    assert clear is not None and clear.shape == (1, *x.shape[2:])
    clear_cloud_calls(want, clear)
    assert force_spectral_clouds(x, want, det.bands).sum() == 64
    got = det.detect(x)
    assert np.array_equal(got, want)
    # snow under trees (bright in the visible, dark in SWIR-1): the trees are sure it is clear
    snow = np.empty((1, 6, 32, 32), np.float32)
    snow[0] = np.array([0.32, 0.29, 0.31, 0.35, 0.07, 0.06], np.float32)[:, None, None]
    assert det.pixel_clear(snow).all()
    p_net = det.run(snow)
    unsure = (p_net[:, 1] + p_net[:, 2]) < 0.9
    p_mask = det.detect(snow)
    assert (p_mask[:, 1:3].sum(1)[unsure] == 0).all()
    det.use_pixel_trees(None)  # without them: the network, then the spectral test
    assert det.pixel_clear(snow) is None
    plain = det.run(x)
    force_spectral_clouds(x, plain, det.bands)
    assert np.array_equal(det.detect(x), plain)
    assert (np.isin(det.classify(got)[0, :8, :8], (1, 2))).all()
    # the stream's tile step goes through it too: a flat hazy grey-white tile, most of which
    # the network alone calls cloud, all of it with the test
    from kumo_edge.stream import StreamConfig, process_tiles

    haze = np.empty((1, 6, 32, 32), np.float32)
    haze[0] = np.array([0.36, 0.33, 0.33, 0.34, 0.25, 0.2], np.float32)[:, None, None]
    assert (det.classify(det.run(haze)) == 0).mean() > 0.1  # what the test adds here
    _, probs = process_tiles(
        haze.copy(), np.ones((1, 32, 32), bool), det, None, StreamConfig(tile=32)
    )
    assert np.isin(det.classify(probs), (1, 2)).all()
