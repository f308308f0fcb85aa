"""`revisit features` on the real PostGIS: tipg serves the result views as OGC API Features
and vector tiles, as the read-only role, to a client over HTTP; a database that cannot be
reached is one line and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely
import shapely.geometry
from sqlalchemy import Engine, create_engine, text

from revisit_cli.features import DEFAULT_TABLES
from revisit_cli.services import pythonpath
from revisit_cli.stack import StackConfig, free_port
from revisit_common import events_pb2 as pb
from revisit_common.db.parcels import ParcelRecord, load_parcels
from revisit_common.db.units import UnitRecord, load_units
from revisit_store.handler import rows_for
from revisit_store.writer import write
from tests.conftest import empty_tables
from tests.integration.test_store_postgis import (
    AOI,
    PARCELS_AOI,
    REGION_AOI,
    _published,
    area_batches,
    crop_batch,
    predictions,
)
from tests.predictions import prediction_batch

pytestmark = pytest.mark.integration

#: Three 0.001° squares along a parallel, 0.01° apart; lpis-1 is predicted sorghum.
PARCEL_X = (5.32, 5.33, 5.34)
DECLARED = ("maize", "maize", "sorghum")
#: LAI mean of each parcel (its other biophysical values made from it)
LAI = (1.0, 2.0, 3.5)


def square(x: float, y: float = 50.63, side: float = 0.001) -> shapely.Polygon:
    return shapely.box(x, y, x + side, y + side)


def features_process(*argv: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "revisit_cli", "features", *argv],
        env=dict(os.environ, PYTHONPATH=pythonpath(), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, body[:500]
    return json.loads(body)


@pytest.fixture(scope="module")
def results(stack: StackConfig) -> Iterator[Engine]:
    """Three parcels with their latest crop and biophysics, four LCZ cells of the city AOI."""
    engine = create_engine(stack.database_url)
    empty_tables(engine)
    scene = _published(engine, PARCELS_AOI)
    load_parcels(
        engine,
        PARCELS_AOI.name,
        [
            ParcelRecord(f"lpis-{i}", square(x), crop)
            for i, (x, crop) in enumerate(zip(PARCEL_X, DECLARED, strict=True))
        ],
    )
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM parcel ORDER BY id"))]
    write(engine, rows_for(crop_batch(scene, ids)))  # maize, sorghum, other at 0.8
    names = [f"{v}_{stat}" for v in ("lai", "ccc", "fcover") for stat in ("mean", "median")]
    bio = prediction_batch(scene, "parcel_biophysics", season="2020-11-01", value_names=names)
    for pid, lai in zip(ids, LAI, strict=True):
        values = [lai, lai - 0.5, lai / 2, lai / 4, lai / 8, lai / 16]
        bio.predictions.append(pb.Prediction(entity_id=str(pid), values=values, observations=30))
    write(engine, rows_for(bio))
    write(engine, rows_for(predictions(_published(engine, AOI), [9, 14, 14, 6])))
    region = _published(engine, REGION_AOI)
    load_units(engine, REGION_AOI.name, [UnitRecord("d-1", square(5.32, side=0.005), "Une")])
    land, bio = area_batches(region)
    land.predictions.add(entity_id="d-1", values=[0.3, 0.1, 0.5, 1.0])
    bio.predictions.add(entity_id="d-1", values=[1.5, 1.0, 0.5, 1.4, 0.9, 0.4, 0.9])
    write(engine, rows_for(land))
    write(engine, rows_for(bio))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def server(
    stack: StackConfig, results: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`revisit features` on a free port, as the read-only role; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("features") / "features.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "revisit_cli", "features", f"--port={port}"],
            env=dict(
                os.environ,
                PYTHONPATH=pythonpath(),
                REVISIT_READER_DATABASE_URL=stack.reader_database_url,
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in 90 s:\n{log.read_text()}"
            try:
                if get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    output = log.read_text()
    # uvicorn shuts down cleanly, then ends by the signal it was sent
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output
    assert "revisit_reader@" in output
    assert "warning: role" not in output  # the read-only role: nothing it could write
    print(f"\n`revisit features` log:\n{_tail(log)}")


def _tail(path: Path, lines: int = 8) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:])


def test_collections_list_the_result_views(server: str) -> None:
    ids = {c["id"] for c in get_json(f"{server}/collections?f=json")["collections"]}
    assert ids == {f"public.{t}" for t in DEFAULT_TABLES} | {"public.parcel_control_at"}


def test_latest_crops_of_the_parcels_as_geojson(server: str) -> None:
    status, kind, body = get(f"{server}/collections/public.parcel_latest/items?f=geojson")
    assert (status, kind) == (200, "application/geo+json")
    doc = json.loads(body)
    assert doc["type"] == "FeatureCollection"
    assert doc["numberMatched"] == doc["numberReturned"] == 3
    by_id = {f["properties"]["external_id"]: f for f in doc["features"]}
    assert {k: f["properties"]["class_name"] for k, f in by_id.items()} == {
        "lpis-0": "maize",
        "lpis-1": "sorghum",
        "lpis-2": "other",
    }
    first = by_id["lpis-0"]
    assert first["properties"]["declared_crop"] == "maize"
    assert first["properties"]["season"] == "2020-11-01"
    assert first["properties"]["observations"] == 7
    served = shapely.geometry.shape(first["geometry"])
    assert served.hausdorff_distance(square(PARCEL_X[0])) < 1e-9


def test_a_bbox_selects_the_parcels_it_meets(server: str) -> None:
    url = f"{server}/collections/public.parcel_latest/items?f=geojson&bbox=5.325,50.62,5.335,50.64"
    doc = get_json(url)
    assert [f["properties"]["external_id"] for f in doc["features"]] == ["lpis-1"]
    # a feature keeps its id whatever the request (the prediction's id, not a row number)
    every = get_json(f"{server}/collections/public.parcel_latest/items?f=geojson")
    ids = {f["properties"]["external_id"]: f["id"] for f in every["features"]}
    assert doc["features"][0]["id"] == ids["lpis-1"]
    assert len(set(ids.values())) == 3
    far = get_json(url.replace("5.325,50.62,5.335,50.64", "10,10,11,11"))
    assert far["features"] == []


def test_control_flags_and_their_threshold_as_a_query_parameter(server: str) -> None:
    def flagged(collection: str, query: str = "") -> dict[str, bool]:
        doc = get_json(f"{server}/collections/public.{collection}/items?f=geojson{query}")
        return {f["properties"]["external_id"]: f["properties"]["flagged"] for f in doc["features"]}

    # declared maize, maize, sorghum; predicted maize, sorghum, other with 0.8
    assert flagged("parcel_control") == {"lpis-0": False, "lpis-1": True, "lpis-2": True}
    assert flagged("parcel_control_at", "&min_confidence=0.9") == dict.fromkeys(
        ("lpis-0", "lpis-1", "lpis-2"), False
    )


def test_latest_biophysics_of_the_parcels(server: str) -> None:
    url = f"{server}/collections/public.parcel_biophys_latest/items?f=geojson"
    doc = get_json(url)
    assert doc["numberMatched"] == doc["numberReturned"] == 3
    by_id = {f["properties"]["external_id"]: f for f in doc["features"]}
    assert {k: f["properties"]["lai_mean"] for k, f in by_id.items()} == {
        "lpis-0": 1.0,
        "lpis-1": 2.0,
        "lpis-2": 3.5,
    }
    first = by_id["lpis-0"]["properties"]
    assert (first["lai_median"], first["ccc_mean"], first["fcover_mean"]) == (0.5, 0.5, 0.125)
    assert (first["season"], first["pixels"], first["declared_crop"]) == ("2020-11-01", 30, "maize")
    served = shapely.geometry.shape(by_id["lpis-0"]["geometry"])
    assert served.hausdorff_distance(square(PARCEL_X[0])) < 1e-9
    # a feature keeps its id whatever the request (the row's id, not a row number)
    near = get_json(f"{url}&bbox=5.325,50.62,5.335,50.64")
    assert [f["id"] for f in near["features"]] == [by_id["lpis-1"]["id"]]
    assert len({f["id"] for f in doc["features"]}) == 3


def test_area_units_with_their_indicators(server: str) -> None:
    doc = get_json(f"{server}/collections/public.area_unit_indicator/items?f=geojson")
    (unit,) = doc["features"]  # the AOI's own row has no unit: not in this view
    props = unit["properties"]
    assert (props["unit_key"], props["unit_name"], props["aoi"]) == ("d-1", "Une", REGION_AOI.name)
    assert (props["tree_fraction"], props["lai_mean"]) == pytest.approx((0.3, 1.5))
    served = shapely.geometry.shape(unit["geometry"])
    assert served.hausdorff_distance(square(5.32, side=0.005)) < 1e-9


def test_lcz_cells_and_shares(server: str) -> None:
    cells = get_json(f"{server}/collections/public.lcz_latest/items?f=geojson")
    assert sorted(f["properties"]["lcz_class"] for f in cells["features"]) == [6, 9, 14, 14]
    assert {f["geometry"]["type"] for f in cells["features"]} == {"Polygon"}
    shares = get_json(f"{server}/collections/public.lcz_share/items?f=geojson")
    assert sorted(
        (f["properties"]["lcz_class"], f["properties"]["share"]) for f in shares["features"]
    ) == [(6, 0.25), (9, 0.25), (14, 0.5)]


def test_a_vector_tile_holds_the_parcels(server: str) -> None:
    import morecantile

    tile = morecantile.tms.get("WebMercatorQuad").tile(PARCEL_X[1] + 0.0005, 50.6305, 14)
    path = f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"
    status, kind, body = get(f"{server}/collections/public.parcel_latest/{path}")
    assert (status, kind) == (200, "application/vnd.mapbox-vector-tile")
    assert b"parcel_latest" in body  # the layer's name
    assert b"lpis-1" in body
    status, _, empty = get(
        f"{server}/collections/public.parcel_latest/tiles/WebMercatorQuad/14/0/0"
    )
    assert (status, empty) == (200, b"")


def test_an_unreachable_database_is_one_line_and_status_2() -> None:
    closed = f"postgresql+psycopg://revisit_reader@127.0.0.1:{free_port()}/revisit"
    proc = features_process(f"--port={free_port()}", f"--database-url={closed}")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the database"), output


def test_a_table_that_is_not_there_is_named(stack: StackConfig) -> None:
    proc = features_process(
        f"--port={free_port()}",
        "--tables=parcel_latest,no_such_view",
        REVISIT_READER_DATABASE_URL=stack.reader_database_url,
    )
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    assert output.startswith("error: ") and len(output.strip().splitlines()) == 1, output
    assert "has no public.no_such_view: run `revisit db upgrade`" in output
