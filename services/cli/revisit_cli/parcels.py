"""`revisit parcels load FILE --aoi NAME`: the parcels of an AOI (an LPIS export with the
declared crops, a field survey) from a GeoPackage, GeoJSON or Shapefile into PostGIS.

Every feature is checked before anything is written: a feature without an id or a
geometry, with an empty or non-polygonal geometry, or with an id that another feature of
the file also has is rejected; an invalid polygon is repaired (`shapely.make_valid`, its
polygonal parts kept). Reading and checking (`read_parcel_file`) need no database."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from revisit_cli.stack import command_database_url

if TYPE_CHECKING:  # pyproj and the database models load when a command needs them
    from pyproj import CRS
    from sqlalchemy import Engine

    from revisit_common.db.parcels import ParcelRecord

#: Id fields tried in this order (case-insensitive) without --id-field; else the FIDs.
ID_FIELDS = ("id", "parcel_id", "external_id")
#: A progress line every so many features (read, then loaded).
PROGRESS_EVERY = 10_000
POLYGON, MULTIPOLYGON, COLLECTION = 3, 6, 7  # shapely type ids


class ParcelFileError(ValueError):
    """A file that cannot be read as parcels at all: no CRS, no such layer or field."""


@dataclass(frozen=True)
class Issue:
    """What was done about one feature: repaired, or why it was rejected."""

    fid: int
    external_id: str | None
    reason: str

    def label(self) -> str:
        if self.external_id is None:
            return f"FID {self.fid}"
        return f"{self.external_id!r} (FID {self.fid})"


@dataclass
class ParcelReport:
    """The outcome of reading one layer: parcels accepted, repaired, rejected."""

    source: str  # the file, and its layer where it has several
    crs: str
    features: int
    id_field: str | None  # None: the features' FIDs are the ids
    crop_field: str | None  # the attribute field kept with each feature
    accepted: int = 0  # including the repaired ones
    repaired: list[Issue] = field(default_factory=list)
    rejected: list[Issue] = field(default_factory=list)
    attribute: str = "declared crops"  # what `crop_field` holds

    def header(self) -> str:
        ids = f"ids from field {self.id_field!r}" if self.id_field else "ids from the FIDs"
        crops = f", {self.attribute} from {self.crop_field!r}" if self.crop_field else ""
        features = f"{self.features} feature{'' if self.features == 1 else 's'}"
        return f"{self.source}: {features} in {self.crs}, {ids}{crops}"

    def details(self, limit: int = 10) -> list[str]:
        """The repaired and rejected features, at most `limit` of each."""
        lines = []
        for title, issues in (("repaired", self.repaired), ("rejected", self.rejected)):
            if not issues:
                continue
            lines.append(f"{title} {len(issues)}:")
            lines += [f"  {issue.label()}: {issue.reason}" for issue in issues[:limit]]
            if len(issues) > limit:
                lines.append(f"  … and {len(issues) - limit} more (all of them: --report FILE)")
        return lines

    def write_csv(self, path: Path) -> None:
        """Every repaired and rejected feature: fid, external_id, outcome, reason."""
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["fid", "external_id", "outcome", "reason"])
            for outcome, issues in (("repaired", self.repaired), ("rejected", self.rejected)):
                for issue in issues:
                    writer.writerow([issue.fid, issue.external_id or "", outcome, issue.reason])


@dataclass(frozen=True)
class Checked:
    """A geometry to load (None: rejected) and the reason it was repaired or rejected."""

    geometry: BaseGeometry | None
    reason: str = ""

    @property
    def repaired(self) -> bool:
        return self.geometry is not None and bool(self.reason)


def polygonal_parts(geom: BaseGeometry) -> BaseGeometry | None:
    """The Polygon or MultiPolygon made of the polygonal parts of `geom` (None: none)."""
    polygons, pending = [], [geom]
    while pending:
        part = pending.pop()
        kind = shapely.get_type_id(part)
        if kind == POLYGON and not part.is_empty:
            polygons.append(part)
        elif kind in (MULTIPOLYGON, COLLECTION):
            pending += list(reversed(shapely.get_parts(part)))
    if not polygons:
        return None
    if len(polygons) == 1:
        return polygons[0]
    merged = shapely.multipolygons(polygons)
    return merged if merged.is_valid else shapely.union_all(polygons)


def check_geometry(geom: BaseGeometry | None) -> Checked:
    """Reject what is not an area; repair an invalid polygon, keeping its polygonal parts."""
    if geom is None:
        return Checked(None, "no geometry")
    if geom.is_empty:
        return Checked(None, "empty geometry")
    if shapely.get_type_id(geom) not in (POLYGON, MULTIPOLYGON):
        return Checked(None, f"not a polygon but a {geom.geom_type}")
    if geom.is_valid:
        return Checked(geom)
    reason = shapely.is_valid_reason(geom)
    fixed = polygonal_parts(shapely.make_valid(geom))
    if fixed is None or fixed.area == 0:
        return Checked(None, f"invalid ({reason}) and no area left once repaired")
    return Checked(fixed, reason)


def text_value(value: Any) -> str | None:
    """A field value as text: integral numbers without '.0', nulls and blanks as None."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None  # pyogrio reads a null of a numeric field as NaN
        return str(int(value)) if float(value).is_integer() else str(float(value))
    text = str(value).strip()
    return text or None


