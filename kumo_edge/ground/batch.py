"""``kumo-edge batch``: many scenes through the flight stream on a Dask cluster, resumable.

One task per scene (or per line range of a long pass, stitched into one output identical to a
single stream), each the constant-memory stream of :func:`kumo_edge.process.process`. Per scene
``DIR/<scene>.tif``, ``.mask.tif``, ``.report.json`` and the STAC Item ``<scene>.item.json``,
written last: the Item is the scene's completion record. A re-run skips a scene whose Item
matches its input (size, modification time), the run's settings and the software version, and
whose files are all there with the recorded sizes; every other scene is (re)done. A scene that
fails is recorded with its one-line error and does not stop the others.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ConfigError, KumoError
from ..process import RunOptions, process
from . import stac

logger = logging.getLogger("kumo_edge.ground")

#: File name endings a folder is searched for.
RASTER_SUFFIXES = (".tif", ".tiff", ".img", ".dat", ".bsq", ".bil", ".bip", ".vrt", ".jp2")
#: Suffixes of a scene's outputs (``<scene><suffix>`` in the output folder).
OUTPUTS = {"data": ".tif", "mask": ".mask.tif", "report": ".report.json"}
ITEM_SUFFIX = ".item.json"


@dataclass(frozen=True)
class SceneInput:
    """One scene of a batch.

    Attributes:
        id: Output name (unique in the batch).
        href: The raster's path.
        item: The source STAC Item's href (links and datetime), if it came from one.
        datetime: The acquisition time (ISO 8601) where known.
    """

    id: str
    href: str
    item: str | None = None
    datetime: str | None = None


@dataclass(frozen=True)
class BatchOptions:
    """How a batch is run.

    Attributes:
        workers: Dask workers of the LocalCluster (one scene or line range at a time each).
        threads_per_worker: Cores each worker's stream uses (ONNX Runtime and numba threads).
        scheduler: Address of an existing Dask scheduler (``tcp://host:port``) instead of a
            LocalCluster; its workers must see the input and output paths.
        retries: Extra attempts of a task that crashed (a bad input is not retried: its one-line
            error is recorded).
        split_lines: Cut passes longer than this into line ranges of about this many lines,
            processed by different workers and stitched (None: one task per scene).
        progress: Show a progress bar over lines and scenes (on a terminal).
        connect_timeout: Seconds to wait for ``scheduler``.
    """

    workers: int = 2
    threads_per_worker: int = 1
    scheduler: str | None = None
    retries: int = 1
    split_lines: int | None = None
    progress: bool = True
    connect_timeout: float = 20.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1 or self.retries < 0:
            raise ConfigError("workers and threads per worker must be >= 1, retries >= 0")
        if self.split_lines is not None and self.split_lines < 1:
            raise ConfigError(f"split lines must be >= 1, got {self.split_lines}")


# -- inputs ------------------------------------------------------------------------------------
def _scene_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scene"


def discover(inputs: Sequence[str | os.PathLike[str]]) -> list[SceneInput]:
    """The scenes named by ``inputs``: raster files, folders (their raster files, not
    recursive), list files (``.txt``/``.list``: one path per line, relative to the list, ``#``
    comments) and STAC Catalogs, Collections, Items or ItemCollections (``.json``: each Item's
    ``data`` asset, else its first GeoTIFF asset). Scene ids are file (or Item) names and must be
    unique in the batch."""
    scenes: list[SceneInput] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in RASTER_SUFFIXES)
            if not files:
                raise ConfigError(f"{p}: no raster files ({', '.join(RASTER_SUFFIXES)})")
            scenes += [SceneInput(_scene_id(f.stem), str(f.resolve())) for f in files]
        elif not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
        elif p.suffix.lower() in (".txt", ".list"):
            for n, line in enumerate(p.read_text().splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                f = (p.parent / line).resolve()
                if not f.is_file():
                    raise ConfigError(f"{p}:{n}: {line}: no such file")
                scenes.append(SceneInput(_scene_id(f.stem), str(f)))
        elif p.suffix.lower() == ".json":
            scenes += stac.read_scenes(p)
        else:
            scenes.append(SceneInput(_scene_id(p.stem), str(p.resolve())))
    seen: dict[str, str] = {}
    for s in scenes:
        if s.id in seen and seen[s.id] != s.href:
            raise ConfigError(
                f"two scenes would both write {s.id}.tif: {seen[s.id]} and {s.href}; rename one"
            )
        seen[s.id] = s.href
    unique = {s.id: s for s in scenes}  # the same file named twice is one scene
    return list(unique.values())


# -- completion records ------------------------------------------------------------------------
def fingerprint(scene: SceneInput, options: RunOptions) -> dict[str, Any]:
    """What a finished scene's Item must record to be skipped on a re-run: the input file (size,
    modification time), the settings that change outputs, the software version."""
    st = os.stat(scene.href)
    settings = asdict(options)
    for k in ("threads", "providers", "overwrite", "strip_lines", "batch"):
        settings.pop(k)  # change speed, never pixels
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(_models_digest(options.models).encode())  # new model files: new outputs
    return {
        "input": scene.href,
        "input_size": st.st_size,
        "input_mtime_ns": st.st_mtime_ns,
        "settings_sha256": digest.hexdigest()[:16],
        "software": f"kumo-edge {__version__}",
    }


def _models_digest(models: str | None) -> str:
    """SHA-256 over the model files a run may use: the shipped sets, or the given folder."""
    from ..pipeline import file_sha256
    from ..runtime import shipped_models

    if models and Path(models).is_dir():
        files = sorted(Path(models).glob("*.onnx"))
    else:
        files = sorted(f for s in shipped_models().values() for f in s.values())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(file_sha256(f, st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()


def scene_paths(
    out_dir: Path, scene_id: str, piece: int | None = None, remove: bool = True
) -> dict[str, Path]:
    """Output paths of a scene (or of one line range, hidden, while a split pass runs); no
    ``data`` without removal."""
    stem = scene_id if piece is None else f".{scene_id}.part{piece:04d}"
    paths = {k: out_dir / f"{stem}{suffix}" for k, suffix in OUTPUTS.items()}
    paths["item"] = out_dir / f"{stem}{ITEM_SUFFIX}"
    if not remove:
        del paths["data"]
    return paths


def is_complete(
    scene: SceneInput, out_dir: Path, options: RunOptions, fp: dict[str, Any] | None = None
) -> bool:
    """Whether the scene's outputs are complete for this input and these settings: its Item
    exists, records the same fingerprint (``fp``, computed when not given), and every asset it
    lists is there with its size."""
    paths = scene_paths(out_dir, scene.id)
    try:
        item = json.loads(paths["item"].read_text())
        want = fp if fp is not None else fingerprint(scene, options)
        if item.get("properties", {}).get("kumo:run") != want:
            return False
        for asset in item["assets"].values():
            f = out_dir / asset["href"]
            if not f.is_file() or f.stat().st_size != asset.get("file:size"):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


# -- tasks (run on the workers) ----------------------------------------------------------------
def _worker_options(options: RunOptions, threads: int) -> RunOptions:
    return options.with_(overwrite=True, threads=options.threads or threads)


def scene_task(
    scene: SceneInput,
    out_dir: str,
    options: RunOptions,
    fp: dict[str, Any],
    rows: tuple[int, int] | None = None,
    piece: int | None = None,
) -> dict[str, Any]:
    """Process one scene (or one line range of it: ``rows``, ``piece``) into ``out_dir``.
    Bad input returns a ``failed`` record with the one-line error; anything else raises (and
    is retried by the scheduler)."""
    out = Path(out_dir)
    paths = scene_paths(out, scene.id, piece, options.remove)
    t0 = time.perf_counter()
    try:
        rep = process(
            scene.href,
            paths.get("data"),
            paths["mask"],
            paths["report"],
            options,
            rows=rows,
            meta={"scene": scene.id},
        )
    except KumoError as exc:
        return _failed(scene, str(exc), time.perf_counter() - t0)
    if piece is not None:
        return {"scene": scene.id, "status": "piece", "piece": piece, "rows": list(rows or ())}
    stac.write_item(scene, out, paths, rep, fp)
    return _record(scene, "done", time.perf_counter() - t0, rep)


def stitch_task(
    scene: SceneInput,
    out_dir: str,
    options: RunOptions,
    fp: dict[str, Any],
    pieces: list[dict[str, Any]],
) -> dict[str, Any]:
    """Join the line ranges of a split pass into the scene's outputs (strip by strip, constant
    memory), merge their reports, write the Item, remove the pieces."""
    from ..io import Raster, WriterGroup
    from ..pipeline import output_writers, write_json_atomic

    out = Path(out_dir)
    t0 = time.perf_counter()
    parts = [scene_paths(out, scene.id, p["piece"], options.remove) for p in pieces]
    failed = [p for p in pieces if p["status"] == "failed"]
    if failed:
        _remove(parts)
        return _failed(scene, failed[0]["error"], sum(p["seconds"] for p in pieces))
    reps = [json.loads(p["report"].read_text()) for p in parts]
    rep = merge_reports(reps)
    final = scene_paths(out, scene.id, remove=options.remove)
    try:
        with options.source.open(scene.href) as src:
            geo = src.georeferencing
            height, width = src.height, src.width
        bands = None
        if options.remove:
            with Raster(parts[0]["data"], nodata=None) as r0:
                bands = r0.bands
        w_data, w_mask = output_writers(
            final.get("data"), final["mask"], width, height, bands, rep["output_dtype"],
            rep.get("compress", "zstd"), geo, True,
        )  # fmt: skip
        with WriterGroup(w_data, w_mask):
            for p, piece in zip(parts, pieces, strict=True):
                for key, w in (("data", w_data), ("mask", w_mask)):
                    if w is not None:
                        _copy_rows(p[key], w, piece["rows"][0])
        write_json_atomic(final["report"], rep)
        stac.write_item(scene, out, final, rep, fp)
    except KumoError as exc:  # bad input or a full disk: recorded (other errors are retried)
        _remove(parts)
        return _failed(scene, str(exc), time.perf_counter() - t0)
    _remove(parts)
    return _record(scene, "done", time.perf_counter() - t0 + rep.get("wall_seconds", 0.0), rep)


def _remove(parts: list[dict[str, Path]]) -> None:
    for p in parts:
        for f in p.values():
            f.unlink(missing_ok=True)
            Path(f"{f}.aux.xml").unlink(missing_ok=True)


def _copy_rows(src: Path, writer: Any, row0: int, lines: int = 256) -> None:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        for r in range(0, ds.height, lines):
            n = min(lines, ds.height - r)
            writer.write(ds.read(window=Window(0, r, ds.width, n)), row0 + r)


def merge_reports(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of a pass from the reports of its consecutive line ranges."""
    from ..stream import Report

    merged = Report(
        tiles=[t for r in reps for t in r["per_tile"]], lines=sum(r["lines"] for r in reps)
    )
    for r in reps:
        for k, v in r["seconds"].items():
            merged.seconds[k] = merged.seconds.get(k, 0.0) + v
    out = {k: v for k, v in reps[0].items() if k not in ("rows",)}
    out.update(merged.to_dict())
    out["class_pixels"] = {
        k: sum(r["class_pixels"][k] for r in reps) for k in reps[0]["class_pixels"]
    }
    out["wall_seconds"] = sum(r["wall_seconds"] for r in reps)
    out["peak_rss_mb"] = max((r.get("peak_rss_mb") or 0.0) for r in reps) or None
    out["pieces"] = [r.get("rows") for r in reps]
    return out


