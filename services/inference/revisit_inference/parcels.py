"""Crop type of the parcels a pass updated, from their whole season so far.

A `parcel_pixels` observation names the season series it was appended to (a manifest
in the payload store, `revisit_common.series`). For each parcel observed in this pass,
every pass of the series that observed it is read (T passes, oldest first), and the
PSE-TAE model gets its pixel sets, the pixel masks, the days since the season's start
and its geometric features. Parcels of a batch are padded to the longest season, as
the model's masks expect. Each prediction carries the number of passes it used and the
season's length so far: an early-season prediction is recognisable as one.

A pass of either sensor also gets the S1+S2 model where both seasons exist: the passes
of both sensors that its `season_series` names (those preprocess had when it added this
pass, up to its date), the radar statistics in their own series. So a Sentinel-2 pass
after radar passes revises the S1+S2 prediction too, not only the S2 one.

A pass that came late (`later_passes`: its snapshot names passes dated after it; no
payload is read to find out otherwise) also gives both crop
types again as of each parcel's newest pass (`revise_crops`, `revise_fused_crops`):
batches with `revision` set, under that pass's scene and time.

Biophysics of the same parcels (LAI, CCC, FCOVER) come from this pass alone: the
PROSAIL-trained model on each parcel's sampled valid pixels, averaged.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import timestamp
from revisit_common.payload import PayloadStore
from revisit_common.series import acquired_on, read_series, season_start, snapshot_passes
from revisit_inference.areas import (
    SUMMARY,
    VARIABLES,
    biophysical_variables,
    has_angles,
    summarise,
)
from revisit_inference.drift import Reference, feature_reference, s2_reference
from revisit_inference.served import Answer, Infer, Predicted, Prediction, ServedModel


@dataclass(frozen=True)
class SeasonInputs:
    inputs: dict[str, npt.NDArray[np.float32]]  # pixels, pixel_mask, positions, geomfeat
    parcel_ids: npt.NDArray[np.int64]
    observations: npt.NDArray[np.int32]  # passes used per parcel
    season_days: npt.NDArray[np.int32]  # days from the season start to the last pass used


def _acquired(batch: pb.ObservationBatch) -> date | None:
    if not batch.header.HasField("acquired_at"):
        return None
    return batch.header.acquired_at.ToDatetime().date()


def day_of_season(batch: pb.ObservationBatch) -> float | None:
    """Days from the season's start to this pass (None when the event lacks its date)."""
    acquired = _acquired(batch)
    if acquired is None:
        return None
    return float((acquired - season_start(batch.parcels.season)).days)


Parcel = list[tuple[float, npt.NDArray[np.float32]]]  # (day of season, values) per pass
#: Pixel sets are reflectance × this (int16) where a pass does not say (older manifests).
PIXEL_SET_SCALE = 10000.0


def _gather(
    store: PayloadStore,
    passes: list[dict[str, Any]],
    wanted: npt.NDArray[np.int64],
    start: date,
    scale: float,
    acquired_by: date | None = None,
    geometry: bool = True,
) -> tuple[list[Parcel], npt.NDArray[np.float32]]:
    """Each wanted parcel's values in the passes (oldest first) that observed it, and its
    geometric features (the latest pass's; zeros, and not read, without `geometry`)."""
    row_of = {int(pid): i for i, pid in enumerate(wanted)}
    per_parcel: list[Parcel] = [[] for _ in wanted]
    geomfeat = np.zeros((len(wanted), 4), np.float32)
    for p in passes:
        acquired = date.fromisoformat(p["acquired_at"][:10])
        if acquired_by is not None and acquired > acquired_by:
            continue  # a later pass (this one is replayed): not part of its season so far
        day = float((acquired - start).days)
        ids = store.get_array(p["arrays"]["parcel_ids"]).astype(np.int64)
        values = store.get_array(p["arrays"]["values"])
        shapes = store.get_array(p["arrays"]["geomfeat"]) if geometry else None
        if len(values) != len(ids):
            raise PoisonError(f"pass {p['scene_id']}: {len(values)} value rows, {len(ids)} ids")
        pass_scale = float(p.get("value_scale", scale))
        for j, pid in enumerate(ids):
            i = row_of.get(int(pid))
            if i is not None:
                per_parcel[i].append((day, values[j].astype(np.float32) / pass_scale))
                if shapes is not None:
                    geomfeat[i] = shapes[j]
    return per_parcel, geomfeat


