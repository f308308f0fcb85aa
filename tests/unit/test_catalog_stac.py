"""Mapping of real provider STAC records into scene events, and discovery (dedupe,
reprocessing, filters, bad items) as a plain function."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pystac
import pytest
import shapely
import shapely.geometry

from revisit_catalog.handler import Published, Subscription, discover
from revisit_catalog.registry import SubscriptionError, make_subscription
from revisit_catalog.stac import S2_BANDS, map_item, scene_event, version_of
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import SCL_BAND, indicators_of, partition_key

STAC = Path(__file__).parents[1] / "data" / "stac"
AOI = pb.Aoi(name="any", kind="city", geometry_wkt="POINT (0 0)")
WORLD = "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"
NOW = datetime(2026, 11, 21, tzinfo=UTC)
N0400 = "stactools-sentinel2__S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.json"
EARTH_SEARCH_S2 = "pystac-client__TestCLISearch.test_filter_inprocess__2.json"
EARTH_SEARCH_S1 = "pystac-client__earth-search-v1_sentinel-1-grd_search.json"
PLANETARY_COMPUTER = "pystac-client__TestItemSearch.test_datetime_results__0.json"
PC_SITE1 = "odc-stac__site1-20200606-tall-strip-africa.geojson"
PC_SITE2 = "odc-stac__site2-2020_jun_jul-35MNM.geojson"


def records(name: str) -> list[dict[str, Any]]:
    data = json.loads((STAC / name).read_text())
    return data["features"] if data.get("type") == "FeatureCollection" else [data]


def items(name: str) -> list[pystac.Item]:
    return [pystac.Item.from_dict(f) for f in records(name)]


def bands(event: pb.SceneDiscovered) -> dict[str, pb.BandAsset]:
    return {b.band: b for b in event.bands}


def everywhere(*collections: str, **options: Any) -> Subscription:
    aoi = pb.Aoi(name="world", kind="region", geometry_wkt=WORLD)
    return Subscription(aoi, collections, **options)


def nothing_published(keys: set[str]) -> dict[tuple[str, str], Published]:
    return {}


def test_n0400_item_carries_the_boa_offset_the_finest_cogs_and_angles() -> None:
    (item,) = items(N0400)
    event = scene_event(item, AOI, NOW)
    by_band = bands(event)
    assert event.tile_id == "33XWJ" and event.processing_baseline == "04.00"
    assert set(by_band) == S2_BANDS | {SCL_BAND}  # twelve bands and the SCL, once each
    reflectance = [b for name, b in by_band.items() if name != SCL_BAND]
    assert all(
        b.scale == pytest.approx(1e-4) and b.offset == pytest.approx(-0.1) for b in reflectance
    )
    assert by_band[SCL_BAND].scale == 1.0 and by_band[SCL_BAND].offset == 0.0
    assert by_band["B02"].href.endswith("R10m/T33XWJ_20220413T150759_B02_10m.tif")
    assert by_band["B8A"].href.endswith("R20m/T33XWJ_20220413T150759_B8A_20m.tif")
    assert all(b.has_nodata and b.nodata == 0 for b in by_band.values())
    assert event.acquisition_key == "S2B:33XWJ:20220413T150759"
    assert event.view.sun_zenith == pytest.approx(90 - 13.471380977263905)
    assert event.view.view_zenith == pytest.approx(11.684073123086723)
    assert event.relative_orbit == 25 and event.orbit_state == "ascending"
    assert event.cloud_cover == pytest.approx(98.944211)


def test_earth_search_v1_l2a_offset_follows_boa_offset_applied() -> None:
    found = items(EARTH_SEARCH_S2)
    l2a = [i for i in found if i.collection_id == "sentinel-2-l2a"]
    c1 = [i for i in found if i.collection_id == "sentinel-2-c1-l2a"]
    assert len(l2a) == 4 and len(c1) == 3
    for item in l2a:  # the pixels are already shifted: raster:bands' −0.1 must not apply
        assert item.properties["earthsearch:boa_offset_applied"] is True
        event = map_item(item, NOW).event
        assert all(b.href.endswith(".tif") for b in event.bands)  # never the JP2 copies
        assert bands(event)["B04"].offset == 0.0 and bands(event)["B04"].scale == 1e-4
    for item in c1:  # Collection 1 keeps ESA's encoding: the offset applies
        assert bands(map_item(item, NOW).event)["B04"].offset == pytest.approx(-0.1)


def test_planetary_computer_items_map_with_angles_and_no_offset_before_n0400() -> None:
    events = [map_item(i, NOW).event for i in items(PLANETARY_COMPUTER)]
    assert len(events) == 33
    assert all(e.processing_baseline == "02.12" and e.tile_id in e.header.scene_id for e in events)
    assert all(b.offset == 0.0 for e in events for b in e.bands)
    assert all(e.relative_orbit == 116 and e.orbit_state == "descending" for e in events)
    first = events[0]
    assert first.view.sun_zenith == pytest.approx(81.3310068623942)
    assert bands(first)["B04"].href.startswith("https://sentinel2l2a01.blob.core.windows.net/")
    assert first.item_href.startswith("https://planetarycomputer.microsoft.com/api/stac/v1/")


def test_safe_item_with_jpeg2000_only_maps_to_its_finest_jp2() -> None:
    # ESA's own SAFE layout (and the Copernicus Data Space) has no COG: JP2 it is.
    (item,) = items(
        "stactools-sentinel2__esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.json"
    )
    by_band = bands(map_item(item, NOW).event)
    assert set(by_band) == S2_BANDS | {SCL_BAND}
    assert by_band["B04"].href.endswith("IMG_DATA/R10m/T22HBD_20210122T133229_B04_10m.jp2")
    assert by_band["B05"].href.endswith("IMG_DATA/R20m/T22HBD_20210122T133229_B05_20m.jp2")
    assert by_band["B04"].offset == 0.0  # baseline 02.14


def test_earth_search_v0_item_baseline_from_its_product_id() -> None:
    (item,) = items("odc-stac__S2A_28QCH_20200714_0_L2A.json")
    event = map_item(item, NOW).event
    assert event.processing_baseline == "02.14" and event.tile_id == "28QCH"
    assert event.acquisition_key == "S2A:28QCH:20200714T115221"


def test_sentinel1_grd_maps_polarisations_orbit_and_slice_key() -> None:
    s1 = [i for i in items(EARTH_SEARCH_S1) if i.collection_id == "sentinel-1-grd"]
    events = [map_item(i, NOW).event for i in s1]
    assert len(events) == 3
    for event in events:
        assert event.sensor == "sentinel-1" and event.polarizations == ["HH"]
        # GRD digital numbers are not σ⁰: preprocessing must know (it refuses them)
        assert {b.quantity for b in event.bands} == {"amplitude_dn"}
        assert [b.band for b in event.bands] == ["HH"]
        assert event.bands[0].href.endswith("measurement/iw-hh.tiff")
        assert event.relative_orbit == 56 and event.orbit_state == "ascending"
        assert event.tile_id == "S1-R056-ASC"
    assert sorted(e.acquisition_key for e in events) == [
        "S1A:IW:20250731T135608",
        "S1A:IW:20250731T135637",
        "S1A:IW:20250731T135702",
    ]


def test_an_s1_asset_says_its_encoding_and_a_composite_has_no_orbit() -> None:
    """The demo's WorldCereal radar composites: σ⁰ as dB in uint16, several orbits."""
    grd = next(i for i in items(EARTH_SEARCH_S1) if i.collection_id == "sentinel-1-grd")
    composite = grd.clone()
    composite.properties.pop("sat:relative_orbit", None)
    composite.properties.pop("sat:orbit_state", None)
    for asset in composite.assets.values():
        asset.extra_fields["revisit:quantity"] = "db_uint16"
    event = map_item(composite, NOW).event
    assert {b.quantity for b in event.bands} == {"db_uint16"}
    assert event.tile_id == "S1-ANY-ORBIT"
    # the same scene for a parcels AOI is keyed by the AOI, for a region by its "tile"
    parcels = pb.Aoi(name="fields", kind="parcels")
    assert partition_key(parcels, event.tile_id) == b"aoi:fields"
    assert partition_key(pb.Aoi(name="r", kind="region"), event.tile_id) == b"S1-ANY-ORBIT"
    assert indicators_of(parcels, event.sensor) == ("crop_type_s1s2",)
    # a Sentinel-2 pass revises the S1+S2 crop type where the AOI is watched with both
    assert indicators_of(parcels, "sentinel-2") == ("crop_type", "parcel_biophysics")
    both = make_subscription(
        "fields", "parcels", "POINT (0 0)", ("sentinel-2-l2a", "sentinel-1-grd")
    ).aoi
    assert list(both.sensors) == ["sentinel-2", "sentinel-1"]
    assert indicators_of(both, "sentinel-2") == (
        "crop_type",
        "parcel_biophysics",
        "crop_type_s1s2",
    )
    assert indicators_of(both, event.sensor) == ("crop_type_s1s2",)
    # radar nobody reads (a city's passes would never complete), or radar alone: refused
    for kind, collections, why in (
        ("city", ("sentinel-2-l2a", "sentinel-1-rtc"), "no indicator of a city AOI reads"),
        ("region", ("sentinel-1-grd", "sentinel-2-l2a"), "no indicator of a region AOI reads"),
        ("parcels", ("sentinel-1-grd",), "needs Sentinel-2 passes"),
    ):
        with pytest.raises(SubscriptionError, match=why):
            make_subscription("fields", kind, "POINT (0 0)", collections)
    for asset in composite.assets.values():
        asset.extra_fields["revisit:quantity"] = "decibels"
    with pytest.raises(PoisonError, match="revisit:quantity 'decibels'"):
        map_item(composite, NOW)


