"""The CLI end to end: run commands, reopen outputs, check pixels and errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from kumo_edge.cli import cli
from kumo_edge.io import Raster

from conftest import SHARED, make_raster
from test_tiling import _best_grid_numpy


def run(*args: str, ok: bool = True):  # noqa: ANN201
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output + r.stderr
    return r


def one_line_error(r) -> str:  # noqa: ANN001
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def no_partials(folder: Path) -> bool:
    return not any("partial" in p.name for p in folder.iterdir())


def test_info_text_and_json(sample_path: Path) -> None:
    r = run("info", sample_path)
    assert "489 x 443 px, 6 bands, uint16" in r.output
    assert "835.0 nm" in r.output and "GDAL IMAGERY metadata" in r.output
    d = json.loads(run("info", "--json", sample_path).output)
    with Raster(sample_path) as ras:
        expected = ras.valid_mask().mean()
    assert d["valid_fraction"] == pytest.approx(expected)
    assert 0.5 < d["valid_fraction"] < 0.8  # the rotated footprint leaves no-data borders
    assert [b["wavelength_nm"] for b in d["band_list"]][:4] == [483.0, 560.0, 662.0, 835.0]


def test_info_wavelength_override(tmp_path: Path) -> None:
    p = make_raster(tmp_path / "p.tif", np.full((2, 8, 8), 0.2, np.float32))
    assert "unknown" in run("info", p).output
    r = run("info", p, "--wavelengths", "550,650")
    assert "550.0 nm" in r.output and "from caller" in r.output
    e = run("info", p, "--wavelengths", "550", ok=False)
    assert "has 1 values but p.tif has 2 bands" in one_line_error(e)
    e = run("info", p, "--wavelengths", "a,b", ok=False)
    assert e.exit_code == 2


def test_tile_footprint(tmp_path: Path, footprint_file) -> None:  # noqa: ANN001
    src, valid = footprint_file
    out = tmp_path / "tiles"
    r = run("tile", src, out, "--size", "128")
    index = json.loads((out / "tiles.json").read_text())
    best, _ = _best_grid_numpy(valid, 128, 128)
    assert index["count"] == best == len(list(out.glob("*.tif")))
    assert f"{best} tiles" in r.output
    with rasterio.open(src) as s:
        src_transform = s.transform
    for t in index["tiles"]:
        with rasterio.open(out / t["file"]) as ds:
            data = ds.read()
            assert ds.crs.to_epsg() == 32633
            assert (
                ds.transform.c == src_transform.c + 30 * t["col"]
                and ds.transform.f == src_transform.f - 30 * t["row"]
            )
        assert (data != 0).any(axis=0).all()  # no fill pixel in any tile
        assert valid[t["row"] : t["row"] + 128, t["col"] : t["col"] + 128].all()
    assert no_partials(tmp_path)


def test_tile_keeps_values_and_wavelengths(tmp_path: Path, tagged_file: Path) -> None:
    out = tmp_path / "t"
    run("tile", tagged_file, out, "--size", "32", "--stride", "16")
    index = json.loads((out / "tiles.json").read_text())
    assert index["stride"] == 16 and index["count"] > 4
    t = index["tiles"][0]
    with rasterio.open(tagged_file) as s:
        ref = s.read(window=((t["row"], t["row"] + 32), (t["col"], t["col"] + 32)))
    with Raster(out / t["file"]) as r:
        np.testing.assert_array_equal(r.read_raw(0, 32), ref)
        assert r.bands.centers_nm == (490.0, 560.0, 665.0, 842.0)
        assert r.scale_source == "GDAL scale/offset"


def test_tile_refuses_existing_output(tmp_path: Path, footprint_file) -> None:  # noqa: ANN001
    src, _ = footprint_file
    out = tmp_path / "tiles"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    e = run("tile", src, out, ok=False)
    assert "--overwrite" in one_line_error(e)
    assert (out / "keep.txt").read_text() == "mine"
    run("tile", src, out, "--size", "200", "--overwrite")
    assert not (out / "keep.txt").exists() and (out / "tiles.json").exists()


def test_tile_truncated_input_leaves_nothing(tmp_path: Path, footprint_file) -> None:  # noqa: ANN001
    src, _ = footprint_file
    cut = tmp_path / "cut.tif"
    shutil.copy(src, cut)
    os.truncate(cut, cut.stat().st_size * 2 // 3)
    e = run("tile", cut, tmp_path / "tiles", ok=False)
    assert "truncated or corrupt" in one_line_error(e)
    assert not (tmp_path / "tiles").exists() and no_partials(tmp_path)


def test_synth_outputs(tmp_path: Path, sample_path: Path) -> None:
    out = tmp_path / "cloudy.tif"
    r = run("synth", sample_path, out, "--cover", "0.5", "--seed", "3", "--strip-lines", "100")
    assert "thin cloud" in r.output
    truth, tau = tmp_path / "cloudy.truth.tif", tmp_path / "cloudy.tau550.tif"
    with Raster(sample_path) as s:
        clear = s.read_strip(0, s.height)
    with Raster(out, nodata=-9999) as c:
        assert c.bands.centers_nm == (483.0, 560.0, 662.0, 835.0, 1648.0, 2206.0)
        assert c.crs == s.crs and c.transform == s.transform
        cloudy = c.read_strip(0, c.height)
    np.testing.assert_array_equal(cloudy.valid, clear.valid)
    with rasterio.open(truth) as t:
        mask = t.read(1)
    with rasterio.open(tau) as t:
        tau550 = t.read(1)
    assert (mask[~clear.valid] == 0).all()
    cloud = (mask == 2) | (mask == 3)
    assert 0.3 < cloud[clear.valid].mean() < 0.7
    # clouds brighten the blue band; clear pixels are untouched
    assert cloudy.data[0][cloud].mean() > clear.data[0][cloud].mean() + 0.1
    # "clear" truth: below the cloud threshold and less than 10 % shading (the model's definition)
    np.testing.assert_allclose(
        cloudy.data[:, mask == 1], clear.data[:, mask == 1], rtol=0.1, atol=0.03
    )
    assert (tau550[cloud] > 0).all()
    with rasterio.open(out) as ds:
        assert json.loads(ds.tags()["CLOUD_PARAMS"])["cover"] == 0.5
    e = run("synth", sample_path, out, ok=False)
    assert "--overwrite" in one_line_error(e)


def test_synth_bad_inputs_leave_no_output(tmp_path: Path) -> None:
    plain = make_raster(tmp_path / "plain.tif", np.full((3, 40, 40), 0.2, np.float32))
    e = run("synth", plain, tmp_path / "o.tif", ok=False)
    assert "carries no band wavelengths" in one_line_error(e)
    assert "--profile rgb (" in one_line_error(e)  # the one profile with 3 bands
    nan = np.full((3, 300, 40), 0.2, np.float32)
    nan[:, 290, 5] = np.nan  # late in the file: the first strip has already been written
    p = make_raster(tmp_path / "nan.tif", nan)
    e = run("synth", p, tmp_path / "o.tif", "--wavelengths", "480,560,660", ok=False)
    assert "NaN" in one_line_error(e)
    dn = make_raster(tmp_path / "dn.tif", np.full((3, 40, 40), 7000, np.uint16))
    e = run("synth", dn, tmp_path / "o.tif", "--wavelengths", "480,560,660", ok=False)
    assert "--scale" in one_line_error(e)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dn.tif", "nan.tif", "plain.tif"]


def test_demo(tmp_path: Path) -> None:
    import re

    out = tmp_path / "demo"
    r = run("demo", "--out", out, "--threads", "1")
    for name in (
        "cloudy.tif",
        "truth.tif",
        "tau550.tif",
        "cleaned.tif",
        "mask.tif",
        "report.json",
        "demo.png",
    ):
        assert (out / name).stat().st_size > 500, name
    with rasterio.open(out / "demo.png") as png:
        assert png.count == 3 and png.width > 4 * 489
    before = [
        float(v) for v in re.search(r"before .*PSNR ([\d.]+) dB, SAM ([\d.]+)", r.output).groups()
    ]
    after = [
        float(v) for v in re.search(r"after .*PSNR ([\d.]+) dB, SAM ([\d.]+)", r.output).groups()
    ]
    assert (
        after[0] > before[0] + 3.0
    )  # the shipped models really remove thin cloud on this held-out scene
    with rasterio.open(out / "mask.tif") as m, rasterio.open(out / "truth.tif") as t:
        detected, truth = m.read(1), t.read(1)
    ok = truth > 0
    cloud_truth = np.isin(truth[ok], (2, 3))
    cloud_pred = np.isin(detected[ok], (2, 3))
    assert (cloud_truth == cloud_pred).mean() > 0.8
    e = run("demo", "--out", out, ok=False)
    assert "--overwrite" in one_line_error(e)


@pytest.mark.skipif(not (SHARED / "landsat8").is_dir(), reason="../shared/data not present")
def test_tile_real_landsat8_rotated_scene(tmp_path: Path) -> None:
    src = SHARED / "landsat8" / "LC08_L1TP_224078_20200518_B2B3B4.tif"
    out = tmp_path / "l8"
    run("tile", src, out, "--size", "256")
    index = json.loads((out / "tiles.json").read_text())
    with Raster(src) as r:
        valid = r.valid_mask()
    from kumo_edge.tiling import footprint_tiles

    assert index["count"] == len(footprint_tiles(valid, 256)) >= 39
    for t in index["tiles"]:
        with rasterio.open(out / t["file"]) as ds:
            assert (ds.read() != 0).any(axis=0).all()


def test_bench_models_times_the_shipped_models(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    r = CliRunner().invoke(
        cli,
        [
            "bench",
            "models",
            "--models",
            "rgbn",
            "--repeats",
            "2",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"rgbn/detector", "rgbn/generator"}
    assert doc["repeats"] == 2
    for v in doc["results"].values():
        # a median no larger than the 95th percentile, per tile of the contract's size
        assert 0 < v["median_ms"] <= v["p95_ms"] and v["precision"] == "int8"
        assert v["tile"] == 256 and v["batch"] >= 1 and v["file_mb"] < 1
    bad = CliRunner().invoke(cli, ["bench", "models", "--models", "nope"])
    assert bad.exit_code == 1 and "nope" in bad.output


def test_8bit_input_is_refused_by_the_model_removers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(30, 220, (3, 64, 64)).astype(np.uint8)  # like a display-stretched PNG
    p = make_raster(tmp_path / "rice.tif", data)
    out = tmp_path / "out.tif"
    args = ("run", p, out, "--models", "rgb", "--wavelengths", "490,560,665", "--scale", "0.00392")
    e = run(*args, ok=False)
    assert "is 8-bit" in one_line_error(e) and "--allow-8bit" in e.stderr
    assert not out.exists() and no_partials(tmp_path)
    run(*args, "--allow-8bit")  # the caller vouches for the values
    assert out.exists()
    run("run", p, tmp_path / "hot.tif", *args[3:], "--method", "hot")  # a classical remover runs


def test_shadow_threshold_option(tmp_path: Path, sample_path: Path) -> None:
    cloudy = tmp_path / "cloudy.tif"  # the sample scene is clear: no cloud, so no shadow
    run("synth", sample_path, cloudy, "--cover", "0.5", "--seed", "3")
    shadow = {}
    for t in ("0.05", "0.95"):
        m, r = tmp_path / f"m{t}.tif", tmp_path / f"r{t}.json"
        run(
            "detect",
            cloudy,
            "--mask",
            m,
            "--report",
            r,
            "--models",
            "rgbn",
            "--shadow-threshold",
            t,
        )
        rep = json.loads(r.read_text())
        assert rep["shadow_threshold"] == float(t)
        with rasterio.open(m) as ds:
            codes = ds.read(1)
        shadow[t] = int((codes == 4).sum())
        assert rep["class_pixels"]["shadow"] == shadow[t]
    assert shadow["0.05"] > shadow["0.95"]  # a lower point calls more shadow
    e = run(
        "detect", sample_path, "--mask", tmp_path / "x.tif", "--shadow-threshold", "1", ok=False
    )
    assert e.exit_code == 2


def test_trees_option_and_report(tmp_path: Path, sample_path: Path) -> None:
    """rgbn's mask takes its trees' second opinion by default (the report names the file);
    --no-trees gives the network's mask; the cleaned output is the same either way."""
    cloudy = tmp_path / "cloudy.tif"
    run("synth", sample_path, cloudy, "--cover", "0.5", "--seed", "3")
    masks, outs = {}, {}
    for flag in ("--trees", "--no-trees"):
        m, r, o = tmp_path / f"m{flag}.tif", tmp_path / f"r{flag}.json", tmp_path / f"o{flag}.tif"
        run("run", cloudy, o, "--mask", m, "--report", r, "--models", "rgbn", flag)
        rep = json.loads(r.read_text())
        assert ("detector_trees" in rep["model_files"]) == (flag == "--trees")
        with rasterio.open(m) as ds:
            masks[flag] = ds.read(1)
        with rasterio.open(o) as ds:
            outs[flag] = ds.read()
    np.testing.assert_array_equal(outs["--trees"], outs["--no-trees"])
    assert (masks["--trees"] != masks["--no-trees"]).mean() > 0.001


