"""`revisit areas load` into the real PostGIS: seeded area units in EPSG:32631 over the
region AOI (halves, a bow-tie to repair, one outside, one astride the edge, a duplicate
id, a point), then the land-cover rows of a unit joined to its name and geometry."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyogrio.raw  # type: ignore[import-untyped]
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, text

from revisit_cli.__main__ import main
from revisit_cli.stack import StackConfig
from revisit_store.handler import rows_for
from revisit_store.writer import write
from tests.integration.test_store_postgis import (
    ACQUIRED,
    PARCELS_AOI,
    REGION_AOI,
    area_batches,
    publish,
)
from tests.predictions import scene_discovered

pytestmark = pytest.mark.integration


def _utm_bounds() -> tuple[float, float, float, float]:
    to_utm = Transformer.from_crs(4326, 32631, always_xy=True).transform
    aoi = shapely.transform(shapely.from_wkt(REGION_AOI.geometry_wkt), to_utm, interleaved=False)
    return aoi.bounds  # type: ignore[no-any-return]


def units_file(path: Path, features: list[tuple[str, str, BaseGeometry | None]]) -> Path:
    """(code, label, geometry in EPSG:32631) as a GeoJSON file."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        pyogrio.raw.write(
            path,
            np.array([None if g is None else shapely.to_wkb(g) for _, _, g in features], object),
            [
                np.array([f[0] for f in features], object),
                np.array([f[1] for f in features], object),
            ],
            ["code", "label"],
            crs="EPSG:32631",
            driver="GeoJSON",
            geometry_type="Unknown",
        )
    return path


def seeded_units() -> list[tuple[str, str, BaseGeometry | None]]:
    x0, y0, x1, y1 = _utm_bounds()
    ym, w = (y0 + y1) / 2, x1 - x0
    return [
        ("N", "North", box(x0 - 50, ym, x1 + 50, y1 + 50)),
        ("S", "South", box(x0 - 50, y0 - 50, x1 + 50, ym)),
        # a self-intersecting ring inside the AOI: repaired into its two triangles
        (
            "BT",
            "Bow-tie",
            Polygon(
                [
                    (x0 + 100, y0 + 100),
                    (x0 + 300, y0 + 300),
                    (x0 + 300, y0 + 100),
                    (x0 + 100, y0 + 300),
                ]
            ),
        ),
        ("FAR", "Elsewhere", box(x1 + 5000, y0, x1 + 6000, y1)),
        ("EDGE", "Astride", box(x1 - w / 4, y0, x1 + w / 4, y1)),
        ("D", "Twice", box(x0, y0, x0 + 10, y0 + 10)),
        ("D", "Twice", box(x0 + 20, y0, x0 + 30, y0 + 10)),
        ("P", "A point", Point(x0 + 10, y0 + 10)),
    ]


def unit_rows(engine: Engine) -> dict[str, tuple[str | None, str, bool, float]]:
    """key -> (name, type, valid, share of the AOI's area it covers)."""
    query = text(
        "SELECT u.unit_key, u.name, ST_GeometryType(u.geom), ST_IsValid(u.geom), "
        "ST_Area(ST_Intersection(u.geom, a.geom)) / ST_Area(a.geom) "
        "FROM area_unit u JOIN aoi a ON a.id = u.aoi_id WHERE ST_SRID(u.geom) = 4326"
    )
    with engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(query)}  # type: ignore[misc]


def test_units_load_with_a_report_and_aggregate_rows_join_to_them(
    engine: Engine, stack: StackConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = scene_discovered(REGION_AOI, ACQUIRED, "WORLDCEREAL_S2_31UFS_20210601_MONTHLY")
    publish(engine, [scene])
    path = units_file(tmp_path / "units.geojson", seeded_units())
    load = ["areas", "load", str(path), "--aoi", REGION_AOI.name, "--id-field", "code"]
    url = ["--database-url", stack.database_url]
    assert main([*load, "--name-field", "label", *url]) == 0
    out = capsys.readouterr().out
    assert (
        "units.geojson: 8 features in EPSG:32631, ids from field 'code', names from 'label'" in out
    )
    assert "left out 1 units with no area inside the AOI: 'FAR'" in out
    assert "unit 'EDGE': 50% of it inside the AOI" in out
    assert "loaded 4 area units into AOI 'hesbaye-region'" in out
    assert "repaired 1, rejected 3" in out
    rows = unit_rows(engine)
    assert set(rows) == {"N", "S", "BT", "EDGE"}
    assert rows["N"][0] == "North" and rows["BT"][1] == "ST_MultiPolygon"
    assert all(valid for _, _, valid, _ in rows.values())
    assert rows["N"][3] + rows["S"][3] == pytest.approx(1.0, abs=1e-3)  # halves tile the AOI

    # the store writes unit rows by key beside the AOI's; the view names and maps them
    land, bio = area_batches(scene)
    for batch, values in ((land, [0.5, 0.0, 0.4, 0.9]), (bio, [3.0, 2.0, 0.7, 3.1, 1.9, 0.6, 0.8])):
        batch.predictions.add(entity_id="N", values=values)
        write(engine, rows_for(batch))
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT area_key FROM landcover_indicator ORDER BY 1")).scalars()
        assert list(keys) == ["N", "hesbaye-region"]
        view = conn.execute(
            text(
                "SELECT aoi, unit_key, unit_name, tree_fraction, lai_mean, valid_pixel_share, "
                "ST_Area(geom) > 0 FROM area_unit_indicator"
            )
        ).all()
    assert [tuple(r) for r in view] == [
        pytest.approx(("hesbaye-region", "N", "North", 0.5, 3.0, 0.8, True))
    ]

    # --replace: the AOI keeps only the file's units; a reload updates names in place
    only = units_file(tmp_path / "north.geojson", [("N", "Nord", seeded_units()[0][2])])
    assert (
        main(
            [
                "areas",
                "load",
                str(only),
                "--aoi",
                REGION_AOI.name,
                "--id-field",
                "code",
                "--name-field",
                "label",
                "--replace",
                *url,
            ]
        )
        == 0
    )
    assert "others removed" in capsys.readouterr().out
    assert {k: v[0] for k, v in unit_rows(engine).items()} == {"N": "Nord"}


def test_units_of_a_parcels_aoi_or_named_as_the_aoi_are_errors(
    engine: Engine, stack: StackConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(engine, [scene_discovered(PARCELS_AOI, ACQUIRED, "S2_PARCELS")])
    publish(engine, [scene_discovered(REGION_AOI, ACQUIRED, "S2_REGION")])
    x0, y0, x1, y1 = _utm_bounds()
    url = ["--database-url", stack.database_url]
    path = units_file(tmp_path / "u.geojson", [("A", "A", box(x0, y0, x1, y1))])
    assert main(["areas", "load", str(path), "--aoi", PARCELS_AOI.name, *url]) == 2
    assert "is a parcels AOI: area units aggregate" in capsys.readouterr().err
    named = units_file(tmp_path / "n.geojson", [(REGION_AOI.name, "x", box(x0, y0, x1, y1))])
    code = ["--id-field", "code"]
    assert main(["areas", "load", str(named), "--aoi", REGION_AOI.name, *code, *url]) == 2
    assert "is the AOI's name" in capsys.readouterr().err
    assert main(["areas", "load", str(path), "--aoi", "nowhere", *url]) == 2
    assert "no AOI named 'nowhere'" in capsys.readouterr().err
    assert unit_rows(engine) == {}
