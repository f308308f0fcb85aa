"""Preprocessing as a plain function: one scene event in, observation events out.

What a scene becomes depends on the AOI it was discovered for and on its sensor:

| AOI kind  | Sentinel-2                        | Sentinel-1                          |
|-----------|-----------------------------------|-------------------------------------|
| `city`    | LCZ patches (`lcz_patches`)       | nothing (logged)                    |
| `parcels` | pixel sets (`parcel_pixels`)      | backscatter per parcel (`parcel_s1`)|
| `region`  | per-pixel inputs (`region_pixels`)| nothing (logged)                    |

A parcel observation of either sensor also names the AOI's season series of both
sensors as they are when its pass is added (`ParcelObservation.season_series`): the
passes the S1+S2 crop model of that pass reads (those up to its date), and those dated
after it when it came late.

A scene that leaves the AOI without any valid pixel (clouds, no data, outside the
rasters) gives an event with `no_valid_observation` set and a note saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableSequence
from datetime import datetime

from shapely.geometry.base import BaseGeometry

from revisit_common import events_pb2 as pb
from revisit_common.events import (
    OBSERVATIONS_TOPIC,
    SCL_BAND,
    SENTINEL1,
    derived_header,
    partition_key,
    to_datetime,
)
from revisit_common.payload import PayloadStore
from revisit_common.runtime import Output
from revisit_common.series import (
    append_pass,
    key_part,
    season_of,
    season_snapshot,
    series_key,
)
from revisit_preprocess.backscatter import (
    UncalibratedError,
    extract_backscatter,
    select_polarizations,
)
from revisit_preprocess.lcz import LczGrid, cut_patches, select_bands
from revisit_preprocess.pixelsets import (
    DEFAULT_PIXEL_SETS,
    VALUE_SCALE,
    Parcel,
    ParcelValues,
    PixelSetConfig,
    extract_pixel_sets,
)
from revisit_preprocess.raster import read_stack, tile_epsg
from revisit_preprocess.region import INDICES, region_inputs, unit_raster

log = logging.getLogger(__name__)
PRODUCER = "preprocess"

#: (AOI name, scene footprint WKT in EPSG:4326) -> the AOI's parcels there, in EPSG:4326.
ParcelSource = Callable[[str, str], list[Parcel]]


def no_parcels(aoi: str, footprint_wkt: str) -> list[Parcel]:
    return []


#: AOI name -> its area units (key, geometry in EPSG:4326), for region AOIs.
UnitSource = Callable[[str], list[tuple[str, BaseGeometry]]]


def no_units(aoi: str) -> list[tuple[str, BaseGeometry]]:
    return []


def handle_scene(
    scene: pb.SceneDiscovered,
    store: PayloadStore,
    grid: LczGrid,
    parcels: ParcelSource = no_parcels,
    pixel_sets: PixelSetConfig = DEFAULT_PIXEL_SETS,
    units: UnitSource = no_units,
) -> list[Output]:
    kind = scene.aoi.kind
    if scene.sensor == SENTINEL1:
        if kind != "parcels":
            log.info("preprocess: no Sentinel-1 product for %s AOIs, %s skipped", kind, _id(scene))
            return []
        batch = _parcel_backscatter(scene, store, parcels, pixel_sets)
    elif kind == "city":
        batch = _lcz(scene, store, grid)
    elif kind == "parcels":
        batch = _parcel_pixels(scene, store, parcels, pixel_sets)
    elif kind == "region":
        batch = _region(scene, store, units)
    else:
        log.info("preprocess: no product for AOI kind %r, %s skipped", kind, _id(scene))
        return []
    return [Output(OBSERVATIONS_TOPIC, partition_key(scene.aoi, scene.tile_id), batch)]


def _id(scene: pb.SceneDiscovered) -> str:
    return scene.header.scene_id


def _batch(scene: pb.SceneDiscovered, kind: str, notes: list[str]) -> pb.ObservationBatch:
    return pb.ObservationBatch(
        header=derived_header(PRODUCER, scene.header),
        tile_id=scene.tile_id,
        aoi=scene.aoi,
        kind=kind,
        notes=notes,
    )


def _nothing(batch: pb.ObservationBatch, reason: str) -> pb.ObservationBatch:
    """The batch as a "no valid observation" outcome, with why."""
    batch.no_valid_observation = True
    batch.notes.append(reason)
    return batch


def _scl(scene: pb.SceneDiscovered, notes: MutableSequence[str]) -> pb.BandAsset | None:
    scl = next((b for b in scene.bands if b.band == SCL_BAND), None)
    if scl is None:
        notes.append("no SCL band: pixels masked by nodata only, clouds are not")
    return scl


def _key(scene: pb.SceneDiscovered, product: str) -> str:
    return f"{product}/{key_part(scene.aoi.name)}/{key_part(scene.tile_id)}/{key_part(_id(scene))}"


def _lcz(scene: pb.SceneDiscovered, store: PayloadStore, grid: LczGrid) -> pb.ObservationBatch:
    bands, notes = select_bands(scene, grid)
    stack = read_stack(
        bands, scene.aoi.geometry_wkt, grid.stride_px, _scl(scene, notes), tile_epsg(scene.tile_id)
    )
    batch = _batch(scene, "lcz_patches", notes)
    if stack is None:
        return _nothing(batch, "the AOI does not overlap the scene's rasters")
    array, patches = cut_patches(stack, grid)
    batch.epsg = stack.crs.to_epsg() or 0
    batch.lcz_patches.extend(patches)
    batch.no_valid_observation = not patches
    if patches:
        batch.patches.CopyFrom(store.put_array(f"{_key(scene, 'lcz')}/patches", array))
    else:
        batch.notes.append(
            "no patch with enough valid pixels (cloud, no data or reflectance out of range)"
        )
    return batch


def _parcel_pixels(
    scene: pb.SceneDiscovered,
    store: PayloadStore,
    parcels: ParcelSource,
    config: PixelSetConfig,
) -> pb.ObservationBatch:
    bands, notes = select_bands(scene, LczGrid())  # the 10 bands of PSE-TAE, same order
    batch = _batch(scene, "parcel_pixels", notes)
    found = parcels(scene.aoi.name, scene.footprint_wkt)
    if not found:
        return _no_parcel(batch, scene)
    acquisition = scene.acquisition_key or _id(scene)
    sets = extract_pixel_sets(
        bands,
        _scl(scene, batch.notes),
        found,
        acquisition,
        config,
        epsg=tile_epsg(scene.tile_id),
    )
    _fill_parcels(batch, scene, store, "parcel_pixels", sets, VALUE_SCALE)
    return batch


def _parcel_backscatter(
    scene: pb.SceneDiscovered,
    store: PayloadStore,
    parcels: ParcelSource,
    config: PixelSetConfig,
) -> pb.ObservationBatch:
    batch = _batch(scene, "parcel_s1", [])
    bands = select_polarizations(scene)
    if not bands:
        return _nothing(batch, f"no VV or VH band (polarisations: {list(scene.polarizations)})")
    found = parcels(scene.aoi.name, scene.footprint_wkt)
    if not found:
        return _no_parcel(batch, scene)
    try:
        stats = extract_backscatter(bands, found, config)
    except UncalibratedError as exc:
        return _nothing(batch, str(exc))
    _fill_parcels(batch, scene, store, "parcel_s1", stats, 1.0)
    return batch


def _no_parcel(batch: pb.ObservationBatch, scene: pb.SceneDiscovered) -> pb.ObservationBatch:
    return _nothing(
        batch,
        f"no parcel of AOI {scene.aoi.name!r} in the scene's footprint (parcels are loaded "
        "into PostGIS per AOI)",
    )


def _fill_parcels(
    batch: pb.ObservationBatch,
    scene: pb.SceneDiscovered,
    store: PayloadStore,
    product: str,
    found: ParcelValues,
    value_scale: float,
) -> None:
    acquired: datetime = to_datetime(scene.header.acquired_at)
    season = season_of(acquired, scene.aoi.season_start)
    out = batch.parcels
    batch.epsg = found.crs.to_epsg() or 0
    in_scene, parcel_ids = found.in_scene, found.parcel_ids
    out.channels.extend(found.channels)
    out.value_scale = value_scale
    out.day_of_year = acquired.timetuple().tm_yday
    out.season = season
    out.parcels_in_scene = in_scene
    if scene.HasField("view"):
        out.view.CopyFrom(scene.view)
    out.parcels_observed = len(parcel_ids)
    if not len(parcel_ids):
        _nothing(
            batch,
            f"none of the {in_scene} parcels in the scene has a valid pixel (cloud, no data or "
            "reflectance out of range)"
            if in_scene
            else "no parcel of the AOI lies on the scene's rasters",
        )
        return
    series = series_key(product, scene.aoi.name, season, scene.tile_id)
    key = f"{series}/{key_part(_id(scene))}"
    refs = {}
    for name in ("parcel_ids", "values", "n_valid", "geomfeat"):
        refs[name] = store.put_array(f"{key}/{name}", getattr(found, name))
        getattr(out, name).CopyFrom(refs[name])
    out.series_key = series
    out.series_length = append_pass(store, series, acquired, scene, refs, value_scale)
    # what the crop models of this pass will read: both sensors' passes up to its date,
    # and any dated after it (this pass came late: the predictions as of those change)
    snapshot, out.later_passes = season_snapshot(store, scene.aoi.name, season, acquired.date())
    out.season_series.extend(snapshot)


def _region(
    scene: pb.SceneDiscovered, store: PayloadStore, units: UnitSource
) -> pb.ObservationBatch:
    bands, notes = select_bands(scene, LczGrid())
    stack = read_stack(
        bands, scene.aoi.geometry_wkt, 1, _scl(scene, notes), tile_epsg(scene.tile_id)
    )
    batch = _batch(scene, "region_pixels", notes)
    if stack is None:
        return _nothing(batch, "the AOI does not overlap the scene's rasters")
    inputs = region_inputs(stack)
    batch.epsg = stack.crs.to_epsg() or 0
    region = batch.region
    region.bands.extend(b.band for b in bands)
    region.index_names.extend(INDICES)
    region.geotransform.extend(stack.transform[:6])
    region.valid_fraction = inputs.valid_fraction
    if scene.HasField("view"):
        region.view.CopyFrom(scene.view)
    else:
        batch.notes.append("the scene has no sun/view angles: biophysical inputs incomplete")
    if not inputs.valid.any():
        return _nothing(
            batch, "no valid pixel in the AOI (cloud, no data or reflectance out of range)"
        )
    key = _key(scene, "region")
    region.reflectance.CopyFrom(store.put_array(f"{key}/reflectance", inputs.reflectance))
    region.valid.CopyFrom(store.put_array(f"{key}/valid", inputs.valid))
    region.indices.CopyFrom(store.put_array(f"{key}/indices", inputs.indices))
    found = units(scene.aoi.name)
    if found:
        burnt, keys = unit_raster(found, stack, inputs.inside)
        region.units.CopyFrom(store.put_array(f"{key}/units", burnt))
        region.unit_keys.extend(keys)
        if len(keys) < len(found):
            batch.notes.append(
                f"{len(found) - len(keys)} of the AOI's {len(found)} area units cover no "
                "pixel of it on this grid"
            )
    acquired = to_datetime(scene.header.acquired_at)
    region.season = season_of(acquired, scene.aoi.season_start)
    region.series_key = series_key("region_pixels", scene.aoi.name, region.season, scene.tile_id)
    refs = {"valid": region.valid, "indices": region.indices}
    region.series_length = append_pass(store, region.series_key, acquired, scene, refs)
    return batch
