"""Every SQL recipe of docs/queries.md, run as the read-only role on a small database
filled through the store's write path, returns what its text promises; and psql runs
each one as written, with its variables given by `-v`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import Engine, text

from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.db.parcels import ParcelRecord, load_parcels
from revisit_common.db.units import UnitRecord, load_units
from revisit_store.handler import rows_for
from revisit_store.writer import write
from tests.bench.recipes import Recipe, recipes
from tests.integration.test_store_postgis import predictions as lcz_batch
from tests.integration.test_store_postgis import publish
from tests.predictions import MODELS, prediction_batch, scene_discovered

pytestmark = pytest.mark.integration

Row = dict[str, Any]

BOX = "POLYGON ((5.31 50.62, 5.34 50.62, 5.34 50.64, 5.31 50.64, 5.31 50.62))"
PARCELS = pb.Aoi(name="hesbaye-parcels", kind="parcels", geometry_wkt=BOX)
CITY = pb.Aoi(name="hesbaye-demo", kind="city", geometry_wkt=BOX)
REGION = pb.Aoi(name="hesbaye-region", kind="region", geometry_wkt=BOX)

TODAY = datetime.now(UTC).replace(hour=10, minute=30, second=0, microsecond=0)
RECENT, OLD = TODAY - timedelta(days=2), TODAY - timedelta(days=20)  # this week, not
EARLY, LAST_YEAR = OLD - timedelta(days=10), OLD - timedelta(days=365)
SEASON = (OLD - timedelta(days=60)).date()
LAST_SEASON = SEASON - timedelta(days=365)
CROPS = ["maize", "sorghum", "sunflower", "other"]
Guess = tuple[str, float] | None  # (class, confidence) of a pass, None: no prediction
#: register id -> declared crop, the old pass's prediction, the recent one's
PARCEL_PREDICTIONS: dict[str, tuple[str | None, Guess, Guess]] = {
    "lpis-0": ("maize", ("sorghum", 0.99), ("maize", 0.95)),  # agrees now
    "lpis-1": ("201", None, ("sorghum", 0.95)),  # code of maize: flagged at 0.8 and 0.9
    "lpis-2": (" Sunflower ", None, ("maize", 0.85)),  # flagged at 0.8 only
    "lpis-3": (None, None, ("maize", 0.9)),  # nothing declared: never flagged
    "lpis-4": ("maize", ("sorghum", 0.99), None),  # flagged, but not this week
}
#: the parcels' biophysics: pass, season, model version, {register id: LAI mean}; none
#: of the recent pass yet (on its way), the old one written again by a newer model version
PARCEL_BIOPHYS: list[tuple[datetime, date, str, dict[str, float]]] = [
    (LAST_YEAR, LAST_SEASON, "1", {"lpis-1": 4.0}),  # another season
    (EARLY, SEASON, "1", {"lpis-0": 0.5, "lpis-1": 1.0}),
    (OLD, SEASON, "1", {"lpis-0": 1.5, "lpis-1": 2.0}),
    (OLD, SEASON, "2", {"lpis-1": 2.5}),
]
#: LCZ classes of 4 cells of the city: the old pass, the recent one (first 3 cells)
LCZ_OLD, LCZ_RECENT = [14, 14, 14, 6], [9, 9, 17]
#: the region's passes: day, {area: (tree, cropland)} or None, {area: lai_mean}
AREA_PASSES = [
    (datetime(2021, 5, 3, 10, 30, tzinfo=UTC), {"hesbaye-region": (0.2, 0.6)}, {"d": 1.0}),
    (datetime(2021, 5, 20, 10, 30, tzinfo=UTC), {"hesbaye-region": (0.4, 0.4)}, {"d": 2.0}),
    (datetime(2021, 6, 8, 10, 30, tzinfo=UTC), None, {"d": 3.0}),
]


#: the region's area units: district-b has rows on every pass, district-c none yet
UNITS = [
    UnitRecord("district-b", shapely.box(5.31, 50.62, 5.325, 50.64), "District B"),
    UnitRecord("district-c", shapely.box(5.325, 50.62, 5.34, 50.64), "District C"),
]


def parcel_square(i: int) -> shapely.Polygon:
    lon = 5.320 + 0.002 * i
    return shapely.box(lon, 50.630, lon + 0.001, 50.631)


def inside(i: int) -> dict[str, object]:
    return {"lon": 5.3205 + 0.002 * i, "lat": 50.6305}


#: psql variables of each recipe (by heading)
VARIABLES: dict[str, dict[str, object]] = {
    "Crop of the parcel at a point": inside(1),
    "Biophysics of a parcel over the season": inside(1),
    "Parcels flagged this week": {"aoi": PARCELS.name},
    "At another threshold": {"aoi": PARCELS.name},
    "LCZ map of a city as GeoJSON": {"aoi": CITY.name},
    "LCZ class shares of a city": {"aoi": CITY.name},
    "Indicator trend of an area": {"aoi": REGION.name, "area": "hesbaye-region"},
    "Monthly means": {"aoi": REGION.name, "area": "hesbaye-region"},
    "Trend of a district, by its name": {"aoi": REGION.name, "unit": "District B"},
    "Area units of an AOI at their latest pass, as GeoJSON": {"aoi": REGION.name},
    "Latest pass status of an AOI": {"aoi": PARCELS.name},
}


def scene(aoi: pb.Aoi, acquired: datetime) -> pb.SceneDiscovered:
    scene_id = f"S2B_31UFS_{acquired:%Y%m%d}_{aoi.name}"
    return scene_discovered(aoi, acquired, scene_id, timedelta(hours=3), BOX)


def published(engine: Engine, aoi: pb.Aoi, days: list[datetime]) -> list[pb.SceneDiscovered]:
    scenes = [scene(aoi, day) for day in days]
    publish(engine, scenes)
    return scenes


def crop_batch(
    s: pb.SceneDiscovered, predictions: list[tuple[int, str, float]]
) -> pb.PredictionBatch:
    batch = prediction_batch(s, "crop_type", classes=CROPS, season=SEASON.isoformat())
    days = (s.header.acquired_at.ToDatetime().date() - SEASON).days
    for parcel_id, crop, confidence in predictions:
        probabilities = [(1 - confidence) / 3] * len(CROPS)
        probabilities[CROPS.index(crop)] = confidence
        batch.predictions.append(
            pb.Prediction(
                entity_id=str(parcel_id),
                class_code=CROPS.index(crop),
                confidence=confidence,
                probabilities=probabilities,
                observations=days // 10,
                season_days=days,
            )
        )
    return batch


def parcel_biophys_batch(
    s: pb.SceneDiscovered, season: date, version: str, lai: dict[int, float]
) -> pb.PredictionBatch:
    """LAI mean `lai` of each parcel id, the other variables made from it."""
    names = [f"{v}_{stat}" for v in ("lai", "ccc", "fcover") for stat in ("mean", "median")]
    batch = prediction_batch(s, "parcel_biophysics", season=season.isoformat(), value_names=names)
    batch.model_version = version
    for parcel_id, v in lai.items():
        values = [v, v - 0.25, v / 2, v / 2 - 0.25, v / 4, v / 4 - 0.125]
        batch.predictions.append(
            pb.Prediction(entity_id=str(parcel_id), values=values, observations=int(10 * v))
        )
    return batch


def area_batch(
    s: pb.SceneDiscovered, indicator: str, names: list[str], values: dict[str, list[float]]
) -> pb.PredictionBatch:
    batch = prediction_batch(s, indicator, REGION, value_names=names)
    for area, v in values.items():
        batch.predictions.append(pb.Prediction(entity_id=area, values=v))
    return batch


def fill(engine: Engine) -> None:
    """The three AOIs, their passes and rows, all through the store's write path."""
    last_year, early, old, recent = published(engine, PARCELS, [LAST_YEAR, EARLY, OLD, RECENT])
    load_parcels(
        engine,
        PARCELS.name,
        [
            ParcelRecord(external_id, parcel_square(i), declared)
            for i, (external_id, (declared, _, _)) in enumerate(PARCEL_PREDICTIONS.items())
        ],
    )
    with engine.begin() as conn:
        ids = dict(conn.execute(text("SELECT external_id, id FROM parcel")).all())
        conn.execute(text("INSERT INTO crop_class_map VALUES ('201', 'maize')"))
    for s, which in ((old, 1), (recent, 2)):
        predictions = [
            (ids[external_id], p[which][0], p[which][1])
            for external_id, p in PARCEL_PREDICTIONS.items()
            if p[which] is not None
        ]
        write(engine, rows_for(crop_batch(s, predictions)))
    passes = {LAST_YEAR: last_year, EARLY: early, OLD: old}
    for day, season, version, lai in PARCEL_BIOPHYS:
        by_id = {ids[external_id]: v for external_id, v in lai.items()}
        write(engine, rows_for(parcel_biophys_batch(passes[day], season, version, by_id)))

    old, recent = published(engine, CITY, [OLD, RECENT])
    write(engine, rows_for(lcz_batch(old, LCZ_OLD)))
    write(engine, rows_for(lcz_batch(recent, LCZ_RECENT)))

    scenes = published(engine, REGION, [day for day, _, _ in AREA_PASSES])
    load_units(engine, REGION.name, UNITS)
    for s, (_, fractions, lai) in zip(scenes, AREA_PASSES, strict=True):
        if fractions is not None:
            names = ["tree", "built_up", "cropland", "pixels_share"]
            values = {a: [tree, 0.1, crop, 1.0] for a, (tree, crop) in fractions.items()}
            values["district-b"] = [0.9, 0.0, 0.0, 1.0]  # another area of the AOI
            write(engine, rows_for(area_batch(s, "land_cover", names, values)))
        names = ["lai_mean", "ccc_mean", "fcover_mean", "valid_fraction"]
        bio = {"hesbaye-region": [lai["d"], lai["d"] / 2, 0.5, 0.95], "district-b": [9, 9, 1, 1]}
        write(engine, rows_for(area_batch(s, "biophysics", names, bio)))


