"""A small, real STAC API server for tests.

It serves recorded STAC items (dicts loaded from JSON files) over HTTP on 127.0.0.1, so
that an unmodified STAC client (pystac_client) can be pointed at it::

    with StacApiServer(load_items(path), page_size=10) as api:
        client = pystac_client.Client.open(api.url)
        items = list(client.search(collections=["sentinel-2-l2a"]).items())

Endpoints: ``GET /`` (landing page), ``GET /conformance``, ``GET /collections``,
``GET /collections/{id}``, ``GET /collections/{id}/items``,
``GET /collections/{id}/items/{item_id}``, ``GET /search`` and ``POST /search``.
Search honours ``collections``, ``ids``, ``datetime``, ``bbox``, ``intersects``,
``limit`` and ``token`` (paging through ``next`` links); any other parameter is
rejected with 400, so a test never passes because a filter was silently ignored.

Test hooks: :attr:`StacApiServer.requests`, :meth:`StacApiServer.fail_next`,
:meth:`StacApiServer.add_items` and :attr:`StacApiServer.delay_s`.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import shapely
from shapely.errors import ShapelyError
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

STAC_VERSION = "1.0.0"
CONFORMS_TO: tuple[str, ...] = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
)
JSON = "application/json"
GEOJSON = "application/geo+json"
SEARCH_PARAMETERS = frozenset({"collections", "ids", "datetime", "bbox", "intersects", "limit"})
# pystac_client also sends collections={id} to /collections/{id}/items
ITEMS_PARAMETERS = frozenset({"collections", "datetime", "bbox", "limit"})
REWRITTEN_RELS = frozenset({"self", "root", "parent", "collection"})
TOKEN_PREFIX = "after:"

Request = tuple[str, str, dict[str, Any]]
"""(HTTP method, path, query parameters of a GET or the JSON body of a POST)."""


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """The items of a JSON file: a FeatureCollection, a single Feature or a list of them."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        return [dict(item) for item in data]
    if data.get("type") == "FeatureCollection":
        return [dict(item) for item in data["features"]]
    if data.get("type") == "Feature":
        return [dict(data)]
    raise ValueError(f"{path}: neither a Feature, a FeatureCollection nor a list of Features")


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _bad_request(description: str) -> _HttpError:
    return _HttpError(HTTPStatus.BAD_REQUEST, description)


