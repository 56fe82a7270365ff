"""Ground-side tooling of Kumo Edge: data preparation, training and export (torch lives here,
never in :mod:`kumo_edge`)."""

from __future__ import annotations

import argparse


def share(text: str) -> float:
    """An argparse type for the training commands' shares (a fraction of samples, a decay): a
    number in [0, 1], anything else refused in one line."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {v:g}")
    return v
