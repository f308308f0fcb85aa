"""`revisit areas load FILE --aoi NAME`: the area units (districts, communes, admin units)
of a region AOI, from a GeoPackage, GeoJSON or Shapefile, that its land-cover fractions
and biophysical means are aggregated over on every pass, beside the whole AOI.

Features are checked as parcels are (`revisit_cli.parcels.read_parcel_file`: an id, a
polygonal geometry, invalid polygons repaired); a unit with no area inside the AOI is
left out, and one partly outside it is reported: its indicators cover the part inside.
Units take effect from the next pass that preprocess reads."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from revisit_cli.parcels import add_file_arguments, load_file, say

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from revisit_common.db.parcels import ParcelRecord

#: Units partly outside the AOI listed by name at most.
LISTED = 10


def cmd_areas(args: argparse.Namespace) -> int:
    from revisit_common.db.units import UnitRecord, load_units

    def load(engine: Engine, records: list[ParcelRecord]) -> str:
        units = [UnitRecord(r.external_id, r.geometry, r.declared_crop) for r in records]
        done = load_units(engine, args.aoi, units, replace=args.replace)
        if done.outside:
            shown = ", ".join(repr(k) for k in done.outside[:LISTED])
            more = f" and {len(done.outside) - LISTED} more" if len(done.outside) > LISTED else ""
            say(f"left out {len(done.outside)} units with no area inside the AOI: {shown}{more}")
        for key, share in list(done.partly.items())[:LISTED]:
            say(f"unit {key!r}: {share:.0%} of it inside the AOI, indicators cover that part")
        if len(done.partly) > LISTED:
            say(f"... and {len(done.partly) - LISTED} more units partly outside the AOI")
        replaced = ", others removed" if args.replace else ""
        return (
            f"loaded {done.loaded} area units into AOI {args.aoi!r} (new or updated by id"
            f"{replaced}); they count from the next pass"
        )

    return load_file(args, args.name_field, "names", "area units", load)


def add_parsers(sub: Any) -> None:
    areas = sub.add_parser(
        "areas",
        help="load the area units (districts, admin units) a region AOI is aggregated over",
    )
    areas.add_argument("action", choices=["load"])
    areas.add_argument(
        "file", metavar="FILE", help="GeoPackage, GeoJSON, Shapefile (any CRS it declares)"
    )
    add_file_arguments(areas, "unit")
    areas.add_argument("--name-field", help="field of the unit names (default: none)")
    areas.add_argument(
        "--replace", action="store_true", help="remove the AOI's units that the file lacks"
    )
    areas.set_defaults(func=cmd_areas)
