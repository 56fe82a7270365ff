"""The class codes of every mask Kumo Edge writes, their names and colours: one table."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class MaskClass(IntEnum):
    """Mask codes (the detector's training classes are these minus one; 0 is no data)."""

    NODATA = 0
    CLEAR = 1
    THIN = 2
    THICK = 3
    SHADOW = 4


#: Short names (report keys, legends).
NAMES = {
    MaskClass.NODATA: "no data",
    MaskClass.CLEAR: "clear",
    MaskClass.THIN: "thin cloud",
    MaskClass.THICK: "thick cloud",
    MaskClass.SHADOW: "cloud shadow",
}
#: What the cleaned output did with each class (the mask's category names).
ACTIONS = {
    MaskClass.NODATA: "no data",
    MaskClass.CLEAR: "clear",
    MaskClass.THIN: "thin cloud (removed)",
    MaskClass.THICK: "thick cloud (unrecoverable)",
    MaskClass.SHADOW: "cloud shadow (corrected)",
}
#: RGBA colours (GDAL colour table, PNG renderings): no data transparent, clear green, thin
#: cloud light blue, thick cloud white, shadow purple.
COLOURS = {
    MaskClass.NODATA: (0, 0, 0, 0),
    MaskClass.CLEAR: (40, 120, 40, 255),
    MaskClass.THIN: (160, 200, 255, 255),
    MaskClass.THICK: (255, 255, 255, 255),
    MaskClass.SHADOW: (90, 60, 140, 255),
}


def colour_lut() -> np.ndarray:
    """``(5, 3)`` uint8 RGB by code (no data black), for rendering."""
    return np.array([COLOURS[c][:3] for c in MaskClass], dtype=np.uint8)