def _record(scene: SceneInput, status: str, seconds: float, rep: dict[str, Any]) -> dict[str, Any]:
    px = rep.get("class_pixels", {})
    valid = sum(v for k, v in px.items() if k != "nodata")
    return {
        "scene": scene.id,
        "input": scene.href,
        "status": status,
        "seconds": round(seconds, 3),
        "lines": rep.get("lines"),
        "cloud_fraction": (px.get("thin", 0) + px.get("thick", 0)) / valid if valid else None,
        "tiles_removed": rep.get("tiles_removed"),
        "tiles_kept": rep.get("tiles_kept"),
        "tiles_drop": rep.get("tiles_drop"),
        "tiles_unrecoverable": rep.get("tiles_unrecoverable"),
    }


def _failed(scene: SceneInput, error: str, seconds: float) -> dict[str, Any]:
    return {
        "scene": scene.id,
        "input": scene.href,
        "status": "failed",
        "seconds": round(seconds, 3),
        "error": error.splitlines()[0] if error else "failed",
    }


# -- the batch -----------------------------------------------------------------------------------
@dataclass
class _Plan:
    scene: SceneInput
    fp: dict[str, Any]
    lines: int
    rows: list[tuple[int, int]] = field(default_factory=list)


def _plan(
    scenes: Iterable[SceneInput],
    fps: dict[str, dict[str, Any]],
    options: RunOptions,
    batch: BatchOptions,
) -> list[_Plan]:
    """Each scene's line count and (for long passes) line ranges, beside its fingerprint
    ``fps[id]``; a scene that cannot be opened fails in its task with the reader's message."""
    from ..runtime import load_models
    from ..stream import split_rows

    plans = []
    strides: dict[Any, tuple[int, int]] = {}
    for s in scenes:
        plan = _Plan(s, fps[s.id], 0)
        try:
            with options.source.open(s.href) as r:
                plan.lines = r.height
                if batch.split_lines and r.height > batch.split_lines:
                    if r.bands not in strides:
                        det, _, _ = load_models(
                            options.models, r.bands, ["cpu"], 1, need_generator=False
                        )
                        strides[r.bands] = (det.contract.tile, det.contract.halo)
                    tile, halo = strides[r.bands]
                    plan.rows = split_rows(r.height, batch.split_lines, tile, halo)
        except KumoError:
            pass  # reported by its task, with the other scenes done
        plans.append(plan)
    return plans


