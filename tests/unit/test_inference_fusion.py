"""S1+S2 crop type per parcel on the demo's real passes: the WorldCereal cube's monthly
Sentinel-2 and Sentinel-1 composites through the real catalog mapping and preprocess
handler, in the order the catalog publishes them, then the inference handler with the
committed `psetae_s1s2` (in process)."""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY, CollectorRegistry

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.events import partition_key
from revisit_common.payload import PayloadStore
from revisit_inference.drift import DriftMetrics
from revisit_inference.handler import handle_observation
from revisit_inference.served import ServedModel
from revisit_store.handler import rows_for
from tests.conftest import LATE_MONTH, Season
from tests.model_inputs import LocalModel, latest_version
from tests.unit.test_inference_parcels import NoLcz

FUSION = latest_version(REPO_ROOT / "data" / "models" / "psetae_s1s2")
SEASON_START = date(2020, 11, 1)
AOI = "hesbaye-parcels"


def _fusion() -> ServedModel:
    model = LocalModel(FUSION)
    return ServedModel(model, model.card)


def _crops() -> ServedModel:
    model = LocalModel(latest_version(REPO_ROOT / "data" / "models" / "psetae_s2"))
    return ServedModel(model, model.card)


def _day(batch: pb.ObservationBatch) -> int:
    return (batch.header.acquired_at.ToDatetime().date() - SEASON_START).days


def _history(
    store: PayloadStore, events: list[pb.ObservationBatch], until: int, scale: float
) -> dict[int, list[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32]]]]:
    """Each parcel's (day, values, geometric features) in the events up to day `until`,
    read from the events themselves (not from the series manifests)."""
    history: dict[int, list[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32]]]] = {}
    for event in events:
        if event.no_valid_observation or _day(event) > until:
            continue
        ids = store.get_array(event.parcels.parcel_ids)
        values = store.get_array(event.parcels.values).astype(np.float32) / scale
        geometry = store.get_array(event.parcels.geomfeat)
        for pid, v, g in zip(ids, values, geometry, strict=True):
            history.setdefault(int(pid), []).append((_day(event), v, g))
    return history


def _assert_both_seasons_so_far(
    season: Season, event: pb.ObservationBatch, batch: pb.PredictionBatch, fusion: ServedModel
) -> list[pb.Prediction]:
    """Each prediction of this pass counts, and equals the model in process on, the
    parcel's passes of both sensors up to the pass's day (those handled before it)."""
    store, day = season.store, _day(event)
    mine = season.handled[: next(i for i, e in enumerate(season.handled) if e is event) + 1]
    optical = _history(store, [e for e in mine if e.kind == "parcel_pixels"], day, 10000.0)
    radar = _history(store, [e for e in mine if e.kind == "parcel_s1"], day, 1.0)
    assert (batch.indicator, batch.model_name, batch.model_version) == (
        "crop_type_s1s2",
        "psetae_s1s2",
        FUSION.name,
    )
    assert not batch.no_valid_observation and list(batch.classes) == fusion.classes
    for prediction in batch.predictions:
        s2, s1 = optical[int(prediction.entity_id)], radar[int(prediction.entity_id)]
        assert prediction.observations == len(s2) + len(s1)
        assert prediction.season_days == day
        inputs = {  # the same parcel's two seasons, assembled here, in process
            "pixels": np.stack([v for _, v, _ in s2])[None],
            "pixel_mask": np.ones((1, len(s2), 16), np.float32),
            "positions": np.array([[d for d, _, _ in s2]], np.float32),
            "geomfeat": s2[-1][2][None].astype(np.float32),
            "s1": np.stack([v for _, v, _ in s1])[None],
            "s1_valid": np.ones((1, len(s1)), np.float32),
            "s1_positions": np.array([[d for d, _, _ in s1]], np.float32),
        }
        expected, _ = fusion.model.infer(inputs, "probabilities")
        np.testing.assert_allclose(prediction.probabilities, expected[0], atol=1e-5)
    rows = rows_for(batch)
    assert rows.table == "parcel_prediction" and len(rows.rows) == len(batch.predictions)
    assert {c[0] for c in rows.classes} == {"psetae_s1s2"}
    return list(batch.predictions)


