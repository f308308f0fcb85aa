"""Entry point of the store service: `python -m revisit_store`."""

from __future__ import annotations

import logging

from sqlalchemy import create_engine

from revisit_common import events_pb2 as pb
from revisit_common.db.migrate import upgrade
from revisit_common.errors import TransientError
from revisit_common.events import PREDICTIONS_TOPIC
from revisit_common.runtime import Output, ServiceApp, Stage, configure_logging
from revisit_common.settings import ServiceSettings
from revisit_store.handler import rows_for
from revisit_store.writer import StoreMetrics, write

log = logging.getLogger("revisit_store")


class StoreSettings(ServiceSettings):
    """Store settings (plus those of `ServiceSettings`). Environment variables:

    - ``REVISIT_DATABASE_URL``: PostGIS, SQLAlchemy URL.
    - ``REVISIT_STORE_MIGRATE``: apply the schema migrations at start-up (default true).
    """

    database_url: str = "postgresql+psycopg://revisit@127.0.0.1:15432/revisit"
    store_migrate: bool = True


def main() -> None:
    settings = StoreSettings()
    configure_logging(settings.log_level)
    app = ServiceApp("store", settings)
    app.install_signal_handlers()
    if settings.store_migrate:
        upgrade(settings.database_url)
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    metrics = StoreMetrics(app.metrics.registry)
    try:
        metrics.load_last_passes(engine)
    except TransientError as exc:  # the gauges fill as passes are stored
        log.warning("store: last passes not read at start-up: %s", exc)

    def store(batch: pb.PredictionBatch) -> list[Output]:
        write(engine, rows_for(batch), metrics)
        return []  # the store's output is the committed transaction

    app.consume(Stage("store", PREDICTIONS_TOPIC, pb.PredictionBatch, store))
    engine.dispose()


if __name__ == "__main__":
    main()
