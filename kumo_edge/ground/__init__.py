"""Ground-side archive processing: batches of scenes on Dask, STAC out, resumable.

Needs the ``ground`` extra (``pip install "kumo-edge[ground]"``: dask.distributed, pystac). The
flight runtime never imports this package; it only calls into the flight code, one constant-
memory stream (:func:`kumo_edge.process.process`) per scene or per line range of a long pass.

    from kumo_edge.ground import run_batch
    summary = run_batch(["passes/"], "out/", workers=2)

See :func:`kumo_edge.ground.batch.run_batch` and ``kumo-edge batch --help``.
"""

from __future__ import annotations

from .batch import BatchOptions, discover, run_batch

__all__ = ["BatchOptions", "discover", "run_batch"]