def _padded(
    per_parcel: list[Parcel],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Values (B, T, ...), validity (B, T) and days (B, T), padded to the longest series."""
    shape = per_parcel[0][0][1].shape
    for series in per_parcel:
        for _, values in series:
            if values.shape != shape:
                raise PoisonError(f"passes of one series disagree: values {values.shape}, {shape}")
    t_max = max(len(s) for s in per_parcel)
    x = np.zeros((len(per_parcel), t_max, *shape), np.float32)
    valid = np.zeros((len(per_parcel), t_max), np.float32)
    positions = np.zeros((len(per_parcel), t_max), np.float32)
    for i, series in enumerate(per_parcel):
        for t, (when, values) in enumerate(series):
            x[i, t], valid[i, t], positions[i, t] = values, 1.0, when
    return x, valid, positions


def _pixel_set_inputs(
    per_parcel: list[Parcel], geomfeat: npt.NDArray[np.float32]
) -> dict[str, npt.NDArray[np.float32]]:
    x, valid, positions = _padded(per_parcel)
    # sets are sampled among the parcel's valid pixels: every pixel of a real date counts
    mask = np.repeat(valid[:, :, None], x.shape[-1], axis=2)
    return {"pixels": x, "pixel_mask": mask, "positions": positions, "geomfeat": geomfeat}


def season_inputs(
    store: PayloadStore, observation: pb.ParcelObservation, acquired_by: date | None = None
) -> SeasonInputs:
    """The season so far (up to `acquired_by`) of every parcel observed in this pass."""
    passes = read_series(store, observation.series_key)
    if not passes:
        raise PoisonError(f"season series {observation.series_key!r} has no pass")
    wanted = store.get_array(observation.parcel_ids).astype(np.int64)
    per_parcel, geomfeat = _gather(
        store,
        passes,
        wanted,
        season_start(observation.season),
        observation.value_scale or PIXEL_SET_SCALE,
        acquired_by,
    )
    lengths = [len(s) for s in per_parcel]
    if min(lengths) == 0:
        missing = int(wanted[lengths.index(0)])
        raise PoisonError(f"parcel {missing} of this pass is not in {observation.series_key!r}")
    return SeasonInputs(
        _pixel_set_inputs(per_parcel, geomfeat),
        wanted,
        np.array(lengths, np.int32),
        np.array([int(s[-1][0]) for s in per_parcel], np.int32),
    )


def predict_crops(
    batch: pb.ObservationBatch, store: PayloadStore, crops: ServedModel, out: pb.PredictionBatch
) -> Prediction:
    """Fill `out` with the crop type of the parcels this pass observed."""
    season = season_inputs(store, batch.parcels, _acquired(batch))
    probabilities = yield from _crop_predictions(
        crops, season.inputs, season.parcel_ids, season.observations, season.season_days, out
    )
    out.season = batch.parcels.season
    return Predicted(
        probabilities,
        _latest_pixels(season.inputs["pixels"], season.observations),
        s2_reference(crops.statistics, day_of_season(batch)),
    )


def _latest_pixels(
    pixels: npt.NDArray[np.float32], passes: npt.NDArray[np.int32]
) -> npt.NDArray[np.float32]:
    """The pixels (P·S, C) of each parcel's last pass (this one) of `pixels` (P, T, C, S),
    where the parcel has `passes` passes."""
    latest = pixels[np.arange(len(pixels)), passes - 1]
    flat: npt.NDArray[np.float32] = latest.transpose(0, 2, 1).reshape(-1, latest.shape[1])
    return flat


def _crop_predictions(
    crops: ServedModel,
    inputs: dict[str, npt.NDArray[np.float32]],
    parcel_ids: npt.NDArray[np.int64],
    observations: npt.NDArray[np.int32],
    season_days: npt.NDArray[np.int32],
    out: pb.PredictionBatch,
) -> Generator[Infer, Answer, npt.NDArray[np.float32]]:
    """The crop model on the parcels' seasons; one prediction each in `out`."""
    probabilities, out.model_version = yield Infer(crops, inputs, "probabilities")
    if probabilities.shape != (len(parcel_ids), len(crops.classes)):
        raise PoisonError(
            f"{crops.name} answered {probabilities.shape} for "
            f"{len(parcel_ids)} parcels and {len(crops.classes)} classes"
        )
    out.classes.extend(crops.classes)
    for pid, probs, n, days in zip(
        parcel_ids, probabilities, observations, season_days, strict=True
    ):
        best = int(np.argmax(probs))
        out.predictions.append(
            pb.Prediction(
                entity_id=str(int(pid)),
                class_code=best,
                confidence=float(probs[best]),
                probabilities=[float(v) for v in probs],
                observations=int(n),
                season_days=int(days),
            )
        )
    return probabilities


def predict_fused_crops(
    batch: pb.ObservationBatch, store: PayloadStore, fusion: ServedModel, out: pb.PredictionBatch
) -> Prediction:
    """Fill `out` with the S1+S2 crop type of the parcels this pass (of either sensor)
    observed: both seasons so far, as the pass's `season_series` names them up to its
    date. A parcel without a pass of the other sensor yet is left out (a note counts
    them); each prediction's `observations` counts the passes of both sensors (None when
    none is left). The drift of the inputs is this pass's own: its radar statistics, or
    its pixel sets against the model's Sentinel-2 statistics."""
    observation = batch.parcels
    radar_pass = batch.kind == "parcel_s1"
    features = list(fusion.statistics["s1"]["features"])
    if radar_pass and list(observation.channels) != features:
        out.no_valid_observation = True
        out.notes.append(
            f"this pass has {list(observation.channels)}; {fusion.name} reads {features} "
            "(VV and VH): no S1+S2 prediction"
        )
        return None
    ids = store.get_array(observation.parcel_ids).astype(np.int64)
    other = "Sentinel-2" if radar_pass else "Sentinel-1"
    fused = yield from _fused_crops(
        store,
        fusion,
        observation,
        ids,
        _acquired(batch),
        out,
        f"no {other} pass in the season yet",
    )
    if fused is None:
        return None
    probabilities, keep, s2_pixels, s2_passes = fused
    if radar_pass:
        values = store.get_array(observation.values).astype(np.float32)  # this pass's, (P, F)
        stats = fusion.statistics["s1"]
        reference = Reference.of(features, stats["mean"], stats["std"])
        return Predicted(probabilities, values[keep], reference)
    return Predicted(
        probabilities,
        _latest_pixels(s2_pixels, s2_passes),
        s2_reference(fusion.statistics, day_of_season(batch)),
    )


Fused = tuple[
    npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.float32], npt.NDArray[np.int32]
]


