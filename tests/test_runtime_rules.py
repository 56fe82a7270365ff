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