def _parse_instant(value: str) -> datetime:
    """An RFC 3339 date-time (with a time zone) as an aware datetime in UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().upper())
    except ValueError:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"date-time without a time zone: {value!r}")
    return parsed.astimezone(UTC)


def _format_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _valid(geometry: BaseGeometry) -> BaseGeometry:
    return geometry if geometry.is_valid else shapely.make_valid(geometry)


@dataclass(frozen=True)
class _Record:
    """A stored item and what the filters need of it, parsed once."""

    item: dict[str, Any]
    collection: str | None
    instant: datetime | None
    start: datetime | None
    end: datetime | None
    geometry: BaseGeometry | None
    bounds: tuple[float, float, float, float] | None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> _Record:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise ValueError(f"not a STAC item (no string id): {str(item)[:80]}")
        item_id = item["id"]
        properties = item.get("properties") or {}
        try:
            instant, start, end = (
                _parse_instant(properties[key]) if properties.get(key) else None
                for key in ("datetime", "start_datetime", "end_datetime")
            )
        except ValueError as err:
            raise ValueError(f"item {item_id}: {err}") from None
        if instant is None and (start is None or end is None):
            raise ValueError(f"item {item_id}: no datetime and no start/end_datetime")
        geometry = _valid(shape(item["geometry"])) if item.get("geometry") else None
        raw_bbox = item.get("bbox")
        bounds: tuple[float, float, float, float] | None = None
        if raw_bbox and len(raw_bbox) in (4, 6):
            half = len(raw_bbox) // 2
            bounds = (raw_bbox[0], raw_bbox[1], raw_bbox[half], raw_bbox[half + 1])
        elif geometry is not None:
            west, south, east, north = geometry.bounds
            bounds = (west, south, east, north)
        collection = item.get("collection")
        return cls(
            item=copy.deepcopy(dict(item)),
            collection=collection if isinstance(collection, str) else None,
            instant=instant,
            start=start,
            end=end,
            geometry=geometry,
            bounds=bounds,
        )

    def within(self, lower: datetime | None, upper: datetime | None) -> bool:
        """Whether its datetime, or its start/end range, meets the closed [lower, upper]."""
        if self.instant is not None and (
            (lower is None or lower <= self.instant) and (upper is None or self.instant <= upper)
        ):
            return True
        return (
            self.start is not None
            and self.end is not None
            and (upper is None or self.start <= upper)
            and (lower is None or lower <= self.end)
        )


@dataclass(frozen=True)
class _Query:
    collections: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    interval: tuple[datetime | None, datetime | None] | None = None
    area: BaseGeometry | None = None

    def matches(self, record: _Record) -> bool:
        if self.collections is not None and record.collection not in self.collections:
            return False
        if self.ids is not None and record.item["id"] not in self.ids:
            return False
        if self.interval is not None and not record.within(*self.interval):
            return False
        return self.area is None or (
            record.geometry is not None and record.geometry.intersects(self.area)
        )


@dataclass
class _Response:
    status: HTTPStatus
    payload: dict[str, Any]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def _split_list(value: Any, name: str, from_get: bool) -> frozenset[str]:
    if from_get and isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return frozenset(value)
    raise _bad_request(f"{name} must be a list of strings")


def _parse_datetime(value: Any) -> tuple[datetime | None, datetime | None]:
    if not isinstance(value, str) or not value.strip():
        raise _bad_request(f"datetime must be a non-empty string, not {value!r}")
    parts = value.split("/")
    if len(parts) > 2:
        raise _bad_request(f"datetime has more than two parts: {value!r}")
    try:
        if len(parts) == 1:
            instant = _parse_instant(parts[0])
            return instant, instant
        lower, upper = (
            None if part.strip() in ("", "..") else _parse_instant(part) for part in parts
        )
    except ValueError as err:
        raise _bad_request(f"bad datetime: {err}") from None
    if lower is None and upper is None:
        raise _bad_request(f"datetime interval open at both ends: {value!r}")
    if lower is not None and upper is not None and lower > upper:
        raise _bad_request(f"datetime interval ends before it starts: {value!r}")
    return lower, upper


def _parse_bbox(value: Any, from_get: bool) -> BaseGeometry:
    try:
        if from_get and isinstance(value, str):
            numbers = [float(part) for part in value.split(",")]
        elif isinstance(value, list) and not any(isinstance(n, bool) for n in value):
            numbers = [float(n) for n in value]
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise _bad_request(f"bbox must be 4 or 6 numbers, not {value!r}") from None
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise _bad_request(f"bbox must be 4 or 6 finite numbers, not {value!r}")
    half = len(numbers) // 2
    west, south, east, north = numbers[0], numbers[1], numbers[half], numbers[half + 1]
    if south > north:
        raise _bad_request(f"bbox south {south} is north of its north {north}")
    if west > east:  # crosses the antimeridian
        return box(west, south, 180.0, north).union(box(-180.0, south, east, north))
    return box(west, south, east, north)


def _parse_intersects(value: Any, from_get: bool) -> BaseGeometry:
    try:
        geojson = json.loads(value) if from_get and isinstance(value, str) else value
        if not isinstance(geojson, dict) or geojson.get("type") in (None, "Feature"):
            raise TypeError
        return _valid(shape(geojson))
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ShapelyError):
        raise _bad_request(f"intersects must be a GeoJSON geometry, not {value!r}") from None


def _parse_limit(value: Any, from_get: bool, page_size: int) -> int:
    if from_get and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad_request(f"limit must be a positive integer, not {value!r}")
    return min(value, page_size)


def _parse_token(value: Any) -> int:
    if isinstance(value, str) and value.startswith(TOKEN_PREFIX):
        position = value.removeprefix(TOKEN_PREFIX)
        if position.isdigit():
            return int(position)
    raise _bad_request(f"unknown paging token {value!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: StacApiServer) -> None:
        super().__init__(address, _Handler)
        self.api = api

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: a client that hangs up early is not the test's business."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: no access log on stderr."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        response = self.server.api._respond(method, split.path, split.query, raw)
        body = json.dumps(response.payload).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class StacApiServer:
    """A STAC API on 127.0.0.1 (a free port) serving the given items, for tests.

    Items are kept in the order given (then added) and every response lists them in that
    order, as deep copies whose self/root/parent/collection links point to this server.
    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]] = (),
        *,
        page_size: int = 10,
        host: str = "127.0.0.1",
        catalog_id: str = "revisit-test-stac-api",
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        self.page_size = page_size
        self.host = host
        self.catalog_id = catalog_id
        self.delay_s: float = 0.0
        """Seconds to sleep before answering each /search request."""
        self.requests: list[Request] = []
        """Every request received, in order: (method, path, query parameters or body)."""
        self._lock = threading.Lock()
        self._records: list[_Record] = []
        self._keys: set[tuple[str | None, str]] = set()
        self._failures: deque[HTTPStatus] = deque()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._base = ""  # the URL of the last start, kept for requests in flight at stop()
        self.add_items(items)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> StacApiServer:
        """Listen on a free port and serve from a daemon thread."""
        with self._lock:
            if self._httpd is not None:
                raise RuntimeError("StacApiServer is already started")
            self._httpd = _Server((self.host, 0), self)
            self._base = f"http://{self.host}:{self._httpd.server_address[1]}"
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"stac-api-{self._httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (does nothing when not started)."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> StacApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The root URL, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("StacApiServer is not started")
        return self._base

    # -- test hooks ------------------------------------------------------------------

    def add_items(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Append items (after those already served), e.g. to simulate late publication.

        Raises ValueError for something that is not a STAC item, or for an item whose
        (collection, id) is already served; then none of the items is added.
        """
        records = [_Record.of(item) for item in items]
        with self._lock:
            keys = set(self._keys)
            for record in records:
                key = (record.collection, record.item["id"])
                if key in keys:
                    raise ValueError(f"item {key[1]} of collection {key[0]} is already served")
                keys.add(key)
            self._records.extend(records)
            self._keys = keys

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next n requests to /search with this HTTP status (and a JSON body)."""
        if n < 0:
            raise ValueError(f"n must not be negative, not {n}")
        with self._lock:
            self._failures.extend([HTTPStatus(status)] * n)

    # -- HTTP ------------------------------------------------------------------------

    def _respond(self, method: str, path: str, query: str, raw: bytes) -> _Response:
        try:
            params = self._parameters(method, path, query, raw)
            return self._route(method, path, params)
        except _HttpError as err:
            return _Response(err.status, {"code": err.status.phrase, "description": str(err)})
        except Exception as err:  # noqa: BLE001 (a bug of this server: tell the client)
            return _Response(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"code": "InternalServerError", "description": f"{type(err).__name__}: {err}"},
            )

    def _parameters(self, method: str, path: str, query: str, raw: bytes) -> dict[str, Any]:
        """The query parameters (GET) or JSON body (POST), recorded in self.requests."""
        params: dict[str, Any] = {}
        problem = None
        if method == "POST":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body, problem = {}, "the body is not JSON"
            if isinstance(body, dict):
                params = body
            else:
                problem = "the body is not a JSON object"
        else:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if name in params:
                    problem = f"parameter {name} is repeated"
                params[name] = value
        with self._lock:
            self.requests.append((method, path, copy.deepcopy(params)))
        if problem:
            raise _bad_request(problem)
        return params

    def _route(self, method: str, path: str, params: dict[str, Any]) -> _Response:
        parts = [unquote(part) for part in path.split("/") if part]
        if parts == ["search"]:
            if method not in ("GET", "POST"):
                raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
            return self._search_endpoint(method, path, params)
        if method != "GET":
            readable = parts in ([], ["conformance"], ["collections"]) or (
                parts[:1] == ["collections"] and len(parts) in (2, 3, 4)
            )
            if readable:
                raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
            raise _HttpError(HTTPStatus.NOT_FOUND, f"no such path: {path}")
        match parts:
            case []:
                return _Response(HTTPStatus.OK, self._landing())
            case ["conformance"]:
                return _Response(HTTPStatus.OK, {"conformsTo": list(CONFORMS_TO)})
            case ["collections"]:
                return _Response(HTTPStatus.OK, self._collections())
            case ["collections", collection_id]:
                return _Response(HTTPStatus.OK, self._collection(collection_id))
            case ["collections", collection_id, "items"]:
                self._collection(collection_id)  # 404 when unknown
                return self._search(path, params, method, ITEMS_PARAMETERS, collection_id)
            case ["collections", collection_id, "items", item_id]:
                return _Response(HTTPStatus.OK, self._item(collection_id, item_id), GEOJSON)
        raise _HttpError(HTTPStatus.NOT_FOUND, f"no such path: {path}")

    def _search_endpoint(self, method: str, path: str, params: dict[str, Any]) -> _Response:
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            raise _HttpError(failure, f"failing on purpose (fail_next): {failure.phrase}")
        return self._search(path, params, method, SEARCH_PARAMETERS, None)

    # -- documents -------------------------------------------------------------------

    def _link(self, rel: str, path: str, media_type: str = JSON, **extra: Any) -> dict[str, Any]:
        return {"rel": rel, "href": f"{self._base}{path}", "type": media_type, **extra}

    def _landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "id": self.catalog_id,
            "title": "revisit test STAC API",
            "description": "Recorded STAC items served for tests",
            "stac_version": STAC_VERSION,
            "conformsTo": list(CONFORMS_TO),
            "links": [
                self._link("self", "/"),
                self._link("root", "/"),
                self._link("conformance", "/conformance"),
                self._link("data", "/collections"),
                self._link("search", "/search", GEOJSON, method="GET"),
                self._link("search", "/search", GEOJSON, method="POST"),
            ],
        }

    def _snapshot(self) -> list[_Record]:
        with self._lock:
            return list(self._records)

    def _collection_document(self, collection_id: str, records: list[_Record]) -> dict[str, Any]:
        bounds = [record.bounds for record in records if record.bounds is not None]
        bbox = (
            [
                min(b[0] for b in bounds),
                min(b[1] for b in bounds),
                max(b[2] for b in bounds),
                max(b[3] for b in bounds),
            ]
            if bounds
            else [-180.0, -90.0, 180.0, 90.0]
        )
        starts = [r.start or r.instant for r in records]
        ends = [r.end or r.instant for r in records]
        first = min(s for s in starts if s is not None)
        last = max(e for e in ends if e is not None)
        path = f"/collections/{quote(collection_id, safe='')}"
        return {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "stac_extensions": [],
            "id": collection_id,
            "description": f"Recorded items of {collection_id}",
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [bbox]},
                "temporal": {"interval": [[_format_instant(first), _format_instant(last)]]},
            },
            "links": [
                self._link("self", path),
                self._link("root", "/"),
                self._link("parent", "/"),
                self._link("items", f"{path}/items", GEOJSON),
            ],
        }

    def _grouped(self) -> dict[str, list[_Record]]:
        groups: dict[str, list[_Record]] = {}
        for record in self._snapshot():
            if record.collection is not None:
                groups.setdefault(record.collection, []).append(record)
        return groups

    def _collections(self) -> dict[str, Any]:
        return {
            "collections": [
                self._collection_document(collection_id, records)
                for collection_id, records in self._grouped().items()
            ],
            "links": [self._link("self", "/collections"), self._link("root", "/")],
        }

    def _collection(self, collection_id: str) -> dict[str, Any]:
        records = self._grouped().get(collection_id)
        if not records:
            raise _HttpError(HTTPStatus.NOT_FOUND, f"no such collection: {collection_id}")
        return self._collection_document(collection_id, records)

    def _item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        for record in self._snapshot():
            if record.collection == collection_id and record.item["id"] == item_id:
                return self._served(record)
        raise _HttpError(HTTPStatus.NOT_FOUND, f"no item {item_id} in {collection_id}")

    def _served(self, record: _Record) -> dict[str, Any]:
        """A deep copy of the item whose self/root/parent/collection links are ours."""
        item = copy.deepcopy(record.item)
        links: list[dict[str, Any]] = [self._link("root", "/")]
        if record.collection is not None:
            path = f"/collections/{quote(record.collection, safe='')}"
            links = [
                self._link("self", f"{path}/items/{quote(item['id'], safe='')}", GEOJSON),
                *links,
                self._link("parent", path),
                self._link("collection", path),
            ]
        kept = [link for link in item.get("links") or [] if link.get("rel") not in REWRITTEN_RELS]
        item["links"] = links + kept
        return item

    def _search(
        self,
        path: str,
        params: dict[str, Any],
        method: str,
        accepted: frozenset[str],
        collection_id: str | None,
    ) -> _Response:
        from_get = method == "GET"
        unknown = sorted(set(params) - accepted - {"token"})
        if unknown:
            raise _bad_request(f"unsupported parameters: {', '.join(unknown)}")
        if "bbox" in params and "intersects" in params:
            raise _bad_request("bbox and intersects are mutually exclusive")
        area = None
        if "bbox" in params:
            area = _parse_bbox(params["bbox"], from_get)
        elif "intersects" in params:
            area = _parse_intersects(params["intersects"], from_get)
        collections = (
            _split_list(params["collections"], "collections", from_get)
            if "collections" in params
            else None
        )
        if collection_id is not None:  # /collections/{id}/items
            collections = frozenset({collection_id}) & (collections or {collection_id})
        query = _Query(
            collections=collections,
            ids=_split_list(params["ids"], "ids", from_get) if "ids" in params else None,
            interval=_parse_datetime(params["datetime"]) if "datetime" in params else None,
            area=area,
        )
        limit = (
            _parse_limit(params["limit"], from_get, self.page_size)
            if "limit" in params
            else self.page_size
        )
        first = _parse_token(params["token"]) if "token" in params else 0

        matched = [
            (position, record)
            for position, record in enumerate(self._snapshot())
            if query.matches(record)
        ]
        remaining = [(position, record) for position, record in matched if position >= first]
        page = remaining[:limit]
        links = [self._link("root", "/")]
        if from_get:
            links.insert(0, self._link("self", f"{path}?{urlencode(params)}", GEOJSON))
        else:
            links.insert(0, self._link("self", path, GEOJSON))
        if len(remaining) > limit:
            token = f"{TOKEN_PREFIX}{page[-1][0] + 1}"
            if from_get:
                query_string = urlencode({**params, "token": token})
                links.append(self._link("next", f"{path}?{query_string}", GEOJSON))
            else:
                body = {**params, "token": token}
                links.append(
                    self._link("next", path, GEOJSON, method="POST", body=body, merge=False)
                )
        return _Response(
            HTTPStatus.OK,
            {
                "type": "FeatureCollection",
                "features": [self._served(record) for _, record in page],
                "numberMatched": len(matched),
                "numberReturned": len(page),
                "links": links,
            },
            GEOJSON,
        )