def _fused_crops(
    store: PayloadStore,
    fusion: ServedModel,
    observation: pb.ParcelObservation,
    ids: npt.NDArray[np.int64],
    acquired_by: date | None,
    out: pb.PredictionBatch,
    missing: str,
) -> Generator[Infer, Answer, Fused | None]:
    """The S1+S2 predictions in `out` of the parcels `ids` from both seasons up to
    `acquired_by`, as `observation.season_series` names them; those without a pass of
    each sensor are left out (a note says they have `missing`). Returns the
    probabilities, which parcels were kept, their S2 pixel sets and S2 passes."""
    start = season_start(observation.season)
    snapshot = observation.season_series
    radar = snapshot_passes(store, snapshot, "parcel_s1", acquired_by)
    s1, _ = _gather(store, radar, ids, start, 1.0, geometry=False)
    optical = snapshot_passes(store, snapshot, "parcel_pixels", acquired_by)
    s2, geomfeat = _gather(store, optical, ids, start, PIXEL_SET_SCALE)
    keep = np.array([bool(a) and bool(b) for a, b in zip(s1, s2, strict=True)])
    out.season = observation.season
    if (~keep).any():
        out.notes.append(
            f"{int((~keep).sum())} of the {len(ids)} parcels have {missing}: "
            "no S1+S2 prediction for them"
        )
    if not keep.any():
        out.no_valid_observation = True
        return None
    s1_kept = [s for s, k in zip(s1, keep, strict=True) if k]
    s2_kept = [s for s, k in zip(s2, keep, strict=True) if k]
    inputs = _pixel_set_inputs(s2_kept, geomfeat[keep])
    inputs["s1"], inputs["s1_valid"], inputs["s1_positions"] = _padded(s1_kept)
    probabilities = yield from _crop_predictions(
        fusion,
        inputs,
        ids[keep],
        np.array([len(a) + len(b) for a, b in zip(s1_kept, s2_kept, strict=True)], np.int32),
        np.array(
            [int(max(a[-1][0], b[-1][0])) for a, b in zip(s1_kept, s2_kept, strict=True)], np.int32
        ),
        out,
    )
    return probabilities, keep, inputs["pixels"], np.array([len(s) for s in s2_kept], np.int32)


