"""Storage as a plain function: one prediction batch in, the rows to stage out.

Each indicator has one table; `rows_for` checks a batch and turns its predictions into
rows in the column order of that table's staging table (`writer.STAGES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from revisit_common import events_pb2 as pb
from revisit_common.errors import PoisonError
from revisit_common.events import stage_time, to_datetime
from revisit_common.series import season_start

#: Columns of `landcover_indicator` that each area indicator fills, by value name.
LANDCOVER_VALUES = {
    "tree": "tree_fraction",
    "built_up": "built_up_fraction",
    "water": "water_fraction",
    "cropland": "cropland_fraction",
    "pixels_share": "classified_share",
}
BIOPHYS_VALUES = {
    **{f"{v}_{s}": f"{v}_{s}" for v in ("lai", "ccc", "fcover") for s in ("mean", "median")},
    "valid_fraction": "valid_pixel_share",
}
#: The staging columns of `landcover_indicator` (both models' columns; NULL: not this one).
AREA_COLUMNS = (
    "area_key",
    "acquired_at",
    "scene_id",
    *LANDCOVER_VALUES.values(),
    "landcover_model",
    "landcover_model_version",
    *BIOPHYS_VALUES.values(),
    "biophys_model",
    "biophys_model_version",
)
LCZ_COLUMNS = (
    "cell_id",
    "acquired_at",
    "scene_id",
    "model_name",
    "model_version",
    "lcz_class",
    "confidence",
    "probabilities",
    "wkt",  # in the batch's EPSG
)
#: The first columns of every per-parcel table (`_parcel_key` fills them).
PARCEL_KEY = ("parcel_id", "season", "acquired_at", "scene_id", "model_name", "model_version")
PARCEL_COLUMNS = (
    *PARCEL_KEY,
    "class_code",
    "class_name",
    "confidence",
    "probabilities",
    "observations",
    "season_days",
)
#: Value names of a parcel biophysics batch, each a column of `parcel_biophys`.
PARCEL_BIOPHYS_VALUES = tuple(
    f"{v}_{s}" for v in ("lai", "ccc", "fcover") for s in ("mean", "median")
)
PARCEL_BIOPHYS_COLUMNS = (
    *PARCEL_KEY,
    *PARCEL_BIOPHYS_VALUES,
    "pixels",
)
#: Table -> the columns of its rows, in order.
COLUMNS = {
    "parcel_biophys": PARCEL_BIOPHYS_COLUMNS,
    "lcz_cell": LCZ_COLUMNS,
    "parcel_prediction": PARCEL_COLUMNS,
    "landcover_indicator": AREA_COLUMNS,
}


@dataclass(frozen=True)
class SceneOutcome:
    scene_id: str
    aoi_name: str
    indicator: str
    status: str
    results: int
    acquired_at: datetime
    discovered_at: datetime
    preprocessed_at: datetime | None = None
    inferred_at: datetime | None = None
    #: rows of a re-prediction as of this (later) pass: its scene record is left as it is
    revision: bool = False


#: Crop type from Sentinel-2 passes, and from Sentinel-1 passes with the S1+S2 model.
CROP_INDICATORS = ("crop_type", "crop_type_s1s2")


@dataclass(frozen=True)
class StoreRows:
    outcome: SceneOutcome
    table: str = ""  # the indicator's table; empty when there is no row to write
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    epsg: int = 0
    #: (model name, model version, class code, class name) of a crop model's classes
    classes: list[tuple[str, str, int, str]] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        i = COLUMNS[self.table].index(name)
        return [row[i] for row in self.rows]


def rows_for(batch: pb.PredictionBatch) -> StoreRows:
    tables: dict[str, tuple[str, Callable[[pb.PredictionBatch, datetime], list[tuple[Any, ...]]]]]
    tables = {
        "lcz": ("lcz_cell", _lcz_rows),
        **{crop: ("parcel_prediction", _parcel_rows) for crop in CROP_INDICATORS},
        "parcel_biophysics": ("parcel_biophys", _parcel_biophys_rows),
        "land_cover": ("landcover_indicator", _area_rows(LANDCOVER_VALUES, "landcover")),
        "biophysics": ("landcover_indicator", _area_rows(BIOPHYS_VALUES, "biophys")),
    }
    if batch.indicator not in tables:
        raise PoisonError(f"indicator {batch.indicator!r} has no table")
    if batch.predictions and (not batch.model_name or not batch.model_version):
        raise PoisonError("predictions without model name and version")
    acquired = to_datetime(batch.header.acquired_at)
    table, make_rows = tables[batch.indicator]
    rows = make_rows(batch, acquired) if batch.predictions else []
    outcome = SceneOutcome(
        scene_id=batch.header.scene_id,
        aoi_name=batch.aoi.name,
        indicator=batch.indicator,
        status="no_valid_observation" if batch.no_valid_observation else "stored",
        results=len(rows),
        acquired_at=acquired,
        discovered_at=to_datetime(batch.header.discovered_at),
        preprocessed_at=stage_time(batch.header, "preprocess"),
        inferred_at=stage_time(batch.header, "inference"),
        revision=batch.revision,
    )
    classes = (
        [(batch.model_name, batch.model_version, i, c) for i, c in enumerate(batch.classes)]
        if batch.indicator in CROP_INDICATORS and rows
        else []
    )
    return StoreRows(outcome, table if rows else "", rows, batch.epsg, classes)


def _lcz_rows(batch: pb.PredictionBatch, acquired: datetime) -> list[tuple[Any, ...]]:
    if batch.epsg <= 0:
        raise PoisonError(f"predictions with an invalid EPSG code {batch.epsg}")
    rows = []
    for p in batch.predictions:
        if not 1 <= p.class_code <= 17:
            raise PoisonError(f"cell {p.entity_id}: LCZ class {p.class_code} out of 1..17")
        if not p.geometry_wkt:
            raise PoisonError(f"cell {p.entity_id}: no geometry")
        rows.append(
            (
                p.entity_id,
                acquired,
                batch.header.scene_id,
                batch.model_name,
                batch.model_version,
                p.class_code,
                p.confidence,
                list(p.probabilities),
                p.geometry_wkt,
            )
        )
    return rows


def _parcel_key(
    batch: pb.PredictionBatch, p: pb.Prediction, season: Any, acquired: datetime
) -> tuple[Any, ...]:
    """The first columns of a per-parcel row: parcel, season, pass, scene, model."""
    if not p.entity_id.isdigit():
        raise PoisonError(f"parcel id {p.entity_id!r} is not a parcel table id")
    return (
        int(p.entity_id),
        season,
        acquired,
        batch.header.scene_id,
        batch.model_name,
        batch.model_version,
    )


def _parcel_rows(batch: pb.PredictionBatch, acquired: datetime) -> list[tuple[Any, ...]]:
    season = season_start(batch.season)
    rows = []
    for p in batch.predictions:
        if not 0 <= p.class_code < len(batch.classes):
            raise PoisonError(
                f"parcel {p.entity_id}: class {p.class_code} not in the batch's "
                f"{len(batch.classes)} classes"
            )
        if len(p.probabilities) != len(batch.classes):
            raise PoisonError(
                f"parcel {p.entity_id}: {len(p.probabilities)} probabilities for "
                f"{len(batch.classes)} classes"
            )
        rows.append(
            (
                *_parcel_key(batch, p, season, acquired),
                p.class_code,
                batch.classes[p.class_code],
                p.confidence,
                list(p.probabilities),
                p.observations,
                p.season_days,
            )
        )
    return rows


def _parcel_biophys_rows(batch: pb.PredictionBatch, acquired: datetime) -> list[tuple[Any, ...]]:
    names = list(batch.value_names)
    if sorted(names) != sorted(PARCEL_BIOPHYS_VALUES):
        raise PoisonError(
            f"parcel_biophysics: values {names}, expected {list(PARCEL_BIOPHYS_VALUES)}"
        )
    season = season_start(batch.season)
    rows = []
    for p in batch.predictions:
        if len(p.values) != len(names):
            raise PoisonError(f"parcel {p.entity_id}: {len(p.values)} values for {len(names)}")
        value = dict(zip(names, p.values, strict=True))
        rows.append(
            (
                *_parcel_key(batch, p, season, acquired),
                *(value[name] for name in PARCEL_BIOPHYS_VALUES),
                p.observations,
            )
        )
    return rows


def _area_rows(
    columns: dict[str, str], model: str
) -> Callable[[pb.PredictionBatch, datetime], list[tuple[Any, ...]]]:
    """Rows of `landcover_indicator` with the columns of one model filled."""

    def rows(batch: pb.PredictionBatch, acquired: datetime) -> list[tuple[Any, ...]]:
        unknown = set(batch.value_names) - set(columns)
        if unknown:
            raise PoisonError(f"{batch.indicator}: unknown values {sorted(unknown)}")
        out = []
        for p in batch.predictions:
            if len(p.values) != len(batch.value_names):
                raise PoisonError(
                    f"area {p.entity_id}: {len(p.values)} values for {len(batch.value_names)} names"
                )
            values: dict[str, Any] = {
                "area_key": p.entity_id,
                "acquired_at": acquired,
                "scene_id": batch.header.scene_id,
                f"{model}_model": batch.model_name,
                f"{model}_model_version": batch.model_version,
            }
            values.update(
                (columns[name], v) for name, v in zip(batch.value_names, p.values, strict=True)
            )
            out.append(tuple(values.get(c) for c in AREA_COLUMNS))
        return out

    return rows