def run_as_reader(stack: StackConfig, recipe: Recipe, values: dict[str, object]) -> list[Row]:
    with psycopg.connect(stack.reader_database_url.replace("+psycopg", "")) as conn:
        cur = conn.execute(recipe.bind(values))
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def check_crop_at_point(rows: list[Row]) -> None:
    assert len(rows) == 1
    row = rows[0]
    assert (row["aoi"], row["external_id"], row["declared_crop"]) == (PARCELS.name, "lpis-1", "201")
    assert (row["predicted_crop"], float(row["confidence"])) == ("sorghum", 0.95)
    assert (row["season"], row["as_of"]) == (SEASON, RECENT.date())


def check_biophysics(rows: list[Row]) -> None:
    got = [(r["external_id"], r["season"], r["day"], r["model_version"]) for r in rows]
    assert got == [("lpis-1", SEASON, EARLY.date(), "1"), ("lpis-1", SEASON, OLD.date(), "2")]
    assert [r["lai_mean"] for r in rows] == [1.0, 2.5]  # the newer version of the old pass
    assert [r["lai_median"] for r in rows] == [0.75, 2.25]
    assert [(r["ccc_mean"], r["ccc_median"]) for r in rows] == [(0.5, 0.25), (1.25, 1.0)]
    assert [(r["fcover_mean"], r["fcover_median"]) for r in rows] == [
        (0.25, 0.125),
        (0.625, 0.5),
    ]
    assert [r["pixels"] for r in rows] == [10, 25]
    assert {r["model_name"] for r in rows} == {MODELS["parcel_biophysics"]}


