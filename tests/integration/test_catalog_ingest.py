"""The catalog against recorded STAC API responses served over HTTP (the real
pystac-client runs unchanged), the real Kafka and PostGIS: one event per acquisition,
late items, reprocessing, bad items to the DLQ, retries, and a backfill killed and
resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select, text

from revisit_catalog.handler import Subscription
from revisit_catalog.ingest import Ingest
from revisit_catalog.main import CatalogSettings
from revisit_catalog.registry import (
    Cursor,
    load_subscriptions,
    make_subscription,
    save_cursor,
    save_subscriptions,
    subscriptions,
)
from revisit_catalog.sources import HttpPolicy, StacApiSource, StaticSource
from revisit_cli.__main__ import main as cli_main
from revisit_cli.services import pythonpath
from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.db.models import Aoi, SceneProcessing
from revisit_common.events import SCENES_TOPIC, dlq_topic
from revisit_common.runtime import ServiceApp
from tests.conftest import AOI_FILE
from tests.stac_api import StacApiServer

STAC = Path(__file__).parents[1] / "data" / "stac"
WORLD = "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"
FAST = HttpPolicy(requests_per_second=0, retries=3, backoff_s=0.01, timeout_s=10)
EARTH_SEARCH_S2 = "pystac-client__TestCLISearch.test_filter_inprocess__2.json"
EARTH_SEARCH_S1 = "pystac-client__earth-search-v1_sentinel-1-grd_search.json"
PLANETARY_COMPUTER = "pystac-client__TestItemSearch.test_datetime_results__0.json"
PC_SITE2 = "odc-stac__site2-2020_jun_jul-35MNM.geojson"
N0400 = "stactools-sentinel2__S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.json"
EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 1, tzinfo=UTC)


def records(name: str) -> list[dict[str, Any]]:
    data = json.loads((STAC / name).read_text())
    return data["features"] if data.get("type") == "FeatureCollection" else [data]


def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    """Every record of a topic, from the beginning to its end now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    values: list[bytes] = []
    deadline = time.monotonic() + 20
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        assert time.monotonic() < deadline, f"could not read {topic} to its end"
        for batch in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in batch)
    consumer.close()
    return values


def scene_events(stack: StackConfig, aoi: str) -> list[pb.SceneDiscovered]:
    events = []
    for value in topic_values(stack.kafka_bootstrap, SCENES_TOPIC):
        try:
            events.append(pb.SceneDiscovered.FromString(value))
        except DecodeError:  # the bad-input test's undecodable records share the topic
            continue
    return [e for e in events if e.aoi.name == aoi]


def dead_letters(stack: StackConfig, source: str) -> list[pb.DeadLetter]:
    letters = [
        pb.DeadLetter.FromString(v)
        for v in topic_values(stack.kafka_bootstrap, dlq_topic(SCENES_TOPIC))
    ]
    return [d for d in letters if d.source_topic == source]


@pytest.fixture
def app(stack: StackConfig) -> Iterator[ServiceApp]:
    settings = CatalogSettings(
        kafka_bootstrap=stack.kafka_bootstrap, database_url=stack.database_url
    )
    app = ServiceApp("catalog", settings, CollectorRegistry())
    yield app
    app.close()


def subscribe(engine: Engine, name: str, *collections: str) -> Subscription:
    """An AOI over the whole world: a region, or parcels where Sentinel-1 is watched (only
    the S1+S2 crop type reads it)."""
    kind = "parcels" if "sentinel-1-grd" in collections else "region"
    sub = make_subscription(name, kind, WORLD, collections)
    save_subscriptions(engine, [sub])
    return sub


def acquisitions(features: list[dict[str, Any]], collections: tuple[str, ...]) -> set[Any]:
    """Unique acquisitions of the recorded features, counted from the raw JSON: S2 (tile,
    day), S1 (platform, slice start)."""
    found = set()
    for f in features:
        if f.get("collection") in collections:
            props = f["properties"]
            if "start_datetime" in props:
                found.add((props["platform"], props["start_datetime"]))
                continue
            tile = props.get("s2:mgrs_tile") or props["grid:code"].removeprefix("MGRS-")
            found.add((tile, props["datetime"][:10]))
    return found


