"""Catalog sources against the local STAC API: pluggable signing, rate limit, HTTP
failures beyond the retries as transient errors (no Kafka or PostGIS needed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pystac
import pytest
from shapely.geometry import box

from revisit_catalog.sources import HttpPolicy, RateLimiter, StacApiSource, load_signer, open_source
from revisit_common.errors import TransientError
from tests.integration.test_catalog_ingest import PLANETARY_COMPUTER, STAC
from tests.stac_api import StacApiServer, load_items

WORLD = box(-180, -90, 180, 90)
START, END = datetime(2015, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)


def sign(item: Any) -> None:
    """A signer as a user would plug one in: `tests.integration.test_catalog_sources:sign`."""
    if isinstance(item, pystac.Item):
        for asset in item.assets.values():
            asset.href += "?token=revisit-test"


def test_pluggable_signer_signs_every_asset_href() -> None:
    assert load_signer("planetary-computer") is not None  # planetary_computer.sign_inplace
    signer = load_signer("tests.integration.test_catalog_sources:sign")
    with StacApiServer(load_items(STAC / PLANETARY_COMPUTER)) as api:
        source = StacApiSource(api.url, signer=signer, policy=HttpPolicy(requests_per_second=0))
        items = list(source.search("sentinel-2-l2a", WORLD, START, END))
    assert len(items) == 33
    assert all(a.href.endswith("?token=revisit-test") for i in items for a in i.assets.values())
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_signer("no_such_module:sign")


def test_http_failures_beyond_retries_are_transient() -> None:
    policy = HttpPolicy(requests_per_second=0, retries=2, backoff_s=0.01, timeout_s=5)
    with StacApiServer(load_items(STAC / PLANETARY_COMPUTER)) as api:
        source = open_source(api.url, policy=policy)
        api.fail_next(3)
        with pytest.raises(TransientError, match="failed"):
            list(source.search("sentinel-2-l2a", WORLD, START, END))
        searched = sum(path == "/search" for _, path, _ in api.requests)
        assert searched == 3  # the first try and two retries
        assert len(list(source.search("sentinel-2-l2a", WORLD, START, END))) == 33


def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(per_second=50)
    t0 = time.monotonic()
    for _ in range(6):
        limiter(None)  # type: ignore[arg-type]
    assert time.monotonic() - t0 >= 5 * 0.02 * 0.9