def test_each_radar_pass_predicts_from_both_seasons_so_far(demo_parcel_season: Season) -> None:
    store, fusion = demo_parcel_season.store, _fusion()
    drift = DriftMetrics(CollectorRegistry())
    assert len(demo_parcel_season.radar) == 12 and not any(
        e.no_valid_observation for e in demo_parcel_season.radar
    )
    features = list(fusion.statistics["s1"]["features"])
    assert all(list(e.parcels.channels) == features for e in demo_parcel_season.radar)
    for event in demo_parcel_season.radar:
        (out,) = handle_observation(event, store, NoLcz(), drift=drift, fusion=fusion)
        batch = out.event
        assert isinstance(batch, pb.PredictionBatch) and out.key == f"aoi:{AOI}".encode()
        # every parcel this radar pass observed has an optical pass (November is valid)
        observed = [str(int(i)) for i in store.get_array(event.parcels.parcel_ids)]
        assert [p.entity_id for p in batch.predictions] == observed
        predictions = _assert_both_seasons_so_far(demo_parcel_season, event, batch, fusion)
    # the October radar pass used the whole season: 10 optical passes and 12 radar ones
    assert max(p.observations for p in predictions) == 10 + 12
    shift = drift.max_shift.labels("psetae_s1s2", AOI)._value.get()
    assert np.isfinite(shift) and shift > 0


def test_a_late_optical_pass_revises_the_s1s2_prediction(late_optical_season: Season) -> None:
    """Each month's radar pass is handled first: its S1+S2 prediction lacks the optical
    pass of that date, which then gives the S1+S2 prediction from both, with one pass more
    (the store keeps that one: `writer.CROP_KEPT`)."""
    store, fusion = late_optical_season.store, _fusion()
    drift = DriftMetrics(CollectorRegistry())
    assert list(late_optical_season.optical[0].aoi.sensors) == ["sentinel-2", "sentinel-1"]
    radar_of = {_day(e): e for e in late_optical_season.radar}
    revised = 0
    for event in late_optical_season.optical:
        if event.no_valid_observation:  # December and January: no data
            continue
        # the S2 model and the S1+S2 one, in that order; no biophysical model given
        crop, fused = handle_observation(
            event, store, NoLcz(), crops=_crops(), drift=drift, fusion=fusion
        )
        assert isinstance(fused.event, pb.PredictionBatch) and fused.key == crop.key
        assert isinstance(crop.event, pb.PredictionBatch) and crop.event.indicator == "crop_type"
        predictions = _assert_both_seasons_so_far(late_optical_season, event, fused.event, fusion)
        (radar,) = handle_observation(radar_of[_day(event)], store, NoLcz(), fusion=fusion)
        assert isinstance(radar.event, pb.PredictionBatch)
        before = {p.entity_id: p.observations for p in radar.event.predictions}
        if _day(event) == 0:  # November: the radar pass came before any optical one
            assert radar.event.no_valid_observation and not before
        else:
            assert {p.entity_id: p.observations - 1 for p in predictions} == before
        revised += len(predictions)
    assert revised == 10 * 34  # every parcel on each of the 10 valid optical passes
    # the optical pass's pixel sets against the fusion model's Sentinel-2 statistics
    assert drift.shift.labels("psetae_s1s2", AOI, "B04")._value.get() != 0


def test_each_optical_pass_in_catalog_order_predicts_from_both_seasons_so_far(
    demo_parcel_season: Season,
) -> None:
    """In the catalog's order a month's optical pass comes before its radar pass: it
    reads the radar passes of the months before."""
    store, fusion = demo_parcel_season.store, _fusion()
    observed = []
    for event in demo_parcel_season.optical[1:]:  # November's is the season's first pass
        if event.no_valid_observation:
            continue
        (fused,) = handle_observation(event, store, NoLcz(), fusion=fusion)
        assert isinstance(fused.event, pb.PredictionBatch)
        predictions = _assert_both_seasons_so_far(demo_parcel_season, event, fused.event, fusion)
        observed.append(max(p.observations for p in predictions))
    # February: 2 optical passes (November, February) and 3 radar ones (November ..
    # January); October: the 10 valid optical passes and 11 radar ones
    assert observed[0] == 2 + 3 and observed[-1] == 10 + 11


