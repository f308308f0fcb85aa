"""Inference as a plain function: one observation batch in, one prediction batch out."""

from __future__ import annotations

import logging

import numpy as np

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import PREDICTIONS_TOPIC, derived_header
from revisit_common.payload import PayloadStore
from revisit_common.runtime import Output
from revisit_inference.areas import (
    BiophysModel,
    LandCoverModel,
    predict_biophysics,
    predict_land_cover,
    region_pixels,
)
from revisit_inference.drift import DriftMetrics, s2_reference
from revisit_inference.parcels import CropModel, day_of_season, predict_crops
from revisit_inference.triton import Classifier

PRODUCER = "inference"
#: Observation kinds that the preprocess service produces but no model serves yet: they
#: stay in the topic (and their arrays in the payload store) for the models to come.
NOT_SERVED_YET = ("parcel_s1",)
log = logging.getLogger(__name__)


def handle_observation(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    lcz: Classifier,
    crops: CropModel | None = None,
    drift: DriftMetrics | None = None,
    bio: BiophysModel | None = None,
    land: LandCoverModel | None = None,
) -> list[Output]:
    served = {"parcel_pixels": crops, "region_pixels": bio or land}
    if batch.kind in NOT_SERVED_YET or (batch.kind in served and served[batch.kind] is None):
        log.info("inference: no model serves %s observations yet, skipped", batch.kind)
        return []
    if batch.kind == "parcel_pixels" and crops is not None:
        return [_crop_types(batch, store, crops, drift)]
    if batch.kind == "region_pixels":
        outputs = [_biophysics(batch, store, bio, drift)] if bio is not None else []
        if land is not None:
            outputs.append(_land_cover(batch, store, land, drift))
        return outputs
    if batch.kind != "lcz_patches":
        raise PoisonError(f"observation kind {batch.kind!r} has no model yet")
    out = pb.PredictionBatch(
        header=derived_header(PRODUCER, batch.header),
        tile_id=batch.tile_id,
        aoi=batch.aoi,
        indicator="lcz",
        model_name=lcz.model_name,
        epsg=batch.epsg,
        no_valid_observation=batch.no_valid_observation,
        notes=batch.notes,
    )
    if batch.lcz_patches:
        patches = store.get_array(batch.patches)
        if len(patches) != len(batch.lcz_patches):
            raise PoisonError(
                f"{len(patches)} patches in {batch.patches.key!r}, "
                f"{len(batch.lcz_patches)} described in the event"
            )
        probabilities, out.model_version = lcz.predict(patches.astype(np.float32))
        for patch, probs in zip(batch.lcz_patches, probabilities, strict=True):
            best = int(np.argmax(probs))
            out.predictions.append(
                pb.Prediction(
                    entity_id=patch.cell_id,
                    geometry_wkt=patch.cell_wkt,
                    class_code=best + 1,  # LCZ classes are numbered from 1
                    confidence=float(probs[best]),
                    probabilities=[float(p) for p in probs],
                )
            )
    return [Output(PREDICTIONS_TOPIC, batch.tile_id.encode(), out)]


def _biophysics(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    bio: BiophysModel,
    drift: DriftMetrics | None,
) -> Output:
    out = _prediction_batch(batch, "biophysics", bio.model.model_name)
    if not batch.no_valid_observation:
        values = predict_biophysics(batch, store, bio, out)
        if drift is not None and values is not None:
            pixels = region_pixels(batch, store)
            drift.observe_inputs(bio.model.model_name, batch.aoi.name, pixels, bio.reference())
    return Output(PREDICTIONS_TOPIC, batch.tile_id.encode(), out)


def _land_cover(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    land: LandCoverModel,
    drift: DriftMetrics | None,
) -> Output:
    out = _prediction_batch(batch, "land_cover", land.model.model_name)
    if not batch.no_valid_observation:
        probabilities = predict_land_cover(batch, store, land, out)
        if drift is not None:
            k = list(batch.region.index_names).index("NDVI")
            ndvi = store.get_array(batch.region.indices)[k]
            values = ndvi[store.get_array(batch.region.valid).astype(bool)].reshape(-1, 1)
            drift.observe_inputs(land.model.model_name, batch.aoi.name, values, land.reference())
            drift.observe_predictions(
                land.model.model_name, batch.aoi.name, probabilities, land.classes
            )
    return Output(PREDICTIONS_TOPIC, batch.tile_id.encode(), out)


def _prediction_batch(
    batch: pb.ObservationBatch, indicator: str, model_name: str
) -> pb.PredictionBatch:
    return pb.PredictionBatch(
        header=derived_header(PRODUCER, batch.header),
        tile_id=batch.tile_id,
        aoi=batch.aoi,
        indicator=indicator,
        model_name=model_name,
        epsg=batch.epsg,
        no_valid_observation=batch.no_valid_observation,
        notes=batch.notes,
    )


def _crop_types(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    crops: CropModel,
    drift: DriftMetrics | None,
) -> Output:
    out = _prediction_batch(batch, "crop_type", crops.model.model_name)
    if not batch.no_valid_observation:
        probabilities = predict_crops(batch, store, crops, out)
        if drift is not None:
            values = store.get_array(batch.parcels.values).astype(np.float32)
            pixels = values.transpose(0, 2, 1).reshape(-1, values.shape[1])
            scale = batch.parcels.value_scale or 10000.0
            reference = s2_reference(crops.statistics, day_of_season(batch))
            drift.observe_inputs(crops.model.model_name, batch.aoi.name, pixels / scale, reference)
            drift.observe_predictions(
                crops.model.model_name,
                batch.aoi.name,
                probabilities,
                crops.classes,
                crops.statistics.get("class_prior"),
            )
    return Output(PREDICTIONS_TOPIC, batch.tile_id.encode(), out)
