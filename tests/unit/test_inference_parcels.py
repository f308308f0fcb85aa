"""Crop type per parcel from its season so far: the real preprocess handler on the real
eo-learn season, then the inference handler with the committed PSE-TAE (in process)."""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.payload import PayloadStore
from revisit_inference.drift import DriftMetrics
from revisit_inference.handler import handle_observation
from revisit_inference.served import ServedModel
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LczGrid
from revisit_preprocess.pixelsets import PixelSetConfig
from tests.eolearn_scenes import EoLearnPatch
from tests.model_inputs import LocalModel, latest_version
from tests.unit.test_preprocess_products import wgs84_parcels

MODEL = latest_version(REPO_ROOT / "data" / "models" / "psetae_s2")
BIO_MODEL = REPO_ROOT / "data" / "models" / "biophys_prosail" / "1"
SEASON = "2016-09-01"


class NoLcz:
    model_name = "lcz"

    def predict(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], str]:
        raise AssertionError("no LCZ here")


@pytest.fixture(scope="module")
def season(
    eolearn_patch: EoLearnPatch,
    eolearn_scenes: list[pb.SceneDiscovered],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[PayloadStore, list[pb.ObservationBatch]]:
    """The passes of the 2016-09-01 season through the real preprocess handler."""
    store = PayloadStore(tmp_path_factory.mktemp("payloads"))
    parcels = wgs84_parcels(eolearn_patch)
    events = []
    for original in eolearn_scenes:
        if (
            not date(2016, 9, 1)
            <= original.header.acquired_at.ToDatetime().date()
            < date(2017, 9, 1)
        ):
            continue
        scene = pb.SceneDiscovered()
        scene.CopyFrom(original)
        scene.aoi.name, scene.aoi.kind = "Ljubljana fields", "parcels"
        scene.aoi.season_start, scene.aoi.season_end = "09-01", "08-31"
        (out,) = handle_scene(
            scene, store, LczGrid(), lambda aoi, fp: parcels, PixelSetConfig(pixels=16)
        )
        assert isinstance(out.event, pb.ObservationBatch)
        events.append(out.event)
    return store, events


def _crops() -> ServedModel:
    model = LocalModel(MODEL)
    return ServedModel(model, model.card)


def test_each_pass_repredicts_its_parcels_from_the_season_so_far(
    season: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    store, events = season
    crops, drift = _crops(), DriftMetrics(CollectorRegistry())
    observed = [e for e in events if not e.no_valid_observation]
    assert len(observed) >= 10
    history: dict[int, list[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32]]]] = {}
    for event in observed:
        ids = store.get_array(event.parcels.parcel_ids)
        values = store.get_array(event.parcels.values).astype(np.float32) / 10000.0
        geometry = store.get_array(event.parcels.geomfeat)
        day = (event.header.acquired_at.ToDatetime().date() - date(2016, 9, 1)).days
        for pid, v, g in zip(ids, values, geometry, strict=True):
            history.setdefault(int(pid), []).append((day, v, g))

        (out,) = handle_observation(event, store, NoLcz(), crops, drift)
        batch = out.event
        assert isinstance(batch, pb.PredictionBatch)
        assert batch.indicator == "crop_type" and batch.model_version == MODEL.name
        assert batch.season == SEASON and list(batch.classes) == crops.classes
        assert [p.entity_id for p in batch.predictions] == [str(int(i)) for i in ids]
        for prediction in batch.predictions:
            series = history[int(prediction.entity_id)]
            assert prediction.observations == len(series)  # the passes so far
            assert prediction.season_days == day
            # the same parcel's season, assembled here from the events, in process
            inputs = {
                "pixels": np.stack([v for _, v, _ in series])[None],
                "pixel_mask": np.ones((1, len(series), 16), np.float32),
                "positions": np.array([[d for d, _, _ in series]], np.float32),
                "geomfeat": series[-1][2][None].astype(np.float32),
            }
            expected, _ = crops.model.infer(inputs, "probabilities")
            np.testing.assert_allclose(prediction.probabilities, expected[0], atol=1e-5)
    last = observed[-1]
    max_shift = drift.max_shift.labels("psetae_s2", last.aoi.name)._value.get()
    assert max_shift > 0  # eo-learn "reflectances" are NDVI in every band: far from training


def test_a_replayed_pass_gives_its_first_answer(
    season: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    """Later passes are in the series when an early pass is handled again: ignored."""
    store, events = season
    observed = [e for e in events if not e.no_valid_observation]
    early = observed[3]
    crops = _crops()
    (first,) = handle_observation(early, store, NoLcz(), crops)
    (again,) = handle_observation(early, store, NoLcz(), crops)
    assert isinstance(first.event, pb.PredictionBatch)
    assert isinstance(again.event, pb.PredictionBatch)
    assert max(p.observations for p in first.event.predictions) <= 4
    first.event.header.Clear()
    again.event.header.Clear()
    assert first.event == again.event


def test_a_cloudy_pass_predicts_nothing_and_says_so(
    season: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    store, events = season
    cloudy = next(e for e in events if e.no_valid_observation)
    crops = _crops()
    (out,) = handle_observation(cloudy, store, NoLcz(), crops)
    assert isinstance(out.event, pb.PredictionBatch)
    assert out.event.no_valid_observation and not out.event.predictions
    assert isinstance(crops.model, LocalModel) and crops.model.calls == 0


def test_parcel_biophysics_is_the_model_on_each_parcels_pixels_averaged(
    season: tuple[PayloadStore, list[pb.ObservationBatch]],
) -> None:
    store, events = season
    bio = ServedModel(LocalModel(BIO_MODEL), LocalModel(BIO_MODEL).card)
    event = next(e for e in events if not e.no_valid_observation)
    # the eo-learn passes carry no sun/view angles: no estimate, and a note saying why
    crop, unlit = handle_observation(event, store, NoLcz(), _crops(), bio=bio)
    assert isinstance(crop.event, pb.PredictionBatch) and crop.event.indicator == "crop_type"
    assert isinstance(unlit.event, pb.PredictionBatch)
    assert unlit.event.indicator == "parcel_biophysics" and unlit.event.no_valid_observation
    assert unlit.event.notes[-1].startswith("no sun/view angles for this pass")

    lit = pb.ObservationBatch()
    lit.CopyFrom(event)
    lit.parcels.view.CopyFrom(
        pb.ViewGeometry(sun_zenith=40.0, sun_azimuth=160.0, view_zenith=5.0, view_azimuth=100.0)
    )
    _, out = handle_observation(lit, store, NoLcz(), _crops(), bio=bio)
    batch = out.event
    assert isinstance(batch, pb.PredictionBatch) and not batch.no_valid_observation
    assert list(batch.value_names) == [
        f"{v}_{s}" for s in ("mean", "median") for v in ("lai", "ccc", "fcover")
    ]
    ids = store.get_array(event.parcels.parcel_ids)
    assert [p.entity_id for p in batch.predictions] == [str(int(i)) for i in ids]
    n_valid = store.get_array(event.parcels.n_valid)
    assert [p.observations for p in batch.predictions] == [int(n) for n in n_valid]
    # the first parcel, in process: its 16 sampled pixels through the model, averaged
    pixels = store.get_array(event.parcels.values)[0].T.astype(np.float32) / 10000.0
    angles = np.tile(np.array([[40.0, 5.0, 60.0]], np.float32), (len(pixels), 1))
    expected, _ = bio.model.infer({"reflectance": pixels, "angles": angles}, "variables")
    np.testing.assert_allclose(batch.predictions[0].values[:3], expected.mean(0), rtol=1e-5)
