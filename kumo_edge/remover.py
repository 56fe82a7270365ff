"""What the stream asks of a cloud remover, as a protocol: the ONNX generator
(:class:`kumo_edge.runtime.Model`), the physics remover (:class:`kumo_edge.physics.PhysicsRemover`)
and the classical removers of :mod:`kumo_edge.baselines` all satisfy it, and none of those
modules needs to import another for it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .bands import BandSet


@runtime_checkable
class Remover(Protocol):
    """A cloud remover working on ``(N, C, H, W)`` float32 tiles in :attr:`bands`.

    ``needs_classes``: whether :meth:`run` takes the detector's classes as a second argument.
    A remover with a true ``physics`` attribute is driven through its ``correct`` method instead
    (see :func:`kumo_edge.stream.process_tiles`)."""

    needs_classes: bool

    @property
    def bands(self) -> BandSet: ...

    def run(self, tiles: npt.NDArray[np.float32], *args: Any) -> npt.NDArray[np.float32]: ...  # noqa: ANN401
