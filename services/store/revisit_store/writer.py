"""Writes a batch's rows in one transaction; replays leave the tables unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from revisit_common.db.errors import database_errors
from revisit_common.db.models import Aoi, LczCell, SceneProcessing
from revisit_common.errors import PoisonError
from revisit_common.metrics import AGE_BUCKETS, LATENCY_BUCKETS
from revisit_store.handler import StoreRows


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.from_discovery = Histogram(
            "revisit_store_end_to_end_from_discovery_seconds",
            "From discovery of a scene by the catalog to its rows committed in PostGIS.",
            ["indicator"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.from_acquisition = Histogram(
            "revisit_store_end_to_end_from_acquisition_seconds",
            "From the sensing time of a scene to its rows committed in PostGIS.",
            ["indicator"],
            buckets=AGE_BUCKETS,
            registry=registry,
        )


def write(engine: Engine, rows: StoreRows, metrics: StoreMetrics | None = None) -> None:
    outcome = rows.outcome
    with database_errors(), engine.begin() as conn:
        aoi_id = conn.execute(select(Aoi.id).where(Aoi.name == outcome.aoi_name)).scalar()
        if aoi_id is None:
            raise PoisonError(f"unknown AOI {outcome.aoi_name!r}")
        if rows.lcz_cells:
            stmt = insert(LczCell).values(
                [
                    {
                        **{k: v for k, v in cell.items() if k != "wkt"},
                        "aoi_id": aoi_id,
                        "geom": func.ST_Transform(
                            func.ST_GeomFromText(cell["wkt"], rows.epsg), 4326
                        ),
                    }
                    for cell in rows.lcz_cells
                ]
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    constraint="lcz_cell_key",
                    set_={
                        c: stmt.excluded[c]
                        for c in (
                            "scene_id",
                            "lcz_class",
                            "confidence",
                            "probabilities",
                            "geom",
                        )
                    },
                )
            )
        completed = datetime.now(UTC)
        status = insert(SceneProcessing).values(
            scene_id=outcome.scene_id,
            aoi_id=aoi_id,
            indicator=outcome.indicator,
            status=outcome.status,
            discovered_at=outcome.discovered_at,
            completed_at=completed,
            results=outcome.results,
        )
        conn.execute(
            status.on_conflict_do_update(
                index_elements=["scene_id", "aoi_id", "indicator"],
                set_={
                    "status": status.excluded.status,
                    "results": status.excluded.results,
                    # The first completion is the one that counts: a replay keeps it.
                    "completed_at": func.coalesce(
                        SceneProcessing.completed_at, status.excluded.completed_at
                    ),
                },
            )
        )
    if metrics is not None:
        metrics.from_discovery.labels(outcome.indicator).observe(
            (completed - outcome.discovered_at).total_seconds()
        )
        metrics.from_acquisition.labels(outcome.indicator).observe(
            (completed - outcome.acquired_at).total_seconds()
        )
