"""PNG renderings for people (the demo picture): true-colour panels, class masks, titles and a
class legend drawn with a built-in 5 x 7 pixel font (no imaging library needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .classes import NAMES, MaskClass, colour_lut
from .io import check_output_path

_CLASS_RGB = colour_lut()

# 5 x 7 glyphs, one string of 7 rows per character ('#' = ink)
_GLYPHS = {
    "A": ".###.#...##...#######...##...##...#",
    "B": "####.#...#####.#...##...##...#####.",
    "C": ".####.#...#....#....#....#.....####",
    "D": "####.#...##...##...##...##...#####.",
    "E": "######....####.#....#....#....#####",
    "F": "######....####.#....#....#....#....",
    "G": ".####.#....#..###...##...##...#.###",
    "H": "#...##...#######...##...##...##...#",
    "I": ".###...#....#....#....#....#...###.",
    "K": "#...##..#.###..#..#.#...##...##...#",
    "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##...##...##...##...#",
    "N": "#...###..##.#.##..###...##...##...#",
    "O": ".###.#...##...##...##...##...#.###.",
    "P": "####.#...##...#####.#....#....#....",
    "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".#####....#.....###.....#....#####.",
    "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.",
    "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#..#.#..",
    "Y": "#...##...#.#.#...#....#....#....#..",
    "0": ".###.#...##..###.#.###..##...#.###.",
    "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####",
    "3": ".###.#...#....#..##.....##...#.###.",
    "-": "................###................",
    "(": "...#...#...#....#....#.....#.....#.",
    ")": ".#.....#.....#....#....#...#...#...",
    ",": "......................##...#..#....",
    ".": "...........................##...##.",
    " ": "...................................",
}


def text_mask(text: str, scale: int = 2) -> np.ndarray:
    """Boolean ``(7 * scale, width)`` ink of ``text`` (upper-cased; unknown characters blank)."""
    cols = []
    for ch in text.upper():
        g = _GLYPHS.get(ch, _GLYPHS[" "]).ljust(35, ".")
        cols.append(np.array([c == "#" for c in g[:35]]).reshape(7, 5))
        cols.append(np.zeros((7, 1), bool))
    ink = np.concatenate(cols, axis=1) if cols else np.zeros((7, 1), bool)
    return np.kron(ink, np.ones((scale, scale), bool)).astype(bool)


def _rgb8(cube: np.ndarray, bands: Any) -> np.ndarray:  # noqa: ANN401
    idx = [int(np.argmin(np.abs(bands.centers - wl))) for wl in (660.0, 560.0, 480.0)]
    rgb = cube[idx]
    return (np.clip(rgb / 0.35, 0, 1) ** (1 / 1.6) * 255).astype(np.uint8)


def _stamp(canvas: np.ndarray, ink: np.ndarray, row: int, col: int, colour: int = 0) -> None:
    h, w = ink.shape
    w = min(w, canvas.shape[2] - col)
    canvas[:, row : row + h, col : col + w][:, ink[:, :w]] = colour


def legend(width: int, scale: int = 2) -> np.ndarray:
    """A white ``(3, h, width)`` strip: a swatch and the name of every mask class."""
    h = 7 * scale + 8
    strip = np.full((3, h, width), 255, np.uint8)
    col = 4
    for c in MaskClass:
        if col + 12 > width:
            break
        strip[:, 4 : h - 4, col : col + 12] = _CLASS_RGB[c][:, None, None]
        strip[:, 4 : h - 4, col : col + 12][:, [0, -1], :] = 0  # outline: white shows on white
        strip[:, 4 : h - 4, col : col + 12][:, :, [0, -1]] = 0
        ink = text_mask(NAMES[c], scale)
        _stamp(strip, ink, 4, col + 16)
        col += 16 + ink.shape[1] + 14
    return strip


def write_side_by_side(
    path: Path,
    cubes: Sequence[np.ndarray],
    mask: np.ndarray,
    bands: Any,  # noqa: ANN401
    overwrite: bool = False,
    extra_mask: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """A PNG of true-colour renderings of ``cubes`` followed by the class ``mask`` (and
    ``extra_mask``), with 8-px gaps, a title above each panel and the class legend below."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    masks = [mask] if extra_mask is None else [mask, extra_mask]
    panels = [_rgb8(c, bands) for c in cubes] + [
        _CLASS_RGB[np.clip(m, 0, 4)].transpose(2, 0, 1) for m in masks
    ]
    if titles is not None:
        head = 7 * 2 + 8
        titled = []
        for p, t in zip(panels, titles, strict=True):
            top = np.full((3, head, p.shape[2]), 255, np.uint8)
            _stamp(top, text_mask(t), 4, 2)
            titled.append(np.concatenate([top, p], axis=1))
        panels = titled
    gap = np.full((3, panels[0].shape[1], 8), 255, dtype=np.uint8)
    row = np.concatenate(
        [p for pair in zip(panels, [gap] * len(panels), strict=True) for p in pair][:-1], axis=2
    )
    row = np.concatenate([row, legend(row.shape[2])], axis=1)
    check_output_path(path, overwrite)
    tmp = path.with_name(f".{path.name}.partial.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        import rasterio

        with rasterio.open(
            tmp, "w", driver="PNG", width=row.shape[2], height=row.shape[1], count=3, dtype="uint8"
        ) as d:
            d.write(row)
    os.replace(tmp, path)
    aux = Path(str(tmp) + ".aux.xml")
    if aux.exists():
        aux.unlink()
    return path
