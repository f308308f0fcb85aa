"""S1+S2 crop type per parcel on the demo's real passes: the WorldCereal cube's monthly
Sentinel-2 and Sentinel-1 composites through the real catalog mapping and preprocess
handler, in the order the catalog publishes them, then the inference handler with the
committed `psetae_s1s2` (in process)."""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.events import partition_key
from revisit_common.payload import PayloadStore
from revisit_inference.drift import DriftMetrics
from revisit_inference.handler import handle_observation
from revisit_inference.served import ServedModel
from revisit_store.handler import rows_for
from tests.conftest import Season
from tests.model_inputs import LocalModel, latest_version
from tests.unit.test_inference_parcels import NoLcz

FUSION = latest_version(REPO_ROOT / "data" / "models" / "psetae_s1s2")
SEASON_START = date(2020, 11, 1)
AOI = "hesbaye-parcels"


def _fusion() -> ServedModel:
    model = LocalModel(FUSION)
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
        assert (batch.indicator, batch.model_name, batch.model_version) == (
            "crop_type_s1s2",
            "psetae_s1s2",
            FUSION.name,
        )
        day = _day(event)
        optical = _history(store, demo_parcel_season.optical, day, 10000.0)
        radar = _history(store, demo_parcel_season.radar, day, 1.0)
        observed = [int(i) for i in store.get_array(event.parcels.parcel_ids)]
        # every parcel this radar pass observed has an optical pass (November is valid)
        assert [p.entity_id for p in batch.predictions] == [str(i) for i in observed]
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
        assert rows.table == "parcel_prediction" and len(rows.rows) == len(observed)
        assert {c[0] for c in rows.classes} == {"psetae_s1s2"}
    # the October radar pass used the whole season: 10 optical passes and 12 radar ones
    assert max(p.observations for p in batch.predictions) == 10 + 12
    shift = drift.max_shift.labels("psetae_s1s2", AOI)._value.get()
    assert np.isfinite(shift) and shift > 0


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
