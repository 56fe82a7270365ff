"""The ground side: `kumo-edge batch` on a Dask LocalCluster, STAC out, resumable, split passes
identical to one stream. Real scenes: crops of the bundled Landsat-7 sample (6 bands, rgbn
models), so every test runs the shipped models without torch or a network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

pytest.importorskip("distributed")
pystac = pytest.importorskip("pystac")

from kumo_edge.cli import sample_scene_path  # noqa: E402
from kumo_edge.ground import BatchOptions, discover, run_batch  # noqa: E402
from kumo_edge.ground.batch import is_complete, scene_paths  # noqa: E402
from kumo_edge.process import RunOptions, process  # noqa: E402
from kumo_edge.stream import input_window, split_rows  # noqa: E402

from conftest import linear_rpcs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OPTS = RunOptions(threads=1)


def _write_like(ds: rasterio.DatasetReader, dst: Path, data: np.ndarray, **prof: object) -> Path:
    """``data`` written with ``ds``'s metadata (wavelengths, scale, descriptions)."""
    profile = {**ds.profile, "width": data.shape[2], "height": data.shape[1], **prof}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.scales, out.offsets = ds.scales, ds.offsets
        out.update_tags(**ds.tags())
        for b in range(1, ds.count + 1):
            out.update_tags(b, **ds.tags(b))
            out.set_band_description(b, ds.descriptions[b - 1] or "")
    return dst


