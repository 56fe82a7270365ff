"""Kumo Edge: on-board cloud detection and thin-cloud removal for hyperspectral imagery.

Array conventions (everywhere in this package):

* rasters and cubes are ``(band, row, col)``; strips from a sensor are ``(band, n, width)``;
* model tensors are ``(N, C, H, W)`` float32;
* reflectance inside the runtime is float32 in [0, 1];
* masks are bool or uint8; class masks use 0 no data, 1 clear, 2 thin cloud, 3 thick cloud,
  4 cloud shadow;
* wavelengths and FWHM are in nanometres.

This package never imports torch; training and export live in the separate ``export`` package.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .bands import BandSet, resample, resampling_matrix
from .clouds import CloudField, CloudParams, CloudResult, synthesize
from .config import SensorProfile, load_profiles, profile_names, sensor_profile
from .errors import KumoError
from .io import GeoTiffWriter, Raster, Strip, open_raster, write_geotiff
from .tiling import (
    GridBlender,
    blend_tiles,
    extract_tiles,
    footprint_tiles,
    inference_origins,
    tile_image,
)

__all__ = [
    "BandSet",
    "CloudField",
    "CloudParams",
    "CloudResult",
    "GeoTiffWriter",
    "GridBlender",
    "KumoError",
    "Raster",
    "SensorProfile",
    "Strip",
    "__version__",
    "blend_tiles",
    "extract_tiles",
    "footprint_tiles",
    "inference_origins",
    "load_profiles",
    "open_raster",
    "profile_names",
    "resample",
    "resampling_matrix",
    "sensor_profile",
    "synthesize",
    "tile_image",
    "write_geotiff",
]
