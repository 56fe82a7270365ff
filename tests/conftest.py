"""Shared fixtures: tiny georeferenced rasters written with our own writer and with rasterio,
plus the bundled (real) sample scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from kumo_edge.bands import BandSet
from kumo_edge.cli import sample_scene_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CRS = "EPSG:32633"
TRANSFORM = from_origin(500000.0, 4600000.0, 30.0, 30.0)
BANDS4 = BandSet(
    (490.0, 560.0, 665.0, 842.0), (65.0, 35.0, 30.0, 115.0), ("blue", "green", "red", "nir")
)


def rotated_footprint(
    rows: int, cols: int, angle_deg: float = 12.0, margin: float = 0.12
) -> np.ndarray:
    """A bool mask of a rotated rectangle, like a Landsat scene's footprint."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    cy, cx = rows / 2, cols / 2
    a = np.radians(angle_deg)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    return (np.abs(u) < cols * (0.5 - margin)) & (np.abs(v) < rows * (0.5 - margin))


def linear_rpcs(rows: int, cols: int, bounds: tuple[float, float, float, float]):  # noqa: ANN201
    """RPCs of an image of ``rows`` x ``cols`` pixels, north up, spanning ``bounds`` (west,
    south, east, north in degrees): longitude grows with the column and latitude falls with
    the row, first-order terms only."""
    from rasterio.rpc import RPC

    west, south, east, north = bounds
    zero = [0.0] * 20
    return RPC(
        height_off=100.0, height_scale=500.0,
        lat_off=(north + south) / 2, lat_scale=(north - south) / 2,
        line_den_coeff=[1.0] + zero[1:], line_num_coeff=[0.0, 0.0, -1.0] + zero[3:],
        line_off=rows / 2, line_scale=rows / 2,
        long_off=(west + east) / 2, long_scale=(east - west) / 2,
        samp_den_coeff=[1.0] + zero[1:], samp_num_coeff=[0.0, 1.0] + zero[2:],
        samp_off=cols / 2, samp_scale=cols / 2,
    )  # fmt: skip


def make_raster(path: Path, data: np.ndarray, **kw) -> Path:
    """Write ``data`` (bands, rows, cols) with rasterio directly (not our writer)."""
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
        crs=CRS,
        transform=TRANSFORM,
    )
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as d:
        d.write(data)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def refl4(rng: np.random.Generator) -> np.ndarray:
    """(4, 90, 110) float32 reflectance with spatial structure."""
    yy, xx = np.mgrid[0:90, 0:110]
    base = 0.15 + 0.04 * np.sin(yy / 7.0) + 0.04 * np.cos(xx / 11.0)
    cube = np.stack([base * f for f in (0.8, 1.0, 1.1, 2.0)]) + rng.normal(0, 0.005, (4, 90, 110))
    return np.clip(cube, 0, 1).astype(np.float32)


@pytest.fixture
def tagged_file(tmp_path: Path, refl4: np.ndarray) -> Path:
    """uint16 reflectance x 10000, GDAL scale 1e-4, per-band `wavelength` tags, nodata 0."""
    p = tmp_path / "tagged.tif"
    stored = np.round(refl4 * 10000).astype(np.uint16)
    stored[:, :5, :7] = 0
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=110,
        height=90,
        count=4,
        dtype="uint16",
        crs=CRS,
        transform=TRANSFORM,
        nodata=0,
    ) as d:
        d.write(stored)
        d.scales = (1e-4,) * 4
        d.offsets = (0.0,) * 4
        for b, c in enumerate(BANDS4.centers_nm, start=1):
            d.update_tags(b, wavelength=str(c))
    return p


@pytest.fixture
def sample_path() -> Path:
    return sample_scene_path()


@pytest.fixture
def footprint_file(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """A 3-band uint16 raster 700 x 800 with a rotated footprint and 0 fill, no nodata declared
    (like ../shared/data/landsat8)."""
    valid = rotated_footprint(700, 800, 14.0, 0.08)
    data = rng.integers(5000, 20000, size=(3, 700, 800), dtype=np.uint16)
    data[:, ~valid] = 0
    p = make_raster(
        tmp_path / "footprint.tif",
        data,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    return p, valid


FIXTURE_MODELS = Path(__file__).resolve().parent / "fixtures" / "models"


def fixture_models(name: str) -> dict[str, Path]:
    """The committed tiny rgbn detector + generator ``tests/fixtures/models/<name>/`` (made by
    ``tests/fixtures/make_models.py`` with :func:`random_models`): no torch needed."""
    d = FIXTURE_MODELS / name
    return {"detector": d / "detector.onnx", "generator": d / "generator.onnx", "dir": d}


def random_models(
    folder: Path,
    perturb: float = 0.3,
    det_widths: tuple[int, ...] = (4, 8),
    gen_widths: tuple[int, ...] = (8, 8),
    seed: int = 2,
) -> dict:
    """A tiny rgbn detector and generator with random (non-trivial) weights and BN statistics,
    exported with their contract (tile 64, halo 8). Needs torch (the `train` extra)."""
    import torch

    from export.nets import CloudDetector, DetectorConfig, UNet, UNetConfig
    from export.onnx_export import contract_for, to_onnx, write_model
    from export.train import TrainConfig

    torch.manual_seed(seed)
    out: dict = {}
    for task, net, w in (
        ("detector", CloudDetector(DetectorConfig(4, det_widths)), det_widths),
        ("generator", UNet(UNetConfig(4, 4, gen_widths)), gen_widths),
    ):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(perturb * torch.randn_like(p))
        net.train()
        net(torch.rand(4, 4, 32, 32))
        net.eval()
        cfg = TrainConfig(task=task, bands="rgbn", widths=w)
        out[task] = write_model(
            to_onnx(net, 4, 64),
            contract_for(net, cfg, 64, 8, {"psnr": 30.0}),
            folder / f"{task}.onnx",
        )
        out[task + "_net"] = net
    return out
