"""Where items come from: STAC APIs (through pystac-client) and static catalogs or
ItemCollections (a file or a URL), behind one `search` call.

Providers known by name: ``earth-search`` (Element 84, v1), ``planetary-computer``
(Microsoft; asset hrefs are signed by the ``planetary-computer`` signer) and ``cdse``
(Copernicus Data Space Ecosystem). Anything else is a STAC API URL, or a static
catalog / ItemCollection path or URL.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pystac
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from urllib3.util.retry import Retry

from revisit_catalog.stac import COLLECTIONS, GEOMETRY_ERRORS
from revisit_common.errors import TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provider:
    url: str
    signer: str = ""


PROVIDERS = {
    "earth-search": Provider("https://earth-search.aws.element84.com/v1"),
    "planetary-computer": Provider(
        "https://planetarycomputer.microsoft.com/api/stac/v1", signer="planetary-computer"
    ),
    "cdse": Provider("https://stac.dataspace.copernicus.eu/v1"),
}

#: A signer changes a pystac.Item in place (its asset hrefs) before it is mapped, e.g. to
#: add the short-lived SAS token Planetary Computer's blob storage needs.
Signer = Callable[[Any], Any]


def load_signer(spec: str) -> Signer | None:
    """`""` → none; `planetary-computer` → planetary_computer.sign_inplace; `module:func`."""
    if not spec:
        return None
    if spec == "planetary-computer":
        spec = "planetary_computer:sign_inplace"
    module, _, name = spec.partition(":")
    try:
        signer: Signer = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"signer {spec!r} cannot be loaded: {exc}") from exc
    return signer


class RateLimiter:
    """At most `per_second` requests per second, shared by the threads of one source."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: requests.Request) -> requests.Request:
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            time.sleep(wait)
        return request


@dataclass(frozen=True)
class HttpPolicy:
    """How a source talks HTTP: rate limit, retries with exponential backoff, timeout."""

    requests_per_second: float = 5.0
    retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 30.0

    def retry(self) -> Retry:
        return Retry(
            total=self.retries,
            backoff_factor=self.backoff_s,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # STAC searches are POSTs, safe to repeat
            respect_retry_after_header=True,
            raise_on_status=False,
        )


class Source(Protocol):
    name: str

    def search(
        self, collection: str, geometry: BaseGeometry, start: datetime, end: datetime
    ) -> Iterator[pystac.Item]:
        """Items of `collection` over `geometry` acquired in [start, end]."""
        ...


class StacApiSource:
    """A STAC API, searched with pystac-client; HTTP failures become TransientError."""

    def __init__(
        self,
        url: str,
        name: str | None = None,
        signer: Signer | None = None,
        policy: HttpPolicy | None = None,
        page_size: int = 100,
    ) -> None:
        self.url = url
        self.name = name or url
        self.policy = policy or HttpPolicy()
        self.page_size = page_size
        self._signer = signer
        self._client: Client | None = None

    def _open(self) -> Client:
        if self._client is None:
            # Client.open overwrites the StacApiIO's timeout and request modifier with
            # its own arguments: only the retries are the StacApiIO's.
            io = StacApiIO(max_retries=self.policy.retry())
            try:
                self._client = Client.open(
                    self.url,
                    stac_io=io,
                    request_modifier=RateLimiter(self.policy.requests_per_second),
                    timeout=self.policy.timeout_s,
                )
            except (APIError, requests.RequestException, pystac.STACError) as exc:
                raise TransientError(f"STAC API {self.url} unreachable: {exc}") from exc
        return self._client

    def search(
        self, collection: str, geometry: BaseGeometry, start: datetime, end: datetime
    ) -> Iterator[pystac.Item]:
        search = self._open().search(
            collections=[collection],
            intersects=mapping(geometry),
            datetime=[start, end],
            limit=self.page_size,
        )
        try:
            for item in search.items():
                if self._signer is not None:
                    self._signer(item)
                yield item
        except (APIError, requests.RequestException) as exc:
            raise TransientError(f"search of {collection} at {self.url} failed: {exc}") from exc


class StaticSource:
    """A static catalog, ItemCollection or item (file or URL), filtered here. A URL is
    read again for every search, a file again only when it changed, so that items added
    to either are found by the next poll."""

    def __init__(self, location: str, name: str | None = None, signer: Signer | None = None):
        self.location = location
        self.name = name or location
        self._signer = signer
        self._read: tuple[int, list[pystac.Item]] | None = None  # (file mtime, items)

    def items(self) -> list[pystac.Item]:
        """Every item of the source, unfiltered."""
        if "://" in self.location:
            return self._parse()
        try:
            changed = Path(self.location).stat().st_mtime_ns
        except OSError as exc:
            raise TransientError(f"cannot read the STAC source {self.location}: {exc}") from exc
        if self._read is None or self._read[0] != changed:
            self._read = (changed, self._parse())
        return self._read[1]

    def _parse(self) -> list[pystac.Item]:
        try:
            if "://" in self.location:
                data = pystac.StacIO.default().read_json(self.location)
            else:
                data = json.loads(Path(self.location).read_text())
            if data.get("type") == "FeatureCollection":
                return list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
            stac = pystac.read_dict(data, href=self.location)
        except (OSError, ValueError, pystac.STACError) as exc:
            raise TransientError(f"cannot read the STAC source {self.location}: {exc}") from exc
        if isinstance(stac, pystac.Catalog):
            return list(stac.get_items(recursive=True))
        if isinstance(stac, pystac.Item):
            return [stac]
        raise TransientError(f"{self.location} is a STAC {type(stac).__name__}, not items")

    def search(
        self, collection: str, geometry: BaseGeometry, start: datetime, end: datetime
    ) -> Iterator[pystac.Item]:
        for item in self.items():
            # Other known collections are another search's; unknown ones come through, for
            # the mapping to reject them with the reason (no server filters a file).
            if item.collection_id in COLLECTIONS and item.collection_id != collection:
                continue
            when = item.datetime or item.common_metadata.start_datetime
            if when is not None and not start <= when <= end:
                continue
            try:
                if item.geometry and not shape(item.geometry).intersects(geometry):
                    continue
            except GEOMETRY_ERRORS:
                pass  # an unreadable geometry is the mapping's to reject, with the reason
            if self._signer is not None:
                item = item.clone()  # the read items are kept: sign a copy
                self._signer(item)
            yield item


def open_source(spec: str, signer: str = "", policy: HttpPolicy | None = None) -> Source:
    """A source from a provider name, a STAC API URL, or a static catalog path or URL."""
    provider = PROVIDERS.get(spec)
    if provider is not None:
        return StacApiSource(provider.url, spec, load_signer(signer or provider.signer), policy)
    static = spec.endswith((".json", ".geojson")) or "://" not in spec
    if static:
        return StaticSource(spec, signer=load_signer(signer))
    return StacApiSource(spec, signer=load_signer(signer), policy=policy)
