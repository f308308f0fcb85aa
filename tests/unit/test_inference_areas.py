"""Biophysical variables of a region AOI: the real WorldCereal June pass through the
preprocess handler, then the inference handler with the committed PROSAIL model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from prometheus_client import CollectorRegistry
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from revisit_cli.stack import REPO_ROOT
from revisit_common import events_pb2 as pb
from revisit_common.payload import PayloadStore
from revisit_inference.areas import relative_azimuth
from revisit_inference.drift import DriftMetrics
from revisit_inference.handler import handle_observation
from revisit_inference.served import ServedModel
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LczGrid
from tests.model_inputs import LocalModel
from tests.unit.test_inference_parcels import NoLcz

MODEL = REPO_ROOT / "data" / "models" / "biophys_prosail" / "1"


def _region_pass(
    region_scenes: list[pb.SceneDiscovered], month: str, store: PayloadStore, view: bool = True
) -> pb.ObservationBatch:
    scene = pb.SceneDiscovered()
    scene.CopyFrom(
        next(s for s in region_scenes if s.header.scene_id.endswith(f"{month}01_MONTHLY"))
    )
    if view:  # instead of the nominal angles of the demo items
        scene.view.sun_zenith, scene.view.view_zenith = 32.4, 5.0
        scene.view.sun_azimuth, scene.view.view_azimuth = 160.0, 250.0
    else:
        scene.ClearField("view")
    (out,) = handle_scene(scene, store, LczGrid())
    assert isinstance(out.event, pb.ObservationBatch) and out.event.kind == "region_pixels"
    return out.event


def _bio() -> ServedModel:
    model = LocalModel(MODEL)
    return ServedModel(model, model.card)


def test_the_area_summary_is_the_model_on_every_valid_pixel(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    store = PayloadStore(tmp_path)
    batch = _region_pass(region_scenes, "202106", store)
    bio, drift = _bio(), DriftMetrics(CollectorRegistry())
    (out,) = handle_observation(batch, store, NoLcz(), drift=drift, bio=bio)
    result = out.event
    assert isinstance(result, pb.PredictionBatch) and result.indicator == "biophysics"
    assert result.model_name == "biophys_prosail" and result.model_version == "1"
    (area,) = result.predictions
    summary = dict(zip(result.value_names, area.values, strict=True))
    # directly: the same model on the region's valid pixels with the pass's angles
    reflectance = store.get_array(batch.region.reflectance)
    valid = store.get_array(batch.region.valid).astype(bool)
    pixels = reflectance[:, valid].T.astype(np.float32)
    angles = np.tile(np.array([[32.4, 5.0, 90.0]], np.float32), (len(pixels), 1))
    direct, _ = LocalModel(MODEL).infer({"reflectance": pixels, "angles": angles}, "variables")
    assert area.observations == len(pixels) == int(valid.sum()) > 5000
    assert summary["lai_mean"] == pytest.approx(float(direct[:, 0].mean()), rel=1e-5)
    assert summary["fcover_median"] == pytest.approx(float(np.median(direct[:, 2])), rel=1e-5)
    assert summary["valid_fraction"] == pytest.approx(batch.region.valid_fraction)
    assert 1.0 < summary["lai_mean"] < 4.0  # June over Hesbaye crops and grassland
    assert 0.0 < summary["fcover_mean"] < 1.0
    shift = drift.max_shift.labels("biophys_prosail", batch.aoi.name)._value.get()
    assert shift > 0


def test_june_is_greener_than_march(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    store, bio = PayloadStore(tmp_path), _bio()
    lai = {}
    for month in ("202103", "202106"):
        (out,) = handle_observation(
            _region_pass(region_scenes, month, store), store, NoLcz(), bio=bio
        )
        assert isinstance(out.event, pb.PredictionBatch)
        lai[month] = dict(zip(out.event.value_names, out.event.predictions[0].values, strict=True))[
            "lai_median"
        ]
    assert lai["202106"] > 1.5 * lai["202103"]


def test_without_angles_there_is_no_estimate(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    store, bio = PayloadStore(tmp_path), _bio()
    batch = _region_pass(region_scenes, "202106", store, view=False)
    (out,) = handle_observation(batch, store, NoLcz(), bio=bio)
    assert isinstance(out.event, pb.PredictionBatch)
    assert out.event.no_valid_observation and not out.event.predictions
    assert "no sun/view angles" in out.event.notes[-1]
    assert isinstance(bio.model, LocalModel) and bio.model.calls == 0


def test_relative_azimuth_folds_into_0_180() -> None:
    view = pb.ViewGeometry(sun_azimuth=350.0, view_azimuth=10.0)
    assert relative_azimuth(view) == 20.0
    view = pb.ViewGeometry(sun_azimuth=160.0, view_azimuth=250.0)
    assert relative_azimuth(view) == 90.0


LANDCOVER = REPO_ROOT / "data" / "models" / "landcover_tae" / "1"


def test_land_cover_fractions_from_the_year_of_passes(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    """The 12 real WorldCereal months as region passes (2 without data), then the land
    cover of the AOI at the last one, from each pixel's NDVI over the year."""
    store = PayloadStore(tmp_path)
    events = []
    for original in sorted(region_scenes, key=lambda s: s.header.acquired_at.ToDatetime()):
        assert original.aoi.kind == "region" and original.aoi.season_start == "11-01"
        (out,) = handle_scene(original, store, LczGrid())
        assert isinstance(out.event, pb.ObservationBatch)
        events.append(out.event)
    observed = [e for e in events if not e.no_valid_observation]
    assert len(observed) == 10 and observed[-1].region.series_length == 10
    model = LocalModel(LANDCOVER)
    land = ServedModel(model, model.card)
    drift = DriftMetrics(CollectorRegistry())
    (out,) = handle_observation(observed[-1], store, NoLcz(), drift=drift, land=land)
    batch = out.event
    assert isinstance(batch, pb.PredictionBatch) and batch.indicator == "land_cover"
    assert batch.season == "2020-11-01" and list(batch.classes) == land.classes
    (area,) = batch.predictions
    values = dict(zip(batch.value_names, area.values, strict=True))
    assert set(values) == {"tree", "built_up", "cropland", "pixels_share"}
    assert area.observations == 10 and area.season_days == 334  # 2020-11-01 .. 2021-10-01
    # independently: every pixel's NDVI over the passes, from the events, in process
    ndvi = np.stack([store.get_array(e.region.indices)[0].reshape(-1) for e in observed], 1)
    valid = np.stack([store.get_array(e.region.valid).reshape(-1) for e in observed], 1)
    valid &= np.isfinite(ndvi)
    seen = valid.any(1)
    days = [
        (e.header.acquired_at.ToDatetime() - observed[0].header.acquired_at.ToDatetime()).days
        for e in observed
    ]
    inputs = {
        "ndvi": np.where(valid, np.nan_to_num(ndvi), 0)[seen].astype(np.float32),
        "valid": valid[seen].astype(np.float32),
        "positions": np.tile(np.array(days, np.float32), (int(seen.sum()), 1)),
    }
    probabilities, _ = model.infer(inputs, "probabilities")
    classes = list(land.classes)
    assert values["tree"] == pytest.approx(
        probabilities[:, classes.index("forest")].mean(), rel=1e-4
    )
    assert values["pixels_share"] == pytest.approx(seen.mean())
    assert 0.0 <= values["tree"] + values["built_up"] + values["cropland"] <= 1.0
    assert drift.max_shift.labels("landcover_tae", batch.aoi.name)._value.get() >= 0