#: A re-prediction as of a later pass, and its run (which the drift monitor skips).
Revision = tuple[pb.PredictionBatch, Prediction]


def revise_crops(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    crops: ServedModel,
    template: pb.PredictionBatch,
) -> list[Revision]:
    """A Sentinel-2 pass that came late (its series had passes dated after it): the crop
    type as of each of those passes, for the parcels of this pass whose newest pass it
    is, from the series as this pass's snapshot names it. No revision otherwise."""
    observation = batch.parcels
    acquired = _acquired(batch)
    if acquired is None or not observation.later_passes:
        return []
    mine = [e for e in observation.season_series if e.series_key == observation.series_key]
    passes = snapshot_passes(store, mine, "parcel_pixels")
    ids = store.get_array(observation.parcel_ids).astype(np.int64)
    revisions = []
    for late, group in _later_passes(store, passes, ids, acquired):
        out = _revision(template, late)
        by = acquired_on(late)
        revisions.append((out, _revised_crops(store, crops, observation, passes, group, by, out)))
    return revisions


def _revised_crops(
    store: PayloadStore,
    crops: ServedModel,
    observation: pb.ParcelObservation,
    passes: list[dict[str, Any]],
    ids: npt.NDArray[np.int64],
    acquired_by: date,
    out: pb.PredictionBatch,
) -> Prediction:
    start = season_start(observation.season)
    scale = observation.value_scale or PIXEL_SET_SCALE
    per_parcel, geomfeat = _gather(store, passes, ids, start, scale, acquired_by)
    yield from _crop_predictions(
        crops,
        _pixel_set_inputs(per_parcel, geomfeat),
        ids,
        np.array([len(s) for s in per_parcel], np.int32),
        np.array([int(s[-1][0]) for s in per_parcel], np.int32),
        out,
    )
    out.season = observation.season
    return None


def revise_fused_crops(
    batch: pb.ObservationBatch,
    store: PayloadStore,
    fusion: ServedModel,
    template: pb.PredictionBatch,
) -> list[Revision]:
    """A pass of either sensor that came late (the AOI's series had passes dated after
    it): the S1+S2 crop type as of each of those passes, for the parcels of this pass
    whose newest pass of either sensor it is, from both seasons up to that pass as this
    pass's snapshot names them."""
    observation = batch.parcels
    acquired = _acquired(batch)
    if acquired is None or not observation.later_passes:
        return []
    snapshot = observation.season_series
    passes = sorted(
        snapshot_passes(store, snapshot, "parcel_s1")
        + snapshot_passes(store, snapshot, "parcel_pixels"),
        key=lambda p: (p["acquired_at"], p["scene_id"]),
    )
    ids = store.get_array(observation.parcel_ids).astype(np.int64)
    revisions = []
    for late, group in _later_passes(store, passes, ids, acquired):
        out = _revision(template, late)
        by = acquired_on(late)
        run = _fused_crops(
            store, fusion, observation, group, by, out, f"no pass of both sensors by {by}"
        )
        revisions.append((out, _without_drift(run)))
    return revisions


