"""Runtime rules that need no model: the ambiguous-bright fraction of a tile."""

from __future__ import annotations

import numpy as np

from kumo_edge.config import sensor_profile
from kumo_edge.runtime import ambiguous_bright


def test_ambiguous_bright_counts_bright_white_pixels_the_detector_cannot_call() -> None:
    bands = sensor_profile("rgbn").bands
    cube = np.full((1, 4, 2, 3), 0.05, np.float32)  # dark ground
    cube[0, :, 0, :] = 0.6  # a bright white row: snow or cloud
    cube[0, :, 1, 2] = [0.1, 0.2, 0.6, 0.5]  # bright but red: not white
    p = np.zeros((1, 4, 2, 3), np.float32)
    p[0, 0] = 1.0
    cloud = np.array([[0.5, 0.95, 0.3], [0.5, 0.5, 0.5]], np.float32)  # P(cloud) per pixel
    p[0, 1], p[0, 0] = cloud, 1.0 - cloud
    # row 0: 0.5 and 0.3 are undecided, 0.95 is a call; row 1: dark, or not white
    assert ambiguous_bright(cube, p, bands).tolist() == [2 / 6]
    valid = np.ones((1, 2, 3), bool)
    valid[0, 0, 0] = False
    assert ambiguous_bright(cube, p, bands, valid).tolist() == [1 / 5]
    # no visible band, no answer
    nir = sensor_profile("rgbn").bands.subset([3])
    assert ambiguous_bright(cube[:, 3:], p, nir).tolist() == [0.0]


def test_ambiguous_bright_flags_cloud_calls_on_snow_like_pixels_where_swir_exists() -> None:
    """With SWIR-1, a bright white pixel called cloud is ambiguous when it is as dark in the SWIR
    as snow or ice (NDSI >= 0.4), not when it stays bright there (a water cloud); without SWIR the
    same call is left alone."""
    swir6 = sensor_profile("rgbn-swir").bands  # blue, green, red, NIR, SWIR-1, SWIR-2
    cube = np.full((1, 6, 1, 3), 0.7, np.float32)  # three bright white pixels
    cube[0, 4:, 0, 0] = 0.15  # ice-like: NDSI (0.7 - 0.15) / 0.85 = 0.65
    cube[0, 4:, 0, 1] = 0.45  # water-cloud-like: NDSI 0.22
    cube[0, 4:, 0, 2] = 0.15  # ice-like, but the detector calls it clear
    p = np.zeros((1, 4, 1, 3), np.float32)
    p[0, 2] = [0.95, 0.95, 0.05]  # P(thick)
    p[0, 0] = 1.0 - p[0, 2]
    assert ambiguous_bright(cube, p, swir6).tolist() == [1 / 3]
    rgbn = sensor_profile("rgbn").bands
    assert ambiguous_bright(cube[:, :4], p, rgbn).tolist() == [0.0]


def test_shadow_operating_point() -> None:
    import pytest

    from kumo_edge.errors import ModelContractError
    from kumo_edge.runtime import ModelContract, classify

    # per pixel: P(clear), P(thin), P(thick), P(shadow)
    p = np.array(
        [
            [0.60, 0.05, 0.05, 0.30],  # shadow share 1/3
            [0.45, 0.05, 0.05, 0.45],  # a tie: not shadow at 0.5
            [0.30, 0.05, 0.05, 0.60],  # shadow by the larger
            [0.10, 0.30, 0.40, 0.20],  # thick cloud whatever the shadow threshold
        ],
        np.float32,
    ).T
    assert classify(p).tolist() == [0, 0, 3, 2]  # 0.5: the larger of clear and shadow
    assert classify(p, shadow_threshold=0.3).tolist() == [3, 3, 3, 2]
    assert classify(p, shadow_threshold=0.4).tolist() == [0, 3, 3, 2]
    assert classify(p, shadow_threshold=0.7).tolist() == [0, 0, 0, 2]
    bands = sensor_profile("rgbn").bands
    c = ModelContract("detector", "rgbn", bands, 256, 16, 8, {}, ("c", "t", "k", "s"))
    assert c.shadow_threshold == 0.5
    c2 = ModelContract.from_metadata({**c.to_metadata(), "kumo.shadow_threshold": "0.3"})
    assert c2.shadow_threshold == 0.3 and ModelContract.from_metadata(c2.to_metadata()) == c2
    assert any("> 0.3" in ln for ln in c2.describe())
    with pytest.raises(ModelContractError, match="shadow_threshold must lie in"):
        ModelContract.from_metadata({**c.to_metadata(), "kumo.shadow_threshold": "1.2"})
