"""The preprocess handler for `parcels` and `region` AOIs, Sentinel-2 and Sentinel-1:
events, payloads and season series, on the real eo-learn series and WorldCereal cube."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from rasterio.transform import from_origin

from revisit_cli.demo_data import CUBE, EPSG
from revisit_common import events_pb2 as pb
from revisit_common.payload import PayloadStore
from revisit_common.series import read_series, season_of
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LCZ_BANDS, LczGrid
from revisit_preprocess.pixelsets import Parcel, PixelSetConfig, extract_pixel_sets
from revisit_preprocess.raster import to_crs
from tests.eolearn_scenes import EoLearnPatch
from tests.rasters import write_cog
from tests.unit.test_pixelsets import cube_parcels

CONFIG = PixelSetConfig(pixels=16)


@pytest.fixture(scope="module")
def scenes(eolearn_scenes: list[pb.SceneDiscovered]) -> list[pb.SceneDiscovered]:
    """The eo-learn scenes, discovered for a `parcels` AOI with a season from 1 September."""
    found = []
    for original in eolearn_scenes:
        scene = pb.SceneDiscovered()
        scene.CopyFrom(original)
        found.append(scene)
        scene.aoi.name = "Ljubljana fields"
        scene.aoi.kind = "parcels"
        scene.aoi.season_start, scene.aoi.season_end = "09-01", "08-31"
    return found


def wgs84_parcels(eolearn_patch: EoLearnPatch) -> list[Parcel]:
    geoms = to_crs([p.geometry for p in eolearn_patch.parcels], "EPSG:4326", f"EPSG:{32633}")
    return [Parcel(p.id, g) for p, g in zip(eolearn_patch.parcels, geoms, strict=True)]


def test_passes_in_any_order_and_replays_build_one_ordered_series_per_season(
    eolearn_patch: EoLearnPatch, scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    store = PayloadStore(tmp_path)
    parcels = wgs84_parcels(eolearn_patch)
    asked: list[str] = []

    def source(aoi: str, footprint: str) -> list[Parcel]:
        asked.append(aoi)
        return parcels

    order = list(range(len(scenes)))
    random.Random(7).shuffle(order)  # late passes arrive after later ones
    events = {}
    for t in [*order, *order[:10]]:  # and ten passes are handled twice (replay)
        (out,) = handle_scene(scenes[t], store, LczGrid(), source, CONFIG)
        # a parcels AOI's passes are keyed by the AOI: S1 and S2 on one partition
        assert isinstance(out.event, pb.ObservationBatch) and out.key == b"aoi:Ljubljana fields"
        events[t] = out.event
    assert set(asked) == {"Ljubljana fields"}
    observed = [t for t, e in events.items() if not e.no_valid_observation]
    cloudy = [t for t, e in events.items() if e.no_valid_observation]
    assert len(observed) + len(cloudy) == 68 and len(cloudy) == 20
    for t in cloudy:  # fully cloudy over every parcel: said, not an error
        assert events[t].parcels.parcels_observed == 0 and events[t].parcels.parcels_in_scene == 86
        assert "none of the 86 parcels" in events[t].notes[-1]

    seasons = {events[t].parcels.season for t in observed}
    assert seasons == {season_of(eolearn_patch.dates[t], "09-01") for t in observed}
    assert len(seasons) == 4  # 2015-07 .. 2017-12: seasons from 1 September 2014 .. 2017
    total = 0
    for season in sorted(seasons):
        key = events[observed[0]].parcels.series_key.rsplit("/", 2)[0] + f"/{season}/33TVM"
        passes = read_series(store, key)
        dates = [p["acquired_at"] for p in passes]
        assert dates == sorted(dates) and len(set(dates)) == len(dates)
        assert all(season_of(datetime.fromisoformat(d), "09-01") == season for d in dates)
        total += len(passes)
    assert total == len(observed)

    # The arrays of one pass, through the event: what extract_pixel_sets gives directly.
    t = observed[0]
    event = events[t].parcels
    bands = [b for b in scenes[t].bands if b.band != "SCL"]
    direct = extract_pixel_sets(
        bands, scenes[t].bands[-1], parcels, scenes[t].acquisition_key, CONFIG
    )
    np.testing.assert_array_equal(store.get_array(event.parcel_ids), direct.parcel_ids)
    np.testing.assert_array_equal(store.get_array(event.values), direct.values)
    assert list(event.channels) == list(LCZ_BANDS) and event.value_scale == 10_000
    assert event.day_of_year == eolearn_patch.dates[t].timetuple().tm_yday
    assert events[t].epsg == 32633


def test_an_aoi_without_parcels_is_no_valid_observation(
    scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    (out,) = handle_scene(scenes[0], PayloadStore(tmp_path), LczGrid())
    assert isinstance(out.event, pb.ObservationBatch)
    assert out.event.no_valid_observation and "no parcel of AOI" in out.event.notes[-1]


def _s1_scene(tmp_path: Path, quantity: str) -> tuple[pb.SceneDiscovered, list[Parcel]]:
    with h5py.File(CUBE, "r") as nc:
        x, y = np.asarray(nc["x"][:1]), np.asarray(nc["y"][:1])
        transform = from_origin(x[0] - 5, y[0] + 5, 10, 10)
        scene = pb.SceneDiscovered(
            sensor="sentinel-1", tile_id="S1-R088-ASC", polarizations=["VV", "VH"]
        )
        scene.header.scene_id = "S1A_IW_GRDH_20210605"
        scene.header.acquired_at.FromJsonString("2021-06-05T17:30:00Z")
        scene.aoi.name, scene.aoi.kind = "hesbaye", "parcels"
        for pol in ("VV", "VH"):
            dn = np.asarray(nc[f"S1-SIGMA0-{pol}"][7]).view(np.uint16)
            path = tmp_path / f"{pol}.tif"
            write_cog(path, dn, transform, EPSG, 65535)
            scene.bands.add(
                band=pol, href=str(path), scale=1, nodata=65535, has_nodata=True, quantity=quantity
            )
    local = cube_parcels(transform)
    geoms = to_crs([p.geometry for p in local], "EPSG:4326", f"EPSG:{EPSG}")
    return scene, [Parcel(p.id, g) for p, g in zip(local, geoms, strict=True)]


def test_sentinel1_backscatter_per_parcel_goes_to_its_own_series(tmp_path: Path) -> None:
    scene, parcels = _s1_scene(tmp_path, "db_uint16")
    store = PayloadStore(tmp_path / "store")
    (out,) = handle_scene(scene, store, LczGrid(), lambda aoi, fp: parcels)
    batch = out.event
    assert isinstance(batch, pb.ObservationBatch) and batch.kind == "parcel_s1"
    assert batch.parcels.parcels_observed == 4 and batch.parcels.parcels_in_scene == 4
    assert batch.parcels.series_key.startswith("parcel_s1/hesbaye/2021/")
    values = store.get_array(batch.parcels.values)
    assert values.shape == (4, 5) and list(batch.parcels.channels)[:2] == [
        "VV_db_mean",
        "VH_db_mean",
    ]
    assert len(read_series(store, batch.parcels.series_key)) == 1
    # the same scene for a city AOI has no Sentinel-1 product
    scene.aoi.kind = "city"
    assert handle_scene(scene, store, LczGrid(), lambda aoi, fp: parcels) == []


def test_uncalibrated_grd_and_hh_only_scenes_say_why_they_observe_nothing(tmp_path: Path) -> None:
    scene, parcels = _s1_scene(tmp_path, "amplitude_dn")
    store = PayloadStore(tmp_path / "store")
    (out,) = handle_scene(scene, store, LczGrid(), lambda aoi, fp: parcels)
    assert isinstance(out.event, pb.ObservationBatch) and out.event.no_valid_observation
    assert "calibration" in out.event.notes[-1]
    for band in scene.bands:
        band.band = "HH"
    (out,) = handle_scene(scene, store, LczGrid(), lambda aoi, fp: parcels)
    assert isinstance(out.event, pb.ObservationBatch) and "no VV or VH" in out.event.notes[-1]


def test_region_inputs_are_reflectance_indices_and_angles(
    demo_scenes: list[pb.SceneDiscovered], tmp_path: Path
) -> None:
    june = pb.SceneDiscovered()
    june.CopyFrom(next(s for s in demo_scenes if s.header.scene_id.endswith("20210601_MONTHLY")))
    june.aoi.kind = "region"
    june.view.sun_zenith, june.view.view_zenith = 30.5, 4.2
    store = PayloadStore(tmp_path)
    (out,) = handle_scene(june, store, LczGrid())
    batch = out.event
    assert isinstance(batch, pb.ObservationBatch) and batch.kind == "region_pixels"
    region = batch.region
    reflectance = store.get_array(region.reflectance)
    valid = store.get_array(region.valid)
    indices = store.get_array(region.indices)
    assert reflectance.shape[0] == 10 and list(region.bands) == [
        *LCZ_BANDS[:7],
        "B08",
        *LCZ_BANDS[8:],
    ]
    assert list(region.index_names) == ["NDVI", "NDWI", "NDBI", "NDMI"]
    assert region.view.sun_zenith == 30.5 and len(region.geotransform) == 6
    with h5py.File(CUBE, "r") as nc:
        b04 = np.asarray(nc["S2-L2A-B04"][7]).view(np.uint16).astype(np.float64) / 1e4
        b08 = np.asarray(nc["S2-L2A-B08"][7]).view(np.uint16).astype(np.float64) / 1e4
    rows, cols = valid.shape
    with h5py.File(CUBE, "r") as nc:
        x0, y0 = float(nc["x"][0]) - 5, float(nc["y"][0]) + 5
    col0, row0 = (
        round((region.geotransform[2] - x0) / 10),
        round((y0 - region.geotransform[5]) / 10),
    )
    ndvi = ((b08 - b04) / (b08 + b04))[row0 : row0 + rows, col0 : col0 + cols]
    np.testing.assert_allclose(indices[0][valid], ndvi[valid], atol=1e-5)
    assert np.isnan(indices[0][~valid]).all() and 0.5 < region.valid_fraction <= 1