def test_the_first_optical_pass_of_a_season_says_it_has_no_radar_pass(
    demo_parcel_season: Season,
) -> None:
    first = demo_parcel_season.optical[0]
    fusion = _fusion()
    (fused,) = handle_observation(first, demo_parcel_season.store, NoLcz(), fusion=fusion)
    assert isinstance(fused.event, pb.PredictionBatch)
    assert fused.event.indicator == "crop_type_s1s2" and fused.event.no_valid_observation
    assert "have no Sentinel-1 pass in the season yet" in fused.event.notes[-1]
    assert isinstance(fusion.model, LocalModel) and fusion.model.calls == 0


def test_an_aoi_watched_by_sentinel2_alone_gets_no_s1s2_prediction(
    demo_parcel_season: Season,
) -> None:
    alone = pb.ObservationBatch()
    alone.CopyFrom(demo_parcel_season.optical[0])
    del alone.aoi.sensors[:]
    alone.aoi.sensors.append("sentinel-2")
    fusion = _fusion()
    assert handle_observation(alone, demo_parcel_season.store, NoLcz(), fusion=fusion) == []
    assert isinstance(fusion.model, LocalModel) and fusion.model.calls == 0


def test_a_replayed_radar_pass_reads_the_passes_it_read_first(demo_parcel_season: Season) -> None:
    """Later passes of both sensors are in the series when November is handled again:
    its snapshot still names only November's."""
    store, first = demo_parcel_season.store, demo_parcel_season.radar[0]
    assert {len(s.acquisition_keys) for s in first.parcels.season_series} == {1}
    (out,) = handle_observation(first, store, NoLcz(), fusion=_fusion())
    assert isinstance(out.event, pb.PredictionBatch)
    assert {p.observations for p in out.event.predictions} == {2}


def test_a_radar_pass_before_any_optical_pass_predicts_nothing_and_says_so(
    demo_parcel_season: Season,
) -> None:
    early = pb.ObservationBatch()
    early.CopyFrom(demo_parcel_season.radar[0])
    del early.parcels.season_series[:]
    early.parcels.season_series.extend(
        s
        for s in demo_parcel_season.radar[0].parcels.season_series
        if s.series_key.startswith("parcel_s1/")
    )
    fusion = _fusion()
    (out,) = handle_observation(early, demo_parcel_season.store, NoLcz(), fusion=fusion)
    assert isinstance(out.event, pb.PredictionBatch)
    assert out.event.no_valid_observation and not out.event.predictions
    assert "have no Sentinel-2 pass in the season yet" in out.event.notes[-1]
    assert isinstance(fusion.model, LocalModel) and fusion.model.calls == 0
    assert rows_for(out.event).outcome.status == "no_valid_observation"


def test_a_vv_only_pass_is_not_given_to_the_vv_vh_model(demo_parcel_season: Season) -> None:
    vv_only = pb.ObservationBatch()
    vv_only.CopyFrom(demo_parcel_season.radar[0])
    del vv_only.parcels.channels[:]
    vv_only.parcels.channels.extend(["VV_db_mean", "VV_db_std"])
    (out,) = handle_observation(vv_only, demo_parcel_season.store, NoLcz(), fusion=_fusion())
    assert isinstance(out.event, pb.PredictionBatch) and out.event.no_valid_observation
    assert "psetae_s1s2 reads" in out.event.notes[-1]


def test_every_city_and_region_pass_keeps_its_tile_key() -> None:
    for kind in ("city", "region"):
        assert partition_key(pb.Aoi(name="x", kind=kind), "31UFS") == b"31UFS"


def _revised(model: str, what: str = "revised_predictions") -> float:
    value = REGISTRY.get_sample_value(f"revisit_inference_{what}_total", {"model": model})
    return value or 0.0