def _without_drift(run: Generator[Infer, Answer, Any]) -> Prediction:
    yield from run
    return None


def _later_passes(
    store: PayloadStore,
    passes: list[dict[str, Any]],
    ids: npt.NDArray[np.int64],
    after: date,
) -> list[tuple[dict[str, Any], npt.NDArray[np.int64]]]:
    """The passes (by date) acquired after `after`, each with the parcels of `ids` whose
    newest pass it is: the predictions as of those passes that a late pass changes."""
    wanted = {int(i) for i in ids}
    newest: dict[int, str] = {}
    by_key: dict[str, dict[str, Any]] = {}
    for p in passes:
        if acquired_on(p) <= after:
            continue
        by_key[p["acquisition_key"]] = p
        for pid in store.get_array(p["arrays"]["parcel_ids"]).astype(np.int64):
            if int(pid) in wanted:
                newest[int(pid)] = p["acquisition_key"]
    groups: dict[str, list[int]] = {}
    for pid, key in newest.items():
        groups.setdefault(key, []).append(pid)
    # by_key holds the later passes in date order
    return [(p, np.array(sorted(groups[k]), np.int64)) for k, p in by_key.items() if k in groups]


def _revision(template: pb.PredictionBatch, late: dict[str, Any]) -> pb.PredictionBatch:
    """The prediction batch of a revision as of the pass `late` of a series manifest."""
    out = pb.PredictionBatch()
    out.CopyFrom(template)
    came = template.header.scene_id
    out.header.scene_id = late["scene_id"]
    out.header.acquired_at.CopyFrom(timestamp(datetime.fromisoformat(late["acquired_at"])))
    out.revision = True
    del out.notes[:]
    out.notes.append(f"revised: {came}, acquired before this pass, was handled after it")
    return out


def predict_parcel_biophysics(
    batch: pb.ObservationBatch, store: PayloadStore, bio: ServedModel, out: pb.PredictionBatch
) -> Prediction:
    """Fill `out` with LAI, CCC and FCOVER of each parcel this pass observed: the
    biophysical model on the parcel's sampled valid pixels, their mean and median (None
    when the pass has no sun/view angles: no honest estimate without them)."""
    observation = batch.parcels
    if not has_angles(observation, out):
        return None
    bands, names = list(bio.statistics.get("reflectance", {})), list(observation.channels)
    if bands and len(names) != len(bands):
        raise PoisonError(f"parcel pixels of bands {names}, {bio.name} reads {bands}")
    for wanted, got in zip(bands, names, strict=False):
        if wanted != got:  # a substitute preprocess chose (B08 for a missing B8A)
            out.notes.append(f"{got} stands in for {wanted} in this pass")
    ids = store.get_array(observation.parcel_ids).astype(np.int64)
    values = store.get_array(observation.values)
    n_valid = store.get_array(observation.n_valid)
    if values.ndim != 3 or len(values) != len(ids) or len(n_valid) != len(ids):
        raise PoisonError(
            f"parcel arrays disagree: ids {ids.shape}, values {values.shape}, "
            f"n_valid {n_valid.shape}"
        )
    parcels, channels, size = values.shape
    pixels = (values.astype(np.float32) / observation.value_scale).transpose(0, 2, 1)
    pixels = pixels.reshape(-1, channels)  # (P·S, C)
    variables, out.model_version = yield from biophysical_variables(bio, pixels, observation.view)
    per_parcel = variables.reshape(parcels, size, len(VARIABLES))
    out.season = observation.season
    out.value_names.extend(SUMMARY)
    for pid, v, n in zip(ids, per_parcel, n_valid, strict=True):
        out.predictions.append(
            pb.Prediction(
                entity_id=str(int(pid)),
                values=summarise(v),
                observations=int(n),  # the parcel's valid pixels in this pass
            )
        )
    return Predicted(variables, pixels, feature_reference(bio.statistics["reflectance"]))
