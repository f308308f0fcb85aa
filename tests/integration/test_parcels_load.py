"""`revisit parcels load` into the real PostGIS: the 88 real eo-learn parcels (Slovenia,
EPSG:32633) and a seeded GeoPackage with repaired and rejected features."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import revisit_cli.parcels
from revisit_catalog.handler import Subscription
from revisit_catalog.registry import save_subscriptions
from revisit_cli.__main__ import main
from revisit_cli.stack import StackConfig
from revisit_common import events_pb2 as pb
from tests.unit.test_parcels_file import LULC, write_seeded

pytestmark = pytest.mark.integration

#: the eo-learn patch, roughly (the AOI's outline is not checked against the parcels)
SLOVENIA = pb.Aoi(
    name="slovenia-lpis",
    kind="parcels",
    geometry_wkt="POLYGON ((14.55 45.86, 14.59 45.86, 14.59 45.89, 14.55 45.89, 14.55 45.86))",
)
HESBAYE = pb.Aoi(
    name="hesbaye-lpis",
    kind="parcels",
    geometry_wkt="POLYGON ((5.31 50.62, 5.36 50.62, 5.36 50.64, 5.31 50.64, 5.31 50.62))",
)


def parcels(engine: Engine, aoi: str) -> list[tuple[int, str, str | None, str, bool, float]]:
    """(id, external id, declared crop, type, valid, geodesic m²) of the AOI's parcels."""
    query = text(
        "SELECT p.id, p.external_id, p.declared_crop, ST_GeometryType(p.geom), "
        "ST_IsValid(p.geom), ST_Area(geography(p.geom)) FROM parcel p JOIN aoi a "
        "ON a.id = p.aoi_id WHERE a.name = :aoi AND ST_SRID(p.geom) = 4326 ORDER BY p.id"
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query, {"aoi": aoi})]  # type: ignore[misc]


def test_the_real_parcels_load_and_a_reload_updates_them(
    engine: Engine,
    stack: StackConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(revisit_cli.parcels, "PROGRESS_EVERY", 40)
    save_subscriptions(engine, [Subscription(SLOVENIA)])
    load = ["parcels", "load", str(LULC), "--aoi", SLOVENIA.name, "--id-field", "index"]
    url = ["--database-url", stack.database_url]
    assert main([*load, "--crop-field", "LULC_NAME", *url]) == 0
    out = capsys.readouterr().out
    assert "LULC.gpkg: 88 features in EPSG:32633, ids from field 'index'" in out
    assert "loaded 88 parcels into AOI 'slovenia-lpis' (new or updated by id), " in out
    assert "repaired 0, rejected 0" in out
    assert "loaded 40 / 88 parcels\nloaded 80 / 88 parcels\n" in out
    first = parcels(engine, SLOVENIA.name)
    assert len(first) == 88
    assert {row[3] for row in first} == {"ST_Polygon"} and all(row[4] for row in first)
    assert {row[2] for row in first} >= {"grassland", None}

    # the same file again, declared crops from another field: the same rows, updated
    assert main([*load, "--crop-field", "LULC_ID", *url]) == 0
    again = parcels(engine, SLOVENIA.name)
    assert [row[:2] for row in again] == [row[:2] for row in first]
    assert {row[2] for row in again} <= {str(code) for code in range(10)}
    assert [row[5] for row in again] == pytest.approx([row[5] for row in first])


def test_bad_features_are_left_out_or_fail_the_load_when_strict(
    engine: Engine,
    stack: StackConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    save_subscriptions(engine, [Subscription(HESBAYE)])
    path = tmp_path / "lpis.gpkg"
    write_seeded(path)
    load = ["parcels", "load", str(path), "--aoi", HESBAYE.name, "--crop-field", "crop"]
    monkeypatch.setenv("REVISIT_DATABASE_URL", stack.database_url)  # no --database-url

    assert main([*load, "--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: 7 of 10 features rejected and --strict: nothing loaded\n"
    assert parcels(engine, HESBAYE.name) == []

    report = tmp_path / "report.csv"
    assert main([*load, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "loaded 3 parcels into AOI 'hesbaye-lpis' (new or updated by id), " in out
    assert "repaired 1, rejected 7" in out
    assert "  'p2' (FID 2): Self-intersection[664250 5612050]" in out
    assert "  'p6' (FID 6): duplicate id (also FID 7)" in out
    assert len(report.read_text().splitlines()) == 1 + 8
    rows = parcels(engine, HESBAYE.name)
    assert [row[1:5] for row in rows] == [
        ("p1", "maize", "ST_Polygon", True),
        ("p2", "wheat", "ST_MultiPolygon", True),
        ("p10", "sugar beet", "ST_MultiPolygon", True),
    ]
    # 100 m squares in UTM: 1 ha, half of it for the bow tie's two triangles
    assert [row[5] for row in rows] == pytest.approx([10_000, 5_000, 5_000], rel=2e-3)


def test_an_unknown_aoi_is_an_error_and_loads_nothing(
    engine: Engine, stack: StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["parcels", "load", str(LULC), "--aoi", "nowhere", "--database-url"]
    assert main([*argv, stack.database_url]) == 2
    err = capsys.readouterr().err
    assert err == "error: no AOI named 'nowhere': add it first (revisit aoi add)\n"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM parcel")).scalar() == 0