@pytest.mark.parametrize(
    ("recorded", "collections"),
    [
        (EARTH_SEARCH_S2, ("sentinel-2-l2a", "sentinel-2-c1-l2a")),
        (EARTH_SEARCH_S1, ("sentinel-1-grd", "sentinel-2-l2a")),
        (PLANETARY_COMPUTER, ("sentinel-2-l2a",)),
    ],
    ids=["earth-search-v1-s2", "earth-search-v1-s1", "planetary-computer-s2"],
)
def test_recorded_api_responses_give_one_event_per_acquisition(
    stack: StackConfig, engine: Engine, app: ServiceApp, recorded: str, collections: tuple[str, ...]
) -> None:
    features = records(recorded)
    aoi = f"world-{recorded[:20]}"
    with StacApiServer(features, page_size=4) as api:  # several pages per search
        sub = subscribe(engine, aoi, *collections)
        ingest = Ingest(app, engine, StacApiSource(api.url, "recorded", policy=FAST))
        first = ingest.backfill(sub, EPOCH, LATER, timedelta(days=5000))
        searches = len(api.requests)
        # the same period again, as a poll with a cursor far back: all seen before
        for collection in collections:
            save_cursor(engine, aoi, "recorded", collection, "poll", Cursor(EPOCH))
        again = ingest.poll([sub], timedelta(days=1), timedelta(days=1), until=LATER)
    events = scene_events(stack, aoi)
    unique = acquisitions(features, collections)
    print(
        f"\n{recorded}: {len(features)} features, {first.items} items of {collections} "
        f"in {searches} requests, {len(unique)} unique acquisitions -> {len(events)} events; "
        f"first run {dict(first.outcomes)}, second run {dict(again.outcomes)}"
    )
    assert len(events) == len(unique) > 0
    assert len({e.acquisition_key for e in events}) == len(events)
    assert again.outcomes["published"] == again.outcomes["reprocessed"] == 0
    assert again.outcomes["duplicate"] == first.items  # every item, seen again
    for event in events:
        assert event.bands and all(b.href.endswith((".tif", ".tiff")) for b in event.bands)
        assert event.source == "recorded" and event.collection in collections


def test_n0400_item_event_through_kafka(
    stack: StackConfig, engine: Engine, app: ServiceApp
) -> None:
    (item,) = records(N0400)
    item = dict(item, collection="sentinel-2-l2a")  # stactools wrote it outside a collection
    with StacApiServer([item]) as api:
        sub = subscribe(engine, "arctic", "sentinel-2-l2a")
        Ingest(app, engine, StacApiSource(api.url, "recorded", policy=FAST)).backfill(
            sub, EPOCH, LATER, timedelta(days=5000)
        )
    (event,) = scene_events(stack, "arctic")
    print(f"\n{event.header.scene_id} (baseline {event.processing_baseline}):")
    for band in event.bands:
        where = "/".join(band.href.rsplit("/", 3)[-3:])
        print(f"  {band.band}: .../{where} scale {band.scale} offset {band.offset}")
    by_band = {b.band: b for b in event.bands}
    assert by_band["B04"].offset == pytest.approx(-0.1) and by_band["B04"].scale == 1e-4
    assert by_band["B04"].href.endswith("IMG_DATA/R10m/T33XWJ_20220413T150759_B04_10m.tif")