def test_bad_items_are_poison_with_the_reason() -> None:
    (item,) = items(N0400)
    bare = item.clone()
    bare.assets = {}
    with pytest.raises(PoisonError, match="no Sentinel-2 band asset"):
        map_item(bare, NOW)
    undated = item.clone()
    undated.datetime = None
    with pytest.raises(PoisonError, match="no datetime"):
        map_item(undated, NOW)
    bowtie = item.clone()
    bowtie.geometry = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(PoisonError, match="invalid or empty geometry"):
        map_item(bowtie, NOW)
    l1c = next(i for i in items(EARTH_SEARCH_S2) if i.collection_id == "sentinel-2-l1c")
    with pytest.raises(PoisonError, match="unknown collection 'sentinel-2-l1c'"):
        map_item(l1c, NOW)


def test_earth_search_response_one_event_per_acquisition_and_rejects_l1c() -> None:
    # The recorded response mixes sentinel-2-l2a, sentinel-2-c1-l2a (the same ESA
    # products, 05.11, again) and sentinel-2-l1c.
    found = discover(
        items(EARTH_SEARCH_S2),
        [everywhere("sentinel-2-l2a", "sentinel-2-c1-l2a")],
        nothing_published,
        NOW,
    )
    assert len(found.scenes) == 4
    assert sorted(s.tile_id for s in found.scenes) == ["24MUA", "24MVV", "24MWV", "24MXV"]
    assert found.outcomes == {"published": 4, "duplicate": 3, "rejected": 3}
    assert {i.collection_id for i, _ in found.rejected} == {"sentinel-2-l1c"}