def require_extra() -> None:
    """Refuse (one line) when the ground extra is not installed."""
    try:
        import dask.distributed  # noqa: F401
        import pystac  # noqa: F401
    except ImportError:
        raise KumoError(
            "kumo-edge batch needs the ground extra: pip install 'kumo-edge[ground]'"
        ) from None


def _cluster(batch: BatchOptions) -> tuple[Any, Any]:
    import dask
    from dask.distributed import Client, LocalCluster

    # Dask's own chatter (connections, workers starting and closing) only with -vv
    quiet = logging.INFO if logger.isEnabledFor(logging.DEBUG) else logging.ERROR
    logging.getLogger("distributed").setLevel(quiet)

    if batch.scheduler:
        try:
            return Client(batch.scheduler, timeout=f"{batch.connect_timeout}s"), None
        except OSError as exc:
            raise KumoError(f"cannot reach the Dask scheduler {batch.scheduler}: {exc}") from None
    threads = str(batch.threads_per_worker)
    # The worker processes configure their logging when they import distributed, before the
    # Nanny's env reaches them: the level must be in the environment they are spawned with.
    # Without it a worker whose heartbeat is in flight as the cluster closes logs a traceback
    # at ERROR ("Failed to communicate with scheduler during heartbeat") after a clean batch;
    # a task's own failure reaches us through its future either way.
    worker_log = "info" if quiet == logging.INFO else "critical"
    spawn_env = "distributed.nanny.pre-spawn-environ.DASK_LOGGING__DISTRIBUTED"
    with dask.config.set({spawn_env: worker_log}):  # beside dask's own pre-spawn variables
        cluster = LocalCluster(
            n_workers=batch.workers,
            threads_per_worker=1,  # one scene (or line range) at a time per worker
            processes=True,
            dashboard_address=None,
            silence_logs=quiet,
            env={"NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads},
        )
    return Client(cluster), cluster


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: RunOptions | None = None,
    batch: BatchOptions | None = None,
) -> dict[str, Any]:
    """Process every scene of ``inputs`` (see :func:`discover`) into ``out_dir`` on Dask.

    Writes per scene the outputs, report and STAC Item, then ``out_dir/catalog.json`` (a STAC
    Catalog of every finished scene) and ``out_dir/batch.json`` (the summary, returned): per
    scene its status (``done``, ``skipped`` as already complete, ``failed`` with the error),
    seconds, cloud fraction and tile decisions.
    """
    from tqdm import tqdm

    require_extra()
    options = options or RunOptions()
    batch = batch or BatchOptions()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; --out needs a folder")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: the output folder is not writable")
    scenes = discover(inputs)
    if not scenes:
        raise ConfigError("no scenes to process")
    outputs = {p.resolve() for s in scenes for p in scene_paths(out, s.id).values()}
    for s in scenes:
        if Path(s.href).resolve() in outputs:
            raise ConfigError(f"{s.href} is one of the batch's own outputs")
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    fps = {}
    for s in scenes:
        try:
            fps[s.id] = fingerprint(s, options)
        except OSError as exc:
            raise ConfigError(f"{s.href}: {exc.strerror}") from None
    todo = []
    for s in scenes:
        if is_complete(s, out, options, fps[s.id]):
            records[s.id] = {"scene": s.id, "input": s.href, "status": "skipped"}
        else:
            todo.append(s)
            for f in out.glob(f".{glob.escape(s.id)}.part*"):  # pieces of a killed split pass
                f.unlink(missing_ok=True)
    plans = _plan(todo, fps, options, batch)
    wopts = _worker_options(options, batch.threads_per_worker)
    if plans:
        client, cluster = _cluster(batch)
        try:
            records.update(_submit_all(client, plans, out, wopts, batch, tqdm))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    summary = _summary(scenes, records, out, batch, time.perf_counter() - t0)
    stac.write_catalog(out, [s for s in scenes if records[s.id]["status"] != "failed"])
    from ..pipeline import write_json_atomic

    write_json_atomic(out / "batch.json", summary)
    return summary


