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

import importlib
import os
from typing import Any

# numba's OpenMP threads must not spin after a kernel: the next thing to run is ONNX Runtime,
# whose threads need those cores (measured: a 32-band tile through the shipped generator took
# 4.5 ms with spinning threads, 3.8 ms without). Set before numba starts its thread pool; a
# value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numba caches compiled kernels beside their modules by default, i.e. inside site-packages for
# an installed package. pip does not know those files: after `pip uninstall` they leave a
# `kumo_edge/` directory without `__init__.py` that shadows a later editable install (measured:
# `pip install .` + `kumo-edge demo`, then `pip install -e .`, then `kumo-edge --help` failed
# with "cannot import name '__version__'"). So the cache goes to the user's cache directory;
# where that is not writable numba falls back to its usual places. A value already set wins.
os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "kumo-edge",
        "numba",
    ),
)

#: Public names -> the module that defines them. Imported on first use (PEP 562), so that
#: ``import kumo_edge.stream`` on a flight computer does not load GDAL or the cloud synthesis.
_EXPORTS = {
    "BandSet": "bands",
    "resample": "bands",
    "resampling_matrix": "bands",
    "CloudField": "clouds",
    "CloudParams": "clouds",
    "CloudResult": "clouds",
    "synthesize": "clouds",
    "SensorProfile": "config",
    "load_profiles": "config",
    "profile_names": "config",
    "sensor_profile": "config",
    "KumoError": "errors",
    "GeoTiffWriter": "io",
    "Raster": "io",
    "Strip": "io",
    "open_raster": "io",
    "write_geotiff": "io",
    "GridBlender": "tiling",
    "blend_tiles": "tiling",
    "extract_tiles": "tiling",
    "footprint_tiles": "tiling",
    "inference_origins": "tiling",
    "tile_image": "tiling",
}
__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:  # noqa: ANN401
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
