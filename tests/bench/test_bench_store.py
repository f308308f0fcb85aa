"""`make bench` part store: the store's write path against a raw COPY of the same rows,
and the latency of every SQL recipe of docs/queries.md, on 100,000 parcels.

Setup (not timed as part of the comparison): a seeded register of 100,000 parcels of
1 to 2.5 ha on a grid in EPSG:32631 around 50.6 N 5.3 E, transformed to EPSG:4326
(`synthetic_parcels.py`). The first 10,000 go through `load_parcels` (what
`revisit parcels load` calls), the other 90,000 through one COPY into `parcel`, to keep
the setup short; both rates are printed. Then `ANALYZE` (autovacuum's job on a live
database).

(a) Write path: one pass of crop-type predictions for every parcel in batches of
`BATCH` predictions, through `rows_for` + `write` (COPY into a staging table, one
`INSERT … ON CONFLICT`, the scene's status, one transaction per batch), as the
`revisit_writer` role, against a raw COPY of the very same rows into `parcel_prediction`
by the same role, one transaction per batch (same granularity) and, as a ceiling, one
COPY in one transaction. Each into an emptied table; the two per-batch paths run
alternately, `ROUNDS` times, the best run of each counts.

(b) Recipes: `PASSES` passes of history written through the write path (500,000
`parcel_prediction` rows, as many `parcel_biophys` rows), 3 cities of 2,500 LCZ cells ×
`PASSES` passes, a region of 25 districts × 60 passes of land-cover and biophysical rows;
then every recipe run `RUNS` times (at most `RECIPE_SECONDS` each) as `revisit_reader`
on one connection, after one warm-up run. p50 / p95 in ms; the plan of any recipe slower
than `SLOW_MS` is printed. On a 2-core machine the client and the server share the cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
import shapely
from sqlalchemy import Engine, create_engine, text

from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.db.parcels import ParcelRecord, load_parcels
from revisit_common.db.units import UnitRecord, load_units
from revisit_common.events import root_header
from revisit_store.handler import PARCEL_COLUMNS, StoreRows, rows_for
from revisit_store.writer import TYPES, write
from tests.bench.recipes import Recipe, recipes
from tests.bench.synthetic_parcels import CLASSES, CODES, Parcels
from tests.conftest import empty_tables
from tests.integration.test_store_postgis import publish
from tests.predictions import prediction_batch

pytestmark = pytest.mark.integration

N_PARCELS = 100_000
LOADED_BY_LOAD_PARCELS = 10_000
BATCH = 1_000
PASSES = 5
ROUNDS = 2
RUNS = 50
RECIPE_SECONDS = 20.0
SLOW_MS = 100.0
CITY_CELLS = 50  # × 50 cells of 320 m per city
DISTRICTS, AREA_PASSES = 25, 60
TODAY = datetime.now(UTC).replace(hour=10, minute=40, second=0, microsecond=0)
#: the passes of the parcels: 6 days apart, the last one 2 days ago ("this week")
PASS_DAYS = [TODAY - timedelta(days=2 + 6 * (PASSES - 1 - k)) for k in range(PASSES)]
SEASON = (PASS_DAYS[0] - timedelta(days=30)).date()


@dataclass(frozen=True)
class Register:
    engine: Engine  # as the schema's owner
    parcels: Parcels
    ids: np.ndarray  # parcel table id of each synthetic parcel
    aoi: pb.Aoi
    scenes: list[pb.SceneDiscovered]  # one per pass


def _aoi(name: str, kind: str, bounds: tuple[float, float, float, float]) -> pb.Aoi:
    return pb.Aoi(name=name, kind=kind, geometry_wkt=shapely.box(*bounds).wkt)


def _published(engine: Engine, aoi: pb.Aoi, days: list[datetime]) -> list[pb.SceneDiscovered]:
    scenes = [
        pb.SceneDiscovered(
            header=root_header(
                "catalog", f"S2B_31UFS_{day:%Y%m%d}_{aoi.name}", day, day + timedelta(hours=2)
            ),
            collection="sentinel-2-l2a",
            tile_id="31UFS",
            footprint_wkt=aoi.geometry_wkt,
            aoi=aoi,
        )
        for day in days
    ]
    publish(engine, scenes)
    return scenes


@pytest.fixture(scope="module")
def register(stack: StackConfig) -> Iterator[Register]:
    engine = create_engine(stack.database_url)
    empty_tables(engine)
    parcels = Parcels(N_PARCELS)
    aoi = _aoi("bench-parcels", "parcels", tuple(shapely.total_bounds(parcels.geometries)))
    scenes = _published(engine, aoi, PASS_DAYS)
    geometries, ewkt, declared = parcels.geometries, parcels.ewkt, parcels.declared_crops

    t0 = time.perf_counter()
    k = LOADED_BY_LOAD_PARCELS
    records = (ParcelRecord(parcels.external_ids[i], geometries[i], declared[i]) for i in range(k))
    load_parcels(engine, aoi.name, records)
    t1 = time.perf_counter()
    with engine.begin() as conn:
        aoi_id = conn.execute(text("SELECT id FROM aoi WHERE name = :n"), {"n": aoi.name}).scalar()
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cur,
            cur.copy("COPY parcel (aoi_id, external_id, declared_crop, geom) FROM STDIN") as copy,
        ):
            for i in range(k, N_PARCELS):
                copy.write_row((aoi_id, parcels.external_ids[i], declared[i], ewkt[i]))
        conn.execute(
            text("INSERT INTO crop_class_map VALUES (:code, :name)"),
            [{"code": c, "name": n} for c, n in CODES.items()],
        )
    t2 = time.perf_counter()
    with engine.connect() as conn:
        by_external = dict(conn.execute(text("SELECT external_id, id FROM parcel")).all())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE parcel"))
    ids = np.array([by_external[e] for e in parcels.external_ids])
    print(
        f"\nparcels: {k:,} by load_parcels in {t1 - t0:.1f} s ({k / (t1 - t0):,.0f}/s), "
        f"{N_PARCELS - k:,} by COPY in {t2 - t1:.1f} s ({(N_PARCELS - k) / (t2 - t1):,.0f}/s); "
        f"area {parcels.areas_ha.min():.1f}-{parcels.areas_ha.max():.1f} ha"
    )
    yield Register(engine, parcels, ids, aoi, scenes)
    engine.dispose()


def crop_batches(reg: Register, k: int) -> list[pb.PredictionBatch]:
    """Pass `k`'s predictions of every parcel, `BATCH` per prediction batch."""
    code, confidence, probabilities = reg.parcels.predictions(k)
    scene = reg.scenes[k]
    days = (PASS_DAYS[k].date() - SEASON).days
    batches = []
    for start in range(0, N_PARCELS, BATCH):
        batch = prediction_batch(
            scene, "crop_type", reg.aoi, classes=CLASSES, season=SEASON.isoformat()
        )
        for i in range(start, min(start + BATCH, N_PARCELS)):
            batch.predictions.add(
                entity_id=str(reg.ids[i]),
                class_code=int(code[i]),
                confidence=float(confidence[i]),
                probabilities=probabilities[i].tolist(),
                observations=3 + k,
                season_days=days,
            )
        batches.append(batch)
    return batches