def _crop(src: Path, dst: Path, window: Window) -> Path:
    with rasterio.open(src) as ds:
        return _write_like(ds, dst, ds.read(window=window), transform=ds.window_transform(window))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six different 160 x 120 crops of the real sample scene."""
    d = tmp_path_factory.mktemp("scenes")
    src = sample_scene_path()
    for i in range(6):
        _crop(src, d / f"scene_{i}.tif", Window(40 * (i % 3), 100 * (i // 3), 160, 120))
    return d


@pytest.fixture(scope="module")
def batch_out(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out")
    summary = run_batch([scenes], out, OPTS, BatchOptions(workers=2, progress=False))
    return out, summary


def test_batch_writes_every_output_item_and_catalog(scenes: Path, batch_out) -> None:  # noqa: ANN001
    stac_pydantic = pytest.importorskip("stac_pydantic")
    out, summary = batch_out
    assert (summary["scenes"], summary["done"], summary["failed"]) == (6, 6, 0)
    assert json.loads((out / "batch.json").read_text())["done"] == 6
    cat = pystac.read_file(str(out / "catalog.json"))
    items = sorted(cat.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == [f"scene_{i}" for i in range(6)]
    stac_pydantic.Catalog.model_validate(json.loads((out / "catalog.json").read_text()))
    for it in items:
        d = json.loads((out / f"{it.id}.item.json").read_text())
        stac_pydantic.Item.model_validate(d)
        for key in ("data", "mask", "report"):
            f = Path(it.assets[key].get_absolute_href())
            assert f.is_file() and f.stat().st_size == d["assets"][key]["file:size"]
        bands = d["assets"]["data"]["eo:bands"]
        assert [round(b["center_wavelength"], 3) for b in bands] == [0.49, 0.56, 0.665, 0.842]
        # eo:cloud_cover is the mask's thin + thick share of valid pixels
        with rasterio.open(out / f"{it.id}.mask.tif") as m:
            codes = m.read(1)
        valid = codes > 0
        cover = 100 * np.isin(codes, (2, 3)).sum() / valid.sum()
        assert d["properties"]["eo:cloud_cover"] == pytest.approx(cover, abs=1e-3)
        assert d["properties"]["processing:software"]["kumo-edge"]
        assert len(d["properties"]["kumo:models"]["detector"]["sha256"]) == 64
        assert d["bbox"][0] < d["bbox"][2] and -90 < d["bbox"][1] < 90
        links = {lk["rel"]: lk["href"] for lk in d["links"]}
        assert (out / links["derived_from"]).resolve() == (scenes / f"{it.id}.tif").resolve()
        assert links["parent"] == "./catalog.json"


def test_batch_output_is_the_single_run_output(scenes: Path, batch_out, tmp_path: Path) -> None:  # noqa: ANN001
    out, _ = batch_out
    ref = tmp_path / "ref.tif"
    process(scenes / "scene_4.tif", ref, tmp_path / "ref.mask.tif", options=OPTS)
    for a, b in ((ref, out / "scene_4.tif"), (tmp_path / "ref.mask.tif", out / "scene_4.mask.tif")):
        with rasterio.open(a) as x, rasterio.open(b) as y:
            assert np.array_equal(x.read(), y.read())
            assert x.crs == y.crs and x.transform == y.transform


def test_rerun_skips_complete_scenes_and_redoes_the_rest(scenes: Path, batch_out) -> None:  # noqa: ANN001
    out, _ = batch_out
    p = scene_paths(out, "scene_2")
    p["item"].unlink()  # killed before its completion record
    (out / ".scene_2.tif.kumo999999.partial").write_bytes(b"half")  # a dead run's leftover
    p3 = scene_paths(out, "scene_3")
    with open(p3["data"], "ab") as f:  # a file that is not what its Item recorded
        f.write(b"x")
    s = run_batch([scenes], out, OPTS, BatchOptions(workers=2, progress=False))
    status = {r["scene"]: r["status"] for r in s["per_scene"]}
    assert status == {f"scene_{i}": "done" if i in (2, 3) else "skipped" for i in range(6)}
    assert not (out / ".scene_2.tif.kumo999999.partial").exists()
    assert all(is_complete(sc, out, OPTS) for sc in discover([scenes]))
    # other settings that change outputs are not "complete"
    assert not is_complete(discover([scenes])[0], out, OPTS.with_(method="hot"))


def test_a_corrupt_scene_fails_alone(scenes: Path, tmp_path: Path) -> None:
    """Six scenes, one of them a truncated file, on a LocalCluster of 2 workers (the CLI)."""
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        (d / f"scene_{i}.tif").write_bytes((scenes / f"scene_{i}.tif").read_bytes())
    blob = (scenes / "scene_5.tif").read_bytes()
    (d / "broken.tif").write_bytes(blob[: len(blob) // 3])  # truncated
    r = subprocess.run(
        [sys.executable, "-m", "kumo_edge.cli", "batch", str(d), "--out", str(tmp_path / "o"),
         "--workers", "2", "--threads", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    summary = json.loads((tmp_path / "o" / "batch.json").read_text())
    status = {x["scene"]: x["status"] for x in summary["per_scene"]}
    assert status == {"broken": "failed", **{f"scene_{i}": "done" for i in range(5)}}
    err = next(x["error"] for x in summary["per_scene"] if x["scene"] == "broken")
    assert "broken.tif" in err and "\n" not in err
    assert "failed: broken: " in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "o").glob("broken*"))  # nothing half-written
    cat = json.loads((tmp_path / "o" / "catalog.json").read_text())
    assert sorted(lk["href"] for lk in cat["links"] if lk["rel"] == "item") == [
        f"./scene_{i}.item.json" for i in range(5)
    ]


def test_killed_batch_resumes_with_what_was_left(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "kumo_edge.cli", "batch", str(scenes), "--out", str(out),
           "--workers", "1", "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    t0 = time.time()
    while time.time() - t0 < 240 and len(list(out.glob("*.item.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its workers
    proc.wait()
    finished = len(list(out.glob("*.item.json")))
    assert 2 <= finished < 6, "the batch was not killed halfway"
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "batch.json").read_text())
    assert s["skipped"] == finished and s["done"] == 6 - finished and s["failed"] == 0
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # no leftovers


def _tall_scene(path: Path, lines: int) -> Path:
    """A ``lines`` x 96 px pass: the sample's columns 100-196 stacked along the track."""
    with rasterio.open(sample_scene_path()) as ds:
        col = ds.read(window=Window(100, 0, 96, ds.height))
        reps = -(-lines // col.shape[1])
        data = np.concatenate([col, col[:, ::-1]] * reps, axis=1)[:, :lines]
        transform = ds.window_transform(Window(100, 0, 96, lines))
        return _write_like(ds, path, data, transform=transform, tiled=False, blockysize=16)


def test_split_pass_equals_single_stream(tmp_path: Path) -> None:
    src = _tall_scene(tmp_path / "pass.tif", 1100)
    process(src, tmp_path / "one.tif", tmp_path / "one.mask.tif", tmp_path / "one.json", OPTS)
    s = run_batch(
        [src], tmp_path / "o", OPTS, BatchOptions(workers=2, split_lines=200, progress=False)
    )
    assert s["done"] == 1
    rep = json.loads((tmp_path / "o" / "pass.report.json").read_text())
    assert len(rep["pieces"]) >= 4  # really split
    for a, b in (("one.tif", "o/pass.tif"), ("one.mask.tif", "o/pass.mask.tif")):
        with rasterio.open(tmp_path / a) as x, rasterio.open(tmp_path / b) as y:
            assert np.array_equal(x.read(), y.read()), a
            assert x.profile == y.profile and x.descriptions == y.descriptions
    one = json.loads((tmp_path / "one.json").read_text())
    keys = ("row", "col", "decision", "drop", "cloud_fraction")
    pick = [[{k: t.get(k) for k in keys} for t in r["per_tile"]] for r in (one, rep)]
    assert pick[0] == pick[1] and rep["lines"] == one["lines"] == 1100
    assert rep["class_pixels"] == one["class_pixels"]
    assert not [f for f in (tmp_path / "o").iterdir() if f.name.startswith(".")]


@pytest.mark.parametrize("rows", [(0, 224), (224, 448), (448, 1000), (672, 700)])
def test_line_range_equals_those_lines_of_the_whole_pass(tmp_path: Path, rows) -> None:  # noqa: ANN001
    src = _tall_scene(tmp_path / "pass.tif", 1000)
    process(src, tmp_path / "one.tif", options=OPTS)
    process(src, tmp_path / "part.tif", options=OPTS, rows=rows)
    with rasterio.open(tmp_path / "one.tif") as x, rasterio.open(tmp_path / "part.tif") as y:
        a, b = rows
        assert np.array_equal(x.read(window=Window(0, a, 96, b - a)), y.read())
        assert y.transform == x.window_transform(Window(0, a, 96, b - a))


def test_input_window_and_split_rows() -> None:
    # tile 256, halo 16: stride 224; a range needs the tile row before it and its last row's tile
    assert input_window((224, 448), 2000, 256, 16) == (0, 480)
    assert input_window((448, 449), 2000, 256, 16) == (224, 704)
    assert input_window((0, 2000), 2000, 256, 16) == (0, 2000)
    with pytest.raises(Exception, match="multiple of the stride 224"):
        input_window((100, 300), 2000, 256, 16)
    rows = split_rows(2000, 500, 256, 16)
    assert rows[0][0] == 0 and rows[-1][1] == 2000
    assert all(a % 224 == 0 and b == c for (a, b), (c, _) in zip(rows, rows[1:], strict=False))


def test_discover_lists_stac_and_name_collisions(scenes: Path, tmp_path: Path) -> None:
    lst = tmp_path / "scenes.txt"
    lst.write_text(f"# two scenes\n{scenes / 'scene_0.tif'}\n\n{scenes / 'scene_1.tif'}\n")
    assert [s.id for s in discover([lst])] == ["scene_0", "scene_1"]
    # an ItemCollection: its data assets, the source Item linked
    import datetime as dt

    items = []
    for i in (2, 3):
        it = pystac.Item(f"pass-{i}", None, None, dt.datetime(2026, 5, i, tzinfo=dt.UTC), {})
        it.add_asset("data", pystac.Asset(str(scenes / f"scene_{i}.tif"), media_type="image/tiff"))
        items.append(it)
    ic = tmp_path / "items.json"
    ic.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    found = discover([ic])
    assert [(s.id, Path(s.href).name) for s in found] == [
        ("pass-2", "scene_2.tif"),
        ("pass-3", "scene_3.tif"),
    ]
    assert found[0].datetime.startswith("2026-05-02")
    other = tmp_path / "x"
    other.mkdir()
    (other / "scene_0.tif").write_bytes((scenes / "scene_0.tif").read_bytes())
    with pytest.raises(Exception, match="both write scene_0.tif"):
        discover([scenes, other])
    with pytest.raises(Exception, match="no such file"):
        discover([tmp_path / "missing.tif"])


def test_batch_on_an_existing_scheduler(scenes: Path, tmp_path: Path) -> None:
    import datetime as dt

    from distributed import LocalCluster

    # the scenes come from a STAC ItemCollection: acquisition time and source Item carried over
    items = []
    for i in (0, 1):
        it = pystac.Item(f"pass-{i}", None, None, dt.datetime(2026, 6, 1 + i, tzinfo=dt.UTC), {})
        it.add_asset("data", pystac.Asset(f"../scenes/scene_{i}.tif", media_type="image/tiff"))
        items.append(it)
    (tmp_path / "scenes").mkdir()
    for i in (0, 1):
        (tmp_path / "scenes" / f"scene_{i}.tif").write_bytes(
            (scenes / f"scene_{i}.tif").read_bytes()
        )
    (tmp_path / "stac").mkdir()
    ic = tmp_path / "stac" / "items.json"
    ic.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        s = run_batch(
            [ic],
            tmp_path / "o",
            OPTS,
            BatchOptions(scheduler=cluster.scheduler_address, progress=False),
        )
    assert (s["done"], s["failed"]) == (2, 0) and s["scheduler"].startswith("tcp://")
    d = json.loads((tmp_path / "o" / "pass-1.item.json").read_text())
    assert d["properties"]["datetime"].startswith("2026-06-02")
    assert "kumo:datetime_is_processing_time" not in d["properties"]
    link = next(lk["href"] for lk in d["links"] if lk["rel"] == "derived_from")
    assert (tmp_path / "o" / link).resolve() == ic.resolve()
    with pytest.raises(Exception, match="cannot reach the Dask scheduler"):
        run_batch(
            [scenes / "scene_0.tif"],
            tmp_path / "p",
            OPTS,
            BatchOptions(scheduler="tcp://127.0.0.1:9", progress=False, connect_timeout=2),
        )


def test_detect_only_split_batch(tmp_path: Path) -> None:
    src = _tall_scene(tmp_path / "pass.tif", 500)
    opts = OPTS.with_(remove=False)
    process(src, None, tmp_path / "one.mask.tif", options=opts)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / ".pass.part0007.tif").write_bytes(b"left by a killed split run")
    s = run_batch(
        [src], tmp_path / "o", opts, BatchOptions(workers=1, split_lines=224, progress=False)
    )
    assert s["done"] == 1
    item = json.loads((tmp_path / "o" / "pass.item.json").read_text())
    assert set(item["assets"]) == {"mask", "report"} and not (tmp_path / "o" / "pass.tif").exists()
    with (
        rasterio.open(tmp_path / "one.mask.tif") as x,
        rasterio.open(tmp_path / "o/pass.mask.tif") as y,
    ):
        assert np.array_equal(x.read(), y.read())
    assert not [f for f in (tmp_path / "o").iterdir() if f.name.startswith(".")]


