"""Storage as a plain function: one prediction batch in, the rows to upsert out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import to_datetime


@dataclass(frozen=True)
class SceneOutcome:
    scene_id: str
    aoi_name: str
    indicator: str
    status: str
    results: int
    acquired_at: datetime
    discovered_at: datetime


@dataclass(frozen=True)
class StoreRows:
    outcome: SceneOutcome
    lcz_cells: list[dict[str, Any]] = field(default_factory=list)
    epsg: int = 0


def rows_for(batch: pb.PredictionBatch) -> StoreRows:
    if batch.indicator != "lcz":
        raise PoisonError(f"indicator {batch.indicator!r} has no table yet")
    if batch.predictions and (not batch.model_name or not batch.model_version):
        raise PoisonError("predictions without model name and version")
    if batch.predictions and batch.epsg <= 0:
        raise PoisonError(f"predictions with an invalid EPSG code {batch.epsg}")
    acquired = to_datetime(batch.header.acquired_at)
    cells = []
    for p in batch.predictions:
        if not 1 <= p.class_code <= 17:
            raise PoisonError(f"cell {p.entity_id}: LCZ class {p.class_code} out of 1..17")
        cells.append(
            {
                "cell_id": p.entity_id,
                "acquired_at": acquired,
                "scene_id": batch.header.scene_id,
                "model_name": batch.model_name,
                "model_version": batch.model_version,
                "lcz_class": p.class_code,
                "confidence": p.confidence,
                "probabilities": list(p.probabilities),
                "wkt": p.geometry_wkt,
            }
        )
    outcome = SceneOutcome(
        scene_id=batch.header.scene_id,
        aoi_name=batch.aoi.name,
        indicator=batch.indicator,
        status="no_valid_observation" if batch.no_valid_observation else "stored",
        results=len(cells),
        acquired_at=acquired,
        discovered_at=to_datetime(batch.header.discovered_at),
    )
    return StoreRows(outcome=outcome, lcz_cells=cells, epsg=batch.epsg)