def biophys_batches(reg: Register, k: int) -> list[pb.PredictionBatch]:
    """Pass `k`'s LAI, CCC and FCOVER of every parcel, `BATCH` per prediction batch: the
    canopy greening up pass after pass."""
    rng = np.random.default_rng((7, k))
    lai = np.clip(0.5 + 0.6 * k + rng.normal(0, 0.3, N_PARCELS), 0.05, 7).astype(np.float32)
    pixels = rng.integers(20, 64, N_PARCELS)
    names = [f"{v}_{stat}" for v in ("lai", "ccc", "fcover") for stat in ("mean", "median")]
    batches = []
    for start in range(0, N_PARCELS, BATCH):
        batch = prediction_batch(
            reg.scenes[k],
            "parcel_biophysics",
            reg.aoi,
            season=SEASON.isoformat(),
            value_names=names,
        )
        for i in range(start, min(start + BATCH, N_PARCELS)):
            v = float(lai[i])
            batch.predictions.add(
                entity_id=str(reg.ids[i]),
                values=[v, 0.95 * v, 0.4 * v, 0.38 * v, min(v / 5, 1), min(v / 5.2, 1)],
                observations=int(pixels[i]),
            )
        batches.append(batch)
    return batches


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE parcel_prediction"))


def _service(writer: Engine, batches: list[pb.PredictionBatch]) -> tuple[int, float, float]:
    """rows, seconds in rows_for, seconds in write."""
    rows, convert, store = 0, 0.0, 0.0
    for batch in batches:
        t0 = time.perf_counter()
        out = rows_for(batch)
        t1 = time.perf_counter()
        write(writer, out)
        store += time.perf_counter() - t1
        convert += t1 - t0
        rows += len(out.rows)
    return rows, convert, store