def check_flagged(expected: list[tuple[str, str, str]]) -> Callable[[list[Row]], None]:
    def check(rows: list[Row]) -> None:
        assert [(r["external_id"], r["expected_class"], r["predicted_crop"]) for r in rows] == (
            expected
        )
        assert {r["as_of"] for r in rows} == {RECENT.date()}

    return check


def check_geojson(rows: list[Row]) -> None:
    (collection,) = [r["feature_collection"] for r in rows]
    collection = json.loads(json.dumps(collection))  # what a client gets, parsed
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert len(features) == 4
    assert [f["properties"]["lcz_class"] for f in features] == [9, 9, 17, 6]  # latest of each
    assert [f["properties"]["lcz"] for f in features] == ["LCZ 9", "LCZ 9", "LCZ G", "LCZ 6"]
    for f in features:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        lon, lat = shape(f["geometry"]).centroid.coords[0]
        assert 5.2 < lon < 5.5 and 50.5 < lat < 50.7  # WGS 84, lon/lat order
    assert {f["properties"]["acquired_at"][:10] for f in features} == {
        RECENT.date().isoformat(),
        OLD.date().isoformat(),
    }


def check_lcz_shares(rows: list[Row]) -> None:
    got = [(r["lcz"], r["cells"], float(r["share"]), r["latest_pass"]) for r in rows]
    assert got == [
        ("LCZ 6", 1, 0.25, OLD.date()),
        ("LCZ 9", 2, 0.5, RECENT.date()),
        ("LCZ G", 1, 0.25, RECENT.date()),
    ]


def check_trend(rows: list[Row]) -> None:
    assert [r["day"] for r in rows] == [date(2021, 5, 3), date(2021, 5, 20), date(2021, 6, 8)]
    assert [r["tree_fraction"] for r in rows] == pytest.approx([0.2, 0.4, None])
    assert [r["lai_mean"] for r in rows] == pytest.approx([1.0, 2.0, 3.0])
    assert [r["water_fraction"] for r in rows] == [None] * 3  # not in the model's legend


def check_monthly(rows: list[Row]) -> None:
    got = [(r["month"], r["passes"], r["tree_fraction"], r["lai_mean"]) for r in rows]
    assert got == [
        (date(2021, 5, 1), 2, pytest.approx(0.3), pytest.approx(1.5)),
        (date(2021, 6, 1), 1, None, pytest.approx(3.0)),
    ]


