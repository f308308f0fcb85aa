"""Preprocessing as a plain function: one scene event in, observation events out."""

from __future__ import annotations

import logging

from revisit_common import events_pb2 as pb
from revisit_common.events import OBSERVATIONS_TOPIC, SCL_BAND, SENTINEL1, derived_header
from revisit_common.payload import LocalPayloadStore
from revisit_common.runtime import Output
from revisit_preprocess.lcz import LczGrid, cut_patches, select_bands
from revisit_preprocess.raster import read_stack

log = logging.getLogger(__name__)
PRODUCER = "preprocess"


def handle_scene(
    scene: pb.SceneDiscovered, store: LocalPayloadStore, grid: LczGrid
) -> list[Output]:
    """LCZ patches of a scene over its city AOI; other AOI kinds come with later stages."""
    if scene.sensor == SENTINEL1:
        log.info(
            "preprocess: Sentinel-1 scenes have no product yet, %s skipped", scene.header.scene_id
        )
        return []
    if scene.aoi.kind != "city":
        log.info("preprocess: no product for AOI kind %r yet, skipped", scene.aoi.kind)
        return []
    bands, notes = select_bands(scene, grid)
    scl = next((b for b in scene.bands if b.band == SCL_BAND), None)
    if scl is None:
        notes.append("no SCL band: pixels masked by nodata only, clouds are not")
    stack = read_stack(bands, scene.aoi.geometry_wkt, grid.stride_px, scl)
    batch = pb.ObservationBatch(
        header=derived_header(PRODUCER, scene.header),
        tile_id=scene.tile_id,
        aoi=scene.aoi,
        kind="lcz_patches",
        notes=notes,
    )
    if stack is None:
        batch.no_valid_observation = True
        batch.notes.append("the AOI does not overlap the scene's rasters")
    else:
        array, patches = cut_patches(stack, grid)
        batch.epsg = stack.crs.to_epsg() or 0
        batch.lcz_patches.extend(patches)
        batch.no_valid_observation = not patches
        if patches:
            key = f"lcz/{scene.aoi.name}/{scene.tile_id}/{scene.header.scene_id}/patches"
            batch.patches.CopyFrom(store.put_array(key, array))
        else:
            batch.notes.append("no patch with enough valid pixels (cloud or no data)")
    return [Output(OBSERVATIONS_TOPIC, scene.tile_id.encode(), batch)]
