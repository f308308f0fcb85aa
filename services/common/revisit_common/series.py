"""Season series in the payload store: one manifest per AOI, season, tile and product
that lists every pass so far in date order, each with the references of its arrays.

Passes over one tile arrive in order on one partition (the Kafka key is the tile), so a
manifest has one writer at a time; a pass handled again (replay) or a newer version of
an acquisition (reprocessing) replaces its entry instead of adding one, and a late pass
is inserted at its date.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.payload import PayloadStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def key_part(text: str) -> str:
    """A name made safe for a payload key (AOI names are free text)."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


def season_of(acquired: datetime, season_start: str) -> str:
    """The season an acquisition belongs to, named by its first day ("2020-11-01"), or by
    its year when the AOI has no season ("2021")."""
    if not season_start:
        return f"{acquired.year}"
    try:
        month, day = (int(x) for x in season_start.split("-"))
        start = date(acquired.year, month, day)
    except ValueError as exc:
        raise PoisonError(f"season start {season_start!r} is not MM-DD") from exc
    year = acquired.year if acquired.date() >= start else acquired.year - 1
    return f"{year}-{month:02d}-{day:02d}"


def season_start(season: str) -> date:
    """ "2020-11-01" -> that day; "2021" (an AOI without a season) -> 1 January."""
    try:
        return date.fromisoformat(season) if "-" in season else date(int(season), 1, 1)
    except ValueError as exc:
        raise PoisonError(f"season {season!r} is neither YYYY nor YYYY-MM-DD") from exc


def series_key(product: str, aoi: str, season: str, tile: str) -> str:
    return f"{product}/{key_part(aoi)}/{season}/{key_part(tile)}"


def append_pass(
    store: PayloadStore,
    key: str,
    acquired: datetime,
    scene: pb.SceneDiscovered,
    arrays: dict[str, pb.ArrayRef],
    value_scale: float | None = None,
) -> int:
    """Add (or replace) this scene's pass in the series manifest at `key`/series.json,
    with its arrays' value scale when they are scaled; returns the number of passes the
    series then has."""
    path = f"{key}/series.json"
    raw = store.get_bytes(path)
    try:
        manifest: dict[str, Any] = json.loads(raw) if raw else {"passes": []}
    except ValueError as exc:
        raise PoisonError(f"series manifest {path!r} is not JSON: {exc}") from exc
    acquisition = scene.acquisition_key or scene.header.scene_id
    passes = [p for p in manifest["passes"] if p["acquisition_key"] != acquisition]
    passes.append(
        {
            "acquired_at": acquired.isoformat(),
            "day_of_year": acquired.timetuple().tm_yday,
            "scene_id": scene.header.scene_id,
            "acquisition_key": acquisition,
            "arrays": {name: MessageToDict(ref) for name, ref in arrays.items()},
            **({"value_scale": value_scale} if value_scale is not None else {}),
        }
    )
    passes.sort(key=lambda p: (p["acquired_at"], p["scene_id"]))
    manifest["passes"] = passes
    store.put_bytes(path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return len(passes)


def read_series(store: PayloadStore, key: str) -> list[dict[str, Any]]:
    """The passes of a series, oldest first, with their arrays as `ArrayRef`s."""
    raw = store.get_bytes(f"{key}/series.json")
    passes: list[dict[str, Any]] = json.loads(raw)["passes"] if raw else []
    for p in passes:
        p["arrays"] = {name: ParseDict(ref, pb.ArrayRef()) for name, ref in p["arrays"].items()}
    return passes


#: The season series products of a "parcels" AOI: Sentinel-2 pixel sets, Sentinel-1
#: backscatter statistics (the kinds of their observations).
PARCEL_PRODUCTS = ("parcel_pixels", "parcel_s1")


def season_snapshot(
    store: PayloadStore, aoi: str, season: str, acquired: date
) -> tuple[list[pb.SeriesPasses], int]:
    """Every parcel series of this AOI and season (each product, tile and orbit) with its
    passes, as the store has them now, and how many of those passes were acquired after
    `acquired` (a pass of that date came late when there are any)."""
    snapshot, later = [], 0
    for product in PARCEL_PRODUCTS:
        prefix = f"{product}/{key_part(aoi)}/{season}/"
        # the manifests, <tile>/series.json, and not the arrays of every pass below them
        for found in store.list(prefix, maxdepth=2):
            if not found.key.endswith("/series.json"):
                continue
            key = found.key.removesuffix("/series.json")
            passes = read_series(store, key)
            later += sum(acquired_on(p) > acquired for p in passes)
            if passes:
                keys = [p["acquisition_key"] for p in passes]
                snapshot.append(pb.SeriesPasses(series_key=key, acquisition_keys=keys))
    return snapshot, later


def acquired_on(series_pass: dict[str, Any]) -> date:
    """The day a pass of a series manifest was acquired."""
    return date.fromisoformat(series_pass["acquired_at"][:10])


def snapshot_passes(
    store: PayloadStore,
    snapshot: Iterable[pb.SeriesPasses],
    product: str,
    acquired_by: date | None = None,
) -> list[dict[str, Any]]:
    """The passes a snapshot names, of the series of one product (and acquired up to
    `acquired_by`, if given), by date (a pass the store no longer has is poison: its
    arrays are gone, the prediction cannot be made again as it was)."""
    passes = []
    for entry in snapshot:
        if not entry.series_key.startswith(f"{product}/"):
            continue
        by_key = {p["acquisition_key"]: p for p in read_series(store, entry.series_key)}
        for acquisition in entry.acquisition_keys:
            if acquisition not in by_key:
                raise PoisonError(
                    f"pass {acquisition!r} of {entry.series_key!r} is no longer in the payload "
                    "store (past REVISIT_PAYLOAD_RETENTION_DAYS?)"
                )
            if acquired_by is None or acquired_on(by_key[acquisition]) <= acquired_by:
                passes.append(by_key[acquisition])
    passes.sort(key=lambda p: (p["acquired_at"], p["scene_id"]))
    return passes
