"""Entry point of the catalog service: `python -m revisit_catalog`."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from revisit_catalog.ingest import Ingest, Summary
from revisit_catalog.registry import (
    SubscriptionError,
    load_subscriptions,
    save_subscriptions,
    subscriptions,
)
from revisit_catalog.sources import HttpPolicy, Source, open_source
from revisit_common.errors import TransientError
from revisit_common.runtime import ServiceApp, configure_logging
from revisit_common.settings import ServiceSettings

log = logging.getLogger("revisit_catalog")


class CatalogSettings(ServiceSettings):
    """Catalog settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_DATABASE_URL``: PostGIS, SQLAlchemy URL.
    - ``REVISIT_CATALOG_SOURCE``: ``earth-search``, ``planetary-computer``, ``cdse``, a STAC
      API URL, or a static catalog / ItemCollection (path or URL).
    - ``REVISIT_CATALOG_SIGNER``: asset-href signer: ``planetary-computer`` (the default for
      that provider), ``module:function``, or empty.
    - ``REVISIT_CATALOG_AOI_FILE``: optional GeoJSON of AOIs saved into PostGIS at start-up
      (AOIs are otherwise added with ``revisit aoi add``).
    - ``REVISIT_CATALOG_POLL_INTERVAL_S``: seconds between two polls [300].
    - ``REVISIT_CATALOG_START``: where a new cursor starts [now − ``CATALOG_LOOKBACK``].
    - ``REVISIT_CATALOG_LOOKBACK``: ISO 8601 duration or seconds [P3D].
    - ``REVISIT_CATALOG_OVERLAP``: each poll searches again this far before its cursor,
      for items published late [P3D].
    - ``REVISIT_CATALOG_REQUESTS_PER_SECOND`` [5], ``REVISIT_CATALOG_HTTP_RETRIES`` [5],
      ``REVISIT_CATALOG_HTTP_BACKOFF_S`` [0.5], ``REVISIT_CATALOG_HTTP_TIMEOUT_S`` [30].
    """

    database_url: str = "postgresql+psycopg://revisit@127.0.0.1:15432/revisit"
    catalog_source: str = "earth-search"
    catalog_signer: str = ""
    catalog_aoi_file: Path | None = None
    catalog_poll_interval_s: float = 300.0
    catalog_start: datetime | None = None
    catalog_lookback: timedelta = timedelta(days=3)
    catalog_overlap: timedelta = timedelta(days=3)
    catalog_requests_per_second: float = 5.0
    catalog_http_retries: int = 5
    catalog_http_backoff_s: float = 0.5
    catalog_http_timeout_s: float = 30.0

    def source(self) -> Source:
        policy = HttpPolicy(
            self.catalog_requests_per_second,
            self.catalog_http_retries,
            self.catalog_http_backoff_s,
            self.catalog_http_timeout_s,
        )
        return open_source(self.catalog_source, self.catalog_signer, policy)


def poll_once(ingest: Ingest, settings: CatalogSettings) -> Summary:
    """One poll of every AOI in PostGIS."""
    return ingest.poll(
        subscriptions(ingest.engine),
        settings.catalog_lookback,
        settings.catalog_overlap,
        first=settings.catalog_start,
    )


def main() -> None:
    settings = CatalogSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("catalog", settings)
    app.install_signal_handlers()
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    try:
        seed = load_subscriptions(settings.catalog_aoi_file) if settings.catalog_aoi_file else []
        source = settings.source()
    except (SubscriptionError, ValueError) as exc:
        raise SystemExit(f"catalog: {exc}") from exc
    ingest = Ingest(app, engine, source)
    ready = False
    app.state = "running"
    log.info("catalog: watching %s every %.0f s", source.name, settings.catalog_poll_interval_s)
    while not app.stop.is_set():
        try:
            if not ready:  # once the database answers
                save_subscriptions(engine, seed)
                ready = True
            summary = poll_once(ingest, settings)
            log.info("catalog: poll done: %s", summary.line())
            app.metrics.last_success.set_to_current_time()
            app.state = "running"
        except (TransientError, OperationalError) as exc:
            app.metrics.failed.labels("transient").inc()
            app.state = "retrying"
            log.warning("catalog: poll failed, retrying: %s", exc)
        app.stop.wait(settings.catalog_poll_interval_s)
    app.close()
    engine.dispose()


if __name__ == "__main__":
    main()
