from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from kumo_edge.bands import BandSet
from kumo_edge.errors import (
    BandCountError,
    DataTypeError,
    InvalidDataError,
    MissingWavelengthsError,
    OutputExistsError,
    RasterReadError,
    RasterWriteError,
    ShapeError,
)
from kumo_edge.io import GeoTiffWriter, Raster, write_geotiff

from conftest import BANDS4, CRS, TRANSFORM, make_raster


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


# -- wavelengths ----------------------------------------------------------------------------
def test_wavelengths_from_band_tags_and_scale(tagged_file: Path, refl4: np.ndarray) -> None:
    with Raster(tagged_file) as r:
        assert r.wavelength_source == "band wavelength tags"
        assert r.bands.centers_nm == BANDS4.centers_nm
        assert r.scale_source == "GDAL scale/offset"
        s = r.read_strip(0, 90)
    assert not s.valid[:5, :7].any() and s.valid[5:, 7:].all()
    np.testing.assert_allclose(s.data[:, 5:, 7:], refl4[:, 5:, 7:], atol=6e-5)
    assert (s.data[:, :5, :7] == 0).all()


def test_wavelengths_from_imagery_domain_written_by_our_writer(
    tmp_path: Path, refl4: np.ndarray
) -> None:
    p = write_geotiff(
        tmp_path / "w.tif", refl4, crs=CRS, transform=TRANSFORM, nodata=-1.0, bands=BANDS4
    )
    with rasterio.open(p) as ds:  # what GDAL tools see
        assert ds.tags(4, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"] == "0.842"
        assert ds.tags(4, ns="IMAGERY")["FWHM_UM"] == "0.115"
        assert ds.tags(2)["wavelength"] == "560" and ds.tags(2)["wavelength_units"] == "nm"
        assert ds.crs.to_epsg() == 32633 and ds.transform == TRANSFORM and ds.nodata == -1.0
    with Raster(p) as r:
        assert r.wavelength_source == "GDAL IMAGERY metadata"
        assert r.bands.centers_nm == BANDS4.centers_nm and r.bands.fwhm_nm == BANDS4.fwhm_nm
        np.testing.assert_array_equal(r.read_strip(0, 90).data, refl4)


def test_wavelengths_from_envi_header(tmp_path: Path, refl4: np.ndarray) -> None:
    p = tmp_path / "cube.img"
    with rasterio.open(
        p,
        "w",
        driver="ENVI",
        width=110,
        height=90,
        count=4,
        dtype="int16",
        crs=CRS,
        transform=TRANSFORM,
    ) as d:
        d.write(np.round(refl4 * 10000).astype(np.int16))
    hdr = p.with_suffix(".hdr")
    text = hdr.read_text()
    text += "wavelength units = Micrometers\nwavelength = {\n 0.49, 0.56,\n 0.665, 0.842}\nfwhm = {0.065, 0.035, 0.03, 0.115}\nreflectance scale factor = 10000\n"
    hdr.write_text(text)
    with Raster(p) as r:
        assert r.wavelength_source == "ENVI header"
        np.testing.assert_allclose(r.bands.centers, BANDS4.centers)
        np.testing.assert_allclose(r.bands.fwhm, BANDS4.fwhm)
        assert r.scale_source in ("ENVI reflectance scale factor", "GDAL scale/offset")
        np.testing.assert_allclose(r.read_strip(10, 20).data, refl4[:, 10:30], atol=6e-5)


def test_wavelengths_from_descriptions(tmp_path: Path) -> None:
    p = make_raster(tmp_path / "d.tif", np.ones((2, 8, 8), np.float32) * 0.2)
    with rasterio.open(p, "r+") as d:
        d.set_band_description(1, "B2 blue 482nm")
        d.set_band_description(2, "B3 green 561 nm")
    with Raster(p) as r:
        assert r.wavelength_source == "band descriptions"
        assert r.bands.centers_nm == (482.0, 561.0)
        assert r.bands.names == ("B2", "B3")
    with rasterio.open(p, "r+") as d:  # as GDAL names ENVI bands, and in micrometres
        d.set_band_description(1, "376.86 Nanometers")
        d.set_band_description(2, "Band 2 (1.61 Micrometers)")
    with Raster(p) as r:
        np.testing.assert_allclose(r.bands.centers_nm, (376.86, 1610.0))
    for texts, want in ((("450.5", "842"), (450.5, 842.0)), (("0.49", "1.61"), (490.0, 1610.0))):
        with rasterio.open(p, "r+") as d:  # bare numbers, as arrays with a wavelength axis
            for b, t in enumerate(texts, start=1):
                d.set_band_description(b, t)
        with Raster(p) as r:
            assert r.wavelength_source == "band descriptions (numbers)"
            np.testing.assert_allclose(r.bands.centers_nm, want)
    with rasterio.open(p, "r+") as d:  # band numbers are no wavelengths
        d.set_band_description(1, "1")
        d.set_band_description(2, "2")
    with Raster(p) as r, pytest.raises(MissingWavelengthsError):
        r.bands  # noqa: B018


def test_explicit_wavelengths_override(tagged_file: Path) -> None:
    with Raster(tagged_file, wavelengths=[1, 2, 3, 4], fwhm=[1, 1, 1, 1]) as r:
        assert r.wavelength_source == "caller" and r.bands.centers_nm == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(
        BandCountError, match="`wavelengths` has 3 values but tagged.tif has 4 bands"
    ):
        Raster(tagged_file, wavelengths=[1, 2, 3])


def test_missing_wavelengths_names_the_ways(tmp_path: Path) -> None:
    p = make_raster(tmp_path / "plain.tif", np.ones((3, 8, 8), np.float32) * 0.1)
    with Raster(p) as r:
        assert r.band_set is None
        with pytest.raises(MissingWavelengthsError) as e:
            _ = r.bands
    msg = str(e.value)
    for way in ("--wavelengths", "ENVI header", "CENTRAL_WAVELENGTH_UM", "`wavelength` tag"):
        assert way in msg


# -- reflectance, nodata, bad values --------------------------------------------------------
def test_integer_without_scale_is_refused(tmp_path: Path) -> None:
    p = make_raster(tmp_path / "dn.tif", np.full((2, 8, 8), 9000, np.uint16))
    with Raster(p) as r:
        with pytest.raises(InvalidDataError, match="--scale"):
            r.read_strip(0, 8)
    with Raster(p, scale=2e-5, offset=-0.1) as r:
        np.testing.assert_allclose(r.read_strip(0, 8).data, 0.08, rtol=1e-5)


def test_wrong_scale_is_detected(tagged_file: Path) -> None:
    with Raster(tagged_file, scale=1.0) as r:
        with pytest.raises(InvalidDataError, match="not reflectance"):
            r.read_strip(0, 10)


def test_radiance_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Float values in radiance units (an L1B product) are refused, naming radiance; float
    reflectance x 10,000 is refused without that guess."""
    rad = make_raster(tmp_path / "rad.tif", np.full((2, 8, 8), 7.5, np.float32))
    with Raster(rad) as r, pytest.raises(InvalidDataError, match="radiance"):
        r.read_strip(0, 8)
    counts = make_raster(tmp_path / "x1e4.tif", np.full((2, 8, 8), 2500.0, np.float32))
    with Raster(counts) as r, pytest.raises(InvalidDataError, match="not reflectance") as e:
        r.read_strip(0, 8)
    assert "radiance" not in str(e.value)


def test_an_undeclared_fill_value_is_refused_naming_nodata(tmp_path: Path) -> None:
    """int16 reflectance x 10,000 whose rows without data hold -9999 and whose file declares no
    no-data value: refused (read as reflectance -1) with the hint to give the fill value,
    which then reads (those rows invalid, the rest reflectance); a scale that is merely too
    large gets no such hint."""
    data = np.full((2, 16, 8), 2500, np.int16)
    data[:, :4] = -9999
    p = make_raster(tmp_path / "fill.tif", data)
    with Raster(p, scale=1e-4) as r, pytest.raises(InvalidDataError, match="--nodata") as e:
        r.read_strip(0, 16)
    assert "-0.9999" in str(e.value)
    with Raster(p, scale=1e-4, nodata=-9999) as r:
        s = r.read_strip(0, 16)
        assert not s.valid[:4].any() and s.valid[4:].all()
        np.testing.assert_allclose(s.data[:, 4:], 0.25, rtol=1e-5)
    big = make_raster(tmp_path / "big.tif", np.full((2, 8, 8), 2500, np.int16))
    with Raster(big, scale=1e-3) as r, pytest.raises(InvalidDataError) as e:
        r.read_strip(0, 8)
    assert "--nodata" not in str(e.value)


def test_nan_is_an_error_unless_declared(tmp_path: Path) -> None:
    data = np.full((2, 20, 20), 0.3, np.float32)
    data[1, 12, 3] = np.nan
    p = make_raster(tmp_path / "nan.tif", data)
    with Raster(p) as r:
        assert next(r.strips(10)).valid.all()  # the first strip is clean
        with pytest.raises(InvalidDataError, match="row 12.*--nodata nan"):
            list(r.strips(10))
    with Raster(p, nodata="nan") as r:
        s = r.read_strip(0, 20)
        assert not s.valid[12, 3] and s.valid.sum() == 399


def test_infinite_values_name_the_nodata_that_marks_them(tmp_path: Path) -> None:
    data = np.full((2, 20, 20), 0.3, np.float32)
    data[0, 5, 7] = np.inf
    p = make_raster(tmp_path / "inf.tif", data)
    with (
        Raster(p) as r,
        pytest.raises(InvalidDataError, match=r"\+inf values at row 5.*--nodata inf"),
    ):
        r.read_strip(0, 20)
    with Raster(p, nodata=float("inf")) as r:  # the advice works
        s = r.read_strip(0, 20)
        assert not s.valid[5, 7] and s.valid.sum() == 399
    data[1, 9, 2] = np.nan  # marked by the file's nodata: only the +inf is named
    p = make_raster(tmp_path / "nan_declared.tif", data, nodata=float("nan"))
    with (
        Raster(p) as r,
        pytest.raises(InvalidDataError, match=r"\+inf values at row 5.*--nodata inf"),
    ):
        r.read_strip(0, 20)
    # two kinds not marked: one nodata value cannot mark both
    p = make_raster(tmp_path / "both.tif", data)
    with (
        Raster(p) as r,
        pytest.raises(InvalidDataError, match="NaN and \\+inf values at row 5.*one --nodata"),
    ):
        r.read_strip(0, 20)


def test_complex_dtype_is_refused(tmp_path: Path) -> None:
    p = make_raster(tmp_path / "c.tif", np.ones((1, 4, 4), np.complex64))
    with pytest.raises(DataTypeError, match="complex64"):
        Raster(p)


def test_declared_nodata_any_band(tmp_path: Path) -> None:
    data = np.full((3, 6, 6), 0.2, np.float32)
    data[2, 1, 1] = -99999
    p = make_raster(tmp_path / "nd.tif", data, nodata=-99999)
    with Raster(p) as r:
        v = r.valid_mask()
    assert not v[1, 1] and v.sum() == 35


def test_zero_fill_auto_and_off(tmp_path: Path) -> None:
    data = np.full((2, 6, 6), 100, np.uint16)
    data[:, 0, :] = 0
    data[0, 1, 1] = 0  # one band zero only: still valid
    p = make_raster(tmp_path / "z.tif", data)
    with Raster(p) as r:
        assert r.valid_mask().sum() == 30
    with Raster(p, nodata=None) as r:
        assert r.valid_mask().all()


def test_strips_match_whole_read(sample_path: Path) -> None:
    with Raster(sample_path) as r:
        whole = r.read_strip(0, r.height)
        parts = list(r.strips(100))
    assert [s.row for s in parts] == [0, 100, 200, 300, 400]
    np.testing.assert_array_equal(np.concatenate([s.data for s in parts], axis=1), whole.data)
    np.testing.assert_array_equal(np.concatenate([s.valid for s in parts], axis=0), whole.valid)


def test_sample_scene_is_real_and_described(sample_path: Path) -> None:
    assert sample_path.stat().st_size < 10 * 2**20
    with Raster(sample_path) as r:
        assert r.count == 6 and r.crs is not None
        assert r.bands.names == ("B1", "B2", "B3", "B4", "B5", "B7")
        assert r.bands.centers_nm[3] == 835.0
        s = r.read_strip(150, 100)
    veg = s.data[:, s.valid]
    # real vegetated land: NIR above red on average (a synthetic ramp would not do this)
    assert veg[3].mean() > veg[2].mean() * 1.3
    assert 0.02 < veg.mean() < 0.5


def test_unreadable_and_truncated_files(tmp_path: Path, sample_path: Path) -> None:
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a raster" * 50)
    with pytest.raises(RasterReadError, match="cannot be read as a raster"):
        Raster(junk)
    with pytest.raises(RasterReadError, match="no such file"):
        Raster(tmp_path / "missing.tif")
    cut = tmp_path / "cut.tif"
    shutil.copy(sample_path, cut)
    os.truncate(cut, cut.stat().st_size // 2)
    with pytest.raises(RasterReadError, match="truncated or corrupt"):
        with Raster(cut) as r:
            for _ in r.strips():
                pass


def test_read_raw_window_bounds(sample_path: Path) -> None:
    with Raster(sample_path) as r:
        with pytest.raises(ShapeError, match="outside"):
            r.read_raw(400, 100)


# -- writer ---------------------------------------------------------------------------------
def test_writer_strips_are_atomic(tmp_path: Path, refl4: np.ndarray) -> None:
    out = tmp_path / "o.tif"
    w = GeoTiffWriter(
        out,
        width=110,
        height=90,
        count=4,
        dtype="float32",
        crs=CRS,
        transform=TRANSFORM,
        bands=BANDS4,
    )
    w.write(refl4[:, :50], 0)
    assert not out.exists()  # nothing visible until complete
    w.write(refl4[:, 50:], 50)
    w.close()
    assert _leftovers(tmp_path) == []
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), refl4)
        assert oct(out.stat().st_mode & 0o777) != "0o600"


def test_writer_discards_incomplete_output(tmp_path: Path, refl4: np.ndarray) -> None:
    out = tmp_path / "o.tif"
    w = GeoTiffWriter(out, width=110, height=90, count=4, dtype="float32")
    w.write(refl4[:, :50], 0)
    with pytest.raises(RasterWriteError, match="40 of 90 rows were never written"):
        w.close()
    assert not out.exists() and _leftovers(tmp_path) == []


def test_writer_discards_on_exception(tmp_path: Path, refl4: np.ndarray) -> None:
    out = tmp_path / "o.tif"
    with pytest.raises(RuntimeError):
        with GeoTiffWriter(out, width=110, height=90, count=4, dtype="float32") as w:
            w.write(refl4[:, :50], 0)
            raise RuntimeError("sensor died")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_writer_refuses_existing_and_bad_strips(tmp_path: Path, refl4: np.ndarray) -> None:
    out = tmp_path / "o.tif"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        GeoTiffWriter(out, width=110, height=90, count=4, dtype="float32")
    assert out.read_bytes() == b"precious"
    w = GeoTiffWriter(out, width=110, height=90, count=4, dtype="uint16", overwrite=True)
    with pytest.raises(ShapeError, match=r"expected \(4, n, 110\)"):
        w.write(refl4[:3], 0)
    with pytest.raises(DataTypeError, match="convert first"):
        w.write(refl4, 0)
    w.abort()
    assert out.read_bytes() == b"precious"


def test_outputs_named_as_another_format_are_refused_before_any_work(tmp_path: Path) -> None:
    """A GeoTIFF is never written under another format's name (out.png was a TIFF inside);
    names without a known ending, and .tif/.tiff in any case, are fine."""
    from kumo_edge.io import check_outputs

    for name in ("out.png", "out.JPG", "x.jp2", "y.img", "z.nc"):
        with pytest.raises(RasterWriteError, match="written as GeoTIFF"):
            GeoTiffWriter(tmp_path / name, width=8, height=8, count=1, dtype="uint8")
        with pytest.raises(RasterWriteError, match="name it .tif"):
            check_outputs({"--mask": tmp_path / name}, [], False)
    assert not list(tmp_path.iterdir())
    check_outputs({"OUTPUT": tmp_path / "a.TIF", "--report": tmp_path / "r.json"}, [], False)
    for name in ("b.tiff", "c", "d.v2"):
        GeoTiffWriter(tmp_path / name, width=8, height=8, count=1, dtype="uint8").abort()


def test_writer_unwritable_location(tmp_path: Path) -> None:
    with pytest.raises(RasterWriteError, match="does not exist"):
        GeoTiffWriter(tmp_path / "nope" / "o.tif", width=4, height=4, count=1, dtype="uint8")
    with pytest.raises(BandCountError):
        GeoTiffWriter(
            tmp_path / "o.tif",
            width=4,
            height=4,
            count=2,
            dtype="uint8",
            bands=BandSet((500.0,), (10.0,)),
        )


def test_natural_strips_read_each_block_once_and_match_strips(tmp_path) -> None:  # noqa: ANN001
    import rasterio

    from kumo_edge.io import Raster

    rng = np.random.default_rng(0)
    data = (rng.random((3, 300, 70)) * 5000 + 100).astype("uint16")
    p = tmp_path / "tiled.tif"
    with rasterio.open(
        p, "w", driver="GTiff", width=70, height=300, count=3, dtype="uint16",
        tiled=True, blockxsize=32, blockysize=128,
    ) as ds:  # fmt: skip
        ds.write(data)
    kw = {"wavelengths": [490, 560, 665], "scale": 1e-4}
    with Raster(p, **kw) as r:
        assert r.block_rows == 128
        got = list(r.natural_strips(48))
        ref = list(r.strips(48))
    assert [s.row for s in got] == [0, 48, 96, 128, 176, 224, 256]  # block rows never straddled
    np.testing.assert_array_equal(
        np.concatenate([s.data for s in got], 1), np.concatenate([s.data for s in ref], 1)
    )


@pytest.mark.parametrize(
    "dtype,compress,predictor,count",
    [("uint16", "deflate", 1, 4), ("uint16", "deflate", 2, 4), ("int16", "deflate", 2, 1),
     ("uint8", None, 1, 3), ("uint16", None, 1, 5)],
)  # fmt: skip
def test_tiled_rows_are_decoded_a_few_at_a_time_as_gdal_reads_them(
    tmp_path,
    dtype: str,
    compress: str | None,
    predictor: int,
    count: int,  # noqa: ANN001
) -> None:
    """A tiled integer GeoTIFF is read per tile a few rows at a time (kumo_edge.tiff_rows,
    never a whole block row): the same values as GDAL's read, for any strip height and line
    range, through Raster.natural_counts as the file path reads it."""
    import rasterio

    from kumo_edge.io import Raster

    rng = np.random.default_rng(1)
    h, w = 300, 530  # partial tiles at the right and the bottom
    data = rng.integers(0, 4000, (count, h, w)).astype(dtype)
    p = tmp_path / "t.tif"
    kw = dict(compress=compress, predictor=predictor) if compress else {}
    with rasterio.open(
        p, "w", driver="GTiff", width=w, height=h, count=count, dtype=dtype,
        tiled=True, blockxsize=128, blockysize=128, **kw,
    ) as ds:  # fmt: skip
        ds.write(data)
    with Raster(p, wavelengths=list(range(450, 450 + 30 * count, 30)), scale=1e-4) as r:
        assert r.tile_rows is not None
        for lines, rows in ((8, None), (7, (13, 290)), (200, (129, 300))):
            first, stop = rows or (0, h)
            got = list(r.natural_counts(lines, rows))
            assert all(c.raw.shape[1] <= lines for c in got)
            np.testing.assert_array_equal(
                np.concatenate([c.raw for c in got], axis=1), data[:, first:stop]
            )


def test_tiled_files_tiff_rows_cannot_read_go_through_gdal_and_truncation_is_one_line(
    tmp_path,  # noqa: ANN001
) -> None:
    import rasterio

    from kumo_edge.errors import RasterReadError
    from kumo_edge.io import Raster

    data = np.random.default_rng(2).integers(0, 4000, (2, 256, 256)).astype("uint16")
    base = dict(driver="GTiff", width=256, height=256, count=2, tiled=True, blockxsize=128,
                blockysize=128)  # fmt: skip
    for name, kw in (
        ("lzw", dict(dtype="uint16", compress="lzw")),
        ("float", dict(dtype="float32", compress="deflate", predictor=3)),
        ("band", dict(dtype="uint16", compress="deflate", interleave="band")),
    ):
        p = tmp_path / f"{name}.tif"
        with rasterio.open(p, "w", **base, **kw) as ds:
            ds.write(data.astype(kw["dtype"]) / (1e4 if name == "float" else 1))
        with Raster(p, wavelengths=[490, 560], scale=None if name == "float" else 1e-4) as r:
            assert r.tile_rows is None  # read through GDAL, as before
            got = np.concatenate([s.data for s in r.natural_strips(8)], axis=1)
            assert got.shape == (2, 256, 256)
    # a sparse file: a block row whose tiles were never written is read through GDAL (zeros)
    from rasterio.windows import Window

    p = tmp_path / "sparse.tif"
    with rasterio.open(
        p, "w", **base, dtype="uint16", compress="deflate", sparse_ok=True, nodata=0
    ) as ds:
        ds.write(data[:, :128], window=Window(0, 0, 256, 128))
    with rasterio.open(p) as ds:
        ref = ds.read()
    assert (ref[:, 128:] == 0).all()
    with Raster(p, wavelengths=[490, 560], scale=1e-4) as r:
        assert r.tile_rows is not None
        got = np.concatenate([c.raw for c in r.natural_counts(8)], axis=1)
    np.testing.assert_array_equal(got, ref)
    p = tmp_path / "cut.tif"
    with rasterio.open(p, "w", **base, dtype="uint16", compress="deflate") as ds:
        ds.write(data)
    blob = p.read_bytes()
    with rasterio.open(p) as ds:  # cut inside the last tile's data
        last = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    p.write_bytes(blob[: last + 100])
    with Raster(p, wavelengths=[490, 560], scale=1e-4) as r:
        with pytest.raises(RasterReadError, match="truncated or corrupt") as e:
            list(r.natural_counts(8))
        assert "\n" not in str(e.value)


def test_a_zombie_process_does_not_hold_its_partial_files(tmp_path) -> None:  # noqa: ANN001
    """A run killed with its process group stays a zombie until reaped (in a container whose
    first process does not reap, forever): its .partial files are left over all the same."""
    import subprocess
    import sys
    import time

    from kumo_edge.io import process_running, remove_stale_partials

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        t0 = time.time()
        while time.time() - t0 < 10:  # exited, not reaped: a zombie
            try:
                with open(f"/proc/{dead.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.02)
        assert process_running(live.pid) and not process_running(dead.pid)
        out = tmp_path / "o.tif"
        for pid in (live.pid, dead.pid):
            (tmp_path / f".o.tif.kumo{pid}.abc.partial").write_bytes(b"x")
        assert [p.name for p in remove_stale_partials(out)] == [
            f".o.tif.kumo{dead.pid}.abc.partial"
        ]
        assert (tmp_path / f".o.tif.kumo{live.pid}.abc.partial").exists()
    finally:
        live.kill()
        live.wait()
        dead.wait()


def test_envi_widths_without_a_unit_take_the_unit_of_their_wavelengths(
    tmp_path: Path, refl4: np.ndarray
) -> None:
    """An AVIRIS-NG header lists centres in nm and widths of 5-6 nm with no unit: the widths
    are nm too (read alone, values below 30 would be micrometres, a 5,600 nm wide band that no
    model set could use)."""
    p = tmp_path / "ng.img"
    with rasterio.open(p, "w", driver="ENVI", width=110, height=90, count=4, dtype="float32") as d:
        d.write(refl4)
    hdr = p.with_suffix(".hdr")
    hdr.write_text(
        hdr.read_text() + "wavelength = {490.0, 560.0, 665.0, 842.0}\nfwhm = {5.6, 5.7, 5.8, 5.9}\n"
    )
    with Raster(p) as r:
        assert r.wavelength_source == "ENVI header"
        np.testing.assert_allclose(r.bands.centers_nm, (490.0, 560.0, 665.0, 842.0))
        np.testing.assert_allclose(r.bands.fwhm_nm, (5.6, 5.7, 5.8, 5.9))
    # and a header in micrometres without a unit still reads as micrometres
    hdr.write_text(
        hdr.read_text()
        .replace("{490.0, 560.0, 665.0, 842.0}", "{0.49, 0.56, 0.665, 0.842}")
        .replace("{5.6, 5.7, 5.8, 5.9}", "{0.0056, 0.0057, 0.0058, 0.0059}")
    )
    with Raster(p) as r:
        np.testing.assert_allclose(r.bands.centers_nm, (490.0, 560.0, 665.0, 842.0))
        np.testing.assert_allclose(r.bands.fwhm_nm, (5.6, 5.7, 5.8, 5.9))


def test_envi_bad_band_list_leaves_the_bad_bands_out(tmp_path: Path, refl4: np.ndarray) -> None:
    """An ENVI header's ``bbl`` (0 = bad band) keeps its bad bands out of everything: their
    fill value (here the header's no-data value) marks no pixel as no data and fails no
    reflectance check, and they are not in the band set (read as a whole, every pixel of this
    file would be no data)."""
    p = tmp_path / "rfl.img"
    data = np.full((6, 90, 110), -9999.0, np.float32)
    data[[0, 1, 3, 4]] = refl4  # bands 3 and 6 are water-vapour fill
    with rasterio.open(
        p, "w", driver="ENVI", width=110, height=90, count=6, dtype="float32", nodata=-9999
    ) as d:
        d.write(data)
    hdr = p.with_suffix(".hdr")
    head = hdr.read_text()
    hdr.write_text(
        head + "wavelength units = Nanometers\n"
        "wavelength = {490.0, 560.0, 1400.0, 665.0, 842.0, 1900.0}\n"
        "bbl = {1, 1, 0, 1, 1, 0}\n"
    )
    with Raster(p) as r:
        assert r.count == 4 and r.band_indexes == (1, 2, 4, 5)
        assert r.bands.centers_nm == (490.0, 560.0, 665.0, 842.0)
        s = r.read_strip(0, 90)
        assert s.valid.all()
        np.testing.assert_array_equal(s.data, refl4)
    # a list of the wrong length is ignored: every band read, and the fill is no data again
    hdr.write_text(
        head + "wavelength = {490.0, 560.0, 1400.0, 665.0, 842.0, 1900.0}\nbbl = {1, 0}\n"
    )
    with Raster(p) as r:
        assert r.count == 6 and r.band_indexes is None
        assert not r.read_strip(0, 90).valid.any()


def test_per_band_bad_band_items_of_a_geotiff_leave_those_bands_out(
    tmp_path: Path, refl4: np.ndarray
) -> None:
    """Per-band ``bbl`` metadata items (0 = bad), as the EnMAP-Box writes them into GeoTIFFs:
    the bad band, filled with the no-data value, is not read; wavelengths given for every band
    of the file are matched to the bands read."""
    data = np.full((5, 90, 110), -9999.0, np.float32)
    data[[0, 1, 3, 4]] = refl4
    p = make_raster(tmp_path / "enmap_like.tif", data, nodata=-9999)
    with rasterio.open(p, "r+") as d:
        for b in range(1, 6):
            d.update_tags(b, bbl="0" if b == 3 else "1")
    wl = [490.0, 560.0, 1400.0, 665.0, 842.0]
    with Raster(p, wavelengths=wl) as r:
        assert r.band_indexes == (1, 2, 4, 5)
        assert r.bands.centers_nm == (490.0, 560.0, 665.0, 842.0)
        s = r.read_strip(0, 90)
        assert s.valid.all()
        np.testing.assert_array_equal(s.data, refl4)


def test_bands_of_fill_without_a_bad_band_list_are_left_out(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """A hyperspectral file whose bad bands hold only the no-data value but carry no bad band
    list (lost in a conversion to GeoTIFF): they are found on the middle row and not read,
    with a warning, instead of making every pixel no data. Without data in that row, or with
    fewer than FILL_BAND_MIN_COUNT bands, nothing is guessed."""
    from kumo_edge.io import FILL_BAND_MIN_COUNT

    rng = np.random.default_rng(3)
    n = FILL_BAND_MIN_COUNT + 4
    data = rng.uniform(0.05, 0.4, (n, 40, 30)).astype(np.float32)
    data[[0, 1, 12]] = -9999.0  # fill bands
    data[:, :, :5] = -9999.0  # a footprint edge: no data in every band
    p = make_raster(tmp_path / "fill.tif", data, nodata=-9999)
    wl = list(np.linspace(400.0, 2400.0, n))
    with caplog.at_level("WARNING"), Raster(p, wavelengths=wl) as r:
        assert r.band_indexes == tuple(b for b in range(1, n + 1) if b not in (1, 2, 13))
        assert "bands 1-2, 13 hold only the no-data value" in caplog.text
        s = r.read_strip(0, 40)
        assert s.valid[:, 5:].all() and not s.valid[:, :5].any()
        np.testing.assert_array_equal(
            s.data[:, :, 5:], np.delete(data, [0, 1, 12], axis=0)[:, :, 5:]
        )
    data[:, 20] = -9999.0  # the middle row all no data: no evidence, every band read
    q = make_raster(tmp_path / "blank_row.tif", data, nodata=-9999)
    with Raster(q, wavelengths=wl) as r:
        assert r.band_indexes is None
    few = make_raster(tmp_path / "few.tif", data[:4], nodata=-9999)
    with Raster(few, wavelengths=wl[:4]) as r:
        assert r.band_indexes is None


def test_a_dead_band_of_zeros_is_left_out_under_the_fill_rule(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """A hyperspectral file that declares no no-data value, one of its bands all 0 (a dead
    detector band, or one a product zeroes): under the fill rule 0 is the fill value, so the
    band is left out with a warning. Before, it was read as reflectance 0 and bent the hsi32
    bands resampled from it by up to 0.2, silently. With the fill rule off, every band is read."""
    from kumo_edge.io import FILL_BAND_MIN_COUNT

    rng = np.random.default_rng(4)
    n = FILL_BAND_MIN_COUNT + 4
    data = np.round(rng.uniform(0.05, 0.4, (n, 40, 30)) * 10000).astype(np.uint16)
    data[7] = 0
    p = make_raster(tmp_path / "dead.tif", data)
    wl = list(np.linspace(400.0, 1000.0, n))
    with caplog.at_level("WARNING"), Raster(p, wavelengths=wl, scale=1e-4) as r:
        assert r.zero_fill and r.band_indexes == tuple(b for b in range(1, n + 1) if b != 8)
        assert "band 8 holds only the no-data value (0)" in caplog.text
        assert r.read_strip(0, 40).valid.all()
    with Raster(p, wavelengths=wl, scale=1e-4, nodata=None) as r:
        assert r.band_indexes is None
    # a multispectral file's dead band is named, not left out: each of its bands matters
    caplog.clear()
    four = make_raster(tmp_path / "dead4.tif", data[5:9])
    with caplog.at_level("WARNING"), Raster(four, wavelengths=wl[5:9], scale=1e-4) as r:
        assert r.band_indexes is None and r.count == 4
        assert "band 3 holds only the no-data value (0)" in caplog.text
        assert "never left out" in caplog.text
    caplog.clear()
    with (
        caplog.at_level("WARNING"),
        Raster(make_raster(tmp_path / "ok4.tif", data[:4]), wavelengths=wl[:4], scale=1e-4),
    ):
        assert not caplog.text


def test_a_container_names_its_subdatasets_and_one_can_be_read(tmp_path: Path) -> None:
    """A file with no bands of its own but subdatasets (HDF5, NetCDF, a GeoPackage) is refused
    with a one-line error naming them, not a traceback; a subdataset's GDAL name (no path on
    disk) opens."""
    from rasterio.transform import from_origin

    p = tmp_path / "multi.gpkg"
    for i, table in enumerate(("a", "b")):
        extra = {"APPEND_SUBDATASET": "YES"} if i else {}
        with rasterio.open(
            p, "w", driver="GPKG", width=32, height=32, count=3, dtype="uint8",
            crs="EPSG:3857", transform=from_origin(0, 0, 10, 10), RASTER_TABLE=table, **extra,
        ) as d:  # fmt: skip
            d.write(np.full((3, 32, 32), 40 + i, np.uint8))
    with pytest.raises(RasterReadError, match="no raster bands of its own but 2 subdatasets") as e:
        Raster(p)
    assert f"'GPKG:{p}:b'" in str(e.value)
    with Raster(f"GPKG:{p}:b", scale=0.01) as r:  # (GDAL adds an alpha band: not read here)
        assert r.count >= 3 and r.width == 32
        np.testing.assert_array_equal(r.read_raw(0, 32)[:3], 41)
    with pytest.raises(RasterReadError, match="cannot be read"):
        Raster(f"GPKG:{tmp_path / 'none.gpkg'}:a")


def test_band_wavelength_items_in_any_case_with_a_bandwidth(tmp_path: Path) -> None:
    """Per-band metadata as GDAL's Sentinel-2 driver writes it (WAVELENGTH, WAVELENGTH_UNIT,
    BANDWIDTH, BANDWIDTH_UNIT), and the EnMAP-Box's lower-case items with widths in
    micrometres like their wavelengths."""
    p = make_raster(tmp_path / "s2.tif", np.full((2, 8, 8), 0.2, np.float32))
    with rasterio.open(p, "r+") as d:
        d.update_tags(
            1, WAVELENGTH="490", WAVELENGTH_UNIT="nm", BANDWIDTH="65", BANDWIDTH_UNIT="nm"
        )
        d.update_tags(
            2, WAVELENGTH="560", WAVELENGTH_UNIT="nm", BANDWIDTH="35", BANDWIDTH_UNIT="nm"
        )
    with Raster(p) as r:
        assert r.wavelength_source == "band wavelength tags"
        assert r.bands.centers_nm == (490.0, 560.0) and r.bands.fwhm_nm == (65.0, 35.0)
    q = make_raster(tmp_path / "um.tif", np.full((2, 8, 8), 0.2, np.float32))
    with rasterio.open(q, "r+") as d:
        d.update_tags(1, wavelength="0.49", wavelength_units="Micrometers", fwhm="0.065")
        d.update_tags(2, wavelength="0.56", wavelength_units="Micrometers", fwhm="0.035")
    with Raster(q) as r:
        np.testing.assert_allclose(r.bands.centers_nm, (490.0, 560.0))
        np.testing.assert_allclose(r.bands.fwhm_nm, (65.0, 35.0))


def test_nan_bands_of_a_float_file_without_no_data_are_left_out(tmp_path: Path) -> None:
    """A float hyperspectral file declaring no no-data value whose bad bands are NaN (as some
    L2 reflectance products store them): those bands are left out rather than failing every
    strip as NaN in valid pixels; NaN in a band that also holds data is still an error."""
    from kumo_edge.io import FILL_BAND_MIN_COUNT

    n = FILL_BAND_MIN_COUNT + 2
    data = np.random.default_rng(4).uniform(0.05, 0.4, (n, 30, 20)).astype(np.float32)
    data[[5, 6]] = np.nan
    p = make_raster(tmp_path / "nan_bands.tif", data)
    wl = list(np.linspace(400.0, 2400.0, n))
    with Raster(p, wavelengths=wl) as r:
        assert r.count == n - 2 and 6 not in r.band_indexes and 7 not in r.band_indexes
        np.testing.assert_array_equal(r.read_strip(0, 30).data, np.delete(data, [5, 6], axis=0))
    data[5] = 0.2
    data[5, 3, 4] = np.nan  # one NaN in a band of data: still refused
    q = make_raster(tmp_path / "one_nan.tif", data)
    with Raster(q, wavelengths=wl) as r, pytest.raises(InvalidDataError, match="NaN"):
        r.read_strip(0, 30)


def test_bands_of_fill_are_found_in_a_tiled_file_through_the_tile_reader(tmp_path: Path) -> None:
    """The same check on a tiled, deflated integer GeoTIFF, which the tile reader takes (so the
    sample is one row, not whole tiles)."""
    from kumo_edge.io import FILL_BAND_MIN_COUNT
    from kumo_edge.tiff_rows import TileRows

    n = FILL_BAND_MIN_COUNT + 1
    data = np.random.default_rng(6).integers(300, 4000, (n, 64, 48)).astype(np.int16)
    data[[1, 4]] = -32768
    p = make_raster(
        tmp_path / "tiled.tif", data, nodata=-32768, tiled=True, blockxsize=16, blockysize=16,
        compress="deflate", interleave="pixel",
    )  # fmt: skip
    with rasterio.open(p) as ds:
        assert TileRows.open(ds) is not None
    with Raster(p, wavelengths=list(np.linspace(400.0, 2400.0, n)), scale=1e-4) as r:
        assert r.band_indexes == tuple(b for b in range(1, n + 1) if b not in (2, 5))
        assert r.tile_rows is None  # the bands read are not the file's: GDAL reads them
        np.testing.assert_allclose(
            r.read_strip(0, 64).data, np.delete(data, [1, 4], axis=0) * np.float32(1e-4), rtol=1e-6
        )


@pytest.mark.parametrize("n_data", [3, 4])
def test_an_alpha_band_is_a_mask_not_a_band_of_data(tmp_path: Path, n_data: int) -> None:
    """An alpha band (``gdalwarp -dstalpha``) marks no data where it is 0 and is not read as a
    band: wavelengths are those of the other bands, whether GDAL applies it as a mask itself
    (2 or 4 bands: RGB + alpha) or not (a four-band stack + alpha). Before, it was read as a
    band of data (``wavelengths`` for the data bands refused, reflectance 6.5 refused)."""
    from rasterio.enums import ColorInterp

    rng = np.random.default_rng(3)
    refl = rng.uniform(0.05, 0.4, (n_data, 40, 50)).astype(np.float32)
    alpha = np.full((1, 40, 50), 65535, np.uint16)
    alpha[0, :, :12] = 0  # outside the warped footprint, where the data are NOT 0
    stored = np.concatenate([np.round(refl * 10000).astype(np.uint16), alpha])
    p = tmp_path / "warped.tif"
    with rasterio.open(
        p, "w", driver="GTiff", width=50, height=40, count=n_data + 1, dtype="uint16",
        crs=CRS, transform=TRANSFORM,
    ) as d:  # fmt: skip
        d.write(stored)
        d.scales = [1e-4] * (n_data + 1)
        for b, nm in enumerate(BANDS4.centers_nm[:n_data], start=1):
            d.update_tags(b, wavelength=str(nm))
    with rasterio.open(p, "r+") as d:
        d.colorinterp = [ColorInterp.undefined] * n_data + [ColorInterp.alpha]
    with Raster(p) as r:
        assert r.count == n_data and r.bands.centers_nm == BANDS4.centers_nm[:n_data]
        assert r.mask_source == f"alpha band {n_data + 1}"
        s = r.read_strip(0, 40)
        assert not s.valid[:, :12].any() and s.valid[:, 12:].all()
        np.testing.assert_allclose(s.data[:, :, 12:], refl[:, :, 12:], atol=1e-4)
    with Raster(p, wavelengths=BANDS4.centers_nm[:n_data]) as r:
        assert r.count == n_data


def test_a_dead_band_in_a_bil_stream_is_named_once(caplog) -> None:  # noqa: ANN001
    """A stream's band of fill (a dead detector band of zeros) is named in one warning from the
    first lines and read as it is; an intact stream gives no warning. Before, nothing was
    said: the band was read as reflectance 0."""
    import io

    from kumo_edge.pipeline import bil_chunks

    rng = np.random.default_rng(8)
    samples = (rng.random((40, 4, 30)) * 20000 + 2000).astype("<u2")  # line, band, pixel
    for dead, want in ((None, 0), (2, 1)):
        data = samples.copy()
        if dead is not None:
            data[:, dead] = 0
        caplog.clear()
        with caplog.at_level("WARNING"):
            chunks = list(bil_chunks(io.BytesIO(data.tobytes()), 30, 4, "uint16", 16, 1 / 65535))
        assert len(chunks) == 3 and all(valid is None for _, valid in chunks)
        named = [r for r in caplog.records if "dead or empty band" in r.getMessage()]
        assert len(named) == want
        if dead is not None:
            assert (
                "band 3 holds only the no-data value (0) across lines 0-15" in named[0].getMessage()
            )
            assert all((arr[dead] == 0).all() for arr, _ in chunks)  # read as it is