def test_a_pass_handled_late_revises_the_crop_types_as_of_the_passes_after_it(
    late_pass_season: Season, demo_parcel_season: Season
) -> None:
    """February's optical pass comes after May's passes: besides its own predictions, it
    gives both crop types again as of the later passes it changes (`revision`), each what
    the store kept at that instant when every pass came in order (of the two passes of a
    date, the prediction from more passes: `writer.CROP_KEPT`)."""
    crops, fusion = _crops(), _fusion()
    (late,) = [
        e
        for e in late_pass_season.handled
        if e.kind == "parcel_pixels" and e.header.acquired_at.ToDatetime().month == LATE_MONTH
    ]
    assert late_pass_season.handled.index(late) > 12  # after November .. May's 13 passes
    # preprocess says so: March .. May's passes of both sensors are dated after it
    assert late.parcels.later_passes == 3 + 3
    assert not any(e.parcels.later_passes for e in demo_parcel_season.handled)  # in order
    revised_before = {m: _revised(m) for m in ("psetae_s2", "psetae_s1s2")}
    outputs = handle_observation(late, late_pass_season.store, NoLcz(), crops=crops, fusion=fusion)
    batches = [o.event for o in outputs]
    assert all(isinstance(b, pb.PredictionBatch) for b in batches)
    own = [b for b in batches if not b.revision]
    revised = [b for b in batches if b.revision]
    assert sorted(b.indicator for b in own) == ["crop_type", "crop_type_s1s2"]
    assert {b.indicator for b in revised} == {"crop_type", "crop_type_s1s2"}
    in_order = {e.header.scene_id: e for e in demo_parcel_season.handled}
    late_day = late.header.acquired_at.ToDatetime()
    model = {"crop_type": {"crops": crops}, "crop_type_s1s2": {"fusion": fusion}}
    for batch in revised:
        assert isinstance(batch, pb.PredictionBatch)
        # as of a later pass: in order, the predictions of the passes of its date
        assert late_day < batch.header.acquired_at.ToDatetime()
        assert batch.header.scene_id in in_order
        expected: dict[str, pb.Prediction] = {}
        for then in demo_parcel_season.handled:
            if then.header.acquired_at != batch.header.acquired_at:
                continue
            for out in handle_observation(
                then, demo_parcel_season.store, NoLcz(), **model[batch.indicator]
            ):
                assert isinstance(out.event, pb.PredictionBatch)
                for p in out.event.predictions:
                    kept = expected.get(p.entity_id)
                    if kept is None or p.observations > kept.observations:
                        expected[p.entity_id] = p
        assert batch.predictions and "handled after it" in batch.notes[-1]
        for prediction in batch.predictions:
            wanted = expected[prediction.entity_id]
            assert prediction.observations == wanted.observations
            assert prediction.season_days == wanted.season_days
            np.testing.assert_allclose(prediction.probabilities, wanted.probabilities, atol=1e-5)
        rows = rows_for(batch)
        assert rows.outcome.revision and len(rows.rows) == len(batch.predictions)
        assert rows.outcome.scene_id == batch.header.scene_id
    for name, indicator in (("psetae_s2", "crop_type"), ("psetae_s1s2", "crop_type_s1s2")):
        made = sum(len(b.predictions) for b in revised if b.indicator == indicator)
        assert _revised(name) - revised_before[name] == made  # counted, parcel by parcel
    print(
        "\nlate February pass: "
        + ", ".join(
            f"{b.indicator} as of {b.header.acquired_at.ToDatetime():%Y-%m-%d} "
            f"({len(b.predictions)} parcels, up to {max(p.observations for p in b.predictions)}"
            " passes)"
            for b in revised
        )
    )


def test_a_revision_that_cannot_be_made_leaves_the_late_passs_own_prediction(
    late_pass_season: Season,
) -> None:
    """A later pass the snapshot names but the payload store no longer has (past its
    retention): the late pass still gets its own crop type, with a note, and no revision."""
    (late,) = [
        e
        for e in late_pass_season.handled
        if e.kind == "parcel_pixels" and e.header.acquired_at.ToDatetime().month == LATE_MONTH
    ]
    gone = pb.ObservationBatch()
    gone.CopyFrom(late)
    (mine,) = [e for e in gone.parcels.season_series if e.series_key == gone.parcels.series_key]
    mine.acquisition_keys.append("S2X_PASS_PAST_RETENTION")
    failed_before = _revised("psetae_s2", "revisions_failed")
    (out,) = handle_observation(gone, late_pass_season.store, NoLcz(), crops=_crops())
    assert _revised("psetae_s2", "revisions_failed") == failed_before + 1
    batch = out.event
    assert isinstance(batch, pb.PredictionBatch) and not batch.revision
    assert batch.indicator == "crop_type" and len(batch.predictions) > 0
    assert "no revision of the later passes" in batch.notes[-1]
    assert "S2X_PASS_PAST_RETENTION" in batch.notes[-1]