def test_late_items_reprocessing_and_bad_items(
    stack: StackConfig, engine: Engine, app: ServiceApp
) -> None:
    series = records(PC_SITE2)  # 13 passes over 35MNM, 2020-06-01 .. 2020-07-31
    by_day = {f["properties"]["datetime"][:10]: f for f in series}
    late = [by_day["2020-07-06"]]
    on_time = [f for f in series if f not in late]
    with StacApiServer(on_time) as api:
        sub = subscribe(engine, "lubumbashi", "sentinel-2-l2a")
        source = StacApiSource(api.url, "recorded", policy=FAST)
        ingest = Ingest(app, engine, source)
        save_cursor(engine, "lubumbashi", "recorded", "sentinel-2-l2a", "poll", Cursor(EPOCH))
        first = ingest.poll(
            [sub], timedelta(days=1), timedelta(days=10), until=datetime(2020, 7, 10, tzinfo=UTC)
        )
        # the 2020-07-06 pass is published after the poll that covered its date
        api.add_items(late)
        # a reprocessed version of 2020-07-01, already published, and bad items
        reprocessed = json.loads(json.dumps(by_day["2020-07-01"]))
        reprocessed["id"] += "-N0500"
        reprocessed["properties"].update(
            {"s2:processing_baseline": "05.00", "s2:generation_time": "2024-02-01T00:00:00Z"}
        )
        no_bands = dict(json.loads(json.dumps(series[0])), id="no-bands", assets={})
        bowtie = json.loads(json.dumps(series[1]))
        bowtie["id"] = "bowtie"
        bowtie["geometry"] = {
            "type": "Polygon",
            "coordinates": [[[27, -11], [28, -12], [28, -11], [27, -12], [27, -11]]],
        }
        undated = json.loads(json.dumps(series[2]))
        undated["id"] = "undated"
        undated["properties"].update(
            datetime=None,
            start_datetime="2020-07-20T00:00:00Z",
            end_datetime="2020-07-22T00:00:00Z",
        )
        api.add_items([reprocessed, no_bands, bowtie, undated])
        api.fail_next(2)  # the API stumbles: retried with backoff
        before = len(api.requests)
        second = ingest.poll([sub], timedelta(days=1), timedelta(days=10), until=LATER)
        retried = len(api.requests) - before
    events = scene_events(stack, "lubumbashi")
    print(
        f"\nfirst poll {dict(first.outcomes)}; second poll {dict(second.outcomes)} "
        f"({retried} requests for 1 search page: 2 answered 503)"
    )
    assert first.outcomes["published"] == 7  # 2020-06-01 .. 2020-07-01, and not 07-06
    assert second.outcomes["published"] == 6  # 07-06 (late, in the overlap), 07-11 .. 07-31
    # 07-01, seen again in the 10-day overlap, in its first version; its newer version
    # replaces it
    assert second.outcomes["outdated"] == 1
    assert second.outcomes["reprocessed"] == 1 and second.outcomes["rejected"] == 3
    assert retried >= 3
    assert len(events) == 14 and len({e.acquisition_key for e in events}) == 13
    (redo,) = [e for e in events if e.reprocessed]
    original = next(e for e in events if e.header.scene_id == by_day["2020-07-01"]["id"])
    assert redo.replaces_scene_id == original.header.scene_id
    assert redo.header.acquired_at == original.header.acquired_at
    with engine.connect() as conn:
        superseded = conn.execute(
            text("SELECT superseded_by FROM scene WHERE id = :id"), {"id": original.header.scene_id}
        ).scalar_one()
    assert superseded == redo.header.scene_id
    letters = {d.key.decode(): d.error for d in dead_letters(stack, "recorded")}
    assert "no Sentinel-2 band asset" in letters["no-bands"]
    assert "invalid or empty geometry" in letters["bowtie"]
    assert "no datetime" in letters["undated"]