def _pick_field(fields: list[str], wanted: str, what: str, source: str) -> str:
    if wanted in fields:
        return wanted
    matches = [f for f in fields if f.lower() == wanted.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ParcelFileError(
        f"{source} has no field {wanted!r} for the {what} (fields: {', '.join(fields) or 'none'})"
    )


def default_id_field(fields: list[str]) -> str | None:
    """The first of ID_FIELDS the layer has (any case); None: use the FIDs."""
    by_lower = {f.lower(): f for f in fields}
    return next((by_lower[name] for name in ID_FIELDS if name in by_lower), None)


def _layer(path: str, layer: str | None) -> str:
    import pyogrio  # type: ignore[import-untyped]

    layers = [str(name) for name, kind in pyogrio.list_layers(path) if kind is not None]
    if layer is not None:
        return layer
    if len(layers) > 1:
        raise ParcelFileError(
            f"{path} has {len(layers)} layers ({', '.join(layers)}): choose one with --layer"
        )
    if not layers:
        raise ParcelFileError(f"{path} has no layer with geometries")
    return layers[0]


def _to_wgs84(crs: CRS) -> Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None:
    from pyproj import Transformer

    if crs.equals(4326, ignore_axis_order=True):
        return None  # GDAL gives longitude, latitude: nothing to do
    transformer = Transformer.from_crs(crs, 4326, always_xy=True)

    def reproject(geoms: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = shapely.transform(
            geoms, transformer.transform, include_z=False, interleaved=False
        )
        return out

    return reproject


def read_parcel_file(
    path: str | Path,
    layer: str | None = None,
    id_field: str | None = None,
    crop_field: str | None = None,
    progress: Callable[[str], None] | None = None,
    attribute: str = "declared crops",
) -> tuple[list[ParcelRecord], ParcelReport]:
    """The parcels of one layer in EPSG:4326, checked, and the report of what was done.

    Ids come from `id_field`, else from the first of ID_FIELDS the layer has, else from the
    features' FIDs (as GDAL numbers them: from 1 in a GeoPackage, from 0 in a Shapefile).
    Raises ParcelFileError for a file that cannot be read, or has no CRS."""
    import pyogrio
    import pyogrio.raw  # type: ignore[import-untyped]
    from pyogrio.errors import DataLayerError, DataSourceError  # type: ignore[import-untyped]
    from pyproj import CRS

    from revisit_common.db.parcels import ParcelRecord

    path = str(path)
    try:
        layer = _layer(path, layer)
        info = pyogrio.read_info(path, layer=layer)
    except (DataSourceError, DataLayerError) as exc:
        raise ParcelFileError(f"cannot read {path}: {str(exc).removeprefix(path + ': ')}") from exc
    name = Path(path).name
    source = f"{name}, layer {layer!r}" if layer != Path(name).stem else name
    if not info["crs"]:
        raise ParcelFileError(
            f"{source} has no coordinate reference system: give it one (for a Shapefile, "
            "its .prj; or `ogr2ogr -a_srs EPSG:<code> out.gpkg FILE`)"
        )
    fields = [str(f) for f in info["fields"]]
    if id_field is not None:
        id_field = _pick_field(fields, id_field, "ids", source)
    else:
        id_field = default_id_field(fields)
    if crop_field is not None:
        crop_field = _pick_field(fields, crop_field, attribute, source)
    columns = [f for f in (id_field, crop_field) if f is not None]
    if progress and not 0 <= info["features"] < PROGRESS_EVERY:  # -1: not counted
        progress(f"reading {source} ({info['features']:,} features)")
    try:
        meta, fids, wkb, values = pyogrio.raw.read(
            path, layer=layer, columns=columns, return_fids=True, force_2d=True
        )
    except (DataSourceError, DataLayerError) as exc:
        raise ParcelFileError(f"cannot read {source}: {exc}") from exc
    crs = CRS.from_user_input(meta["crs"])
    epsg = crs.to_epsg()
    report = ParcelReport(
        source=source,
        crs=f"EPSG:{epsg}" if epsg else crs.name,
        features=len(fids),
        id_field=id_field,
        crop_field=crop_field,
        attribute=attribute,
    )
    by_name = dict(zip(meta["fields"], values, strict=True))

    ids = [text_value(v) for v in (by_name[id_field] if id_field else fids)]
    crops = [text_value(v) for v in by_name[crop_field]] if crop_field else [None] * len(ids)
    fids_of: dict[str, list[int]] = defaultdict(list)
    for fid, external_id in zip(fids, ids, strict=True):
        if external_id is not None:
            fids_of[external_id].append(int(fid))
    geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    # valid polygons (nearly all of them) are checked at once, the others one by one
    fine = (
        np.isin(shapely.get_type_id(geoms), (POLYGON, MULTIPOLYGON))
        & ~shapely.is_empty(geoms)
        & shapely.is_valid(geoms)
    )
    kept: list[tuple[int, str, BaseGeometry, str | None]] = []
    for i, (fid, external_id, geom, crop) in enumerate(
        zip(fids.tolist(), ids, geoms, crops, strict=True)
    ):
        if progress and i and i % PROGRESS_EVERY == 0:
            progress(f"checked {i:,} / {report.features:,} features")
        if external_id is None:
            report.rejected.append(Issue(fid, None, f"no id in field {id_field!r}"))
            continue
        same = fids_of[external_id]
        if len(same) > 1:
            others = ", ".join(str(f) for f in same if f != fid)
            report.rejected.append(Issue(fid, external_id, f"duplicate id (also FID {others})"))
            continue
        if fine[i]:
            kept.append((fid, external_id, geom, crop))
            continue
        if geom is None and wkb[i] is not None:
            report.rejected.append(Issue(fid, external_id, "unreadable geometry"))
            continue
        checked = check_geometry(geom)
        if checked.geometry is None:
            report.rejected.append(Issue(fid, external_id, checked.reason))
            continue
        report.repaired.append(Issue(fid, external_id, checked.reason))
        kept.append((fid, external_id, checked.geometry, crop))

    reproject = _to_wgs84(crs)
    projected = np.array([g for _, _, g, _ in kept], dtype=object)
    if reproject is not None and len(kept):
        projected = reproject(projected)
    finite = np.isfinite(shapely.bounds(projected).reshape(-1, 4)).all(axis=1)
    valid = shapely.is_valid(projected)
    repaired = {issue.fid: issue for issue in report.repaired}
    records = []
    for (fid, external_id, _, crop), geom, is_finite, is_valid in zip(
        kept, projected, finite, valid, strict=True
    ):
        checked = Checked(geom)
        if not is_finite:
            checked = Checked(None, "cannot be reprojected to EPSG:4326")
        elif not is_valid:  # the reprojection moved a vertex too far (rare)
            checked = check_geometry(geom)
            reason = f"{checked.reason} (after reprojection to EPSG:4326)"
            checked = Checked(checked.geometry, reason)
        if checked.geometry is None:
            report.rejected.append(Issue(fid, external_id, checked.reason))
            repaired.pop(fid, None)
            continue
        if checked.repaired and fid not in repaired:
            repaired[fid] = Issue(fid, external_id, checked.reason)
        records.append(ParcelRecord(external_id, checked.geometry, crop))
    report.repaired = sorted(repaired.values(), key=lambda issue: issue.fid)
    report.rejected.sort(key=lambda issue: issue.fid)
    report.accepted = len(records)
    return records, report


def _counting(records: list[ParcelRecord], say: Callable[[str], None]) -> Iterator[ParcelRecord]:
    for i, record in enumerate(records):
        if i and i % PROGRESS_EVERY == 0:
            say(f"loaded {i:,} / {len(records):,} parcels")
        yield record


def say(line: str) -> None:
    print(line, flush=True)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def load_file(
    args: argparse.Namespace,
    attribute_field: str | None,
    attribute: str,
    noun: str,
    load: Callable[[Engine, list[ParcelRecord]], str],
) -> int:
    """Read, check and report a polygon file, then `load` its records (unless --dry-run);
    `load` returns the line to end with, or raises ValueError with the reason."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    try:
        records, report = read_parcel_file(
            args.file, args.layer, args.id_field, attribute_field, say, attribute
        )
    except ParcelFileError as exc:
        return fail(str(exc))
    say(report.header())
    if args.report:
        report.write_csv(args.report)
    for line in report.details():
        say(line)
    if args.strict and report.rejected:
        return fail(
            f"{len(report.rejected)} of {report.features} features rejected and --strict: "
            "nothing loaded"
        )
    if not records:
        return fail(f"none of the {report.features} features of {report.source} can be loaded")
    counts = f"repaired {len(report.repaired)}, rejected {len(report.rejected)}"
    if args.dry_run:
        say(f"would load {report.accepted} {noun} into AOI {args.aoi!r} ({counts}): dry run")
        return 0
    engine = create_engine(command_database_url(args.database_url))
    try:
        done = load(engine, records)
    except ValueError as exc:
        return fail(str(exc))
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        fail(f"cannot reach the database {where} ({exc.orig}); nothing loaded")
        return 1
    finally:
        engine.dispose()
    say(f"{done}, {counts}")
    return 0


def cmd_parcels(args: argparse.Namespace) -> int:
    from revisit_common.db.parcels import load_parcels

    def load(engine: Engine, records: list[ParcelRecord]) -> str:
        loaded = load_parcels(engine, args.aoi, _counting(records, say))
        return f"loaded {loaded} parcels into AOI {args.aoi!r} (new or updated by id)"

    return load_file(args, args.crop_field, "declared crops", "parcels", load)


def add_file_arguments(parser: Any, noun: str) -> None:
    """The arguments `revisit parcels load` and `revisit areas load` share."""
    parser.add_argument("--aoi", required=True, help="the AOI (see `revisit aoi add`)")
    parser.add_argument("--layer", help="the layer (needed when the file has several)")
    parser.add_argument(
        "--id-field",
        help=f"field of the {noun} ids (default: " + ", ".join(ID_FIELDS) + ", else the FIDs)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="load nothing if any feature is rejected"
    )
    parser.add_argument("--dry-run", action="store_true", help="check the file, load nothing")
    parser.add_argument(
        "--report", type=Path, help="CSV of every repaired and rejected feature, with reasons"
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: REVISIT_DATABASE_URL, else the embedded stack's)",
    )


def add_parsers(sub: Any) -> None:
    parcels = sub.add_parser(
        "parcels", help="load the parcels of an AOI from a GeoPackage, GeoJSON or Shapefile"
    )
    parcels.add_argument("action", choices=["load"])
    parcels.add_argument(
        "file", metavar="FILE", help="GeoPackage, GeoJSON, Shapefile (any CRS it declares)"
    )
    add_file_arguments(parcels, "parcel")
    parcels.add_argument("--crop-field", help="field of the declared crop (default: none)")
    parcels.set_defaults(func=cmd_parcels)
