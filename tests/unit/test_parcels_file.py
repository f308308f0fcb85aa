"""Reading and checking parcel files without a database: the real eo-learn parcels
(GeoPackage, EPSG:32633) and seeded files in EPSG:32631 with every kind of bad feature,
written as GeoPackage, GeoJSON and Shapefile by GDAL (pyogrio)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from pyproj import Geod
from shapely import affinity

from revisit_cli import parcels
from revisit_cli.__main__ import main
from revisit_cli.parcels import ParcelFileError, check_geometry, read_parcel_file, text_value
from revisit_cli.stack import REPO_ROOT
from revisit_common.db.parcels import ParcelRecord

LULC = REPO_ROOT / "data" / "eo-learn" / "LULC.gpkg"
DRIVERS = {"gpkg": "GPKG", "geojson": "GeoJSON", "shp": "ESRI Shapefile"}
X, Y = 664000.0, 5612000.0  # EPSG:32631, in Hesbaye (Belgium)


def square(dx: float, size: float = 100.0) -> shapely.Polygon:
    return shapely.box(X + dx, Y, X + dx + size, Y + size)


BOWTIE = shapely.Polygon([(X, Y), (X + 100, Y + 100), (X + 100, Y), (X, Y + 100), (X, Y)])
#: (id, geometry, declared crop) in FID order; None: a null
SEEDED: list[tuple[str | None, shapely.Geometry | None, str | None]] = [
    ("p1", square(0), "maize"),
    ("p2", affinity.translate(BOWTIE, 200), "wheat"),  # repaired: two triangles
    ("p3", shapely.Point(X + 400, Y), "maize"),  # rejected: not an area (no Shapefile)
    ("p4", shapely.Polygon(), None),  # rejected: empty (a null in a Shapefile)
    ("p5", None, None),  # rejected: no geometry
    ("p6", square(600), "barley"),  # rejected, both: the same id
    ("p6", square(800), "barley"),
    (None, square(1000), "maize"),  # rejected: no id
    # rejected: invalid and nothing left once repaired (a polygon folded onto a line)
    ("p9", shapely.Polygon([(X, Y), (X + 50, Y), (X + 100, Y), (X, Y)]), None),
    ("p10", shapely.MultiPolygon([square(1200, 50), square(1300, 50)]), " sugar beet "),
]


def write_seeded(path: Path, crs: str | None = "EPSG:32631") -> None:
    """The SEEDED features as a GeoPackage, GeoJSON or Shapefile (by extension)."""
    rows = [r for r in SEEDED if not (path.suffix == ".shp" and isinstance(r[1], shapely.Point))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        pyogrio.raw.write(
            path,
            np.array([None if g is None else shapely.to_wkb(g) for _, g, _ in rows], object),
            [np.array([r[0] for r in rows], object), np.array([r[2] for r in rows], object)],
            ["parcel_id", "crop"],
            crs=crs,
            driver=DRIVERS[path.suffix[1:]],
            geometry_type="Polygon" if path.suffix == ".shp" else "Unknown",
        )


def reasons(issues: list[parcels.Issue]) -> dict[str, str]:
    return {f"{i.external_id}@{i.fid}": i.reason for i in issues}


def test_the_real_lpis_parcels_are_read_and_reprojected() -> None:
    records, report = read_parcel_file(LULC, id_field="index", crop_field="LULC_NAME")
    _, _, wkb, (index, area, names) = pyogrio.raw.read(LULC, columns=["index", "AREA", "LULC_NAME"])
    assert report.header() == (
        "LULC.gpkg: 88 features in EPSG:32633, ids from field 'index', "
        "declared crops from 'LULC_NAME'"
    )
    assert (report.accepted, report.repaired, report.rejected) == (88, [], [])
    assert [r.external_id for r in records] == list(index)
    # blank names (a few parcels have one) are no declared crop
    assert [r.declared_crop for r in records] == [n or None for n in names]
    assert 0 < sum(not n for n in names) < 88
    geod = Geod(ellps="WGS84")
    for record, utm, expected in zip(records, shapely.from_wkb(wkb), area, strict=True):
        assert record.geometry.geom_type == "Polygon" and record.geometry.is_valid
        west, south, east, north = record.geometry.bounds
        assert 14.5 < west < east < 14.6 and 45.8 < south < north < 45.9  # Slovenia
        assert len(record.geometry.exterior.coords) == len(utm.exterior.coords)
        # the geodesic area of the reprojected polygon is the register's AREA (m²)
        geodesic = abs(geod.geometry_area_perimeter(record.geometry)[0])
        assert geodesic == pytest.approx(expected, rel=2e-3)


def test_without_an_id_field_the_fids_are_the_ids() -> None:
    records, report = read_parcel_file(LULC)
    assert report.id_field is None and "ids from the FIDs" in report.header()
    assert [r.external_id for r in records] == [str(i) for i in range(1, 89)]
    assert {r.declared_crop for r in records} == {None}


def test_geojson_feature_ids_in_wgs84_are_kept_as_they_are(tmp_path: Path) -> None:
    ring = [[5.32, 50.63], [5.321, 50.63], [5.321, 50.631], [5.32, 50.631], [5.32, 50.63]]
    path = tmp_path / "survey.geojson"  # RFC 7946: no "crs" member, longitude first
    path.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "id": "BE-1", '
        '"properties": {"crop": "maize"}, "geometry": {"type": "Polygon", "coordinates": '
        f"[{ring}]}}}}]}}"
    )
    records, report = read_parcel_file(path, crop_field="crop")
    assert report.header() == (
        "survey.geojson: 1 feature in EPSG:4326, ids from field 'id', declared crops from 'crop'"
    )
    assert records == [ParcelRecord("BE-1", shapely.Polygon(ring), "maize")]


@pytest.mark.parametrize("suffix", ["gpkg", "geojson", "shp"])
def test_bad_features_are_repaired_or_rejected_with_a_reason(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"lpis.{suffix}"
    write_seeded(path)
    records, report = read_parcel_file(path, crop_field="CROP")  # any case
    assert report.id_field == "parcel_id" and report.crop_field == "crop"
    assert report.crs == "EPSG:32631"
    loaded = {r.external_id: r for r in records}
    assert list(loaded) == ["p1", "p2", "p10"]
    assert [loaded[i].declared_crop for i in loaded] == ["maize", "wheat", "sugar beet"]
    assert report.accepted == 3
    # the bow tie is two triangles, half of the square it spans
    bowtie = loaded["p2"].geometry
    assert bowtie.geom_type == "MultiPolygon" and len(bowtie.geoms) == 2 and bowtie.is_valid
    assert bowtie.area == pytest.approx(loaded["p1"].geometry.area / 2, rel=1e-3)
    assert all(r.geometry.is_valid for r in records)
    assert all(-180 <= c <= 180 for r in records for c in r.geometry.bounds)

    first = 1 if suffix == "gpkg" else 0  # GDAL numbers GeoPackage FIDs from 1
    written = [n for n, row in enumerate(SEEDED) if not (suffix == "shp" and row[0] == "p3")]
    fid = {SEEDED[n][0] or "no id": first + k for k, n in enumerate(written) if n != 6}
    fid["p6 again"] = fid["p6"] + 1
    assert reasons(report.repaired) == {f"p2@{fid['p2']}": "Self-intersection[664250 5612050]"}
    expected = {
        f"p3@{fid.get('p3')}": "not a polygon but a Point",
        f"p4@{fid['p4']}": "no geometry" if suffix == "shp" else "empty geometry",
        f"p5@{fid['p5']}": "no geometry",
        f"p6@{fid['p6']}": f"duplicate id (also FID {fid['p6 again']})",
        f"p6@{fid['p6 again']}": f"duplicate id (also FID {fid['p6']})",
        f"None@{fid['no id']}": "no id in field 'parcel_id'",
        f"p9@{fid['p9']}": "invalid (Self-intersection[664050 5612000]) and no area left once "
        "repaired",
    }
    if suffix == "shp":  # no points in a polygon Shapefile
        del expected["p3@None"]
    assert reasons(report.rejected) == expected
    assert [i.fid for i in report.rejected] == sorted(i.fid for i in report.rejected)


def test_the_report_lists_a_few_and_the_csv_all(tmp_path: Path) -> None:
    path = tmp_path / "lpis.gpkg"
    write_seeded(path)
    _, report = read_parcel_file(path)
    lines = report.details(limit=2)
    assert lines[:2] == ["repaired 1:", "  'p2' (FID 2): Self-intersection[664250 5612050]"]
    assert lines[2:] == [
        "rejected 7:",
        "  'p3' (FID 3): not a polygon but a Point",
        "  'p4' (FID 4): empty geometry",
        "  … and 5 more (all of them: --report FILE)",
    ]
    report.write_csv(tmp_path / "report.csv")
    with (tmp_path / "report.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["fid"], r["external_id"], r["outcome"]) for r in rows] == [
        ("2", "p2", "repaired"),
        ("3", "p3", "rejected"),
        ("4", "p4", "rejected"),
        ("5", "p5", "rejected"),
        ("6", "p6", "rejected"),
        ("7", "p6", "rejected"),
        ("8", "", "rejected"),
        ("9", "p9", "rejected"),
    ]


def test_a_file_without_crs_is_an_error(tmp_path: Path) -> None:
    for name in ("nocrs.shp", "nocrs.gpkg"):
        write_seeded(tmp_path / name, crs=None)
        with pytest.raises(ParcelFileError, match="has no coordinate reference system"):
            read_parcel_file(tmp_path / name)


def test_layers_and_fields_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "two.gpkg"
    write_seeded(path)
    wkb = np.array([shapely.to_wkb(square(0))], dtype=object)
    pyogrio.raw.write(
        path, wkb, [np.array(["x"], dtype=object)], ["id"], layer="other", crs="EPSG:32631",
        driver="GPKG", geometry_type="Polygon", append=True,
    )  # fmt: skip
    with pytest.raises(ParcelFileError, match=r"2 layers \(two, other\): choose one with --layer"):
        read_parcel_file(path)
    records, report = read_parcel_file(path, layer="other")
    assert [r.external_id for r in records] == ["x"] and report.source == "two.gpkg, layer 'other'"
    with pytest.raises(ParcelFileError, match="cannot read"):
        read_parcel_file(path, layer="third")
    with pytest.raises(ParcelFileError, match=r"no field 'code' for the ids \(fields: parcel_id"):
        read_parcel_file(path, layer="two", id_field="code")
    with pytest.raises(ParcelFileError, match="No such file"):
        read_parcel_file(tmp_path / "missing.gpkg")


def test_numeric_ids_read_as_integers_and_nulls_as_missing(tmp_path: Path) -> None:
    path = tmp_path / "numeric.shp"
    wkb = np.array([shapely.to_wkb(square(i * 200)) for i in range(3)], dtype=object)
    pyogrio.raw.write(
        path, wkb, [np.array([101, 0, 103])], ["ID"],
        field_mask=[np.array([False, True, False])], crs="EPSG:32631",
        driver="ESRI Shapefile", geometry_type="Polygon",
    )  # fmt: skip
    records, report = read_parcel_file(path)  # "ID" is the id field in any case
    assert report.id_field == "ID"
    assert [r.external_id for r in records] == ["101", "103"]
    assert reasons(report.rejected) == {"None@1": "no id in field 'ID'"}


def test_geometry_checks() -> None:
    assert check_geometry(square(0)).geometry == square(0)
    assert check_geometry(square(0)).reason == "" and not check_geometry(square(0)).repaired
    fixed = check_geometry(BOWTIE)
    assert fixed.repaired and fixed.geometry is not None and fixed.geometry.is_valid
    # a ring touching itself: repaired into a valid polygon of the same area
    touching = shapely.Polygon(
        [(0, 0), (4, 0), (4, 4), (2, 4), (2, 2), (1, 3), (3, 3), (2, 2), (2, 4), (0, 4), (0, 0)]
    )
    assert not touching.is_valid
    repaired = check_geometry(touching)
    assert repaired.repaired and repaired.geometry is not None
    assert repaired.geometry.area == pytest.approx(shapely.make_valid(touching).area)
    collection = shapely.GeometryCollection([square(0), shapely.Point(0, 0)])
    assert check_geometry(collection).reason == "not a polygon but a GeometryCollection"
    assert check_geometry(shapely.LineString([(0, 0), (1, 1)])).geometry is None
    assert check_geometry(None).reason == "no geometry"
    assert check_geometry(shapely.MultiPolygon()).reason == "empty geometry"


def test_field_values_as_text() -> None:
    assert [text_value(v) for v in (None, float("nan"), "  ", " a ", 12.0, 12.5, np.int64(7))] == [
        None,
        None,
        None,
        "a",
        "12",
        "12.5",
        "7",
    ]


def test_progress_every_so_many_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parcels, "PROGRESS_EVERY", 4)
    path = tmp_path / "lpis.geojson"
    write_seeded(path)
    lines: list[str] = []
    read_parcel_file(path, progress=lines.append)
    assert lines == [
        "reading lpis.geojson (10 features)",
        "checked 4 / 10 features",
        "checked 8 / 10 features",
    ]


def test_cli_checks_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lpis.gpkg"
    write_seeded(path)
    unreachable = ["--database-url", "postgresql+psycopg://nobody@127.0.0.1:9/none"]
    assert main(["parcels", "load", str(path), "--aoi", "x", "--dry-run", *unreachable]) == 0
    out = capsys.readouterr().out
    assert "lpis.gpkg: 10 features in EPSG:32631, ids from field 'parcel_id'" in out
    assert "would load 3 parcels into AOI 'x' (repaired 1, rejected 7): dry run" in out
    assert main(["parcels", "load", str(path), "--aoi", "x", "--strict", *unreachable]) == 2
    captured = capsys.readouterr()
    assert "rejected 7:" in captured.out
    assert captured.err == "error: 7 of 10 features rejected and --strict: nothing loaded\n"
    assert main(["parcels", "load", str(path), "--aoi", "x", *unreachable]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "error: cannot reach the database postgresql+psycopg://nobody@127.0.0.1:9"
    )
    assert err.endswith("; nothing loaded\n")
    write_seeded(tmp_path / "nocrs.shp", crs=None)
    assert main(["parcels", "load", str(tmp_path / "nocrs.shp"), "--aoi", "x"]) == 2
    assert "error: nocrs.shp has no coordinate reference system" in capsys.readouterr().err


def test_a_polygon_outside_the_projection_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "far.gpkg"
    far = shapely.box(1e9, 1e9, 1e9 + 100, 1e9 + 100)  # out of any UTM zone
    wkb = np.array([shapely.to_wkb(g) for g in (far, square(0))], dtype=object)
    pyogrio.raw.write(
        path, wkb, [np.array(["far", "ok"], dtype=object)], ["id"], crs="EPSG:32631",
        driver="GPKG", geometry_type="Polygon",
    )  # fmt: skip
    records, report = read_parcel_file(path)
    assert [r.external_id for r in records] == ["ok"]
    assert reasons(report.rejected) == {"far@1": "cannot be reprojected to EPSG:4326"}
