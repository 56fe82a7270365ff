"""Exceptions raised by kumo_edge.

Every error derives from :class:`KumoError` and also from the matching built-in exception, so
callers can catch either (``except ValueError`` still works). Messages name the offending
parameter and say how to fix it; the CLI prints them as one line.
"""

from __future__ import annotations


class KumoError(Exception):
    """Root of every error raised on purpose by kumo_edge."""


class RasterReadError(KumoError, OSError):
    """A raster cannot be opened or read (missing, unreadable, truncated, not a raster)."""


class RasterWriteError(KumoError, OSError):
    """An output cannot be written (unwritable location, disk full, incomplete write)."""


class OutputExistsError(KumoError, FileExistsError):
    """The output exists and ``overwrite`` was not requested."""


class MissingWavelengthsError(KumoError, ValueError):
    """Band centre wavelengths are needed but the raster does not carry them."""


class BandCountError(KumoError, ValueError):
    """The number of bands does not match what the operation needs."""


class BandMappingError(KumoError, ValueError):
    """A target band set cannot be produced from a source band set."""


class DataTypeError(KumoError, TypeError):
    """An array or raster has a dtype that the operation does not accept."""


class InvalidDataError(KumoError, ValueError):
    """Values are unusable: NaN or infinity, or outside the range the operation needs."""


class ShapeError(KumoError, ValueError):
    """An array has the wrong number of dimensions or the wrong size."""


class ConfigError(KumoError, ValueError):
    """A configuration value or a sensor profile is invalid or unknown."""


class ModelContractError(KumoError, ValueError):
    """A model's metadata contract does not match the data or is missing."""
