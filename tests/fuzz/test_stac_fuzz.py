"""The catalog's item → event mapping under damaged STAC items: real provider records
(tests/data/stac) with keys removed, values of the wrong type, bad geometries, odd
datetimes, missing assets. Discovery publishes a scene or rejects the item with a
`PoisonError` (its DLQ letter), never fails with another exception."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
from hypothesis import example, given
from hypothesis import strategies as st

from revisit_catalog.handler import Published, Subscription, discover
from revisit_catalog.stac import COLLECTIONS
from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from tests.fuzz.conftest import budget, ran

STAC = Path(__file__).parents[1] / "data" / "stac"
NOW = datetime(2026, 11, 21, tzinfo=UTC)
NAN = float("nan")
WORLD = "POLYGON ((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"
EVERYWHERE = Subscription(
    pb.Aoi(name="world", kind="region", geometry_wkt=WORLD), tuple(COLLECTIONS)
)


def _seeds() -> list[dict[str, Any]]:
    """The first records of every provider file of tests/data/stac."""
    seeds = []
    for path in sorted([*STAC.glob("*.json"), *STAC.glob("*.geojson")]):
        data = json.loads(path.read_text())
        features = data["features"] if data.get("type") == "FeatureCollection" else [data]
        seeds += features[:2]
    return seeds


SEEDS = _seeds()

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities included: providers write JSON, not always valid
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
ODD_TIMES = st.one_of(
    st.sampled_from(
        [
            "",
            "not a date",
            "2024-13-45T00:00:00Z",
            "2024-05-01T25:61:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "0001-01-01T00:00:00Z",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "20240501T120000",
            "2024-05-01T12:00:00.123456789Z",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    JSON_SCALARS,
)
BAD_GEOMETRIES = st.sampled_from(
    [
        None,
        {},
        {"type": "Polygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [[]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},  # bowtie
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},
        {"type": "Polygon", "coordinates": [[[0, 0, 0, 0], [1, 0], [1, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[["a", "b"], [1, 0], [1, 1], ["a", "b"]]]},
        {"type": "Polygon", "coordinates": [[[float("nan"), 0], [1, 0], [1, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[1e308, 0], [-1e308, 0], [0, 1e308], [1e308, 0]]]},
        {"type": "Point", "coordinates": [0, 0]},
        {"type": "Point", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": [[]]},
        {"type": "GeometryCollection", "geometries": []},
        {"type": "Hexagon", "coordinates": [0]},
        {"type": "Polygon"},
        "POLYGON ((0 0, 1 0, 1 1, 0 0))",
        [0, 0, 1, 1],
    ]
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON tree (the root excluded)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, dict | list):
            found += _paths(value, (*prefix, key))
    return found


def _at(record: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = record
    for key in path:
        node = node[key]
    return node


@st.composite
def damaged_items(draw: st.DrawFn) -> dict[str, Any]:
    record = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                ["delete", "replace", "geometry", "datetime", "assets", "media", "property"]
            )
        )
        if kind == "geometry":
            record["geometry"] = copy.deepcopy(draw(BAD_GEOMETRIES))
        elif kind == "datetime":
            props = record.setdefault("properties", {})
            if isinstance(props, dict):
                key = draw(
                    st.sampled_from(["datetime", "start_datetime", "created", "s2:generation_time"])
                )
                props[key] = draw(ODD_TIMES)
        elif kind == "assets":
            assets = record.get("assets")
            if isinstance(assets, dict) and assets:
                keep = draw(st.sets(st.sampled_from(sorted(assets))))
                record["assets"] = {k: v for k, v in assets.items() if k in keep}
        elif kind == "media":
            assets = record.get("assets")
            if isinstance(assets, dict) and assets:
                asset = assets[draw(st.sampled_from(sorted(assets)))]
                if isinstance(asset, dict):
                    asset["type"] = draw(
                        st.sampled_from(["image/jp2", "image/tiff", "text/plain", ""])
                        | JSON_SCALARS
                    )
        elif kind == "property":
            props = record.get("properties")
            if isinstance(props, dict) and props:
                props[draw(st.sampled_from(sorted(props)))] = draw(JSON_VALUES)
        else:
            paths = _paths(record)
            if not paths:
                continue
            path = draw(st.sampled_from(paths))
            parent = _at(record, path[:-1])
            if kind == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(JSON_VALUES)
    return record


def nothing_published(keys: set[str]) -> dict[tuple[str, str], Published]:
    return {}


@given(damaged_items())
@example({**SEEDS[0], "properties": {**SEEDS[0]["properties"], "eo:cloud_cover": "n/a"}})
@example(
    {**SEEDS[0], "properties": {**SEEDS[0]["properties"], "created": "0001-01-01T00:00+05:00"}}
)
@example(
    {
        **SEEDS[0],
        "geometry": {"type": "Polygon", "coordinates": [[[NAN, 0], [1, 0], [1, 1], [0, 0]]]},
    }
)
@budget(800)
def test_damaged_items_are_published_or_rejected(record: dict[str, Any]) -> None:
    try:
        item = pystac.Item.from_dict(copy.deepcopy(record), preserve_dict=False)
    except Exception:  # noqa: BLE001 - pystac refuses it: the source's concern, not the mapping's
        ran("stac: refused by pystac before mapping")
        return
    ran("stac: damaged items mapped")
    found = discover([item], [EVERYWHERE], nothing_published, NOW, "fuzz")
    assert len(found.scenes) + len(found.rejected) <= 1
    assert sum(found.outcomes.values()) == 1 or (not found.scenes and not found.rejected)
    for rejected, error in found.rejected:
        assert rejected is item and isinstance(error, PoisonError) and str(error)
    for scene in found.scenes:
        assert scene.header.event_id and scene.acquisition_key and scene.bands
