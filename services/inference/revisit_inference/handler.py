"""Inference as a plain function: one observation batch in, its prediction batches out
(one per indicator, and for a parcel pass that came late the crop types as of the later
passes it changes: `PredictionBatch.revision`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import (
    PREDICTIONS_TOPIC,
    SENTINEL1,
    SENTINEL2,
    derived_header,
    indicators_of,
    partition_key,
)
from revisit_common.payload import PayloadStore
from revisit_common.runtime import Output
from revisit_inference.areas import predict_biophysics, predict_land_cover
from revisit_inference.drift import DriftMetrics
from revisit_inference.parcels import (
    Revision,
    predict_crops,
    predict_fused_crops,
    predict_parcel_biophysics,
    revise_crops,
    revise_fused_crops,
)
from revisit_inference.served import (
    MERGE_BYTES,
    Predicted,
    Prediction,
    ServedModel,
    answer_all,
)
from revisit_inference.triton import Classifier

PRODUCER = "inference"
log = logging.getLogger(__name__)
REVISED = Counter(
    "revisit_inference_revised_predictions",
    "Parcel predictions made again as of a later pass, because a pass came late",
    ["model"],
)
REVISIONS_FAILED = Counter(
    "revisit_inference_revisions_failed",
    "Late passes whose later passes could not be predicted again (a pass gone from the "
    "payload store); the late pass's own prediction went on",
    ["model"],
)


def start_revision_series(models: Iterable[str]) -> None:
    """Every model's revision series at 0, so that rates exist before the first."""
    for name in models:
        REVISED.labels(name)
        REVISIONS_FAILED.labels(name)


Predict = Callable[[pb.ObservationBatch, PayloadStore, ServedModel, pb.PredictionBatch], Prediction]
#: The re-predictions as of later passes that a late pass changes (`revise_crops`).
Revise = Callable[
    [pb.ObservationBatch, PayloadStore, ServedModel, pb.PredictionBatch], list[Revision]
]


def handle_observation(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    lcz: Classifier,
    crops: ServedModel | None = None,
    drift: DriftMetrics | None = None,
    bio: ServedModel | None = None,
    land: ServedModel | None = None,
    fusion: ServedModel | None = None,
) -> list[Output]:
    """The prediction batches of one observation batch (`handle_observations` of one)."""
    return handle_observations([batch], store, lcz, crops, drift, bio, land, fusion)[0]


def handle_observations(
    batches: list[pb.ObservationBatch],
    store: PayloadStore,
    lcz: Classifier,
    crops: ServedModel | None = None,
    drift: DriftMetrics | None = None,
    bio: ServedModel | None = None,
    land: ServedModel | None = None,
    fusion: ServedModel | None = None,
    merge_bytes: int = MERGE_BYTES,
) -> list[list[Output]]:
    """The outputs of each batch. The calls of all the batches to one model go to it
    together: the LCZ patches in one call, and the parcel and region indicators' inputs
    merged per model (`answer_all`, in rounds of at most `merge_bytes` of inputs); each
    call is cut to the model's max batch and its parts sent concurrently."""
    indicators: dict[str, list[tuple[str, ServedModel | None, Predict, Revise | None]]] = {
        "parcel_pixels": [
            ("crop_type", crops, predict_crops, revise_crops),
            ("parcel_biophysics", bio, predict_parcel_biophysics, None),
            ("crop_type_s1s2", fusion, predict_fused_crops, revise_fused_crops),
        ],
        "region_pixels": [
            ("biophysics", bio, predict_biophysics, None),
            ("land_cover", land, predict_land_cover, None),
        ],
        "parcel_s1": [("crop_type_s1s2", fusion, predict_fused_crops, revise_fused_crops)],
    }
    outputs: dict[int, list[Output]] = {}
    patches: list[tuple[int, npt.NDArray[np.float32]]] = []
    asked: list[tuple[int, ServedModel, pb.PredictionBatch, Prediction | None]] = []
    for i, batch in enumerate(batches):
        if batch.kind == "lcz_patches":
            patches.append((i, _lcz_patches(batch, store)))
        elif batch.kind in indicators:
            served = [
                (n, m, p, r)
                for n, m, p, r in indicators[batch.kind]
                if m is not None and _expected(batch, n)
            ]
            if not served:
                log.info("inference: no model serves %s observations yet, skipped", batch.kind)
            outputs[i] = []
            for indicator, model, predict, revise in served:
                out = _prediction_batch(batch, indicator, model.name)
                if batch.no_valid_observation:
                    asked.append((i, model, out, None))
                    continue
                # the template of any revision, before `predict` fills `out`
                template = _prediction_batch(batch, indicator, model.name)
                asked.append((i, model, out, predict(batch, store, model, out)))
                for revised, run in _revisions(revise, batch, store, model, template, out):
                    asked.append((i, model, revised, run))
        else:
            raise PoisonError(f"observation kind {batch.kind!r} has no model yet")
    for (i, model, out, _), predicted in zip(
        asked, answer_all([a[3] for a in asked], merge_bytes), strict=True
    ):
        if out.revision:
            if not out.predictions:
                continue  # a revision that changed nothing (no parcel of both sensors)
            REVISED.labels(model.name).inc(len(out.predictions))
        if drift is not None and predicted is not None:  # revisions return None
            _observe_drift(drift, batches[i].aoi.name, model, predicted)
        outputs[i].append(Output(PREDICTIONS_TOPIC, partition_key(out.aoi, out.tile_id), out))
    if any(len(mine) for _, mine in patches):
        probabilities, version = lcz.predict(np.concatenate([p for _, p in patches]))
    else:  # only passes without a valid cell: no call
        probabilities, version = np.zeros((0, 17), np.float32), ""
    start = 0
    for i, mine in patches:
        part = probabilities[start : start + len(mine)]
        outputs[i] = [_lcz_output(batches[i], lcz.model_name, part, version if len(mine) else "")]
        start += len(mine)
    return [outputs[i] for i in range(len(batches))]


