"""STAC in and out for batches (pystac): scenes from Catalogs, Collections, Items and
ItemCollections; one Item per processed scene; one Catalog per batch.

An output Item carries: the cleaned cube (``data``, with ``eo:bands`` centre wavelengths and
FWHM in micrometres, ``file:size``), the class mask (``mask``, with its class codes), the JSON
report; ``eo:cloud_cover`` from the detector's mask (thin + thick cloud, percent of valid
pixels); the processing extension's ``processing:software`` and ``processing:lineage``; the
models and their SHA-256 (``kumo:models``); the scene's tile decisions; ``kumo:run``, the
fingerprint a re-run checks; a ``derived_from`` link to the source Item or file. Hrefs are
relative (a self-contained catalogue: the output folder can be moved as a whole).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .batch import SceneInput

PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
CATALOG_ID = "kumo-edge-batch"
GEOTIFF = "image/tiff; application=geotiff"


def _pystac() -> Any:
    try:
        import pystac
    except ImportError:
        from ..errors import KumoError

        raise KumoError("STAC needs the ground extra: pip install 'kumo-edge[ground]'") from None
    return pystac


def read_scenes(path: Path) -> list[SceneInput]:
    """The scenes of a STAC file: a Catalog or Collection (its Items, recursively), an Item, or
    an ItemCollection. Each Item's raster is its ``data`` asset, else its first GeoTIFF asset."""
    from .batch import SceneInput, _scene_id

    pystac = _pystac()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable STAC JSON file ({exc})") from None
    kind = doc.get("type")
    try:
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_file(str(path)))
        elif kind == "Feature":
            items = [pystac.Item.from_file(str(path))]
        elif kind in ("Catalog", "Collection"):
            items = list(pystac.read_file(str(path)).get_items(recursive=True))
        else:
            raise ConfigError(f"{path}: JSON of type {kind!r} is not a STAC Catalog or Item")
    except (pystac.STACError, OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the STAC file ({exc})") from None
    scenes = []
    for it in items:
        asset = it.assets.get("data") or next(
            (a for a in it.assets.values() if (a.media_type or "").startswith("image/tiff")),
            None,
        )
        if asset is None:
            raise ConfigError(f"{path}: Item {it.id} has no 'data' or GeoTIFF asset")
        href = asset.get_absolute_href() or asset.href
        if not os.path.isabs(href):
            href = str((path.parent / href).resolve())
        when = it.datetime.isoformat() if it.datetime else None
        src = it.get_self_href() or str(path.resolve())
        scenes.append(SceneInput(_scene_id(it.id), href, src, when))
    return scenes


def _eo_bands(bands: Any) -> list[dict[str, Any]]:
    out = []
    for name, c, f in zip(bands.names, bands.centers_nm, bands.fwhm_nm, strict=True):
        b = {"name": name or f"{c:.0f}nm", "center_wavelength": round(c / 1000, 6)}
        b["full_width_half_max"] = round(f / 1000, 6)
        out.append(b)
    return out


#: Points per image edge of the footprint of an output placed by GCPs or RPCs (its edges map
#: to curves: a 4-corner ring would cut them short).
EDGE_POINTS = 8


def _edge_ring(height: int, width: int) -> tuple[list[float], list[float]]:
    """Rows and columns of :data:`EDGE_POINTS` points along each image edge, clockwise from the
    top-left corner (pixel corners, not centres), the ring closed."""
    t = [i / EDGE_POINTS for i in range(EDGE_POINTS)]
    rows = [0.0] * EDGE_POINTS + [height * f for f in t]
    rows += [float(height)] * EDGE_POINTS + [height * (1 - f) for f in t]
    cols = [width * f for f in t] + [float(width)] * EDGE_POINTS
    cols += [width * (1 - f) for f in t] + [0.0] * EDGE_POINTS
    return rows + rows[:1], cols + cols[:1]


def _placed_ring(ds: Any) -> list[list[float]] | None:  # noqa: ANN401 - a rasterio dataset
    """The image outline in WGS84 (lon, lat) of a raster placed by ground control points (their
    polynomial, as GDAL warps it) or else by RPCs (at their height offset); None where it is
    placed by neither."""
    from rasterio.transform import GCPTransformer, RPCTransformer
    from rasterio.warp import transform

    rows, cols = _edge_ring(ds.height, ds.width)
    points, crs = ds.gcps
    if points and crs is not None:
        with GCPTransformer(points) as t:
            xs, ys = t.xy(rows, cols, offset="ul")
        lon, lat = transform(crs, "EPSG:4326", list(xs), list(ys))
    elif ds.rpcs is not None:
        with RPCTransformer(ds.rpcs) as t:  # longitude and latitude already
            lon, lat = t.xy(rows, cols, zs=ds.rpcs.height_off, offset="ul")
    else:
        return None
    return [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]


def _geometry(path: Path) -> tuple[dict[str, Any] | None, list[float] | None, dict[str, Any]]:
    """GeoJSON footprint, bbox and projection fields of a raster: with a CRS and a geotransform,
    its bounds in WGS84 as a polygon; placed by ground control points or RPCs (an L1 product's
    outputs), its outline through them; else none."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as ds:
        proj: dict[str, Any] = {"proj:shape": [ds.height, ds.width]}
        if ds.crs is None:
            # no geotransform either: the identity rasterio reports places nothing
            ring = _placed_ring(ds)
            if ring is None:
                return None, None, proj
            lon, lat = [p[0] for p in ring], [p[1] for p in ring]
            bbox = [min(lon), min(lat), max(lon), max(lat)]
            return {"type": "Polygon", "coordinates": [ring]}, bbox, proj
        proj["proj:transform"] = list(ds.transform)[:6]
        epsg = ds.crs.to_epsg()
        if epsg:
            proj["proj:code"] = f"EPSG:{epsg}"
        else:
            proj["proj:wkt2"] = ds.crs.to_wkt()
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}, [w, s, e, n], proj


def write_item(
    scene: SceneInput,
    out: Path,
    paths: dict[str, Path],
    rep: dict[str, Any],
    fp: dict[str, Any],
) -> Path:
    """The scene's STAC Item, written last (atomically): the completion record."""
    from .. import __version__
    from ..io import Raster
    from ..pipeline import MASK_CLASSES, write_json_atomic

    pystac = _pystac()
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension

    raster = paths.get("data", paths["mask"])
    geometry, bbox, proj = _geometry(raster)
    when = dt.datetime.fromisoformat(scene.datetime) if scene.datetime else None
    props: dict[str, Any] = {}
    if when is None:  # unknown acquisition time: the processing time, and say so
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        props["kumo:datetime_is_processing_time"] = True
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    item = pystac.Item(scene.id, geometry, bbox, when, props)
    px = rep.get("class_pixels", {})
    valid = sum(v for k, v in px.items() if k != "nodata")
    eo = EOExtension.ext(item, add_if_missing=True)
    if valid:
        eo.cloud_cover = round(100.0 * (px.get("thin", 0) + px.get("thick", 0)) / valid, 3)
        item.properties["kumo:shadow_cover"] = round(100.0 * px.get("shadow", 0) / valid, 3)
    pe = ProjectionExtension.ext(item, add_if_missing=True)
    pe.shape, pe.transform = proj["proj:shape"], proj.get("proj:transform")
    if "proj:transform" not in proj:  # no CRS of its own (placed by GCPs/RPCs, or not at all)
        item.properties["proj:code"] = None
    elif "proj:code" in proj:
        item.properties["proj:code"] = proj["proj:code"]
    elif "proj:wkt2" in proj:
        pe.wkt2 = proj["proj:wkt2"]
    item.stac_extensions += [PROCESSING_SCHEMA, FILE_SCHEMA]
    item.properties.update(
        {
            "processing:software": {"kumo-edge": __version__},
            "processing:lineage": (
                f"kumo-edge cloud detection and thin-cloud/shadow removal (models {rep.get('models')}, "
                f"method {rep.get('method')}) of {Path(scene.href).name}"
            ),
            "kumo:models": rep.get("model_files", {}),
            "kumo:tiles": {
                k: rep.get(k)
                for k in (
                    "tiles",
                    "tiles_removed",
                    "tiles_kept",
                    "tiles_unrecoverable",
                    "tiles_drop",
                )
            },
            "kumo:run": fp,
        }
    )
    if "data" in paths:
        a = pystac.Asset(f"./{paths['data'].name}", media_type=GEOTIFF, roles=["data"])
        a.extra_fields["file:size"] = paths["data"].stat().st_size
        with Raster(paths["data"], nodata=None) as r:
            EOExtension.ext(a).bands = [Band(b) for b in _eo_bands(r.bands)]
        item.add_asset("data", a)
    m = pystac.Asset(f"./{paths['mask'].name}", media_type=GEOTIFF, roles=["cloud", "metadata"])
    m.extra_fields["file:size"] = paths["mask"].stat().st_size
    m.extra_fields["kumo:classes"] = MASK_CLASSES
    item.add_asset("mask", m)
    r = pystac.Asset(f"./{paths['report'].name}", media_type="application/json", roles=["metadata"])
    r.extra_fields["file:size"] = paths["report"].stat().st_size
    item.add_asset("report", r)
    item.add_link(pystac.Link("derived_from", _href(scene.item or scene.href, out)))
    item.add_link(pystac.Link("root", "./catalog.json", pystac.MediaType.JSON))
    item.add_link(pystac.Link("parent", "./catalog.json", pystac.MediaType.JSON))
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    write_json_atomic(paths["item"], d)
    return paths["item"]


def _href(target: str, out: Path) -> str:
    """A link to ``target``: relative to the output folder where possible."""
    if "://" in target:
        return target
    try:
        return os.path.relpath(target, out)
    except ValueError:  # another drive
        return target


def write_catalog(out: Path, scenes: list[SceneInput]) -> Path:
    """``out/catalog.json``: a self-contained STAC Catalog linking the Item of every scene."""
    from ..pipeline import write_json_atomic

    pystac = _pystac()
    cat = pystac.Catalog(
        CATALOG_ID,
        f"Kumo Edge batch: cloud detection and thin-cloud removal of {len(scenes)} scenes",
        title="Kumo Edge batch outputs",
    )
    cat.add_link(pystac.Link("root", "./catalog.json", pystac.MediaType.JSON))
    for s in scenes:
        cat.add_link(pystac.Link("item", f"./{s.id}.item.json", pystac.MediaType.GEOJSON))
    d = cat.to_dict(include_self_link=False, transform_hrefs=False)
    path = out / "catalog.json"
    write_json_atomic(path, d)
    return path
