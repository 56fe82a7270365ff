"""Build the bundled sample scene ``kumo_edge/data/sample_landsat7_nc.tif`` from ../shared/data.

Source: ``landsat7/LE07_nc_2000_B123457.tif`` (Landsat-7 ETM+, USGS, public domain, via the
GRASS GIS North Carolina sample). It holds 8-bit DN as float32 with nodata -99999. We convert DN
to approximate top-of-atmosphere reflectance with the nominal ETM+ low-gain calibration
(Chander et al. 2009, LMIN/LMAX, ESUN) at an assumed sun elevation of 60 degrees and Earth-Sun
distance 1 AU (the acquisition metadata are not in the file), and store reflectance x 10000 as
uint16 with GDAL scale 1e-4, nodata 0, and the band wavelengths.

    python -m export.sample_scene [--src PATH]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import rasterio

from kumo_edge.config import sensor_profile
from kumo_edge.io import write_geotiff

SRC = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "landsat7"
    / "LE07_nc_2000_B123457.tif"
)
DST = Path(__file__).resolve().parents[1] / "kumo_edge" / "data" / "sample_landsat7_nc.tif"
LMIN = np.array([-6.2, -6.4, -5.0, -5.1, -1.0, -0.35])
LMAX = np.array([293.7, 300.9, 234.4, 241.1, 47.57, 16.54])
ESUN = np.array([1970.0, 1842.0, 1547.0, 1044.0, 225.7, 82.06])
SUN_ELEVATION_DEG = 60.0


def build(src: Path = SRC, dst: Path = DST) -> Path:
    with rasterio.open(src) as ds:
        dn = ds.read().astype(np.float64)
        valid = (dn != ds.nodata).all(axis=0)
        crs, transform = ds.crs, ds.transform
    radiance = (LMAX - LMIN)[:, None, None] / 254.0 * (dn - 1.0) + LMIN[:, None, None]
    refl = math.pi * radiance / (ESUN[:, None, None] * math.sin(math.radians(SUN_ELEVATION_DEG)))
    stored = np.clip(np.round(refl * 10000), 1, 10000).astype(np.uint16)
    stored[:, ~valid] = 0
    bands = sensor_profile("landsat7-etm").bands
    write_geotiff(
        dst,
        stored,
        crs=crs,
        transform=transform,
        nodata=0,
        bands=bands,
        descriptions=[f"{n} {c:.0f}nm" for n, c in zip(bands.names, bands.centers_nm, strict=True)],
        scales=[1e-4] * 6,
        offsets=[0.0] * 6,
        tags={
            "SOURCE": "Landsat-7 ETM+ 2000, North Carolina (GRASS GIS NC sample), USGS public domain",
            "PROCESSING": "approximate TOA reflectance x 10000: nominal ETM+ low-gain calibration, sun elevation 60 deg assumed",
        },
        overwrite=True,
    )
    return dst


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--dst", type=Path, default=DST)
    a = ap.parse_args()
    print(build(a.src, a.dst))
