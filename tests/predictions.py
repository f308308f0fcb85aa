"""Scene events as the catalog writes them and prediction batches as the inference
service writes them, for tests and benchmarks that fill the store without running the
chain."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from revisit_common import events_pb2 as pb
from revisit_common.events import root_header

#: The model of each indicator in these batches (all of version 1).
MODELS = {
    "lcz": "lcz_sen2lcz_drop",
    "crop_type": "psetae_s2",
    "crop_type_s1s2": "psetae_s1s2",
    "parcel_biophysics": "biophys_prosail",
    "land_cover": "landcover_tae",
    "biophysics": "biophys_prosail",
}


def prediction_batch(
    scene: pb.SceneDiscovered, indicator: str, aoi: pb.Aoi | None = None, **fields: Any
) -> pb.PredictionBatch:
    """An `indicator` batch of `scene` over `aoi` (the scene's by default), from the
    indicator's model, with `fields` set; no prediction yet."""
    return pb.PredictionBatch(
        header=scene.header,
        tile_id="31UFS",
        aoi=scene.aoi if aoi is None else aoi,
        indicator=indicator,
        model_name=MODELS[indicator],
        model_version="1",
        **fields,
    )


def scene_discovered(
    aoi: pb.Aoi,
    acquired: datetime,
    scene_id: str,
    discovered_after: timedelta = timedelta(0),
    footprint: str | None = None,
) -> pb.SceneDiscovered:
    """The catalog's event of a Sentinel-2 pass over `aoi` on tile 31UFS, discovered
    `discovered_after` its acquisition; the footprint is the AOI's unless given."""
    return pb.SceneDiscovered(
        header=root_header("catalog", scene_id, acquired, acquired + discovered_after),
        collection="sentinel-2-l2a",
        tile_id="31UFS",
        footprint_wkt=aoi.geometry_wkt if footprint is None else footprint,
        aoi=aoi,
    )
