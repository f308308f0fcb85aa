"""The test STAC API server (tests/stac_api.py) against the real, unmodified pystac_client,
serving real recorded STAC items from tests/data/stac."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pystac_client import Client, CollectionClient
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3 import Retry

from tests.stac_api import StacApiServer, load_items

STAC_DATA = Path(__file__).parents[1] / "data" / "stac"
# 33 Sentinel-2 L2A items (one collection), a recorded Planetary Computer search response
MANY = load_items(STAC_DATA / "pystac-client__TestItemSearch.test_datetime_results__0.json")
# 10 Earth Search v1 items of three collections: sentinel-2-l2a, -l1c and -c1-l2a
MIXED = load_items(STAC_DATA / "pystac-client__TestCLISearch.test_filter_inprocess__2.json")
# 13 items of tile 35MNM, one every 5 days from 2020-06-01 to 2020-07-31 (newest first)
SERIES = load_items(STAC_DATA / "odc-stac__site2-2020_jun_jul-35MNM.geojson")
# 9 items of 2020-06-06, a north-south strip of tiles 35MNM, 35LNL .. 35LND (1° each)
STRIP = load_items(STAC_DATA / "odc-stac__site1-20200606-tall-strip-africa.geojson")
# 3 Sentinel-1 GRD items with start/end_datetime, then Sentinel-2 items of 3 collections
S1_MIXED = load_items(STAC_DATA / "pystac-client__earth-search-v1_sentinel-1-grd_search.json")


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def searches(api: StacApiServer) -> list[dict[str, Any]]:
    """The parameters (GET) or bodies (POST) of the /search requests the server received."""
    return [params for _, path, params in api.requests if path == "/search"]


StartServer = Callable[..., StacApiServer]


@pytest.fixture
def api_of() -> Iterator[StartServer]:
    """Start a server on given items; stopped at the end of the test."""
    servers: list[StacApiServer] = []

    def start(items: list[dict[str, Any]], page_size: int = 10) -> StacApiServer:
        servers.append(StacApiServer(items, page_size=page_size).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_paging_returns_every_item_once_in_stored_order(api_of: StartServer, method: str) -> None:
    api = api_of(MANY, page_size=10)
    search = Client.open(api.url).search(method=method)

    pages = [[item.id for item in page.items] for page in search.pages()]

    assert [len(page) for page in pages] == [10, 10, 10, 3]
    assert [item_id for page in pages for item_id in page] == ids(MANY)
    assert search.matched() == 33
    sent = searches(api)[:4]  # then matched()'s own request
    assert [params.get("token") for params in sent] == [None, "after:10", "after:20", "after:30"]
    assert {m for m, path, _ in api.requests if path == "/search"} == {method}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_next_link_keeps_filters_and_limit(api_of: StartServer, method: str) -> None:
    wanted = ids(MANY)[::3]  # 11 of the 33
    api = api_of(MANY, page_size=10)
    search = Client.open(api.url).search(method=method, ids=wanted, limit=4)

    pages = [[item.id for item in page.items] for page in search.pages()]

    assert [len(page) for page in pages] == [4, 4, 3]
    assert [item_id for page in pages for item_id in page] == wanted
    for params in searches(api):
        assert str(params["limit"]) == "4"
        assert set(params["ids"].split(",") if method == "GET" else params["ids"]) == set(wanted)


def test_limit_is_capped_at_page_size(api_of: StartServer) -> None:
    api = api_of(MANY, page_size=5)
    pages = list(Client.open(api.url).search(method="GET", limit=100).pages())
    assert [len(page.items) for page in pages] == [5] * 6 + [3]


@pytest.mark.filterwarnings("ignore:Could not parse bucket/account:UserWarning")
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_collections_filter(api_of: StartServer, method: str) -> None:
    api = api_of(MIXED, page_size=3)
    client = Client.open(api.url)
    l1c = [item["id"] for item in MIXED if item["collection"] == "sentinel-2-l1c"]
    both = [item["id"] for item in MIXED if item["collection"] != "sentinel-2-l2a"]

    assert [c.id for c in client.get_collections()] == [
        "sentinel-2-l2a",
        "sentinel-2-l1c",
        "sentinel-2-c1-l2a",
    ]
    found = list(client.search(method=method, collections=["sentinel-2-l1c"]).items())
    assert [item.id for item in found] == l1c
    assert {item.collection_id for item in found} == {"sentinel-2-l1c"}
    two = client.search(method=method, collections=["sentinel-2-l1c", "sentinel-2-c1-l2a"])
    assert [item.id for item in two.items()] == both
    assert len(both) > len(l1c) > 0
    assert list(client.search(method=method, collections=["landsat-c2-l2"]).items()) == []


def test_collection_endpoints(api_of: StartServer) -> None:
    api = api_of(SERIES)
    collection = Client.open(api.url).get_collection("sentinel-2-l2a")
    assert isinstance(collection, CollectionClient)

    interval = collection.extent.temporal.intervals[0]
    assert [t and t.isoformat() for t in interval] == [
        "2020-06-01T08:06:11.024000+00:00",
        "2020-07-31T08:06:11.024000+00:00",
    ]
    assert [item.id for item in collection.get_items()] == ids(SERIES)
    found = collection.get_item(SERIES[3]["id"])
    assert found is not None and found.id == SERIES[3]["id"]
    assert collection.get_item("no-such-item") is None


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("interval", "days"),
    [
        ("2020-06-10/2020-06-30", ["0626", "0621", "0616", "0611"]),
        ("../2020-06-10", ["0606", "0601"]),
        ("2020-07-25/..", ["0731", "0726"]),
        ("2020-07-11T08:06:11.024Z", ["0711"]),
        ("2020-08-01/2020-12-31", []),
    ],
)
def test_datetime_filter(api_of: StartServer, method: str, interval: str, days: list[str]) -> None:
    api = api_of(SERIES, page_size=3)
    search = Client.open(api.url).search(method=method, datetime=interval)
    found = [item.id for item in search.items()]
    # S2A_MSIL2A_20200731T080611_R078_T35MNM_20200818T062751 -> 0731
    assert [item_id.split("_")[2][4:8] for item_id in found] == days
    assert search.matched() == len(days)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_datetime_matches_start_end_range(api_of: StartServer, method: str) -> None:
    api = api_of(S1_MIXED)
    client = Client.open(api.url)

    # 13:57:20 is after the first scene's datetime (13:57:12) but inside its range
    later = client.search(method=method, datetime="2025-07-31T13:57:20Z/2025-07-31T13:57:30Z")
    assert [item.id for item in later.items()] == [S1_MIXED[0]["id"]]
    # an instant inside the third scene's range (13:56:08 .. 13:56:37), not its datetime
    instant = client.search(method=method, datetime="2025-07-31T13:56:30Z")
    assert [item.id for item in instant.items()] == [S1_MIXED[2]["id"]]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_intersects_filter(api_of: StartServer, method: str) -> None:
    api = api_of(STRIP, page_size=2)
    client = Client.open(api.url)

    def tiles(geometry: dict[str, Any]) -> list[str]:
        found = client.search(method=method, intersects=geometry).items()
        return [item.id.split("_")[4] for item in found]

    # where tiles 35LNK (-10.04 .. -9.05) and 35LNJ (-10.94 .. -9.95) overlap
    overlap = {
        "type": "Polygon",
        "coordinates": [
            [[27.4, -10.0], [27.6, -10.0], [27.6, -9.98], [27.4, -9.98], [27.4, -10.0]]
        ],
    }
    assert tiles(overlap) == ["T35LNK", "T35LNJ"]
    assert tiles({"type": "Point", "coordinates": [27.5, -10.5]}) == ["T35LNJ"]
    line = {"type": "LineString", "coordinates": [[27.5, -7.5], [27.5, -15.0]]}
    assert tiles(line) == [item["id"].split("_")[4] for item in STRIP]
    assert tiles({"type": "Point", "coordinates": [30.5, -10.5]}) == []
    sent = searches(api)[0]["intersects"]  # a JSON string in a GET, an object in a POST
    assert (json.loads(sent) if method == "GET" else sent) == overlap


def test_bbox_filter(api_of: StartServer) -> None:
    api = api_of(STRIP)
    client = Client.open(api.url)
    found = client.search(bbox=[27.2, -12.0, 27.3, -11.0]).items()
    assert [item.id.split("_")[4] for item in found] == ["T35LNH", "T35LNG"]


def test_items_link_to_this_server(api_of: StartServer) -> None:
    api = api_of(SERIES)
    item = next(Client.open(api.url).search(max_items=1).items())

    assert item.get_self_href() == f"{api.url}/collections/sentinel-2-l2a/items/{item.id}"
    rels = {link.rel: link.href for link in item.links}
    assert rels["collection"] == f"{api.url}/collections/sentinel-2-l2a"
    assert rels["root"].rstrip("/") == api.url
    recorded = {link["rel"]: link["href"] for link in SERIES[0]["links"]}
    assert rels["alternate"] == recorded["alternate"]  # other links are kept
    assert rels["preview"] == recorded["preview"]
    # the served items are copies: the recorded ones still point to Planetary Computer
    assert recorded["self"].startswith("https://planetarycomputer.microsoft.com/")


def test_client_retries_survive_two_failures(api_of: StartServer) -> None:
    api = api_of(MANY, page_size=10)
    retry = Retry(total=3, backoff_factor=0.01, status_forcelist=[503], allowed_methods=None)
    client = Client.open(api.url, stac_io=StacApiIO(max_retries=retry))
    api.fail_next(2)

    found = [item.id for item in client.search(method="POST").items()]

    assert found == ids(MANY)
    sent = searches(api)
    assert len(sent) == 2 + 4  # two refused attempts, then the four pages
    assert sent[0] == sent[1] == sent[2]  # the same request, retried
    assert "token" not in sent[2]
    assert [params["token"] for params in sent[3:]] == ["after:10", "after:20", "after:30"]


def test_failures_beyond_the_retries_raise(api_of: StartServer) -> None:
    api = api_of(MANY)
    retry = Retry(total=3, backoff_factor=0.01, status_forcelist=[503], allowed_methods=None)
    client = Client.open(api.url, stac_io=StacApiIO(max_retries=retry))
    api.fail_next(4)

    with pytest.raises(APIError):
        list(client.search(method="POST").items())
    assert len(searches(api)) == 4  # the first attempt and three retries

    api.fail_next(1, status=500)  # not in status_forcelist: no retry
    with pytest.raises(APIError, match=r"fail_next"):
        list(client.search(method="GET").items())
    assert len(searches(api)) == 5


def test_items_published_late_appear_in_the_next_pages(api_of: StartServer) -> None:
    api = api_of(SERIES[5:], page_size=4)  # the 8 oldest
    pages = Client.open(api.url).search(method="GET").pages()

    first = [item.id for item in next(pages).items]
    api.add_items(SERIES[:5])
    rest = [item.id for page in pages for item in page.items]

    assert first + rest == ids(SERIES[5:]) + ids(SERIES[:5])
    with pytest.raises(ValueError, match="already served"):
        api.add_items(SERIES[:1])


def test_delay_makes_a_client_time_out(api_of: StartServer) -> None:
    api = api_of(SERIES)
    # Client.open resets the timeout of a given stac_io to its own timeout argument. The
    # margins are wide (2 s of delay against 0.5 s of timeout, then 30 s for the answer)
    # because a loaded CI machine can take longer than 0.1 s to accept a connection.
    client = Client.open(api.url, timeout=30, stac_io=StacApiIO(max_retries=None))
    api.delay_s = 2.0
    impatient = Client.open(api.url, timeout=0.5, stac_io=StacApiIO(max_retries=None))
    with pytest.raises(APIError, match=r"(?i)timed out"):
        list(impatient.search().items())
    api.delay_s = 0.0
    assert len(list(client.search().items())) == len(SERIES)


def get_error(url: str | urllib.request.Request) -> tuple[int, dict[str, Any]]:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=5)
    return caught.value.code, json.loads(caught.value.read())


def test_bad_requests(api_of: StartServer) -> None:
    api = api_of(SERIES)
    for query in (
        "datetime=yesterday",
        "datetime=2020-06-01",  # a date, not an RFC 3339 date-time
        "datetime=2020-07-01T00:00:00Z/2020-06-01T00:00:00Z",
        "bbox=1,2,3",
        "limit=0",
        "token=bogus",
        "sortby=datetime",  # an extension this server does not have
    ):
        status, body = get_error(f"{api.url}/search?{query}")
        assert status == 400, query
        assert body["description"], query
    not_json = urllib.request.Request(f"{api.url}/search", data=b"{bbox", method="POST")
    assert get_error(not_json)[0] == 400
    assert get_error(urllib.request.Request(f"{api.url}/search", method="DELETE"))[0] == 405
    assert get_error(f"{api.url}/nowhere")[0] == 404
    assert get_error(f"{api.url}/collections/landsat-c2-l2")[0] == 404
    landing = json.loads(urllib.request.urlopen(f"{api.url}/", timeout=5).read())
    assert {link.get("method") for link in landing["links"] if link["rel"] == "search"} == {
        "GET",
        "POST",
    }
