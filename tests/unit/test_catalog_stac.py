"""Mapping of real provider STAC records into scene events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest

from revisit_catalog.stac import S2_BANDS, scene_event
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError

STAC = Path(__file__).parents[1] / "data" / "stac"
AOI = pb.Aoi(name="any", kind="city", geometry_wkt="POINT (0 0)")
NOW = datetime(2026, 11, 21, tzinfo=UTC)


def items(name: str) -> list[pystac.Item]:
    data = json.loads((STAC / name).read_text())
    if data.get("type") == "FeatureCollection":
        return [pystac.Item.from_dict(f) for f in data["features"]]
    return [pystac.Item.from_dict(data)]


def bands(event: pb.SceneDiscovered) -> dict[str, pb.BandAsset]:
    return {b.band: b for b in event.bands}


def test_n0400_item_carries_the_boa_offset_and_the_finest_cogs() -> None:
    (item,) = items(
        "stactools-sentinel2__S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.json"
    )
    event = scene_event(item, AOI, NOW)
    by_band = bands(event)
    assert event.tile_id == "33XWJ" and event.processing_baseline == "04.00"
    assert set(by_band) == S2_BANDS  # all twelve, once each
    assert all(
        b.scale == pytest.approx(1e-4) and b.offset == pytest.approx(-0.1) for b in by_band.values()
    )
    assert by_band["B02"].href.endswith("R10m/T33XWJ_20220413T150759_B02_10m.tif")
    assert by_band["B8A"].href.endswith("R20m/T33XWJ_20220413T150759_B8A_20m.tif")
    assert all(b.has_nodata and b.nodata == 0 for b in by_band.values())


def test_earth_search_v1_response_one_event_per_l2a_item_with_cog_hrefs() -> None:
    # The recorded response mixes sentinel-2-l2a, sentinel-2-c1-l2a and sentinel-2-l1c.
    found = list(items("earth-search-v1__sentinel-2-l2a_search.json"))
    l2a = [i for i in found if i.collection_id == "sentinel-2-l2a"]
    events = [scene_event(item, AOI, NOW) for item in l2a]
    assert len(events) == len({i.id for i in l2a}) == 4
    assert [e.tile_id for e in events] == ["24MVV", "24MWV", "24MXV", "24MUA"]
    for event in events:
        by_band = bands(event)
        assert all(b.href.endswith(".tif") for b in by_band.values())  # never the JP2 copies
        assert by_band["B04"].offset == pytest.approx(-0.1)  # baseline 05.11
    l1c = next(i for i in found if i.collection_id == "sentinel-2-l1c")
    with pytest.raises(PoisonError, match="no Sentinel-2 band asset"):  # JPEG 2000 only
        scene_event(l1c, AOI, NOW)


def test_earth_search_v0_items_map_without_offset() -> None:
    events = [
        scene_event(i, AOI, NOW) for i in items("earth-search-v0__sentinel-s2-l2a-cogs_search.json")
    ]
    assert len(events) == 33
    assert all(e.processing_baseline == "02.12" and e.tile_id in e.header.scene_id for e in events)
    assert all(b.offset == 0.0 and b.scale == pytest.approx(1e-4) for e in events for b in e.bands)


def test_item_without_band_assets_or_datetime_is_poison() -> None:
    (item,) = items(
        "stactools-sentinel2__S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.json"
    )
    bare = item.clone()
    bare.assets = {}
    with pytest.raises(PoisonError, match="no Sentinel-2 band asset"):
        scene_event(bare, AOI, NOW)
    undated = item.clone()
    undated.datetime = None
    with pytest.raises(PoisonError, match="no datetime"):
        scene_event(undated, AOI, NOW)