def _raw_copy(url: str, batches: list[StoreRows], per_batch: bool) -> tuple[int, float]:
    """The same rows by COPY straight into parcel_prediction: rows, seconds."""
    columns = ", ".join(PARCEL_COLUMNS)
    types = [TYPES[c] for c in PARCEL_COLUMNS]
    groups = [[b] for b in batches] if per_batch else [batches]
    rows = 0
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        for group in groups:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY parcel_prediction ({columns}) FROM STDIN") as copy,
            ):
                copy.set_types(types)
                for b in group:
                    for row in b.rows:
                        copy.write_row(row)
                    rows += len(b.rows)
        return rows, time.perf_counter() - t0


def test_bench_write_path_vs_raw_copy(stack: StackConfig, register: Register) -> None:
    batches = crop_batches(register, PASSES - 1)
    staged = [rows_for(b) for b in batches]  # the raw COPY's rows: exactly the service's
    writer = create_engine(stack.writer_database_url)
    raw_url = stack.writer_database_url.replace("+psycopg", "")
    service_runs, raw_runs = [], []
    try:
        for _ in range(ROUNDS):
            _truncate(register.engine)
            rows, seconds = _raw_copy(raw_url, staged, per_batch=True)
            raw_runs.append(rows / seconds)
            _truncate(register.engine)
            rows, convert, store = _service(writer, batches)
            service_runs.append((rows / (convert + store), convert, store))
        _truncate(register.engine)
        rows, seconds = _raw_copy(raw_url, staged, per_batch=False)
        single = rows / seconds
        _truncate(register.engine)
    finally:
        writer.dispose()
    assert rows == N_PARCELS
    best_service = max(service_runs)
    best_raw = max(raw_runs)
    ratio = best_service[0] / best_raw
    print(
        f"\nstore write path vs raw COPY: {N_PARCELS:,} crop predictions, {BATCH:,} per "
        f"batch ({N_PARCELS // BATCH} batches), into an emptied parcel_prediction, "
        f"as revisit_writer; best of {ROUNDS} runs"
    )
    print(f"{'path':<52}{'rows/s':>10}{'runs (rows/s)':>24}")
    print(
        f"{'rows_for + write (1 transaction per batch)':<52}{best_service[0]:>10,.0f}"
        f"{' / '.join(f'{r[0]:,.0f}' for r in service_runs):>24}"
    )
    print(
        f"{'raw COPY (1 transaction per batch)':<52}{best_raw:>10,.0f}"
        f"{' / '.join(f'{r:,.0f}' for r in raw_runs):>24}"
    )
    print(f"{'raw COPY (all rows, 1 transaction)':<52}{single:>10,.0f}")
    print(f"ratio write path / raw COPY per batch: {ratio:.2f} (goal >= 0.5)")
    print(f"ratio write path / raw COPY in one:    {best_service[0] / single:.2f}")
    print(
        f"write path time: rows_for {best_service[1]:.2f} s, write {best_service[2]:.2f} s "
        f"(per batch {1000 * best_service[2] / len(batches):.1f} ms)"
    )
    assert ratio > 0