def test_an_item_whose_scene_event_is_over_the_size_limit_is_rejected() -> None:
    (item,) = items(N0400)
    (scene,) = discover([item], [everywhere("sentinel-2-l2a")], nothing_published, NOW).scenes
    dense = item.clone()
    dense.id = "dense-footprint"
    footprint = shapely.segmentize(shapely.geometry.shape(item.geometry), 1e-4)
    dense.geometry = shapely.geometry.mapping(footprint)
    limit = scene.ByteSize() + 1000
    found = discover([dense], [everywhere("sentinel-2-l2a")], nothing_published, NOW, "", limit)
    assert found.scenes == [] and found.outcomes == {"rejected": 1}
    ((rejected, error),) = found.rejected
    assert rejected is dense
    assert f"over the {limit}-byte event limit: its footprint has " in str(error)
    kept = discover([item], [everywhere("sentinel-2-l2a")], nothing_published, NOW, "", limit)
    assert len(kept.scenes) == 1


def test_planetary_computer_series_overlapping_responses_dedupe() -> None:
    # Site 1 (one date, 9 tiles) and site 2 (one tile, 13 dates) share one item.
    both = items(PC_SITE1) + items(PC_SITE2)
    found = discover(both, [everywhere("sentinel-2-l2a")], nothing_published, NOW)
    unique = {(i.properties["s2:mgrs_tile"], i.datetime) for i in both}
    assert len(both) == 22 and len(unique) == 21
    assert len(found.scenes) == 21 and found.outcomes == {"published": 21, "duplicate": 1}