def test_benchmark_records_the_interpreter_and_its_optional_packages(tmp_path: Path) -> None:
    """The file-path benchmark says which interpreter ran its passes and what it can import
    beyond the runtime (a flight install imports none of these; SciPy slows numba's start)."""
    import importlib.util
    import sys

    from kumo_edge.benchmark import interpreter_info

    info = interpreter_info()
    assert info["python"] == sys.executable
    want = [m for m in ("scipy", "torch", "sklearn", "skimage") if importlib.util.find_spec(m)]
    assert info["optional_packages"] == want
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert interpreter_info(str(broken))["optional_packages"] is None


def test_benchmark_pass_reports_its_cpu_time_as_cores_per_sensor_second() -> None:
    """A pass's CPU seconds (every thread) over the sensor time it covers: the cores that must
    be busy all the time to keep up. Bounded by the cores the pass could use during its wall
    time, so start-up CPU (imports, model loading) is not counted in the in-memory pass."""
    import os

    from kumo_edge.benchmark import cpu_figures, run_pass

    assert cpu_figures(6.0, 568, 284.0) == {"cpu_s": 6.0, "cpu_per_sensor_s": 3.0}
    r = run_pass("satellogic-hsi", 300, strip=64, width=512)
    assert 0.0 < r["cpu_s"] <= r["wall_s"] * (os.cpu_count() or 1) * 1.05 + 0.05
    sensor_s = 300 / r["sensor_lines_per_s"]
    assert abs(r["cpu_per_sensor_s"] - r["cpu_s"] / sensor_s) < 1e-9


