"""Every SQL query of the Grafana dashboards, run as Grafana runs it: as the read-only role
revisit_reader, against the real schema, with rows of each indicator written by the store.
Each panel's query must run and return rows, as written with the AOI variable's values
(what Grafana sends) and with 'All' as a subquery."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely
from sqlalchemy import Engine, create_engine, text

from revisit_catalog.handler import Subscription
from revisit_catalog.registry import mark_published, record_scenes, save_subscriptions
from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from revisit_common.db.parcels import ParcelRecord, load_parcels
from revisit_store.handler import rows_for
from revisit_store.writer import write
from tests.grafana import dashboard_variables, dashboards, panel_sql, panels, targets
from tests.integration.test_store_postgis import crop_batch as crops
from tests.integration.test_store_postgis import predictions as lcz
from tests.predictions import prediction_batch, scene_discovered

pytestmark = pytest.mark.integration

FOOTPRINT = (
    "POLYGON ((5.3189 50.6289, 5.333 50.6286, 5.3334 50.6376, 5.3193 50.6378, 5.3189 50.6289))"
)
CITY = pb.Aoi(name="grafana-city", kind="city", geometry_wkt=FOOTPRINT)
PARCELS = pb.Aoi(name="grafana-parcels", kind="parcels", geometry_wkt=FOOTPRINT)
REGION = pb.Aoi(name="grafana-region", kind="region", geometry_wkt=FOOTPRINT)
PASSES = (datetime(2021, 5, 1, tzinfo=UTC), datetime(2021, 6, 1, tzinfo=UTC))
CROPS = ["maize", "sorghum", "other"]
PARCEL = "POLYGON ((5.32 50.63, 5.321 50.63, 5.321 50.631, 5.32 50.631, 5.32 50.63))"

SQL_PANELS = [
    pytest.param(name, panel, id=f"{name}:{panel['title']}")
    for name, dashboard in dashboards().items()
    for panel in panels(dashboard)
    if targets(panel, "postgis")
]


def scene(aoi: pb.Aoi, acquired: datetime) -> pb.SceneDiscovered:
    scene_id = f"S2_31UFS_{acquired:%Y%m%d}"
    return scene_discovered(aoi, acquired, scene_id, timedelta(days=1), FOOTPRINT)


def region(event: pb.SceneDiscovered, lai: float) -> list[pb.PredictionBatch]:
    land = prediction_batch(
        event,
        "land_cover",
        value_names=["tree", "built_up", "cropland", "pixels_share"],
    )
    land.predictions.append(pb.Prediction(entity_id=REGION.name, values=[0.2, 0.1, 0.6, 1]))
    bio = prediction_batch(
        event,
        "biophysics",
        value_names=[f"{v}_{s}" for s in ("mean", "median") for v in ("lai", "ccc", "fcover")]
        + ["valid_fraction"],
    )
    bio.predictions.append(
        pb.Prediction(entity_id=REGION.name, values=[lai, 1.0, 0.5, lai, 0.9, 0.4, 0.95])
    )
    return [land, bio]


@pytest.fixture
def indicators(engine: Engine) -> None:
    """Two passes of each indicator: LCZ cells of a city, crop types of three parcels
    declared maize (one predicted sorghum at 0.8: flagged), land cover and LAI of a region."""
    save_subscriptions(engine, [Subscription(a) for a in (CITY, PARCELS, REGION)])
    load_parcels(
        engine,
        PARCELS.name,
        [ParcelRecord(f"lpis-{i}", shapely.from_wkt(PARCEL), "maize") for i in range(3)],
    )
    with engine.connect() as conn:
        parcel_ids = [r[0] for r in conn.execute(text("SELECT id FROM parcel ORDER BY id"))]
    for number, acquired in enumerate(PASSES):
        events = [scene(aoi, acquired) for aoi in (CITY, PARCELS, REGION)]
        record_scenes(engine, events)
        mark_published(engine, events)
        city, parcels, area = events
        batches = [lcz(city, [9, 14, 14, 6 + number]), crops(parcels, parcel_ids)]
        for out in [*batches, *region(area, 1.0 + number)]:
            write(engine, rows_for(out))


@pytest.fixture
def reader(stack: StackConfig) -> Iterator[Engine]:
    engine = create_engine(stack.reader_database_url)
    yield engine
    engine.dispose()


def aoi_values(reader: Engine) -> list[str]:
    """The AOI variable's values, from its own query run as the reader (as Grafana does)."""
    query = dashboard_variables()["aoi"]["query"]
    with reader.connect() as conn:
        rows = conn.execute(text(query)).mappings().all()
    assert {"__value", "__text"} <= set(rows[0])
    return [str(r["__value"]) for r in rows]


def test_the_aoi_variable_lists_every_aoi(indicators: None, reader: Engine) -> None:
    assert len(aoi_values(reader)) == 3


@pytest.mark.parametrize(("dashboard_file", "panel"), SQL_PANELS)
def test_sql_panel_runs_as_the_reader_and_returns_rows(
    indicators: None, reader: Engine, dashboard_file: str, panel: dict[str, Any]
) -> None:
    written = panel_sql(panel, variables={"aoi": aoi_values(reader)})
    as_all = panel_sql(panel)
    sql_targets = targets(panel, "postgis")
    with reader.connect() as conn:
        for target, sql, sql_all in zip(sql_targets, written, as_all, strict=True):
            result = conn.execute(text(sql))
            columns, rows = list(result.keys()), result.all()
            assert rows, f"{panel['title']} {target['refId']}: no rows\n{sql}"
            assert len(conn.execute(text(sql_all)).all()) == len(rows)
            if target["format"] == "time_series":
                assert columns[0] == "time"
            if panel["type"] == "geomap":
                assert {"latitude", "longitude"} <= set(columns)
                for latitude, longitude in (
                    (r._mapping["latitude"], r._mapping["longitude"]) for r in rows
                ):
                    assert 50.6 < latitude < 50.7 and 5.3 < longitude < 5.4
            print(f"{dashboard_file} | {panel['title']} | {target['refId']}: {len(rows)} rows")