def reprocessed_copy(item: pystac.Item, baseline: str, generated: str) -> pystac.Item:
    """The same acquisition as another provider publishes it after reprocessing."""
    copy = item.clone()
    copy.id = f"{item.id}-{baseline}"
    copy.properties["s2:processing_baseline"] = baseline
    copy.properties["s2:generation_time"] = generated
    copy.datetime = (item.datetime or NOW) + timedelta(seconds=36)  # provider's own time
    return copy


def test_newer_baseline_replaces_the_published_version_under_its_acquisition_time() -> None:
    original = items(PC_SITE2)[0]
    sub = everywhere("sentinel-2-l2a")
    (first,) = discover([original], [sub], nothing_published, NOW).scenes
    before = {
        (first.acquisition_key, "world"): Published(
            first.header.scene_id, version_of(first), first.header.acquired_at.ToDatetime(UTC)
        )
    }
    newer = reprocessed_copy(original, "05.00", "2024-03-01T00:00:00Z")
    older = reprocessed_copy(original, "02.11", "2020-08-01T00:00:00Z")
    found = discover([original, older, newer], [sub], lambda keys: before, NOW)
    (scene,) = found.scenes
    assert scene.reprocessed and scene.header.scene_id == newer.id
    assert scene.replaces_scene_id == original.id
    assert scene.acquisition_key == first.acquisition_key
    # downstream rows are keyed by acquisition time: the replacement keeps the original's
    assert scene.header.acquired_at == first.header.acquired_at
    assert found.outcomes == {"reprocessed": 1, "outdated": 2}
    again = discover([original], [sub], lambda keys: before, NOW)
    assert again.scenes == [] and again.outcomes == {"duplicate": 1}


def test_cloud_and_season_filters() -> None:
    series = items(PC_SITE2)  # 2020-06-01 .. 2020-07-31
    clouds = sorted(float(i.properties["eo:cloud_cover"]) for i in series)
    limit = clouds[len(clouds) // 2]
    cloudy = discover(
        series, [everywhere("sentinel-2-l2a", max_cloud_cover=limit)], nothing_published, NOW
    )
    assert len(cloudy.scenes) == sum(c <= limit for c in clouds)
    assert all(s.cloud_cover <= limit for s in cloudy.scenes)
    july = discover(
        series, [everywhere("sentinel-2-l2a", season=("07-01", "07-31"))], nothing_published, NOW
    )
    assert {s.header.acquired_at.ToDatetime().month for s in july.scenes} == {7}
    assert july.outcomes["out_of_season"] == sum(
        i.datetime.month == 6 for i in series if i.datetime
    )
    winter = everywhere("sentinel-2-l2a", season=("11-01", "02-28"))  # across the new year
    assert winter.in_season(datetime(2021, 1, 15)) and not winter.in_season(datetime(2021, 6, 1))
    with pytest.raises(ValueError, match="not MM-DD"):
        everywhere("sentinel-2-l2a", season=("13-01", "02-30"))