def _revisions(
    revise: Revise | None,
    batch: pb.ObservationBatch,
    store: PayloadStore,
    model: ServedModel,
    template: pb.PredictionBatch,
    out: pb.PredictionBatch,
) -> list[Revision]:
    """The revisions a late pass gives; one that cannot be made (a later pass gone from
    the payload store) is noted in the pass's own batch, which goes on."""
    if revise is None:
        return []
    try:
        return revise(batch, store, model, template)
    except PoisonError as exc:
        log.warning("inference: %s: no revision of later passes: %s", batch.header.scene_id, exc)
        out.notes.append(f"no revision of the later passes: {exc}")
        REVISIONS_FAILED.labels(model.name).inc()
        return []


def _expected(batch: pb.ObservationBatch, indicator: str) -> bool:
    """Whether the catalog expects `indicator` of this pass (`indicators_of`: a
    Sentinel-2 pass gives the S1+S2 crop type only to an AOI watched with Sentinel-1 as
    well)."""
    sensor = SENTINEL1 if batch.kind == "parcel_s1" else SENTINEL2
    return indicator in indicators_of(batch.aoi, sensor)


def _lcz_patches(batch: pb.ObservationBatch, store: PayloadStore) -> npt.NDArray[np.float32]:
    if not batch.lcz_patches:  # no valid cell in this pass
        return np.zeros((0, 10, 32, 32), np.float32)
    patches = store.get_array(batch.patches)
    if len(patches) != len(batch.lcz_patches):
        raise PoisonError(
            f"{len(patches)} patches in {batch.patches.key!r}, "
            f"{len(batch.lcz_patches)} described in the event"
        )
    return patches.astype(np.float32)


def _lcz_output(
    batch: pb.ObservationBatch,
    model_name: str,
    probabilities: npt.NDArray[np.float32],
    version: str,
) -> Output:
    out = _prediction_batch(batch, "lcz", model_name)
    out.model_version = version
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
    return Output(PREDICTIONS_TOPIC, partition_key(batch.aoi, batch.tile_id), out)


def _observe_drift(
    drift: DriftMetrics, aoi: str, served: ServedModel, predicted: Predicted
) -> None:
    """This pass's inputs against the training data, and its predicted classes."""
    drift.observe_inputs(served.name, aoi, predicted.inputs, predicted.reference)
    if served.classes:
        prior = served.statistics.get("class_prior")
        drift.observe_predictions(served.name, aoi, predicted.outputs, served.classes, prior)


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
