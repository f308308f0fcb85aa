"""The whole chain as the demo runs it: four service processes on the real Kafka,
PostGIS and Triton, fed the 12 real monthly passes of Sentinel-2 over three AOIs (a
city, parcels, a region) and of Sentinel-1 over the parcels, which gives the four
indicators: LCZ, crop type (S2, and S1+S2), land cover, biophysics.

- The LCZ classes stored are exactly those of the original Keras model; every parcel is
  re-predicted on every valid pass from its season so far, and on every radar pass from
  both seasons so far; land-cover fractions and
  LAI / CCC / FCOVER fill one row per valid pass.
- A full replay of the store's input leaves every table unchanged.
- Triton stopped in the middle of a run (after the first six passes) holds the chain:
  nothing more is stored, nothing goes to a DLQ; once it is back, the run ends with
  exactly the rows of the undisturbed run (counts and checksums).
- A pass published after every other pass of the season is stored (February's optical
  one) leaves each parcel's latest crop types as the in-order run has them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from revisit_cli.demo import prepare_database
from revisit_cli.demo_data import build_catalog
from revisit_cli.dlq import configured_dlq_topics, open_consumer, read_letters
from revisit_cli.services import SERVICES, ServicesConfig, start_services
from revisit_cli.stack import ManagedProcess, StackConfig, up
from revisit_common.events import PREDICTIONS_TOPIC
from tests.conftest import commit_from_outside, consecutive_free_ports, empty_tables
from tests.e2e.scrape import counter
from tests.grafana import dashboard_exprs, dashboard_metric_names, rule_metric_names

pytestmark = pytest.mark.e2e

PASSES = 12
VALID_PASSES = 10  # December 2020 and January 2021 are "no data" in the cube
#: A Sentinel-2 pass gives lcz (city), crop_type + parcel_biophysics (parcels),
#: land_cover + biophysics (region); a pass of either sensor crop_type_s1s2 (parcels)
S2_INDICATORS = ("lcz", "crop_type", "parcel_biophysics", "land_cover", "biophysics")
#: pass × indicator records of one month (its Sentinel-2 and its Sentinel-1 pass)
INDICATORS = len(S2_INDICATORS) + 2
#: What a run leaves, without surrogate ids and timings (which differ between runs).
CHECKSUMS = {
    "lcz_cell": "to_jsonb(t) - 'id'",
    "parcel_prediction": "to_jsonb(t) - 'id'",
    "parcel_biophys": "to_jsonb(t) - 'id'",
    "landcover_indicator": "to_jsonb(t) - 'id'",
    "scene_processing": "to_jsonb(t) - 'discovered_at' - 'preprocessed_at' - 'inferred_at' "
    "- 'completed_at'",
}


def checksums(engine: Engine) -> dict[str, tuple[int, str]]:
    out = {}
    with engine.connect() as conn:
        for table, row in CHECKSUMS.items():
            count, digest = conn.execute(
                text(
                    f"SELECT count(*), md5(string_agg(({row})::text, '|' "
                    f"ORDER BY ({row})::text)) FROM {table} t"
                )
            ).one()
            out[table] = (int(count), str(digest))
    return out


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{what}: not after {timeout_s} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def completed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM scene_processing WHERE status <> 'discovered'")
            ).scalar_one()
        )


def dead_letters(bootstrap: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in consumer.topics()
            if topic.endswith(".dlq")
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()


def letters(bootstrap: str) -> list[str]:
    """Every dead letter: where, which stage, why (for a failing test's message)."""
    consumer = open_consumer(bootstrap)
    try:
        found = read_letters(consumer, configured_dlq_topics(), bootstrap)
    finally:
        consumer.close()
    return [f"{x.position} {x.letter.stage}: {x.letter.error.splitlines()[0]}" for x in found]


def stop_services(stack: StackConfig) -> None:
    for name in SERVICES:
        ManagedProcess.attach(name, stack.state_dir).stop()


def fresh_run(stack: StackConfig, engine: Engine, services: ServicesConfig) -> None:
    """Empty tables and payloads, the demo's AOIs and parcels, the services started."""
    stop_services(stack)
    empty_tables(engine)
    shutil.rmtree(stack.state_dir / "payloads", ignore_errors=True)
    prepare_database(stack.database_url, services)
    start_services(stack, services)


@dataclass(frozen=True)
class Run:
    checksums: dict[str, tuple[int, str]]
    dead_letters: int
    series: dict[str, int]  # metric name of a dashboard or rule -> series in Prometheus
    panels: list[tuple[str, str, str, int]]  # dashboard, panel, expr, series it returned
    latest: list[tuple[Any, ...]]  # `latest_crops`


def latest_crops(engine: Engine) -> list[tuple[Any, ...]]:
    """Each parcel's newest crop type of each model (those `parcel_latest` chooses from):
    parcel, model, time, class, passes, season days, confidence (to 4 decimals), and not
    the scene it came with."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT DISTINCT ON (parcel_id, model_name) parcel_id, model_name, "
                    "acquired_at, class_code, observations, season_days, "
                    "round(confidence::numeric, 4) FROM parcel_prediction "
                    "ORDER BY parcel_id, model_name, acquired_at DESC, observations DESC"
                )
            )
        ]


def prometheus_series(stack: StackConfig, query: str) -> int:
    """How many series an instant query returns on the stack's Prometheus."""
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", (query, answer)
    result = answer["data"]["result"]
    return len(result) if isinstance(result, list) else 1


#: Grafana's interval variables, as a dashboard over the last hour would set them.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def panel_query(expr: str) -> str:
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    return expr


def scraped(stack: StackConfig, timeout_s: float = 120) -> tuple[dict[str, int], list[Any]]:
    """Every metric name of the dashboards and rules, and every dashboard query, as the
    stack's Prometheus answers them once it has scraped the demo run (or the timeout)."""
    names = sorted(dashboard_metric_names() | rule_metric_names(include_recorded=True))
    exprs = [e for e in dashboard_exprs() if e[2]]
    deadline = time.monotonic() + timeout_s
    while True:
        series = {n: prometheus_series(stack, f'count({{__name__="{n}"}})') for n in names}
        panels = [(d, t, e, prometheus_series(stack, panel_query(e))) for d, t, e in exprs]
        if (all(series.values()) and all(p[3] for p in panels)) or time.monotonic() > deadline:
            return series, panels
        time.sleep(5)


@pytest.fixture(scope="module")
def undisturbed(
    stack: StackConfig, demo_catalog: Path, lcz_parity: dict[str, np.ndarray]
) -> Iterator[Run]:
    """The demo's run, checked indicator by indicator, then replayed by the store."""
    engine = create_engine(stack.database_url)
    services = ServicesConfig(
        metrics_base_port=consecutive_free_ports(len(SERVICES)),
        catalog_source=str(demo_catalog),
        catalog_poll_interval_s=1,
    )
    letters = dead_letters(stack.kafka_bootstrap)
    start = predictions_end(stack)  # this run's predictions come after: what is replayed
    fresh_run(stack, engine, services)
    try:
        wait_until(lambda: completed(engine) == PASSES * INDICATORS, 300, "every pass stored")
        check_indicators(engine, lcz_parity)
        series, panels = scraped(stack)
        before = checksums(engine)
        replay_store(stack, services, start)
        assert checksums(engine) == before
        assert dead_letters(stack.kafka_bootstrap) == letters
        yield Run(before, letters, series, panels, latest_crops(engine))
    finally:
        stop_services(stack)
        engine.dispose()


def check_indicators(engine: Engine, lcz_parity: dict[str, np.ndarray]) -> None:
    with engine.connect() as conn:
        statuses = {
            (indicator, status): n
            for indicator, status, n in conn.execute(
                text("SELECT indicator, status, count(*) FROM scene_processing GROUP BY 1, 2")
            )
        }
        lcz = {
            (day.date().isoformat(), cell): k
            for day, cell, k in conn.execute(
                text("SELECT acquired_at, cell_id, lcz_class FROM lcz_cell")
            )
        }
        crops = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT parcel_id), min(observations), "
                "max(observations), count(DISTINCT acquired_at), min(confidence) "
                "FROM parcel_prediction WHERE model_name = :m"
            ),
            {"m": "psetae_s2"},
        ).one()
        fused = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT parcel_id), min(observations), "
                "max(observations), count(DISTINCT acquired_at), min(confidence) "
                "FROM parcel_prediction WHERE model_name = :m"
            ),
            {"m": "psetae_s1s2"},
        ).one()
        latest = conn.execute(
            text(
                "SELECT count(*), min(observations), min(season_days), "
                "string_agg(DISTINCT model_name, ',') FROM parcel_latest"
            )
        ).one()
        parcels = conn.execute(text("SELECT count(*) FROM parcel")).scalar_one()
        parcel_bio = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT parcel_id), min(lai_mean), max(lai_mean), "
                "min(fcover_mean), max(fcover_mean), min(pixels) FROM parcel_biophys"
            )
        ).one()
        june_lai, february_lai = (
            conn.execute(
                text(
                    "SELECT avg(lai_mean) FROM parcel_biophys "
                    "WHERE extract(month FROM acquired_at) = :m"
                ),
                {"m": month},
            ).scalar_one()
            for month in (6, 2)
        )
        areas = conn.execute(
            text(
                "SELECT acquired_at::date, tree_fraction, built_up_fraction, cropland_fraction, "
                "water_fraction, lai_mean, fcover_mean, valid_pixel_share, landcover_model, "
                "biophys_model FROM landcover_indicator l JOIN aoi a ON a.id = l.aoi_id "
                "WHERE l.area_key = a.name ORDER BY acquired_at"
            )
        ).all()
        # the region's four area units (its quarters), per pass: (units, LAI min, max)
        units = conn.execute(
            text(
                "SELECT acquired_at::date, count(*), min(lai_mean), max(lai_mean), "
                "min(tree_fraction + built_up_fraction + cropland_fraction), "
                "max(tree_fraction + built_up_fraction + cropland_fraction), "
                "min(valid_pixel_share) FROM area_unit_indicator GROUP BY 1 ORDER BY 1"
            )
        ).all()
    with engine.connect() as conn:
        stages = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE discovered_at <= preprocessed_at AND "
                "preprocessed_at <= inferred_at AND inferred_at <= completed_at), count(*), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                "inferred_at - preprocessed_at)) FROM scene_processing"
            )
        ).one()
    assert stages[0] == stages[1]  # every stage time recorded, in the chain's order
    print(f"\nmedian preprocessed -> inferred: {stages[2]:.2f} s")
    assert statuses == {
        **{
            (i, s): n
            for i in S2_INDICATORS
            for s, n in (("stored", VALID_PASSES), ("no_valid_observation", PASSES - VALID_PASSES))
        },
        # radar sees through December's clouds; an optical pass after a radar one (every
        # valid one but November's, the season's first pass) gives one too
        ("crop_type_s1s2", "stored"): PASSES + VALID_PASSES - 1,
        ("crop_type_s1s2", "no_valid_observation"): PASSES - VALID_PASSES + 1,
    }
    epoch = datetime(1990, 1, 1, tzinfo=UTC)
    assert lcz == {
        (
            (epoch + timedelta(days=int(d))).date().isoformat(),
            f"32631:{664000 + 10 * int(c)}:{5612120 - 10 * int(r)}",
        ): int(k) + 1
        for d, r, c, k in zip(
            lcz_parity["days_since_1990"],
            lcz_parity["row"],
            lcz_parity["col"],
            lcz_parity["keras_probabilities"].argmax(1),
            strict=True,
        )
    }
    # every parcel re-predicted on each valid pass, from 1 to 10 passes of its season
    assert tuple(crops[:5]) == (parcels * VALID_PASSES, parcels, 1, VALID_PASSES, VALID_PASSES)
    assert 0 < crops[5] <= 1
    # and on each radar pass from both seasons so far: from November's two passes to the
    # 10 optical and 12 radar passes of October
    assert tuple(fused[:5]) == (parcels * PASSES, parcels, 2, VALID_PASSES + PASSES, PASSES)
    assert 0 < fused[5] <= 1
    # the latest prediction of each parcel used the whole season: Nov 2020 .. Oct 2021;
    # both models predicted on 1 October, and the view takes psetae_s1s2 first
    assert tuple(latest) == (parcels, VALID_PASSES + PASSES, 334, "psetae_s1s2")
    # every parcel's LAI and FCOVER on each valid pass, in the model's ranges
    assert tuple(parcel_bio[:2]) == (parcels * VALID_PASSES, parcels) and parcel_bio[6] >= 1
    assert 0 <= parcel_bio[2] <= parcel_bio[3] <= 8 and 0 <= parcel_bio[4] <= parcel_bio[5] <= 1
    assert june_lai > february_lai  # the crops grow
    assert len(areas) == VALID_PASSES
    for day, tree, built, crop, water, lai, fcover, valid, lc_model, bio_model in areas:
        assert 0 <= tree + built + crop <= 1 + 1e-6, day
        assert water is None  # not in the land-cover model's legend: not a false 0
        assert 0 <= lai <= 8 and 0 <= fcover <= 1 and valid == 1.0, day
        assert (lc_model, bio_model) == ("landcover_tae", "biophys_prosail")
    # the AOI's LAI is a pixel-weighted mean of its units' (which tile it)
    assert [row[0] for row in units] == [row[0] for row in areas]
    for (day, n, lai_min, lai_max, total_min, total_max, valid), area in zip(
        units, areas, strict=True
    ):
        assert n == 4 and lai_min - 1e-4 <= area[5] <= lai_max + 1e-4, day
        assert 0 <= total_min <= total_max <= 1 + 1e-6 and valid == 1.0, day
    by_month = {day.month: lai for day, *_, lai, _f, _v, _m, _b in areas}
    assert by_month[6] > by_month[2]  # the canopy grows from winter to June