def _halves_and_an_outsider(aoi_wkt: str) -> list[tuple[str, BaseGeometry]]:
    """The AOI cut into a west and an east unit, and a unit 10 km away."""
    aoi = shapely.from_wkt(aoi_wkt)
    minx, miny, maxx, maxy = aoi.bounds
    middle = (minx + maxx) / 2
    return [
        ("west", box(minx - 0.01, miny - 0.01, middle, maxy + 0.01)),
        ("far", box(minx + 0.2, miny, maxx + 0.2, maxy)),
        ("east", box(middle, miny - 0.01, maxx + 0.01, maxy + 0.01)),
    ]


def _units_of(scene: pb.SceneDiscovered) -> Any:
    units = _halves_and_an_outsider(scene.aoi.geometry_wkt)
    return lambda aoi: units if aoi == scene.aoi.name else []


def test_units_are_burnt_on_the_region_grid(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    store = PayloadStore(tmp_path)
    june = next(s for s in region_scenes if s.header.scene_id.endswith("20210601_MONTHLY"))
    (out,) = handle_scene(june, store, LczGrid(), units=_units_of(june))
    region = out.event.region
    assert list(region.unit_keys) == ["west", "east"]  # the far one covers no pixel
    assert "1 of the AOI's 3 area units cover no pixel" in out.event.notes[-1]
    labels = store.get_array(region.units)
    valid = store.get_array(region.valid)
    assert labels.dtype == np.uint16 and labels.shape == valid.shape
    assert set(np.unique(labels[valid]).tolist()) == {1, 2}  # every valid pixel has a unit
    west, east = (labels == 1).sum(), (labels == 2).sum()
    assert abs(int(west) - int(east)) < 0.1 * (west + east)  # two halves
    # west is west (a meridian is not a grid column in UTM: compare row by row)
    for row in range(labels.shape[0]):
        west_cols, east_cols = np.nonzero(labels[row] == 1)[0], np.nonzero(labels[row] == 2)[0]
        if len(west_cols) and len(east_cols):
            assert west_cols.max() < east_cols.min()


def test_biophysics_and_land_cover_per_unit_add_up_to_the_aoi(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    """Each unit's summary is the model on the unit's own pixels, and the units, which
    tile the AOI, weigh back to the AOI's summary."""
    store = PayloadStore(tmp_path)
    observed = []
    for scene in sorted(region_scenes, key=lambda s: s.header.acquired_at.ToDatetime()):
        (out,) = handle_scene(scene, store, LczGrid(), units=_units_of(scene))
        if not out.event.no_valid_observation:
            observed.append(out.event)
    batch = observed[-1]
    batch.region.view.sun_zenith, batch.region.view.view_zenith = 32.4, 5.0
    model = LocalModel(LANDCOVER)
    (lc,) = handle_observation(batch, store, NoLcz(), land=ServedModel(model, model.card))
    (bio,) = handle_observation(batch, store, NoLcz(), bio=_bio())
    labels = store.get_array(batch.region.units).reshape(-1)
    valid = store.get_array(batch.region.valid).reshape(-1).astype(bool)
    for result in (lc.event, bio.event):
        assert isinstance(result, pb.PredictionBatch)
        whole, *units = result.predictions
        assert whole.entity_id == batch.aoi.name
        assert [u.entity_id for u in units] == ["west", "east"]
        values = {p.entity_id: dict(zip(result.value_names, p.values, strict=True)) for p in units}
        whole_values = dict(zip(result.value_names, whole.values, strict=True))
        if result.indicator == "biophysics":
            counts = {
                "west": int((valid & (labels == 1)).sum()),
                "east": int((valid & (labels == 2)).sum()),
            }
            assert [u.observations for u in units] == [counts["west"], counts["east"]]
            assert sum(counts.values()) == whole.observations
            mean = sum(values[k]["lai_mean"] * n for k, n in counts.items()) / whole.observations
            assert mean == pytest.approx(whole_values["lai_mean"], rel=1e-4)
            for key, label in (("west", 1), ("east", 2)):
                share = counts[key] / (labels == label).sum()
                assert values[key]["valid_fraction"] == pytest.approx(share)
        else:
            sizes = {"west": int((labels == 1).sum()), "east": int((labels == 2).sum())}
            seen = {k: values[k]["pixels_share"] * n for k, n in sizes.items()}
            total = sum(seen.values())
            assert total == pytest.approx(whole_values["pixels_share"] * labels.size, rel=1e-4)
            tree = sum(values[k]["tree"] * seen[k] for k in seen) / total
            assert tree == pytest.approx(whole_values["tree"], abs=1e-4)
            assert all(u.observations == whole.observations for u in units)


def test_a_region_pass_without_units_gets_the_aoi_alone(
    region_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    store = PayloadStore(tmp_path)
    batch = _region_pass(region_scenes, "202106", store)
    assert not batch.region.HasField("units") and not batch.region.unit_keys
    (out,) = handle_observation(batch, store, NoLcz(), bio=_bio())
    assert [p.entity_id for p in out.event.predictions] == [batch.aoi.name]