def _lcz_batch(scene: pb.SceneDiscovered, x0: float, y0: float, k: int) -> pb.PredictionBatch:
    rng = np.random.default_rng(k)
    classes = rng.choice([2, 5, 6, 8, 9, 11, 12, 14, 17], CITY_CELLS * CITY_CELLS)
    batch = prediction_batch(scene, "lcz", epsg=32631)
    for n, code in enumerate(classes):
        x, y = x0 + 320 * (n % CITY_CELLS), y0 + 320 * (n // CITY_CELLS)
        probabilities = [0.02] * 17
        probabilities[code - 1] = 0.68
        batch.predictions.add(
            entity_id=f"32631:{x:.0f}:{y:.0f}",
            geometry_wkt=f"POLYGON (({x} {y}, {x + 320} {y}, {x + 320} {y + 320}, "
            f"{x} {y + 320}, {x} {y}))",
            class_code=int(code),
            confidence=0.68,
            probabilities=probabilities,
        )
    return batch


def _fill_cities_and_region(engine: Engine) -> None:
    for c, (x0, y0) in enumerate(
        [(650_000, 5_600_000), (670_000, 5_620_000), (690_000, 5_590_000)]
    ):
        aoi = _aoi(f"bench-city-{c + 1}", "city", (5.0, 50.4, 5.6, 50.8))
        for k, scene in enumerate(_published(engine, aoi, PASS_DAYS)):
            write(engine, rows_for(_lcz_batch(scene, x0, y0, k)))
    bounds = (4.9, 50.3, 5.7, 50.9)
    region = _aoi("bench-region", "region", bounds)
    days = [TODAY - timedelta(days=7 * k) for k in range(AREA_PASSES)]
    rng = np.random.default_rng(1)
    scenes = _published(engine, region, days)
    side = int(DISTRICTS**0.5)  # the districts: a grid over the region
    dx, dy = (bounds[2] - bounds[0]) / side, (bounds[3] - bounds[1]) / side
    load_units(
        engine,
        region.name,
        [
            UnitRecord(
                f"district-{d:02d}",
                shapely.box(
                    bounds[0] + dx * (d % side),
                    bounds[1] + dy * (d // side),
                    bounds[0] + dx * (d % side + 1),
                    bounds[1] + dy * (d // side + 1),
                ),
                f"District {d:02d}",
            )
            for d in range(DISTRICTS)
        ],
    )
    for scene in scenes:
        land = prediction_batch(
            scene,
            "land_cover",
            region,
            value_names=["tree", "built_up", "cropland", "pixels_share"],
        )
        bio = prediction_batch(
            scene,
            "biophysics",
            region,
            value_names=["lai_mean", "lai_median", "ccc_mean", "fcover_mean", "valid_fraction"],
        )
        for d in range(DISTRICTS):
            tree, built = rng.uniform(0, 0.4, 2)
            land.predictions.add(
                entity_id=f"district-{d:02d}", values=[tree, built, 1 - tree - built, 1]
            )
            lai = rng.uniform(0.3, 4)
            bio.predictions.add(
                entity_id=f"district-{d:02d}",
                values=[lai, lai * 0.9, lai * 0.4, min(lai / 5, 1), rng.uniform(0.5, 1)],
            )
        write(engine, rows_for(land))
        write(engine, rows_for(bio))


def _sizes(engine: Engine) -> list[tuple[str, int, str, str]]:
    tables = (
        "parcel",
        "parcel_prediction",
        "parcel_biophys",
        "lcz_cell",
        "landcover_indicator",
        "area_unit",
        "scene_processing",
    )
    out = []
    with engine.connect() as conn:
        for t in tables:
            count = conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            heap, total = conn.execute(
                text(
                    "SELECT pg_size_pretty(pg_table_size(:t)), "
                    "pg_size_pretty(pg_total_relation_size(:t))"
                ),
                {"t": t},
            ).one()
            out.append((t, int(count or 0), heap, total))
    return out


def test_bench_recipe_latency(stack: StackConfig, register: Register) -> None:
    engine = register.engine
    _truncate(engine)
    writer = create_engine(stack.writer_database_url)
    t0, written = time.perf_counter(), 0
    try:
        for k in range(PASSES):
            rows, _, _ = _service(writer, crop_batches(register, k))
            written += rows
        history_seconds = time.perf_counter() - t0
        for k in range(PASSES):
            _service(writer, biophys_batches(register, k))
    finally:
        writer.dispose()
    _fill_cities_and_region(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(
        f"\nhistory: {written:,} parcel_prediction rows ({PASSES} passes) through the write "
        f"path in {history_seconds:.0f} s ({written / history_seconds:,.0f} rows/s, "
        "table growing from empty)"
    )
    print(f"{'table':<22}{'rows':>10}{'heap':>10}{'with indexes':>14}")
    for name, count, heap, total in _sizes(engine):
        print(f"{name:<22}{count:>10,}{heap:>10}{total:>14}")

    points = register.parcels.points
    rng = np.random.default_rng(3)
    variables: dict[str, object] = {
        "aoi": register.aoi.name,
        "area": "district-07",
        "unit": "District 07",
    }
    by_title = {
        "LCZ map of a city as GeoJSON": {"aoi": "bench-city-2"},
        "LCZ class shares of a city": {"aoi": "bench-city-2"},
        "Indicator trend of an area": {"aoi": "bench-region"},
        "Monthly means": {"aoi": "bench-region"},
        "Trend of a district, by its name": {"aoi": "bench-region"},
        "Area units of an AOI at their latest pass, as GeoJSON": {"aoi": "bench-region"},
    }
    results = []
    with psycopg.connect(stack.reader_database_url.replace("+psycopg", "")) as conn:
        for recipe in recipes():
            values = {**variables, **by_title.get(recipe.title, {})}

            def run(recipe: Recipe = recipe, values: dict[str, object] = values) -> int:
                lon, lat = points[rng.integers(len(points))]  # another parcel each time
                sql = recipe.bind({**values, "lon": f"{lon:.7f}", "lat": f"{lat:.7f}"})
                return len(conn.execute(sql).fetchall())

            returned = run()  # warm-up
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < RUNS and (time.perf_counter() - start < RECIPE_SECONDS):
                t = time.perf_counter()
                run()
                times.append(1000 * (time.perf_counter() - t))
            p50, p95 = np.percentile(times, [50, 95])
            results.append((recipe, values, returned, len(times), p50, p95))
        print(
            f"\nrecipes of docs/queries.md as revisit_reader ({N_PARCELS:,} parcels, "
            f"{written:,} predictions), ms"
        )
        print(f"{'recipe':<56}{'rows':>7}{'runs':>6}{'p50':>9}{'p95':>9}")
        for recipe, _, returned, n, p50, p95 in results:
            print(f"{recipe.title:<56}{returned:>7,}{n:>6}{p50:>9.1f}{p95:>9.1f}")
        for recipe, values, _, _, p50, _ in results:
            if p50 > SLOW_MS:
                lon, lat = points[0]
                sql = recipe.bind({**values, "lon": lon, "lat": lat})
                plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).fetchall()
                print(f"\nplan of '{recipe.title}' (p50 {p50:.0f} ms):")
                print("\n".join(r[0] for r in plan))
    assert all(returned > 0 for _, _, returned, _, _, _ in results)