def grow_catalog(catalog_dir: Path, months: int, sentinel1: bool = True) -> None:
    """The catalog served from `catalog_dir / "served"` gets the items up to `months`
    the way a publisher adds them: new COGs and items first, then catalog.json replaced
    in one rename, so the catalog service never reads a file being written."""
    full = catalog_dir / "full"
    build_catalog(full, months=months, sentinel1=sentinel1)
    served = catalog_dir / "served"
    for part in ("cogs", "catalog"):
        for source in (full / part).iterdir():
            if source.is_dir() and not (served / part / source.name).exists():
                shutil.copytree(source, served / part / source.name)
    staged = served / "catalog" / "catalog.json.new"
    shutil.copyfile(full / "catalog" / "catalog.json", staged)
    staged.replace(served / "catalog" / "catalog.json")


def predictions_end(stack: StackConfig) -> dict[TopicPartition, int]:
    """Where the predictions topic ends now, per partition."""
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(PREDICTIONS_TOPIC, p) for p in range(3)])
        return dict(ends)
    finally:
        consumer.close()


def replay_store(
    stack: StackConfig, services: ServicesConfig, start: dict[TopicPartition, int]
) -> None:
    """Rewind the store's consumer group to `start` (where this run's predictions begin:
    earlier tests' predictions name scenes that the emptied tables no longer have) and
    wait until it caught up."""
    ManagedProcess.attach("store", stack.state_dir).stop()
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id="revisit-store")
    partitions = [TopicPartition(PREDICTIONS_TOPIC, p) for p in range(3)]
    consumer.assign(partitions)
    commit_from_outside(consumer, start)
    ends = sum(consumer.end_offsets(partitions).values())
    start_services(stack, services, ("store",))
    try:
        wait_until(
            lambda: sum(consumer.committed(tp) or 0 for tp in partitions) == ends,
            120,
            "store replayed every prediction batch",
        )
    finally:
        consumer.close()


