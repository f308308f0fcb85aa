"""Parcels in the real PostGIS, read by the preprocess service for a scene footprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, box
from sqlalchemy import Engine

from revisit_catalog.registry import make_subscription, save_subscriptions, subscriptions
from revisit_common import events_pb2 as pb
from revisit_common.db.parcels import ParcelLoadError, ParcelRecord, load_parcels, parcels_in
from revisit_common.payload import PayloadStore
from revisit_preprocess.handler import handle_scene
from revisit_preprocess.lcz import LczGrid
from revisit_preprocess.main import database_parcels
from revisit_preprocess.pixelsets import PixelSetConfig
from revisit_preprocess.raster import to_crs
from tests.eolearn_scenes import EoLearnPatch

pytestmark = pytest.mark.integration


def test_parcels_loaded_into_postgis_feed_pixel_sets(
    engine: Engine,
    tmp_path: Path,
    eolearn_patch: EoLearnPatch,
    eolearn_scenes: list[pb.SceneDiscovered],
) -> None:
    patch = eolearn_patch
    wgs84 = to_crs([p.geometry for p in patch.parcels], "EPSG:4326", "EPSG:32633")
    bounds = np.array([g.bounds for g in wgs84])
    area = box(*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))
    save_subscriptions(
        engine, [make_subscription("slovenia", "parcels", area.wkt, season=("09-01", "08-31"))]
    )
    (sub,) = subscriptions(engine, ["slovenia"])
    assert (sub.aoi.season_start, sub.aoi.season_end) == ("09-01", "08-31")
    records = [
        ParcelRecord(f"RABA-{p.id}", g, label)
        for p, g, label in zip(patch.parcels, wgs84, patch.labels, strict=True)
    ]
    assert load_parcels(engine, "slovenia", records) == 88
    assert load_parcels(engine, "slovenia", records[:10]) == 10  # again: updated, not added
    assert len(parcels_in(engine, "slovenia")) == 88

    clear = pb.SceneDiscovered()
    clear.CopyFrom(eolearn_scenes[int(np.argmin(patch.cloud.mean(axis=(1, 2))))])
    clear.aoi.CopyFrom(sub.aoi)
    patch_wgs84 = to_crs(
        [box(*(patch.transform @ (0, 101)), *(patch.transform @ (100, 0)))],
        "EPSG:4326",
        "EPSG:32633",
    )[0]
    clear.footprint_wkt = patch_wgs84.wkt
    source = database_parcels(engine)
    assert len(source("slovenia", clear.footprint_wkt)) == 88
    # half the patch: PostGIS returns exactly the parcels that intersect it
    west = to_crs(
        [box(*(patch.transform @ (0, 101)), *(patch.transform @ (50, 0)))],
        "EPSG:4326",
        "EPSG:32633",
    )[0]
    expected = sorted(p.id for p, g in zip(patch.parcels, wgs84, strict=True) if g.intersects(west))
    assert [p.id for p in source("slovenia", west.wkt)] == expected and 0 < len(expected) < 88
    (out,) = handle_scene(
        clear, PayloadStore(tmp_path / "store"), LczGrid(), source, PixelSetConfig(16)
    )
    batch = out.event
    assert isinstance(batch, pb.ObservationBatch) and batch.parcels.parcels_observed == 86
    assert batch.parcels.season.endswith("-09-01")


def test_loading_into_an_unknown_aoi_or_points_is_refused(engine: Engine) -> None:
    with pytest.raises(ParcelLoadError, match="no AOI named"):
        load_parcels(engine, "nowhere", [])
    save_subscriptions(engine, [make_subscription("pts", "parcels", box(5, 50, 5.1, 50.1).wkt)])
    with pytest.raises(ParcelLoadError, match="not a polygon"):
        load_parcels(engine, "pts", [ParcelRecord("p1", Point(5.05, 50.05))])
