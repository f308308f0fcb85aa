"""Database errors in the stage policy: what is worth retrying, what never will work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from revisit_common.errors import PoisonError, TransientError


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn SQLAlchemy errors into `TransientError` (database unavailable, connection
    lost: retried) or `PoisonError` (rejected by the schema or the database: DLQ)."""
    try:
        yield
    except IntegrityError as exc:
        raise PoisonError(f"rows rejected by the schema: {exc.orig}") from exc
    except OperationalError as exc:
        raise TransientError(f"database unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise TransientError(f"database connection lost: {exc.orig}") from exc
        raise PoisonError(f"rows rejected by the database: {exc.orig}") from exc