def test_run_spare_snow_keeps_snow_the_files_swir_finds(tmp_path: Path) -> None:
    """``kumo-edge run --spare-snow`` on a six-band file (blue ... SWIR 2.2 um, as Landsat and
    Sentinel-2 carry) with the rgbn models, snow beside hazy vegetation: the tile goes to the
    remover, the pixels the file's own SWIR calls snow come out as they went in, and the report
    gives the tile's spared share."""
    from kumo_edge.bands import resample, resampling_matrix
    from kumo_edge.config import sensor_profile
    from kumo_edge.runtime import read_contract, shipped_models

    six = sensor_profile("rgbn-swir").bands
    rng = np.random.default_rng(5)
    snow = np.array([0.90, 0.90, 0.88, 0.80, 0.06, 0.04], np.float32)
    veg = np.array([0.03, 0.07, 0.04, 0.35, 0.18, 0.09], np.float32)
    is_snow = np.zeros((96, 96), bool)
    is_snow[:, :48] = True
    haze = 0.3 * np.linspace(0, 1, 96, dtype=np.float32)[None, :, None]  # thin cloud, top down
    hazy_veg = veg[:, None, None] * (1 - haze) + 0.8 * haze
    x = np.where(is_snow[None], snow[:, None, None], hazy_veg)
    x = (x * (1 + 0.05 * rng.standard_normal((1, 96, 96)))).clip(0, 1).astype(np.float32)
    src = make_raster(tmp_path / "six.tif", x)
    wl = ",".join(f"{c:g}" for c in six.centers_nm)
    out = tmp_path / "out.tif"
    r = CliRunner().invoke(
        cli,
        ["run", str(src), str(out), "--models", "rgbn", "--wavelengths", wl,
         "--report", str(tmp_path / "r.json"), "--spare-snow"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as d:
        y = d.read().astype(np.float32)
    bands = read_contract(shipped_models()["rgbn"]["detector"]).bands
    before = resample(x, resampling_matrix(six, bands))
    assert np.abs(y - before)[:, is_snow].max() < 2e-4  # the ring's precision
    rep = json.loads((tmp_path / "r.json").read_text())
    assert max(t.get("snow_spared", 0) for t in rep["per_tile"]) > 0.4


def test_run_models_swir6_keeps_and_corrects_a_six_band_file(tmp_path: Path) -> None:
    """A six-band file (blue ... SWIR 2.2 um): by default ``run`` takes rgbn, the first set
    with a remover of its own (four bands out); ``--models swir6`` runs the six-band detector
    with rgbn's physics remover widened to the six bands: six bands out, named, the thin cloud
    lowered in the SWIR bands too, and the report names the remover file and the bands it
    reads."""
    from kumo_edge.config import sensor_profile

    six = sensor_profile("rgbn-swir").bands
    rng = np.random.default_rng(6)
    veg = np.array([0.03, 0.07, 0.04, 0.35, 0.18, 0.09], np.float32)
    soil = np.array([0.08, 0.12, 0.16, 0.25, 0.32, 0.28], np.float32)
    pick = rng.integers(0, 2, (8, 8)).repeat(12, 0).repeat(12, 1)
    clear = np.stack([veg, soil])[pick].transpose(2, 0, 1)
    clear = (clear * (1 + 0.05 * rng.standard_normal((1, 96, 96)))).clip(0, 1)
    k = 0.8 * np.linspace(0, 1, 96, dtype=np.float32)[None, :, None]  # thin cloud, top down
    t = np.exp(-k * (np.array(six.centers_nm, np.float32)[:, None, None] / 550.0) ** -1.0)
    x = (clear * t + 0.85 * (1 - t)).clip(0, 1).astype(np.float32)
    src = make_raster(tmp_path / "six.tif", x)
    wl = ",".join(f"{c:g}" for c in six.centers_nm)
    outs = {}
    for models in (None, "swir6"):
        out = tmp_path / f"out_{models}.tif"
        rep = tmp_path / f"r_{models}.json"
        args = ["run", str(src), str(out), "--wavelengths", wl, "--report", str(rep)]
        r = CliRunner().invoke(cli, args + (["--models", models] if models else []))
        assert r.exit_code == 0, r.output
        with rasterio.open(out) as d:
            outs[models] = (d.read().astype(np.float32), d.descriptions)
        outs[models, "rep"] = json.loads(rep.read_text())
    assert outs[None][0].shape[0] == 4 and outs[None, "rep"]["models"] == "rgbn"
    y, names = outs["swir6"]
    rep = outs["swir6", "rep"]
    assert y.shape[0] == 6 and rep["models"] == "swir6"
    assert all(n for n in names)
    assert rep["model_files"]["remover"]["file"] == "rgbn/generator.onnx"
    assert rep["model_files"]["remover"]["bands_read"] == [0, 1, 2, 3]
    assert rep["model_files"]["detector"]["file"] == "swir6/detector.onnx"
    hazy = (k[0, :, 0] > 0.4)[:, None] & np.ones((96, 96), bool)
    swir = [4, 5]
    err_in = np.abs(x[swir] - clear[swir])[:, hazy].mean()
    err_out = np.abs(y[swir] - clear[swir])[:, hazy].mean()
    # passed through, the SWIR bands would keep their error (1.0); where the detector is sure of
    # thick cloud (its densest rows) they keep their input by design. Measured: 0.88 with the
    # rgbn remover that read no shadow, 0.95 with the one that does (2026-12-07), which corrects
    # this smooth, shadowless haze less in the SWIR (bench.swir6_removal: more on real scenes)
    assert err_out < 0.97 * err_in, (err_in, err_out)


def test_detect_reads_the_files_own_swir_unless_told_not_to(tmp_path: Path) -> None:
    """``kumo-edge detect --models rgbn`` on a six-band file with a snow field: the rgbn
    detector calls the snow cloud; by default the file's own SWIR marks those calls ambiguous
    (not counted for ``drop``), ``--no-input-swir`` only the calls the detector is unsure of. The
    mask's cloud calls are the same either way here (the spectral test finds no cloud in snow)."""
    from kumo_edge.config import sensor_profile

    six = sensor_profile("rgbn-swir").bands
    snow = np.array([0.85, 0.85, 0.83, 0.78, 0.06, 0.04], np.float32)
    rng = np.random.default_rng(3)
    x = np.broadcast_to(snow[:, None, None], (6, 96, 96)).copy()
    x = (x * (1 + 0.02 * rng.standard_normal((1, 96, 96)))).astype(np.float32)
    src = make_raster(tmp_path / "snow6.tif", x)
    wl = ",".join(f"{c:g}" for c in six.centers_nm)
    reps = {}
    for flag in ("--input-swir", "--no-input-swir"):
        rep = tmp_path / f"{flag}.json"
        r = CliRunner().invoke(
            cli,
            ["detect", str(src), "--mask", str(tmp_path / f"{flag}.tif"), "--models", "rgbn",
             "--wavelengths", wl, "--report", str(rep), flag],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        reps[flag] = json.loads(rep.read_text())["per_tile"][0]
    on, off = reps["--input-swir"], reps["--no-input-swir"]
    assert on["cloud_fraction"] == off["cloud_fraction"] > 0.9
    assert on["ambiguous_bright"] > 0.99 and not on["drop"]
    assert off["ambiguous_bright"] < on["ambiguous_bright"] - 0.3  # only the unsure calls


def test_a_file_with_no_valid_pixel_says_so(tmp_path: Path, tagged_file: Path) -> None:
    """A pass where every pixel is no data (here a band of fill holding the no-data value)
    succeeds with an all-no-data output, and says why on stderr instead of passing silently."""
    filled = tmp_path / "filled.tif"
    shutil.copy(tagged_file, filled)
    with rasterio.open(filled, "r+") as dst:
        assert dst.nodata == 0
        dst.write(np.zeros((dst.height, dst.width), dst.dtypes[0]), 3)  # one band all fill
    r = run("detect", filled, "--mask", tmp_path / "m.tif")
    assert "every pixel is no data" in r.stderr
    with rasterio.open(tmp_path / "m.tif") as m:
        assert not m.read(1).any()
    ok = run("detect", tagged_file, "--mask", tmp_path / "m2.tif")
    assert "no data" not in ok.stderr