def _submit_all(
    client: Any, plans: list[_Plan], out: Path, wopts: RunOptions, batch: BatchOptions, tqdm: Any
) -> dict[str, dict[str, Any]]:
    from dask.distributed import as_completed

    futures = {}
    for p in plans:
        args = (p.scene, str(out), wopts, p.fp)
        if p.rows:
            pieces = [
                client.submit(
                    scene_task,
                    *args,
                    rows,
                    k,
                    retries=batch.retries,
                    pure=False,
                    key=f"{p.scene.id}-part{k}-{time.time_ns()}",
                )  # fmt: skip
                for k, rows in enumerate(p.rows)
            ]
            fut = client.submit(
                stitch_task, *args, pieces, retries=batch.retries, pure=False,
                key=f"{p.scene.id}-stitch-{time.time_ns()}",
            )  # fmt: skip
        else:
            fut = client.submit(
                scene_task, *args, retries=batch.retries, pure=False,
                key=f"{p.scene.id}-{time.time_ns()}",
            )  # fmt: skip
        futures[fut] = p
    records = {}
    total = sum(p.lines for p in plans)
    bar = tqdm(
        total=total,
        desc="batch",
        unit="line",
        disable=None if batch.progress else True,
        leave=False,
        file=sys.stderr,
    )
    with bar:
        done = 0
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a crashed task, after its retries
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                rec = _failed(p.scene, f"{type(exc).__name__}: {msg}".rstrip(": "), 0.0)
            records[p.scene.id] = rec
            done += 1
            bar.update(p.lines)
            bar.set_postfix_str(f"scenes {done}/{len(plans)}")
            if rec["status"] == "failed":
                logger.warning("%s failed: %s", p.scene.id, rec["error"])
    return records


def _summary(
    scenes: list[SceneInput],
    records: dict[str, dict[str, Any]],
    out: Path,
    batch: BatchOptions,
    seconds: float,
) -> dict[str, Any]:
    recs = [records[s.id] for s in scenes]
    n = {k: sum(r["status"] == k for r in recs) for k in ("done", "skipped", "failed")}
    return {
        "software": f"kumo-edge {__version__}",
        "out": str(out),
        "scheduler": batch.scheduler or f"LocalCluster({batch.workers} workers)",
        "workers": batch.workers if not batch.scheduler else None,
        "threads_per_worker": batch.threads_per_worker,
        "split_lines": batch.split_lines,
        "scenes": len(recs),
        **n,
        "seconds": round(seconds, 3),
        "scenes_per_hour": n["done"] / seconds * 3600 if n["done"] and seconds > 0 else None,
        "lines_done": int(np.sum([r.get("lines") or 0 for r in recs if r["status"] == "done"])),
        "per_scene": recs,
    }
