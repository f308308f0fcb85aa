"""Bad input (issue 9), through the four services on the real Kafka, PostGIS and Triton:
every kind of bad input the chain can be fed, next to real good passes. Each gets its
documented outcome (a dead letter with its reason at the stage that finds it, or a pass
recorded as ``no_valid_observation`` and counted in ``revisit_preprocess_scenes_total``),
and no consumer stalls: the good passes before and after are stored, and every consumer
group reaches the end of its topic.

Phase 1: a static catalog of the first real monthly pass (November 2020) plus eight
broken versions of it (one kind each, dated a day apart). Phase 2, once that is done:
records written straight to the stage topics (undecodable bytes, a newer schema
revision, a scene for an AOI the rasters do not reach, a record over the broker's size
limit), then three more real passes appear in the catalog (each poll searches ten years
again, so the rejected items are searched again too). Bad parcel geometries are not a
stage's input but the parcel loader's: the seeded GeoPackage of the loader's tests is
read and its report checked here, so that the table covers every kind.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
import shapely.geometry
from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from sqlalchemy import Engine, create_engine, text

from revisit_cli.dlq import Letter, configured_dlq_topics, open_consumer, read_letters
from revisit_cli.parcels import read_parcel_file
from revisit_cli.services import SERVICES, ServicesConfig
from revisit_cli.stack import REPO_ROOT, StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.events import OBSERVATIONS_TOPIC, PREDICTIONS_TOPIC, SCENES_TOPIC
from tests.conftest import consecutive_free_ports
from tests.e2e.scrape import counter
from tests.e2e.test_chain import fresh_run, grow_catalog, stop_services, wait_until
from tests.faults.test_faults import lag
from tests.integration.test_dlq_cli import records
from tests.rasters import reproject_cog, rewrite_cog, truncate_file, write_cog
from tests.unit.test_parcels_file import write_seeded

pytestmark = pytest.mark.e2e

#: Records per Sentinel-2 pass: lcz (city), crop_type + parcel_biophysics (parcels),
#: land_cover + biophysics (region), and crop_type_s1s2 (the parcels AOI is watched with
#: Sentinel-1 as well)
INDICATORS = 6
#: Of them, those a valid pass stores: this catalog has no Sentinel-1 pass, so the S1+S2
#: crop type of an optical pass ends as no_valid_observation
STORED = INDICATORS - 1
DEMO_AOIS = ("hesbaye-demo", "hesbaye-parcels", "hesbaye-region")  # one scene event each
AOIS = len(DEMO_AOIS)
#: An AOI in Ouagadougou: no raster of the Hesbaye catalog reaches it.
NOWHERE = "ouagadougou-nowhere"
NOWHERE_WKT = "POLYGON ((-1.54 12.36, -1.52 12.36, -1.52 12.38, -1.54 12.38, -1.54 12.36))"


@dataclass(frozen=True)
class Expected:
    """One kind of bad input: where it goes in, and what must become of it."""

    kind: str
    into: str  # the catalog, or a topic
    count: int  # inputs of this kind (scene events: one per AOI)
    outcome: str  # "DLQ <stage>", "skipped (no_valid_observation)", ...
    reason: str  # a substring of each letter's error, or of the note


def catalog_with_bad_items(served: Path) -> dict[str, str]:
    """Broken copies of the served catalog's one real item added to it; item id -> kind."""
    catalog = pystac.Catalog.from_file(str(served / "catalog" / "catalog.json"))
    (good,) = list(catalog.get_items(recursive=True))
    for asset in good.assets.values():
        asset.href = asset.get_absolute_href() or asset.href
    bands = {k: Path(a.href) for k, a in good.assets.items()}
    kinds: dict[str, str] = {}

    def variant(kind: str, day: int) -> tuple[pystac.Item, Path]:
        item = good.clone()
        item.id = f"BAD_{kind.upper().replace(' ', '_').replace('-', '_')}_{good.id}"
        assert good.datetime is not None
        item.datetime = good.datetime + timedelta(days=day)
        kinds[item.id] = kind
        cogs = served / "cogs" / item.id
        cogs.mkdir(parents=True)
        catalog.add_item(item)
        return item, cogs

    def each_band(item: pystac.Item, cogs: Path, change) -> None:  # type: ignore[no-untyped-def]
        for key, source in bands.items():
            item.assets[key].href = change(source, cogs / source.name)

    item, _ = variant("no band assets", 1)
    item.assets = {}
    item, _ = variant("invalid geometry", 2)
    x0, y0, x1, y1 = item.bbox or []
    item.geometry = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0], [x0, y1]]]}
    item, _ = variant("oversized scene event", 3)
    dense = shapely.segmentize(shapely.geometry.shape(good.geometry), 7e-7)
    item.geometry = shapely.geometry.mapping(dense)
    item, cogs = variant("truncated COG", 4)
    item.assets["B04"].href = truncate_file(bands["B04"], cogs / "B04.tif", 0.5)
    item, cogs = variant("raster in another CRS", 5)
    each_band(item, cogs, lambda src, dst: reproject_cog(src, dst, 3857))
    item, cogs = variant("all-cloud scene", 6)
    with rasterio.open(bands["B02"]) as ref:
        cloud = np.full((ref.height, ref.width), 9, np.uint8)  # SCL 9: cloud, high probability
        scl = write_cog(cogs / "SCL.tif", cloud, ref.transform, 32631, 0)
    item.add_asset(
        "SCL",
        pystac.Asset(scl, media_type=good.assets["B02"].media_type, roles=["data"]),
    )
    item, cogs = variant("NaN reflectances", 7)
    each_band(
        item,
        cogs,
        lambda src, dst: rewrite_cog(src, dst, lambda dn: np.full(dn.shape, np.nan, "f4")),
    )
    item, cogs = variant("out-of-range reflectances", 8)
    each_band(item, cogs, lambda src, dst: rewrite_cog(src, dst, lambda dn: dn * 0 + 30_000))
    catalog.normalize_hrefs(str(served / "catalog"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return kinds


def aoi_file(path: Path) -> Path:
    """The demo's AOIs plus one the demo rasters do not reach."""
    aois = json.loads((REPO_ROOT / "infra" / "demo" / "aoi.geojson").read_text())
    aois["features"].append(
        {
            "type": "Feature",
            "properties": {"name": NOWHERE, "kind": "city", "collections": ["sentinel-2-l2a"]},
            "geometry": shapely.geometry.mapping(shapely.from_wkt(NOWHERE_WKT)),
        }
    )
    path.write_text(json.dumps(aois))
    return path


def dlq_ends(bootstrap: str) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in configured_dlq_topics()
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        return {(tp.topic, tp.partition): n for tp, n in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def new_letters(bootstrap: str, before: dict[tuple[str, int], int]) -> list[Letter]:
    consumer = open_consumer(bootstrap)
    try:
        found = read_letters(consumer, configured_dlq_topics(), bootstrap)
    finally:
        consumer.close()
    return [x for x in found if x.offset >= before.get((x.topic, x.partition), 0)]


def last_records(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of `topic` now, oldest first (in each partition)."""
    return [value for _, value, _ in records(bootstrap, topic)]


def newer_revision(event_type: type, values: list[bytes]) -> bytes:  # type: ignore[type-arg]
    """The last good event of a topic, as a producer of schema revision 2 would write it."""
    for value in reversed(values):
        try:
            event = event_type.FromString(value)
        except DecodeError:  # another test's garbage
            continue
        if event.header.event_id:
            event.header.event_id = str(uuid.uuid4())
            event.header.schema_revision = 2
            return bytes(event.SerializeToString())
    raise AssertionError(f"no {event_type.__name__} to copy")


def scene_of(letter: Letter) -> str | None:
    """The scene id of a letter's scene event (None: not a scene event)."""
    try:
        return str(pb.SceneDiscovered.FromString(letter.letter.value).header.scene_id)
    except DecodeError:
        return None


def skip_notes(bootstrap: str) -> dict[tuple[str, str], str]:
    """(scene id, AOI) -> why preprocess found no valid observation (its last note)."""
    found = {}
    for value in last_records(bootstrap, OBSERVATIONS_TOPIC):
        try:
            batch = pb.ObservationBatch.FromString(value)
        except DecodeError:
            continue
        if batch.no_valid_observation and batch.notes:
            found[(batch.header.scene_id, batch.aoi.name)] = batch.notes[-1]
    return found


def statuses(engine: Engine) -> dict[tuple[str, str], int]:
    """(scene id, status) -> scene x indicator records, of complete records."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT scene_id, status, count(*) FROM scene_processing "
                "WHERE status <> 'discovered' GROUP BY 1, 2"
            )
        )
        return {(scene, status): int(n) for scene, status, n in rows}


def test_every_kind_of_bad_input_gets_its_outcome_and_no_consumer_stalls(
    stack: StackConfig, shared_tmp: Path, tmp_path: Path
) -> None:
    bootstrap = stack.kafka_bootstrap
    catalog_dir = shared_tmp / "bad-input-catalog"
    shutil.rmtree(catalog_dir, ignore_errors=True)
    # November 2020, the first real Sentinel-2 pass (the bad inputs are copies of it)
    grow_catalog(catalog_dir, 1, sentinel1=False)
    kinds = catalog_with_bad_items(catalog_dir / "served")
    good_nov = next(
        p.name for p in (catalog_dir / "served" / "catalog").iterdir() if p.name.startswith("WORLD")
    )
    services = ServicesConfig(
        metrics_base_port=consecutive_free_ports(len(SERVICES)),
        catalog_source=str(catalog_dir / "served" / "catalog" / "catalog.json"),
        catalog_aoi_file=aoi_file(tmp_path / "aoi.geojson"),
        catalog_poll_interval_s=1,
        catalog_overlap="P3650D",  # each poll searches the last ten years again
    )
    engine = create_engine(stack.database_url)
    before = dlq_ends(bootstrap)
    skipped_kinds = ("all-cloud scene", "NaN reflectances", "out-of-range reflectances")
    fresh_run(stack, engine, services)
    t0 = time.monotonic()
    try:
        # -- phase 1: the catalog with the good pass and the broken ones ------------------
        phase1 = (1 + len(skipped_kinds)) * INDICATORS
        wait_until(lambda: sum(statuses(engine).values()) == phase1, 300, "phase 1 complete")
        wait_until(lambda: len(new_letters(bootstrap, before)) >= 11, 120, "phase 1 letters")

        # -- phase 2: bad records straight into the stage topics, then good passes --------
        scenes = last_records(bootstrap, SCENES_TOPIC)
        city = next(
            e
            for e in map(pb.SceneDiscovered.FromString, reversed(scenes))
            if e.header.scene_id == good_nov and e.aoi.name == "hesbaye-demo"
        )
        nowhere = pb.SceneDiscovered()
        nowhere.CopyFrom(city)
        nowhere.header.event_id = str(uuid.uuid4())
        nowhere.aoi.name, nowhere.aoi.geometry_wkt = NOWHERE, NOWHERE_WKT
        producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20)
        for topic, event_type in (
            (SCENES_TOPIC, pb.SceneDiscovered),
            (OBSERVATIONS_TOPIC, pb.ObservationBatch),
            (PREDICTIONS_TOPIC, pb.PredictionBatch),
        ):
            producer.send(topic, key=b"bad", value=b"\x0a\xff\xff garbage, not protobuf")
            values = scenes if topic == SCENES_TOPIC else last_records(bootstrap, topic)
            producer.send(topic, key=b"bad", value=newer_revision(event_type, values))
        producer.send(SCENES_TOPIC, key=city.tile_id.encode(), value=nowhere.SerializeToString())
        producer.flush()
        with pytest.raises(KafkaError) as refused:
            producer.send(OBSERVATIONS_TOPIC, key=b"bad", value=b"\x00" * (2 << 20)).get(30)
        producer.close()
        # December, January (no data) and February appear
        grow_catalog(catalog_dir, 4, sentinel1=False)
        total = phase1 + 3 * INDICATORS + 1  # + the scene for the AOI the rasters miss
        wait_until(lambda: sum(statuses(engine).values()) == total, 300, "phase 2 complete")
        stored_at = time.monotonic()
        wait_until(lambda: len(new_letters(bootstrap, before)) >= 17, 120, "phase 2 letters")
        drained = wait_until(lambda: lag(bootstrap) == 0, 120, "every group at its topic's end")
        time.sleep(3)  # letters that would come late, or again
        letters = new_letters(bootstrap, before)
        notes = skip_notes(bootstrap)
        outcomes = counter(services, "preprocess", "revisit_preprocess_scenes", "outcome")
        elapsed = time.monotonic() - t0
    finally:
        stop_services(stack)
    done = statuses(engine)
    engine.dispose()

    # -- what became of each kind ----------------------------------------------------------
    expected = [
        Expected("no band assets", "catalog", 1, "DLQ catalog", "no Sentinel-2 band asset"),
        Expected("invalid geometry", "catalog", 1, "DLQ catalog", "invalid or empty geometry"),
        Expected("oversized scene event", "catalog", AOIS, "DLQ catalog", "-byte event limit"),
        Expected("truncated COG", "catalog", AOIS, "DLQ preprocess", "unreadable raster"),
        Expected(
            "raster in another CRS", "catalog", AOIS, "DLQ preprocess", "is in EPSG:3857, not in"
        ),
        *(Expected(k, "catalog", AOIS, "skipped: no_valid_observation", "") for k in skipped_kinds),
    ]
    rows: list[tuple[str, str, int, str, str]] = []
    ids = {kind: item for item, kind in kinds.items()}
    for e in expected:
        item = ids[e.kind]
        if e.outcome.startswith("DLQ"):
            stage = e.outcome.split()[1]
            if stage == "catalog":
                mine = [
                    x
                    for x in letters
                    if x.letter.stage == "catalog" and x.letter.key == item.encode()
                ]
            else:
                mine = [x for x in letters if x.letter.stage == stage and scene_of(x) == item]
            assert len(mine) == e.count, (e.kind, [x.line() for x in letters])
            assert all(e.reason in x.letter.error for x in mine), (e.kind, mine[0].letter.error)
            assert not any((item, s) in done for s in ("stored", "no_valid_observation"))
            reason = mine[0].letter.error.splitlines()[0].removeprefix(f"item {item}: ")
            rows.append((e.kind, e.into, e.count, f"{e.outcome} ({len(mine)})", reason))
        else:
            assert done.get((item, "no_valid_observation")) == INDICATORS, (e.kind, done)
            assert not [x for x in letters if x.letter.key == item.encode()]
            why = {notes[(item, aoi)] for aoi in DEMO_AOIS}
            assert all(n.endswith("(cloud, no data or reflectance out of range)") for n in why)
            rows.append((e.kind, e.into, e.count, e.outcome, notes[(item, "hesbaye-region")]))

    def topic_letters(stage: str, reason: str) -> list[Letter]:
        return [x for x in letters if x.letter.stage == stage and reason in x.letter.error]

    for stage, topic in (
        ("preprocess", SCENES_TOPIC),
        ("inference", OBSERVATIONS_TOPIC),
        ("store", PREDICTIONS_TOPIC),
    ):
        garbage = topic_letters(stage, "not a revisit.events.v1.")
        newer = topic_letters(stage, "of schema revision 2")
        assert len(garbage) == len(newer) == 1, (stage, [x.line() for x in letters])
        rows.append(
            ("malformed protobuf", topic, 1, f"DLQ {stage} (1)", garbage[0].line().split("  ")[-1])
        )
        rows.append(
            ("newer event version", topic, 1, f"DLQ {stage} (1)", newer[0].line().split("  ")[-1])
        )
    # the AOI nowhere (its LCZ pass) and the parcels' S1+S2 crop type (no radar pass yet)
    assert done.get((good_nov, "no_valid_observation")) == 1 + (INDICATORS - STORED)
    why = notes[(good_nov, NOWHERE)]
    assert why == "the AOI does not overlap the scene's rasters"
    rows.append(
        ("AOI the rasters do not reach", SCENES_TOPIC, 1, "skipped: no_valid_observation", why)
    )
    rows.append(
        (
            "oversized record (2 MiB)",
            OBSERVATIONS_TOPIC,
            1,
            "refused by the broker",
            type(refused.value).__name__,
        )
    )
    assert "MessageSizeTooLarge" in type(refused.value).__name__ or "TooLarge" in str(refused.value)

    # oversized letters keep the start of the item's JSON and say so
    cut = [x for x in letters if x.letter.value_cut_from]
    assert len(cut) == AOIS and all(x.letter.value_cut_from > 1_000_000 for x in cut)

    # the loader's bad parcel geometries (not a stage's input)
    gpkg = tmp_path / "lpis.gpkg"
    write_seeded(gpkg)
    _, report = read_parcel_file(gpkg, id_field="parcel_id", crop_field="crop")
    repaired = {i.external_id: i.reason for i in report.repaired}
    rejected = {i.external_id: i.reason for i in report.rejected}
    assert "Self-intersection" in repaired["p2"] and "empty" in rejected["p4"]
    rows.append(("self-intersecting parcel", "revisit parcels load", 1, "repaired", repaired["p2"]))
    rows.append(
        ("empty parcel geometry", "revisit parcels load", 1, "rejected, reported", rejected["p4"])
    )

    # good passes before and after the bad input, all stored; nothing left unconsumed
    stored = Counter(s for (_, s), n in done.items() for _ in range(n))
    assert stored["stored"] == 2 * STORED  # November and February
    assert sum(done.values()) == total
    assert len(letters) == 17, [x.line() for x in letters]
    assert outcomes == {
        "observed": 2 * AOIS,
        "no_valid_observation": (len(skipped_kinds) + 2) * AOIS + 1,
        "no_product": 0,
    }

    width = max(len(r[0]) for r in rows)
    print(f"\nbad input: {len(rows)} kinds, {len(letters)} dead letters, run {elapsed:.0f} s")
    print(f"{'kind':<{width}}  {'into':<22} {'n':>2}  {'outcome':<32} reason")
    for kind, into, n, outcome, reason in rows:
        reason = reason.replace(str(catalog_dir / "served"), "…")
        print(f"{kind:<{width}}  {into:<22} {n:>2}  {outcome:<32} {reason[:110]}")
    print(
        f"consumers stalled: 0 (good passes after the bad input stored; every group at the "
        f"end of its topic {drained:.1f} s after the last pass was stored, "
        f"{time.monotonic() - stored_at:.0f} s later no new letter); "
        f"revisit_preprocess_scenes_total {outcomes}"
    )
