"""Classical cloud removers (HOT, harmonic inpainting): correct where the physics says they
should be, and usable by the stream and the CLI exactly like the generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kumo_edge import metrics
from kumo_edge.bands import BandSet
from kumo_edge.baselines import HarmonicInpainting, HazeOptimizedTransform, remover
from kumo_edge.clouds import CloudField, CloudParams
from kumo_edge.errors import BandMappingError, ShapeError
from kumo_edge.io import Raster

from conftest import sample_scene_path


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, BandSet]:
    with Raster(sample_scene_path()) as r:
        return r.read_strip(0, 128).data[:, :, :128].copy(), r.bands


def _cloudy(cube: np.ndarray, bands: BandSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
    res = CloudField(
        CloudParams(cover=0.5, thickness=1.0, gsd_m=30.0), cube.shape[1], cube.shape[2], seed
    ).apply(cube, bands)
    cls = np.zeros(cube.shape[1:], np.int64)
    cls[res.shadow], cls[res.cloud], cls[res.thick] = 3, 1, 2
    return res.cloudy, cls


@pytest.mark.parametrize("method", ["hot", "inpaint"])
def test_thin_cloud_gets_closer_to_the_truth_and_clear_pixels_stay(scene, method: str) -> None:  # noqa: ANN001
    cube, bands = scene
    for seed in (0, 1):
        cloudy, cls = _cloudy(cube, bands, seed)
        out = remover(method, bands).run(cloudy[None], cls[None])[0]
        thin = cls == 1
        assert metrics.psnr(out, cube, mask=thin) > metrics.psnr(cloudy, cube, mask=thin) + 3.0
        np.testing.assert_array_equal(out[:, cls == 0], cloudy[:, cls == 0])


def test_inpainting_reproduces_a_harmonic_field() -> None:
    # a linear ramp is harmonic: the Laplace fill of a hole in it must give the ramp back
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    ramp = (0.1 + 0.004 * yy + 0.002 * xx)[None].repeat(2, 0).astype(np.float32)
    cls = np.zeros((64, 64), np.int64)
    cls[20:40, 10:30] = 1
    out = HarmonicInpainting(BandSet((500.0, 600.0), (10.0, 10.0)), sweeps=2000).run(
        ramp[None], cls[None]
    )[0]
    assert np.abs(out - ramp).max() < 2e-3
    # and the first guess alone is not already the answer (the sweeps matter)
    rough = HarmonicInpainting(BandSet((500.0, 600.0), (10.0, 10.0)), sweeps=0).run(
        ramp[None], cls[None]
    )[0]
    assert np.abs(rough - ramp).max() > 1e-2


def test_hot_leaves_a_tile_without_clear_pixels_alone(scene) -> None:  # noqa: ANN001
    cube, bands = scene
    cls = np.ones(cube.shape[1:], np.int64)
    out = HazeOptimizedTransform(bands).run(cube[None], cls[None])[0]
    np.testing.assert_array_equal(out, cube)


def test_bad_input() -> None:
    with pytest.raises(BandMappingError, match="blue"):
        HazeOptimizedTransform(BandSet((665.0, 842.0), (30.0, 115.0)))
    m = HarmonicInpainting(BandSet((500.0, 600.0), (10.0, 10.0)))
    with pytest.raises(ShapeError, match="classes"):
        m.run(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(ShapeError):
        m.run(np.zeros((1, 2, 8, 8), np.float64), np.zeros((1, 8, 8), np.int64))


def test_cli_run_with_a_classical_method(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kumo_edge.cli import cli

    out, rep = tmp_path / "o.tif", tmp_path / "r.json"
    res = CliRunner().invoke(
        cli,
        [
            "run",
            str(sample_scene_path()),
            str(out),
            "--method",
            "inpaint",
            "--report",
            str(rep),
            "--models",
            "rgbn",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(rep.read_text())["method"] == "inpaint"
    with Raster(out) as r:
        assert r.count == 4 and r.crs is not None
    res = CliRunner().invoke(cli, ["run", str(sample_scene_path()), str(out), "--method", "magic"])
    assert res.exit_code != 0 and "magic" in res.output