@pytest.mark.parametrize("step_days", [5000, 45], ids=["one-window", "45-day-windows"])
def test_an_aois_collections_are_published_together_in_acquisition_order(
    stack: StackConfig, engine: Engine, app: ServiceApp, demo_catalog: Path, step_days: int
) -> None:
    """The demo's parcels AOI, watched with Sentinel-2 and Sentinel-1: a backfill (in one
    window, or in several) and then a poll publish their passes interleaved by date, not
    one collection's season after the other's."""
    (parcels,) = [s for s in load_subscriptions(AOI_FILE) if s.aoi.kind == "parcels"]
    name = f"order-{step_days}"
    sub = make_subscription(name, "parcels", parcels.aoi.geometry_wkt, parcels.collections)
    save_subscriptions(engine, [sub])
    ingest = Ingest(app, engine, StaticSource(str(demo_catalog), "demo"))
    first = ingest.backfill(sub, EPOCH, LATER, timedelta(days=step_days))
    for collection in sub.collections:
        save_cursor(engine, name, "demo", collection, "poll", Cursor(EPOCH))
    again = ingest.poll([sub], timedelta(days=1), timedelta(days=1), until=LATER)
    events = scene_events(stack, name)
    sensors = [e.sensor for e in events]
    days = [e.header.acquired_at.ToDatetime() for e in events]
    print(
        f"\nbackfill in {step_days}-day windows: {first.windows} searches, "
        f"{dict(first.outcomes)}; events {sensors[:4]}…; poll {dict(again.outcomes)}"
    )
    assert sorted(sub.collections) == ["sentinel-1-grd", "sentinel-2-l2a"]
    assert sensors.count("sentinel-2") == sensors.count("sentinel-1") == 12
    assert days == sorted(days)  # acquisition order, whatever the collection
    assert sensors[:2] == ["sentinel-2", "sentinel-1"]  # the first month's two passes
    assert again.outcomes["duplicate"] == 24 and again.outcomes["published"] == 0


def test_static_item_collection_unknown_collection_to_dlq(
    stack: StackConfig, engine: Engine, app: ServiceApp
) -> None:
    # A static ItemCollection is not filtered by a server: its L1C items reach the catalog.
    path = STAC / EARTH_SEARCH_S2
    sub = subscribe(engine, "static-es", "sentinel-2-l2a")
    ingest = Ingest(app, engine, StaticSource(str(path), "static-es"))
    found = ingest.backfill(sub, EPOCH, LATER, timedelta(days=5000))
    assert found.outcomes["published"] == 4 and found.outcomes["rejected"] == 3
    # searched again (a poll whose overlap covers them): seen, not dead-lettered again
    save_cursor(engine, "static-es", "static-es", "sentinel-2-l2a", "poll", Cursor(EPOCH))
    again = ingest.poll([sub], timedelta(days=1), timedelta(days=1), until=LATER)
    assert again.outcomes["rejected"] == 3 and again.outcomes["duplicate"] == 4
    letters = dead_letters(stack, "static-es")
    assert len(letters) == 3
    assert all("unknown collection 'sentinel-2-l1c'" in d.error for d in letters)
    assert all(json.loads(d.value)["collection"] == "sentinel-2-l1c" for d in letters)


def published_count(engine: Engine, aoi: str) -> int:
    query = select(func.count()).select_from(SceneProcessing).join(Aoi).where(Aoi.name == aoi)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def searches(api: StacApiServer) -> int:
    return sum(path == "/search" for _, path, _ in api.requests)


def backfill_process(stack: StackConfig, url: str, aoi: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=pythonpath(), REVISIT_CATALOG_REQUESTS_PER_SECOND="0")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "revisit_cli",
            "catalog",
            "backfill",
            f"--aoi={aoi}",
            "--from=2020-06-01",
            "--to=2020-08-01",
            "--step-days=2",
            f"--source={url}",
            f"--database-url={stack.database_url}",
            f"--kafka={stack.kafka_bootstrap}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_backfill_killed_and_restarted_misses_and_repeats_nothing(
    stack: StackConfig, engine: Engine
) -> None:
    series = records(PC_SITE2)
    subscribe(engine, "lubumbashi-backfill", "sentinel-2-l2a")
    with StacApiServer(series) as api:
        api.delay_s = 0.3  # a slow API: the kill lands while a search is in flight
        run = backfill_process(stack, api.url, "lubumbashi-backfill")
        deadline = time.monotonic() + 60
        while published_count(engine, "lubumbashi-backfill") < 5:
            assert run.poll() is None and time.monotonic() < deadline, "backfill did not start"
            time.sleep(0.05)
        searched = searches(api)
        while searches(api) == searched:  # the next search is now in flight
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        before_kill = published_count(engine, "lubumbashi-backfill")
        searches_first = searches(api)
        rerun = backfill_process(stack, api.url, "lubumbashi-backfill")
        output, _ = rerun.communicate(timeout=120)
        searches_second = searches(api) - searches_first
    assert rerun.returncode == 0, output
    events = scene_events(stack, "lubumbashi-backfill")
    keys = [e.acquisition_key for e in events]
    print(
        f"\nkilled after {before_kill} scenes and {searches_first} searches; the restart "
        f"made {searches_second} searches (31 windows in all) and ended with "
        f"{len(events)} events for {len(set(keys))} acquisitions of 13\n{output.strip()[-400:]}"
    )
    assert "resuming the backfill at" in output
    assert searches_first + searches_second <= 31 + 1  # at most the window in flight again
    assert len(set(keys)) == 13  # nothing missing
    assert len(keys) == 13  # nothing repeated


