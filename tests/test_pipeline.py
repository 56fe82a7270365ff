"""kumo-edge run / detect end to end: files and BIL stdin in, GeoTIFFs and a report out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from kumo_edge.cli import cli
from kumo_edge.io import Raster

from conftest import fixture_models, linear_rpcs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_models("seed2")["dir"]


def invoke(*args: object, stdin: bytes | None = None):  # noqa: ANN201
    return CliRunner().invoke(cli, [str(a) for a in args], input=stdin, catch_exceptions=False)


def test_run_on_a_raster(tmp_path: Path, sample_path: Path, model_dir: Path) -> None:
    out, mask, rep = tmp_path / "clean.tif", tmp_path / "mask.tif", tmp_path / "r.json"
    r = invoke(
        "run",
        sample_path,
        out,
        "--mask",
        mask,
        "--report",
        rep,
        "--models",
        model_dir,
        "--strip-lines",
        "100",
        "--threads",
        "1",
    )
    assert r.exit_code == 0, r.output + r.stderr
    with Raster(sample_path) as s:
        src_valid = s.valid_mask()
        crs, transform = s.crs, s.transform
    with rasterio.open(out) as ds:
        assert ds.count == 4 and ds.crs == crs and ds.transform == transform
        assert ds.tags(4, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"] == "0.842"
        # opened as a GIS user opens it: nodata declared, bands named by wavelength, integer input
        # gives uint16 reflectance x 10,000 with its scale declared
        assert ds.nodata == 65535 and ds.descriptions[3] == "nir 842.0 nm"
        assert ds.dtypes[0] == "uint16" and ds.scales[0] == pytest.approx(1e-4)
        assert ds.compression.name == "zstd"  # the default: fastest to write at deflate's size
        data = ds.read().astype(np.float32)
        data[data != 65535] *= 1e-4
        assert (ds.read_masks(1) == 0).sum() == (~src_valid).sum() > 0
    with rasterio.open(mask) as ds:
        m = ds.read(1)
        assert ds.nodata == 0
        cmap = ds.colormap(1)
        assert cmap[0][3] == 0 and cmap[3] == (255, 255, 255, 255) and cmap[1] != cmap[4]
    # class names where GDAL and QGIS read them (PAM sidecar)
    aux = Path(str(mask) + ".aux.xml").read_text()
    assert aux.count("<Category>") == 5 and "<Category>cloud shadow (corrected)</Category>" in aux
    assert ((m == 0) == ~src_valid).all()
    assert set(np.unique(m)) <= {0, 1, 2, 3, 4}
    assert (data[:, ~src_valid] == 65535).all() and (data[:, src_valid] <= 1).all()
    f32 = tmp_path / "clean32.tif"
    r = invoke("run", sample_path, f32, "--models", model_dir, "--output-dtype", "float32")
    assert r.exit_code == 0, r.output + r.stderr
    with rasterio.open(f32) as ds:
        assert ds.dtypes[0] == "float32" and ds.nodata == -9999.0
        d32 = ds.read()
    assert (d32[:, ~src_valid] == -9999.0).all()
    # the same reflectance, to the uint16 step
    assert np.abs(d32[:, src_valid] - data[:, src_valid]).max() <= 0.5e-4 + 1e-6
    report = json.loads(rep.read_text())
    assert report["lines"] == 443 and report["tiles"] == len(report["per_tile"]) > 0
    assert {"row", "col", "cloud_fraction", "decision", "drop"} <= set(report["per_tile"][0])
    assert set(report["seconds"]) == {"resample", "detect", "generate", "blend"}
    e = invoke("run", sample_path, out, "--models", model_dir)
    assert e.exit_code == 1 and "--overwrite" in e.stderr


def test_detect_and_bil_stdin(tmp_path: Path, model_dir: Path) -> None:
    rng = np.random.default_rng(0)
    lines, width = 150, 70
    samples = (rng.random((lines, 4, width)) * 20000 + 2000).astype("<u2")  # BIL: line, band, pixel
    mask = tmp_path / "m.tif"
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # a stream has no georeferencing: no warning about that
        warnings.simplefilter("error", NotGeoreferencedWarning)
        r = invoke(
            "detect",
            "-",
            "--mask",
            mask,
            "--models",
            model_dir,
            "--profile",
            "rgbn",
            "--bil-width",
            width,
            "--scale",
            "2e-5",
            "--strip-lines",
            "40",
            stdin=samples.tobytes(),
        )
    assert r.exit_code == 0, r.output + r.stderr
    with rasterio.open(mask) as ds:
        assert (ds.height, ds.width) == (lines, width)
        assert (ds.read(1) > 0).all()
    assert not [p for p in tmp_path.iterdir() if "spool" in p.name or "partial" in p.name]
    # a pass cut inside a line is refused and leaves nothing behind
    bad = tmp_path / "bad.tif"
    r = invoke(
        "detect",
        "-",
        "--mask",
        bad,
        "--models",
        model_dir,
        "--profile",
        "rgbn",
        "--bil-width",
        width,
        stdin=samples.tobytes()[:-100],
    )
    assert r.exit_code == 1 and "truncated" in r.stderr
    assert not bad.exists() and not [
        p for p in tmp_path.iterdir() if "spool" in p.name or "partial" in p.name
    ]


def test_a_streams_bad_samples_and_empty_stream(tmp_path: Path, model_dir: Path) -> None:
    """Non-finite samples on stdin are refused in one line naming the --nodata value that
    marks them (which then works), and an empty stream is refused as such; nothing is left."""
    lines, width = 40, 70
    samples = np.random.default_rng(5).uniform(0.02, 0.3, (lines, 4, width)).astype("<f4")
    base = ["detect", "-", "--models", model_dir, "--profile", "rgbn", "--bil-width", width,
            "--bil-dtype", "float32"]  # fmt: skip
    for bad, nd in ((np.nan, "nan"), (np.inf, "inf")):
        s = samples.copy()
        s[20, 1, 5] = bad
        m = tmp_path / f"m_{nd}.tif"
        r = invoke(*base, "--mask", m, stdin=s.tobytes())
        assert r.exit_code == 1 and f"--nodata {nd} " in r.stderr, r.stderr
        assert not m.exists()
        r = invoke(*base, "--mask", m, "--nodata", nd, stdin=s.tobytes())
        assert r.exit_code == 0, r.stderr
        with rasterio.open(m) as ds:
            got = ds.read(1)
        assert got[20, 5] == 0 and (got > 0).sum() == lines * width - 1
    r = invoke(*base, "--mask", tmp_path / "empty.tif", stdin=b"")
    assert r.exit_code == 1 and "stream is empty" in r.stderr, r.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml"))
    assert left == ["m_inf.tif", "m_nan.tif"]


def test_models_that_cannot_take_the_input(tmp_path: Path, model_dir: Path) -> None:
    rgb = tmp_path / "rgb.tif"
    with rasterio.open(
        rgb, "w", driver="GTiff", width=64, height=64, count=3, dtype="float32"
    ) as d:
        d.write(np.full((3, 64, 64), 0.2, np.float32))
    r = invoke(
        "run", rgb, tmp_path / "o.tif", "--models", model_dir, "--wavelengths", "490,560,665"
    )
    assert r.exit_code == 1 and "nir" in r.stderr
    assert not (tmp_path / "o.tif").exists()


def test_corrupt_model_file(tmp_path: Path, sample_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "detector.onnx").write_bytes((model_dir / "detector.onnx").read_bytes()[:200])
    (broken / "generator.onnx").write_bytes((model_dir / "generator.onnx").read_bytes())
    r = invoke("run", sample_path, tmp_path / "o.tif", "--models", broken)
    assert r.exit_code == 1 and "not a loadable ONNX model" in r.stderr
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_full_disk_fails_cleanly(tmp_path: Path, sample_path: Path, model_dir: Path) -> None:
    """A disk that fills up mid-run (simulated with a file-size limit): GDAL's own write calls
    return normally and only its block cache fails, which used to leave a truncated GeoTIFF."""
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out, mask = tmp_path / "o.tif", tmp_path / "m.tif"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "kumo_edge.cli",
            "run",
            str(sample_path),
            str(out),
            "--mask",
            str(mask),
            "--models",
            str(model_dir),
        ],
        preexec_fn=limit,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1
    assert str(out) in p.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # neither output nor mask nor a temporary is left


def test_uint16_encoding_rounds_clips_and_marks_nodata_in_one_pass():
    """The output encoder (one numba pass, no float temporaries) against the numpy reference:
    round half to even, clip to [0, 65534], 65535 where the mask says no data; views too."""
    from kumo_edge.pipeline import encode

    rng = np.random.default_rng(0)
    big = rng.uniform(-0.2, 7.0, (3, 9, 7)).astype(np.float32)
    data = big[:, 2:7]  # a view, as the stream's windowed lines are
    mask = (rng.random((5, 7)) > 0.3).astype(np.uint8)
    mask[0, 0] = 1
    want = np.clip(np.rint(data * np.float32(1e4)), 0, 65534).astype(np.uint16)
    want[:, mask == 0] = 65535
    got = encode(data, mask, "uint16")
    assert got.dtype == np.uint16 and np.array_equal(got, want)
    assert (got == 65534).any() and (got == 0).any() and (got == 65535).any()
    f = encode(data, mask, "float32")
    assert (f[:, mask == 0] == -9999.0).all()
    assert np.array_equal(f[:, mask == 1], data[:, mask == 1])


def test_a_new_sensors_int16_file_with_negative_nodata_is_cleaned(tmp_path: Path) -> None:
    """An EnMAP-like file (224 bands 420-2450 nm, int16 reflectance x 10,000, no data -32768)
    from no sensor we ship: the default models take its VNIR, the no-data pixels stay no data,
    and the cleaned image is closer to the clear truth than the cloudy input."""
    from bench.new_sensors import land, write_scene
    from kumo_edge.bands import BandSet, resample, resampling_matrix
    from kumo_edge.clouds import CloudParams, synthesize

    centers = list(np.linspace(420, 2450, 224))
    bands = BandSet(tuple(centers), (8.0,) * 224)
    clear = land(np.asarray(centers), 96, 128, seed=4)
    cloudy = synthesize(clear, bands, CloudParams(cover=0.4, thickness=0.5), seed=4).cloudy
    src = tmp_path / "enmap.tif"
    write_scene(src, cloudy, centers, [8.0] * 224, "int16", 1e-4, -32768.0)
    with rasterio.open(src, "r+") as ds:  # a no-data corner
        block = ds.read(window=((0, 10), (0, 12)))
        block[:] = -32768
        ds.write(block, window=((0, 10), (0, 12)))
    out = tmp_path / "out.tif"
    r = invoke("run", src, out, "--mask", tmp_path / "m.tif")
    assert r.exit_code == 0, r.output + r.stderr
    with Raster(out) as o:
        strip = o.read_strip(0, o.height)
        out_bands = o.bands
    assert len(out_bands.centers_nm) == 32 and not strip.valid[:10, :12].any()
    assert strip.valid[10:].all()
    m = resampling_matrix(bands, out_bands)
    truth, before = resample(clear, m), resample(np.ascontiguousarray(cloudy), m)
    ok = strip.valid
    err_in = float(((before - truth) ** 2).mean(0)[ok].mean())
    err_out = float(((strip.data - truth) ** 2).mean(0)[ok].mean())
    assert err_out < 0.7 * err_in, (err_in, err_out)


def test_a_streams_all_zero_pixels_are_no_data_as_a_files_are(
    tmp_path: Path, model_dir: Path
) -> None:
    """BIL on stdin follows --nodata as a file does: by default (auto) pixels whose bands are
    all 0 (a swath edge's fill) are no data, masked 0 and never shown to the models as black
    ground; --nodata none takes them as data; a value marks the pixels holding it in any band."""
    rng = np.random.default_rng(3)
    lines, width = 60, 70
    samples = (rng.random((lines, 4, width)) * 20000 + 2000).astype("<u2")
    samples[:, :, :9] = 0  # the edge of the swath
    samples[30, 2, 40] = 65535  # a saturated sample
    masks = {}
    for nd in ("auto", "none", "65535"):
        m = tmp_path / f"m_{nd}.tif"
        args = ["detect", "-", "--mask", m, "--models", model_dir, "--profile", "rgbn",
                "--bil-width", width, "--scale", "2e-5", "--nodata", nd]  # fmt: skip
        r = invoke(*args, stdin=samples.tobytes())
        assert r.exit_code == 0, r.output + r.stderr
        with rasterio.open(m) as ds:
            masks[nd] = ds.read(1)
    assert (masks["auto"][:, :9] == 0).all() and (masks["auto"][:, 9:] > 0).all()
    assert (masks["none"] > 0).all()
    assert masks["65535"][30, 40] == 0 and (masks["65535"][:, :9] > 0).all()


def test_an_unrectified_inputs_gcps_and_rpcs_reach_the_outputs(
    tmp_path: Path, model_dir: Path
) -> None:
    """An input placed by ground control points and RPCs (no geotransform: an L1 product) gives
    outputs placed the same way; a line range's outputs have their points' rows and the RPC
    line offset counted from the range's first line."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    from kumo_edge.process import RunOptions, process

    h, w = 500, 96
    data = np.random.default_rng(5).uniform(0.05, 0.3, (4, h, w)).astype(np.float32)
    gcps = [
        GroundControlPoint(row=r, col=c, x=10.0 + c * 1e-3, y=50.0 - r * 1e-3)
        for r in (0, h - 1)
        for c in (0, w - 1)
    ]
    rpcs = linear_rpcs(h, w, (10.0, 49.5, 10.1, 50.0))
    src = tmp_path / "l1.tif"
    with rasterio.open(src, "w", driver="GTiff", width=w, height=h, count=4, dtype="float32") as d:
        d.write(data)
        d.gcps = (gcps, CRS.from_epsg(4326))
        d.rpcs = rpcs
        for b, nm in enumerate((490, 560, 665, 842), start=1):
            d.update_tags(b, wavelength=str(nm))
    opts = RunOptions(models=str(model_dir), threads=1)
    process(src, tmp_path / "all.tif", tmp_path / "all_mask.tif", options=opts)
    process(src, tmp_path / "part.tif", options=opts, rows=(192, 384))  # stride 48
    for name, first in (("all.tif", 0), ("all_mask.tif", 0), ("part.tif", 192)):
        with rasterio.open(tmp_path / name) as d:
            points, crs = d.gcps
            assert crs == CRS.from_epsg(4326) and len(points) == 4, name
            assert [(p.row, p.col, p.x, p.y) for p in points] == [
                (g.row - first, g.col, g.x, g.y) for g in gcps
            ], name
            assert d.rpcs is not None and d.rpcs.line_off == pytest.approx(250.0 - first), name
            assert d.rpcs.samp_off == pytest.approx(48.0)
