"""Mapping of STAC items (any provider) into `SceneDiscovered` events, done once here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pystac
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import root_header

PRODUCER = "catalog"

#: Earth Search / Planetary Computer common names → Sentinel-2 band names.
S2_COMMON_NAMES = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "swir16": "B11",
    "swir22": "B12",
}
S2_BANDS = {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"}
#: L2A digital numbers are reflectance × 10000; from processing baseline 04.00 on
#: (2022-01-25) they also carry an offset of −1000 (BOA_ADD_OFFSET).
S2_SCALE = 1e-4
S2_OFFSET_FROM_N0400 = -0.1


def band_name(key: str, asset: pystac.Asset) -> str | None:
    """The Sentinel-2 band an asset holds, whatever the provider calls it."""
    candidate = key.split("_")[0]
    if candidate.upper() in S2_BANDS:
        return candidate.upper()
    if key in S2_COMMON_NAMES:
        return S2_COMMON_NAMES[key]
    for eo_band in asset.extra_fields.get("eo:bands", []) or []:
        name = str(eo_band.get("name", ""))
        if name.upper() in S2_BANDS:
            return name.upper()
        if eo_band.get("common_name") in S2_COMMON_NAMES:
            return S2_COMMON_NAMES[eo_band["common_name"]]
    return None


def _baseline(item: pystac.Item) -> str:
    props = item.properties
    return str(props.get("s2:processing_baseline") or props.get("processing:version") or "")


def _default_offset(baseline: str) -> float:
    try:
        return S2_OFFSET_FROM_N0400 if float(baseline) >= 4.0 else 0.0
    except ValueError:
        return 0.0


def _band_asset(name: str, asset: pystac.Asset, baseline: str) -> pb.BandAsset:
    raster: list[dict[str, Any]] = asset.extra_fields.get("raster:bands") or [{}]
    first = raster[0]
    band = pb.BandAsset(
        band=name,
        href=asset.get_absolute_href() or asset.href,
        scale=float(first.get("scale", S2_SCALE)),
        offset=float(first.get("offset", _default_offset(baseline))),
    )
    if first.get("nodata") is not None:
        band.nodata = float(first["nodata"])
        band.has_nodata = True
    return band


def _resolution(asset: pystac.Asset) -> float:
    raster: list[dict[str, Any]] = asset.extra_fields.get("raster:bands") or [{}]
    value = raster[0].get("spatial_resolution") or asset.extra_fields.get("gsd")
    return float(value) if value else float("inf")


def tile_id(item: pystac.Item) -> str:
    props = item.properties
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    if props.get("grid:code"):
        return str(props["grid:code"]).removeprefix("MGRS-")
    zone, band, square = (
        props.get(f"mgrs:{k}") for k in ("utm_zone", "latitude_band", "grid_square")
    )
    if zone and band and square:
        return f"{int(zone):02d}{band}{square}"
    raise PoisonError(f"item {item.id}: no MGRS tile (s2:mgrs_tile, grid:code or mgrs:*)")


def footprint(item: pystac.Item) -> BaseGeometry:
    if not item.geometry:
        raise PoisonError(f"item {item.id}: no geometry")
    try:
        geom = shape(item.geometry)
    except (ValueError, TypeError, AttributeError) as exc:
        raise PoisonError(f"item {item.id}: unreadable geometry: {exc}") from exc
    if geom.is_empty or not geom.is_valid:
        raise PoisonError(f"item {item.id}: invalid or empty geometry")
    return geom


def scene_event(item: pystac.Item, aoi: pb.Aoi, discovered_at: datetime) -> pb.SceneDiscovered:
    """The scene event of one item for one AOI; PoisonError names what the item lacks."""
    if item.datetime is None:
        raise PoisonError(f"item {item.id}: no datetime")
    baseline = _baseline(item)
    # Providers list a band several times (10 m and 20 m COGs, JP2 copies): keep the
    # finest GeoTIFF of each band.
    best: dict[str, tuple[float, int, pystac.Asset]] = {}
    for key, asset in item.assets.items():
        name = band_name(key, asset)
        if name is None or not (asset.media_type or "").startswith("image/tiff"):
            continue
        rank = (_resolution(asset), len(key), asset)
        if name not in best or rank[:2] < best[name][:2]:
            best[name] = rank
    bands = [_band_asset(name, best[name][2], baseline) for name in sorted(best)]
    if not bands:
        raise PoisonError(
            f"item {item.id}: no Sentinel-2 band asset (GeoTIFF) among {list(item.assets)}"
        )
    return pb.SceneDiscovered(
        header=root_header(PRODUCER, item.id, item.datetime, discovered_at),
        collection=item.collection_id or "",
        platform=str(item.properties.get("platform", "")),
        tile_id=tile_id(item),
        footprint_wkt=footprint(item).wkt,
        cloud_cover=float(item.properties.get("eo:cloud_cover", -1.0)),
        processing_baseline=baseline,
        bands=bands,
        aoi=aoi,
    )