def test_four_indicators_end_to_end(undisturbed: Run) -> None:
    counts = {table: n for table, (n, _) in undisturbed.checksums.items()}
    print(f"\nundisturbed run: {counts}")
    assert counts["scene_processing"] == PASSES * INDICATORS


def test_every_dashboard_and_rule_metric_has_series_on_the_demo_run(undisturbed: Run) -> None:
    print("\nmetric name: series in Prometheus after the demo run")
    for name, count in undisturbed.series.items():
        print(f"  {name}: {count}")
    print("dashboard | panel | series its query returned")
    for dashboard, title, _, count in undisturbed.panels:
        print(f"  {dashboard} | {title} | {count}")
    assert [n for n, count in undisturbed.series.items() if not count] == []
    assert [p[:3] for p in undisturbed.panels if not p[3]] == []


def test_triton_restarted_mid_run_gives_identical_results(
    stack: StackConfig, engine: Engine, undisturbed: Run, shared_tmp: Path
) -> None:
    half = PASSES // 2
    catalog_dir = shared_tmp / "growing-catalog"
    shutil.rmtree(catalog_dir, ignore_errors=True)
    services = ServicesConfig(
        metrics_base_port=consecutive_free_ports(len(SERVICES)),
        catalog_source=str(build_catalog(catalog_dir / "served", months=half)),
        catalog_poll_interval_s=1,
        catalog_overlap="P3650D",  # each poll searches the last ten years again
    )
    fresh_run(stack, engine, services)
    triton = ManagedProcess.attach("triton", stack.state_dir)
    try:
        first = half * INDICATORS
        wait_until(lambda: completed(engine) == first, 180, "the first half stored")
        assert triton.stop()
        grow_catalog(catalog_dir, PASSES)  # the other six months' passes appear

        def waiting() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        text("SELECT count(*) FROM scene_processing WHERE status = 'discovered'")
                    ).scalar_one()
                )

        # the catalog publishes the new passes and preprocess goes on; inference waits
        wait_until(lambda: waiting() == (PASSES - half) * INDICATORS, 120, "new passes found")
        time.sleep(10)
        assert completed(engine) == first
        up(stack, ["triton"])
        waited = wait_until(
            lambda: completed(engine) == PASSES * INDICATORS, 300, "the second half stored"
        )
        print(f"\nTriton back: the rest stored {waited:.1f} s later")
        assert checksums(engine) == undisturbed.checksums
        assert dead_letters(stack.kafka_bootstrap) == undisturbed.dead_letters, letters(
            stack.kafka_bootstrap
        )
    finally:
        up(stack, ["triton"])
        stop_services(stack)