def check_district_trend(rows: list[Row]) -> None:
    assert [r["day"] for r in rows] == [date(2021, 5, 3), date(2021, 5, 20), date(2021, 6, 8)]
    assert {r["unit_key"] for r in rows} == {"district-b"}
    assert [r["tree_fraction"] for r in rows] == pytest.approx([0.9, 0.9, None])
    assert [r["lai_mean"] for r in rows] == [9.0] * 3
    assert [r["valid_pixel_share"] for r in rows] == [1.0] * 3


def check_unit_map(rows: list[Row]) -> None:
    (row,) = rows
    collection = row["geojson"]
    assert collection["type"] == "FeatureCollection"
    b, c = collection["features"]
    assert (b["id"], c["id"]) == ("district-b", "district-c")
    assert shape(b["geometry"]).equals_exact(UNITS[0].geometry, 1e-6)
    assert b["properties"] == {
        "name": "District B",
        "land_cover_day": "2021-05-20",  # the June pass has biophysics only
        "tree_fraction": pytest.approx(0.9),
        "built_up_fraction": 0.0,
        "cropland_fraction": 0.0,
        "biophysics_day": "2021-06-08",
        "lai_mean": 9.0,
        "fcover_mean": 1.0,
    }
    assert c["properties"]["name"] == "District C"
    assert c["properties"]["tree_fraction"] is None and c["properties"]["lai_mean"] is None


def check_status(rows: list[Row]) -> None:
    assert [(r["indicator"], r["status"], r["results"]) for r in rows] == [
        ("crop_type", "stored", 4),
        ("parcel_biophysics", "discovered", None),  # none written here: on its way
    ]
    row = rows[0]
    assert row["acquired_at"] == RECENT
    assert row["seconds_to_store"] is not None
    # written straight through the store here, not through preprocess and inference
    assert row["seconds_to_preprocess"] is None and row["seconds_to_write"] is None


CHECKS: dict[str, Callable[[list[Row]], None]] = {
    "Crop of the parcel at a point": check_crop_at_point,
    "Biophysics of a parcel over the season": check_biophysics,
    "Parcels flagged this week": check_flagged(
        [("lpis-1", "maize", "sorghum"), ("lpis-2", "sunflower", "maize")]
    ),
    "At another threshold": check_flagged([("lpis-1", "maize", "sorghum")]),
    "LCZ map of a city as GeoJSON": check_geojson,
    "LCZ class shares of a city": check_lcz_shares,
    "Indicator trend of an area": check_trend,
    "Monthly means": check_monthly,
    "Trend of a district, by its name": check_district_trend,
    "Area units of an AOI at their latest pass, as GeoJSON": check_unit_map,
    "Latest pass status of an AOI": check_status,
}


def test_every_recipe_of_the_page_is_checked() -> None:
    found = recipes()
    assert [r.title for r in found] == list(CHECKS)  # a new recipe needs its check here
    for recipe in found:
        assert recipe.variables <= set(VARIABLES[recipe.title]), recipe.title


@pytest.mark.parametrize("recipe", recipes(), ids=lambda r: r.title)
def test_recipe_returns_the_expected_rows(
    stack: StackConfig, engine: Engine, recipe: Recipe
) -> None:
    fill(engine)
    CHECKS[recipe.title](run_as_reader(stack, recipe, VARIABLES[recipe.title]))


def test_no_parcel_at_a_point_outside_every_parcel(stack: StackConfig, engine: Engine) -> None:
    fill(engine)
    at_a_point = [r for r in recipes() if r.variables == {"lon", "lat"}]
    assert [r.title for r in at_a_point] == [
        "Crop of the parcel at a point",
        "Biophysics of a parcel over the season",
    ]
    for recipe in at_a_point:  # between two parcels
        assert run_as_reader(stack, recipe, {"lon": 5.3215, "lat": 50.6305}) == [], recipe.title


def test_psql_runs_every_recipe_as_written(stack: StackConfig, engine: Engine) -> None:
    """The page's form: psql, the reader role, variables given with -v."""
    fill(engine)
    for recipe in recipes():
        values = VARIABLES[recipe.title]
        command = [
            "psql",
            "-X",
            "-q",
            "--csv",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(stack.postgres_port),
            "-U",
            stack.postgres_reader,
            "-d",
            stack.postgres_db,
            *[arg for name, v in values.items() for arg in ("-v", f"{name}={v}")],
            "-f",
            "-",
        ]
        done = subprocess.run(
            command, input=recipe.sql, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{recipe.title}: {done.stderr}"
        header, *rows = list(csv.reader(io.StringIO(done.stdout)))
        expected = run_as_reader(stack, recipe, values)
        assert len(rows) == len(expected), recipe.title
        assert header == list(expected[0]), recipe.title
        if recipe.title == "LCZ map of a city as GeoJSON":
            assert len(json.loads(rows[0][0])["features"]) == 4