def test_aoi_add_and_list(
    stack: StackConfig, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # central Ouagadougou, a box in longitude/latitude
    ouaga = tmp_path / "ouagadougou.geojson"
    ring = [[-1.56, 12.33], [-1.48, 12.33], [-1.48, 12.40], [-1.56, 12.40], [-1.56, 12.33]]
    ouaga.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    db = f"--database-url={stack.database_url}"
    add = ["aoi", "add", "ouagadougou", str(ouaga), "--kind=city", db]
    assert (
        cli_main(
            [
                *add,
                "--collections=sentinel-2-l2a,sentinel-2-c1-l2a",
                "--max-cloud=60",
                "--season=10-01:03-31",
            ]
        )
        == 0
    )
    assert cli_main(["aoi", "list", db]) == 0
    listed = capsys.readouterr().out
    assert "ouagadougou" in listed and "10-01:03-31" in listed and "60 %" in listed
    assert "sentinel-2-l2a, sentinel-2-c1-l2a" in listed and "1 AOI(s)" in listed
    (sub,) = subscriptions(engine, ["ouagadougou"])
    assert sub.collections == ("sentinel-2-l2a", "sentinel-2-c1-l2a")
    assert sub.max_cloud_cover == 60 and sub.season == ("10-01", "03-31")
    assert sub.geometry.area == pytest.approx(0.08 * 0.07)
    # mistakes are refused with the reason, and change nothing
    assert cli_main([*add, "--collections=sentinel-2-l1c"]) == 2
    assert "unknown collections ['sentinel-2-l1c']" in capsys.readouterr().out
    # radar for a city: no indicator would read it (its passes would never complete)
    assert cli_main([*add, "--collections=sentinel-2-l2a,sentinel-1-grd"]) == 2
    assert "no indicator of a city AOI reads Sentinel-1" in capsys.readouterr().out
    assert cli_main([*add, "--kind=parcels", "--collections=sentinel-1-grd"]) == 2
    assert "needs Sentinel-2 passes (the S1+S2 crop type too)" in capsys.readouterr().out
    assert cli_main([*add, "--max-cloud=120"]) == 2
    assert cli_main([*add, "--season=13-01:02-01"]) == 2
    utm = tmp_path / "utm.geojson"
    utm.write_text(json.dumps({"type": "Point", "coordinates": [660000, 1366000]}))
    assert cli_main(["aoi", "add", "utm", str(utm), "--kind=city", db]) == 2
    assert "not longitude/latitude" in capsys.readouterr().out
    assert subscriptions(engine, ["ouagadougou"]) == [sub]
    # one stored before the check (or by hand) is watched without what it cannot use
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE aoi SET collections = :c WHERE name = 'ouagadougou'"),
            {"c": ["sentinel-2-l2a", "sentinel-1-grd"]},
        )
    (kept,) = subscriptions(engine, ["ouagadougou"])
    assert kept.collections == ("sentinel-2-l2a",) and list(kept.aoi.sensors) == ["sentinel-2"]
