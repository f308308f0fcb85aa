"""Mapping of STAC items (any provider) into `SceneDiscovered` events, done once here.

Providers describe the same Sentinel product differently: asset keys (`red`, `B04`,
`B04_10m`), where the processing baseline lives (`s2:processing_baseline`,
`processing:version`, the product id), whether `raster:bands` carries scale and offset,
how angles are given (`view:*` or `s2:mean_*`). Everything downstream reads only the
event, so those differences end here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pystac
from shapely.errors import ShapelyError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import SCL_BAND, SENTINEL1, SENTINEL2, root_header, timestamp

PRODUCER = "catalog"

#: Collections the catalog knows, and the sensor of each. Earth Search v1 (`sentinel-2-l2a`,
#: `sentinel-2-c1-l2a`, `sentinel-1-grd`), Earth Search v0 (`sentinel-s2-l2a-cogs`),
#: Planetary Computer (`sentinel-2-l2a`, `sentinel-1-rtc`, `sentinel-1-grd`) and the
#: Copernicus Data Space (`sentinel-2-l2a`, `sentinel-1-grd`).
COLLECTIONS = {
    "sentinel-2-l2a": SENTINEL2,
    "sentinel-2-c1-l2a": SENTINEL2,
    "sentinel-s2-l2a-cogs": SENTINEL2,
    "sentinel-s2-l2a": SENTINEL2,
    "sentinel-1-grd": SENTINEL1,
    "sentinel-1-rtc": SENTINEL1,
}

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
S1_POLARIZATIONS = {"VV", "VH", "HH", "HV"}
#: L2A digital numbers are reflectance × 10000; from processing baseline 04.00 on
#: (2022-01-25) they also carry an offset of −1000 (BOA_ADD_OFFSET).
S2_SCALE = 1e-4
S2_OFFSET_FROM_N0400 = -0.1

_S2_DATATAKE = re.compile(r"(\d{8}T\d{6})")
_S2_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")
_S1_ID = re.compile(r"^(S1[A-D])_([A-Z0-9]{2})_\w+?_(\d{8}T\d{6})_(\d{8}T\d{6})_")
_TIFF = "image/tiff"
_JP2 = "image/jp2"


def sensor_of(item: pystac.Item) -> str:
    """The sensor family of an item; PoisonError for a collection this system cannot use."""
    if item.collection_id:
        if item.collection_id in COLLECTIONS:
            return COLLECTIONS[item.collection_id]
        raise PoisonError(
            f"item {item.id}: unknown collection {item.collection_id!r} "
            f"(known: {', '.join(sorted(COLLECTIONS))})"
        )
    # Items outside any collection (files built by stactools, for instance).
    props = item.properties
    if props.get("s2:product_type") == "S2MSI2A":
        return SENTINEL2
    if str(props.get("sar:product_type", "")).upper() in {"GRD", "RTC"}:
        return SENTINEL1
    raise PoisonError(f"item {item.id}: no collection, and not a Sentinel-2 L2A or S1 product")


def band_name(key: str, asset: pystac.Asset) -> str | None:
    """The Sentinel-2 band (or SCL) an asset holds, whatever the provider calls it."""
    candidate = key.split("_")[0]
    if candidate.upper() in S2_BANDS or candidate.upper() == SCL_BAND:
        return candidate.upper()
    if candidate in S2_COMMON_NAMES:
        return S2_COMMON_NAMES[candidate]
    for eo_band in asset.extra_fields.get("eo:bands", []) or []:
        name = str(eo_band.get("name", ""))
        if name.upper() in S2_BANDS:
            return name.upper()
        if eo_band.get("common_name") in S2_COMMON_NAMES:
            return S2_COMMON_NAMES[eo_band["common_name"]]
    return None


def processing_baseline(item: pystac.Item) -> str:
    """ "04.00"-style baseline from the properties, or from the product id ("_N0400_")."""
    props = item.properties
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        if props.get(key):
            return str(props[key])
    for text in (props.get("s2:product_uri"), props.get("sentinel:product_id"), item.id):
        match = _S2_BASELINE_IN_ID.search(str(text or ""))
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return ""


def _baseline_number(baseline: str) -> float:
    try:
        return float(baseline)
    except ValueError:
        return 0.0


def _s2_offset(item: pystac.Item, baseline: str, raster: dict[str, Any]) -> float:
    # Earth Search v1 `sentinel-2-l2a` shifts the pixels itself and says so with
    # `earthsearch:boa_offset_applied`, while its raster:bands may still list −0.1: the
    # flag is the truth there (Element84/earth-search#9).
    if item.properties.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    if raster.get("offset") is not None:
        return float(raster["offset"])
    return S2_OFFSET_FROM_N0400 if _baseline_number(baseline) >= 4.0 else 0.0


def _raster(asset: pystac.Asset) -> dict[str, Any]:
    bands: list[dict[str, Any]] = asset.extra_fields.get("raster:bands") or [{}]
    return bands[0]


def _resolution(asset: pystac.Asset) -> float:
    value = _raster(asset).get("spatial_resolution") or asset.extra_fields.get("gsd")
    return float(value) if value else float("inf")


def _band_asset(name: str, asset: pystac.Asset, scale: float, offset: float) -> pb.BandAsset:
    raster = _raster(asset)
    band = pb.BandAsset(
        band=name, href=asset.get_absolute_href() or asset.href, scale=scale, offset=offset
    )
    if raster.get("nodata") is not None:
        band.nodata = float(raster["nodata"])
        band.has_nodata = True
    return band


def _s2_bands(item: pystac.Item, baseline: str) -> list[pb.BandAsset]:
    # Providers list a band several times (10 m and 20 m files, JP2 copies of COGs): keep
    # the finest GeoTIFF of each band (cloud-optimised: windowed reads), else the finest
    # JPEG 2000 (the Copernicus Data Space and ESA's SAFE have nothing else).
    best: dict[str, tuple[bool, float, int, pystac.Asset]] = {}
    for key, asset in item.assets.items():
        name = band_name(key, asset)
        media = asset.media_type or ""
        if name is None or not media.startswith((_TIFF, _JP2)):
            continue
        rank = (not media.startswith(_TIFF), _resolution(asset), len(key), asset)
        if name not in best or rank[:3] < best[name][:3]:
            best[name] = rank
    if not S2_BANDS & set(best):
        raise PoisonError(
            f"item {item.id}: no Sentinel-2 band asset (GeoTIFF or JPEG 2000) "
            f"among {list(item.assets)}"
        )
    bands = []
    for name in sorted(best):
        asset = best[name][3]
        raster = _raster(asset)
        if name == SCL_BAND:
            scale, offset = 1.0, 0.0
        else:
            scale = float(raster.get("scale", S2_SCALE))
            offset = _s2_offset(item, baseline, raster)
        bands.append(_band_asset(name, asset, scale, offset))
    return bands


#: What the values of Sentinel-1 assets are, by collection (see `BandAsset.quantity`):
#: GRD products hold uncalibrated digital numbers, RTC products terrain-corrected γ⁰.
S1_QUANTITY = {"sentinel-1-grd": "amplitude_dn", "sentinel-1-rtc": "gamma0_linear"}
#: An asset may say what its values are itself (`revisit:quantity`), e.g. σ⁰ that an
#: openEO chain derived from GRD and wrote as dB in uint16 ("db_uint16").
S1_QUANTITIES = ("sigma0_linear", "gamma0_linear", "db_uint16", "amplitude_dn")


def _s1_bands(item: pystac.Item) -> list[pb.BandAsset]:
    bands = []
    default = S1_QUANTITY.get(item.collection_id or "", "sigma0_linear")
    for key, asset in item.assets.items():
        name = key.upper()
        if name in S1_POLARIZATIONS and (asset.media_type or "").startswith(_TIFF):
            raster = _raster(asset)
            band = _band_asset(
                name, asset, float(raster.get("scale", 1.0)), float(raster.get("offset", 0.0))
            )
            quantity = asset.extra_fields.get("revisit:quantity", default)
            if quantity not in S1_QUANTITIES:
                raise PoisonError(
                    f"item {item.id}: asset {key} has revisit:quantity {quantity!r}, not one "
                    f"of {list(S1_QUANTITIES)}"
                )
            band.quantity = quantity
            bands.append(band)
    if not bands:
        raise PoisonError(
            f"item {item.id}: no Sentinel-1 polarisation asset (GeoTIFF) among {list(item.assets)}"
        )
    return sorted(bands, key=lambda b: b.band)


def tile_id(item: pystac.Item) -> str:
    props = item.properties
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    if props.get("grid:code"):
        return str(props["grid:code"]).removeprefix("MGRS-")
    # mgrs:* (Earth Search v1), sentinel:* (v0, whose zone may only be in the id S2A_28QCH_…)
    for prefix in ("mgrs", "sentinel"):
        zone, band, square = (
            props.get(f"{prefix}:{k}") for k in ("utm_zone", "latitude_band", "grid_square")
        )
        if band and square:
            return f"{int(zone or item.id.split('_')[1][:2]):02d}{band}{square}"
    raise PoisonError(f"item {item.id}: no MGRS tile (s2:mgrs_tile, grid:code or mgrs:*)")


#: What reading an item's GeoJSON geometry raises when it is malformed.
GEOMETRY_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, ShapelyError)


def footprint(item: pystac.Item) -> BaseGeometry:
    if not item.geometry:
        raise PoisonError(f"item {item.id}: no geometry")
    try:
        geom = shape(item.geometry)
    except GEOMETRY_ERRORS as exc:
        raise PoisonError(f"item {item.id}: unreadable geometry: {exc}") from exc
    if geom.is_empty or not geom.is_valid:
        raise PoisonError(f"item {item.id}: invalid or empty geometry")
    return geom


def _platform(item: pystac.Item, sensor: str) -> str:
    """ "S2A", "S1B"... from `platform` ("sentinel-2a", "Sentinel-2A") or the item id."""
    platform = str(item.properties.get("platform", "")).lower()
    if platform.startswith(sensor) and len(platform) == len(sensor) + 1:
        return f"S{sensor[-1]}{platform[-1].upper()}"
    if platform == sensor:  # composites and other multi-platform products
        return f"S{sensor[-1]}"
    prefix = item.id[:3].upper()
    if re.fullmatch(r"S[12][A-D]", prefix):
        return prefix
    raise PoisonError(f"item {item.id}: unknown platform {platform!r}")


def _parse_time(value: object) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def acquisition_key(item: pystac.Item, sensor: str, tile: str) -> str:
    """One key per acquisition, the same in every provider, collection and baseline."""
    props = item.properties
    platform = _platform(item, sensor)
    if sensor == SENTINEL2:
        # The datatake start is in every provider's record (datatake id, product URI or
        # id); item datetimes differ between providers for the same acquisition.
        for text in (
            props.get("s2:datatake_id"),
            props.get("s2:product_uri"),
            props.get("sentinel:product_id"),
            item.id,
        ):
            match = _S2_DATATAKE.search(str(text or ""))
            if match:
                return f"{platform}:{tile}:{match.group(1)}"
        assert item.datetime is not None
        return f"{platform}:{tile}:{item.datetime:%Y%m%d}"
    match = _S1_ID.match(str(props.get("s1:product_identifier") or item.id))
    if match:
        return f"{platform}:{match.group(2)}:{match.group(3)}"
    start = _parse_time(props.get("start_datetime")) or item.datetime
    assert start is not None
    mode = props.get("sar:instrument_mode", "")
    return f"{platform}:{mode}:{start.astimezone(UTC):%Y%m%dT%H%M%S}"


def generated_at(item: pystac.Item) -> datetime | None:
    """When the provider produced this version of the acquisition, when it says."""
    props = item.properties
    for key in ("s2:generation_time", "s1:processing_datetime", "processing:datetime", "created"):
        parsed = _parse_time(props.get(key))
        if parsed is not None:
            return parsed
    return None


def _view(item: pystac.Item) -> pb.ViewGeometry | None:
    props = item.properties
    sun_zenith = props.get("s2:mean_solar_zenith")
    if sun_zenith is None and props.get("view:sun_elevation") is not None:
        sun_zenith = 90.0 - float(props["view:sun_elevation"])
    sun_azimuth = props.get("s2:mean_solar_azimuth", props.get("view:sun_azimuth"))
    if sun_zenith is None or sun_azimuth is None:
        return None
    return pb.ViewGeometry(
        sun_zenith=float(sun_zenith),
        sun_azimuth=float(sun_azimuth),
        view_zenith=float(props.get("view:incidence_angle", props.get("view:off_nadir", 0.0))),
        view_azimuth=float(props.get("view:azimuth", 0.0)),
    )


@dataclass(frozen=True)
class MappedItem:
    """What one item is, independent of the AOIs it covers: the event less its AOI."""

    event: pb.SceneDiscovered
    geometry: BaseGeometry

    @property
    def acquisition_key(self) -> str:
        return self.event.acquisition_key

    @property
    def version(self) -> Version:
        return version_of(self.event)


Version = tuple[float, datetime]


def version(baseline: str | None, generated: datetime | None) -> Version:
    """Versions of one acquisition order by processing baseline, then production time."""
    return _baseline_number(baseline or ""), generated or datetime.min.replace(tzinfo=UTC)


def version_of(event: pb.SceneDiscovered) -> Version:
    produced = (
        event.product_generated_at.ToDatetime(tzinfo=UTC)
        if event.HasField("product_generated_at")
        else None
    )
    return version(event.processing_baseline, produced)


#: What reading a field of the wrong type or value raises (a cloud cover of "n/a", a
#: `created` time that does not fit in UTC, an orbit number beyond int32...).
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def map_item(item: pystac.Item, discovered_at: datetime, source: str = "") -> MappedItem:
    """The scene event of one item (no AOI yet); PoisonError names what the item lacks,
    or the field it could not read."""
    try:
        return _map_item(item, discovered_at, source)
    except _MALFORMED as exc:
        raise PoisonError(
            f"item {item.id}: malformed metadata ({type(exc).__name__}: {exc})"
        ) from exc


def _map_item(item: pystac.Item, discovered_at: datetime, source: str) -> MappedItem:
    sensor = sensor_of(item)
    if item.datetime is None:
        raise PoisonError(f"item {item.id}: no datetime")
    geom = footprint(item)
    props = item.properties
    event = pb.SceneDiscovered(
        header=root_header(PRODUCER, item.id, item.datetime, discovered_at),
        collection=item.collection_id or "",
        platform=str(props.get("platform", "")),
        footprint_wkt=geom.wkt,
        cloud_cover=float(props.get("eo:cloud_cover", -1.0)),
        sensor=sensor,
        source=source,
        relative_orbit=int(props.get("sat:relative_orbit", 0) or 0),
        orbit_state=str(props.get("sat:orbit_state", "")),
    )
    self_link = item.get_single_link("self")
    if self_link is not None:
        event.item_href = self_link.get_href(transform_href=False) or ""
    produced = generated_at(item)
    if produced is not None:
        event.product_generated_at.CopyFrom(timestamp(produced))
    if sensor == SENTINEL2:
        event.processing_baseline = processing_baseline(item)
        event.tile_id = tile_id(item)
        event.bands.extend(_s2_bands(item, event.processing_baseline))
        view = _view(item)
        if view is not None:
            event.view.CopyFrom(view)
    else:
        event.bands.extend(_s1_bands(item))
        event.polarizations.extend(
            str(p).upper() for p in props.get("sar:polarizations", [b.band for b in event.bands])
        )
        # An S1 slice has no tile: its relative orbit and orbit direction place it (a
        # composite of several orbits has neither).
        event.tile_id = (
            f"S1-R{event.relative_orbit:03d}-{event.orbit_state[:3].upper()}"
            if event.relative_orbit
            else "S1-ANY-ORBIT"
        )
    event.acquisition_key = acquisition_key(item, sensor, event.tile_id)
    return MappedItem(event=event, geometry=geom)


def scene_event(item: pystac.Item, aoi: pb.Aoi, discovered_at: datetime) -> pb.SceneDiscovered:
    """The scene event of one item for one AOI."""
    event = map_item(item, discovered_at).event
    event.aoi.CopyFrom(aoi)
    return event