def test_a_pass_published_late_leaves_the_latest_crop_types_of_the_in_order_run(
    stack: StackConfig, engine: Engine, undisturbed: Run, shared_tmp: Path
) -> None:
    """February's Sentinel-2 item appears in the catalog only once the season's other 23
    passes are stored: its own predictions, and the crop types as of October that it
    revises, leave every parcel's latest prediction of each model as in the undisturbed
    run (which had it in order)."""
    catalog = build_catalog(shared_tmp / "late-catalog")
    complete = catalog.read_text()
    late = "WORLDCEREAL_S2_31UFS_20210201_MONTHLY"
    without = json.loads(complete)
    without["links"] = [link for link in without["links"] if late not in link["href"]]
    assert len(without["links"]) == len(json.loads(complete)["links"]) - 1

    def publish(text: str) -> None:  # in one rename: the catalog never reads half a file
        staged = catalog.with_suffix(".json.new")
        staged.write_text(text)
        staged.replace(catalog)

    publish(json.dumps(without))
    services = ServicesConfig(
        metrics_base_port=consecutive_free_ports(len(SERVICES)),
        catalog_source=str(catalog),
        catalog_poll_interval_s=1,
        catalog_overlap="P3650D",  # each poll searches the last ten years again
    )
    fresh_run(stack, engine, services)
    optical = len(S2_INDICATORS) + 1  # records of a Sentinel-2 pass, crop_type_s1s2 too
    try:
        wait_until(
            lambda: completed(engine) == PASSES * INDICATORS - optical, 300, "23 passes stored"
        )
        before = latest_crops(engine)
        publish(complete)
        wait_until(lambda: completed(engine) == PASSES * INDICATORS, 120, "February stored")
        # the revisions follow February's own predictions on the parcels' partition
        with contextlib.suppress(AssertionError):  # the comparison below says what differs
            wait_until(lambda: latest_crops(engine) == undisturbed.latest, 60, "revised")
        after = latest_crops(engine)
        changed = sum(a != b for a, b in zip(before, after, strict=True))
        print(
            f"\nlate February pass: {changed} of {len(after)} latest crop types (parcel x "
            "model) changed, all as in the in-order run"
        )
        assert changed > 0
        assert [r for r in after if r not in undisturbed.latest] == []
        assert after == undisturbed.latest
        assert dead_letters(stack.kafka_bootstrap) == undisturbed.dead_letters
        # the inference service counts what it revised, and no revision failed
        revised = counter(services, "inference", "revisit_inference_revised_predictions", "model")
        failed = counter(services, "inference", "revisit_inference_revisions_failed", "model")
        print(f"revised predictions counted by the inference service: {revised}")
        assert sum(revised.values()) >= changed and set(revised) == {"psetae_s2", "psetae_s1s2"}
        assert failed == {"psetae_s2": 0.0, "psetae_s1s2": 0.0}
    finally:
        stop_services(stack)