def test_batch_refuses_bad_setups_before_any_work(scenes: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kumo_edge.cli import cli
    from kumo_edge.errors import ConfigError

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file; --out needs a folder"):
        run_batch([scenes], f, OPTS, BatchOptions(progress=False))
    out = tmp_path / "o"
    out.mkdir()
    own = out / "scene_0.tif"
    own.write_bytes((scenes / "scene_0.tif").read_bytes())
    with pytest.raises(ConfigError, match="one of the batch's own outputs"):
        run_batch([own], out, OPTS, BatchOptions(progress=False))
    with pytest.raises(ConfigError, match="no such file or folder"):
        run_batch([tmp_path / "nope"], out, OPTS, BatchOptions(progress=False))
    r = CliRunner().invoke(cli, ["batch", str(scenes), "--out", str(out), "--bil-width", "9"])
    assert r.exit_code == 2 and "apply to `run -`" in r.output
    # removal options given with --detect-only are refused, not ignored
    argv = ["batch", str(scenes), "--out", str(out), "--detect-only", "--spare-snow"]
    r = CliRunner().invoke(cli, [*argv, "--method", "hot"])
    assert r.exit_code == 2 and "--spare-snow, --method: removal options, unused" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["scene_0.tif"]  # nothing written


def test_workers_of_our_own_cluster_log_only_when_asked() -> None:
    """A LocalCluster's workers must not print dask's shutdown races (a heartbeat in flight
    as the scheduler closes logs a traceback at ERROR): their logging level is set in the
    environment they are spawned with, since they configure logging on import."""
    import logging

    from kumo_edge.ground.batch import _cluster

    def level() -> int:
        return logging.getLogger("distributed.worker").getEffectiveLevel()

    client, cluster = _cluster(BatchOptions(workers=1))
    try:
        assert client.submit(level, pure=False).result() == logging.CRITICAL
    finally:
        client.close()
        cluster.close()


def test_stac_footprint_of_outputs_placed_by_gcps_or_rpcs(tmp_path: Path) -> None:
    """An output without a geotransform (an L1 product's: placed by ground control points, or
    by RPCs) gets its outline through them as the Item's footprint, with no projection code;
    one placed by nothing gets none. Before, both had no footprint and the identity transform
    as ``proj:transform``."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    from kumo_edge.ground.stac import _geometry

    h, w = 500, 96

    def placed(name: str, gcps: bool, rpcs: bool) -> Path:
        path = tmp_path / name
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8"
        ) as d:
            d.write(np.zeros((1, h, w), np.uint8))
            if gcps:  # 1 mdeg per pixel in UTM-free lon/lat, north up
                d.gcps = (
                    [
                        GroundControlPoint(row=r, col=c, x=10.0 + c * 1e-3, y=50.0 - r * 1e-3)
                        for r in (0, h)
                        for c in (0, w)
                    ],
                    CRS.from_epsg(4326),
                )
            if rpcs:  # lon 10.0-10.1 across, lat 50.0-49.5 down
                d.rpcs = linear_rpcs(h, w, (10.0, 49.5, 10.1, 50.0))
        return path

    geom, bbox, proj = _geometry(placed("gcp.tif", gcps=True, rpcs=False))
    ring = np.array(geom["coordinates"][0])
    assert (ring[0] == ring[-1]).all() and len(ring) > 5
    np.testing.assert_allclose(bbox, [10.0, 50.0 - h * 1e-3, 10.0 + w * 1e-3, 50.0], atol=1e-9)
    for corner in ([10.0, 50.0], [10.0 + w * 1e-3, 50.0 - h * 1e-3]):
        assert np.abs(ring - corner).sum(1).min() < 1e-9
    assert proj == {"proj:shape": [h, w]}
    geom, bbox, _ = _geometry(placed("rpc.tif", gcps=False, rpcs=True))
    np.testing.assert_allclose(bbox, [10.0, 49.5, 10.1, 50.0], atol=1.1e-3)  # within a pixel
    assert _geometry(placed("none.tif", gcps=False, rpcs=False))[:2] == (None, None)
