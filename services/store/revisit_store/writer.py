"""Writes a batch's rows in one transaction; replays leave the tables unchanged.

The rows are copied (COPY) into a temporary staging table, then merged into the
indicator's table with one ``INSERT … SELECT … ON CONFLICT DO UPDATE``: the bulk path
of PostgreSQL, whatever the batch's size. Geometries are transformed to EPSG:4326 there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from revisit_common.db.errors import database_errors
from revisit_common.db.models import Aoi, ModelClass, Scene, SceneProcessing
from revisit_common.errors import PoisonError
from revisit_common.metrics import AGE_BUCKETS, LATENCY_BUCKETS
from revisit_store.handler import (
    AREA_COLUMNS,
    BIOPHYS_VALUES,
    COLUMNS,
    CROP_INDICATORS,
    LANDCOVER_VALUES,
    PARCEL_BIOPHYS_COLUMNS,
    PARCEL_BIOPHYS_VALUES,
    PARCEL_COLUMNS,
    StoreRows,
)

#: Types of the staging columns (`handler.COLUMNS` gives their order).
TYPES = {
    "cell_id": "text",
    "acquired_at": "timestamptz",
    "scene_id": "text",
    "model_name": "text",
    "model_version": "text",
    "lcz_class": "smallint",
    "confidence": "real",
    "probabilities": "real[]",
    "wkt": "text",
    "parcel_id": "bigint",
    "season": "date",
    "class_code": "smallint",
    "class_name": "text",
    "observations": "smallint",
    "season_days": "smallint",
    "area_key": "text",
    "pixels": "smallint",
    **dict.fromkeys(PARCEL_BIOPHYS_VALUES, "real"),
}
TYPES.update((c, "text" if "model" in c else "real") for c in AREA_COLUMNS if c not in TYPES)


def _set(columns: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)


#: The staged rows (``s``) of parcels of the batch's AOI.
OF_THE_AOI = "{stage} s JOIN parcel p ON p.id = s.parcel_id AND p.aoi_id = %(aoi_id)s"


def _parcel_merge(table: str, columns: tuple[str, ...], updated: list[str], when: str = "") -> str:
    """The merge of a per-parcel table: only parcels of the batch's AOI (fewer rows merged
    than staged is refused), `updated` overwritten on a replay (`when` it holds)."""
    return f"""
        INSERT INTO {table} ({", ".join(columns)})
        SELECT {", ".join(f"s.{c}" for c in columns)}
        FROM {OF_THE_AOI}
        ORDER BY s.parcel_id
        ON CONFLICT ON CONSTRAINT {table}_key DO UPDATE SET {_set(updated)}
        {f"WHERE {when}" if when else ""}
        """


#: Two passes at one instant (the demo's monthly S1 and S2 composites share their dates)
#: both give an S1+S2 prediction of that instant: the one from more passes is kept, in
#: whichever order they come (then the greater scene id); a replay of the same scene, or
#: of a reprocessed version under the same id, always overwrites.
CROP_KEPT = (
    "EXCLUDED.scene_id = parcel_prediction.scene_id OR "
    "(EXCLUDED.observations, EXCLUDED.scene_id) > "
    "(parcel_prediction.observations, parcel_prediction.scene_id)"
)


#: Indicator -> the SQL that merges a staging table ``{stage}`` into its table
#: (parameters ``%(aoi_id)s``, ``%(epsg)s``); the two indicators of
#: `landcover_indicator` each update their own columns.
MERGES = {
    "lcz": """
        INSERT INTO lcz_cell (aoi_id, cell_id, acquired_at, scene_id, model_name,
            model_version, lcz_class, confidence, probabilities, geom)
        SELECT %(aoi_id)s, cell_id, acquired_at, scene_id, model_name, model_version,
            lcz_class, confidence, probabilities,
            ST_Transform(ST_GeomFromText(wkt, %(epsg)s), 4326)
        FROM {stage} ORDER BY cell_id
        ON CONFLICT ON CONSTRAINT lcz_cell_key DO UPDATE SET
        """
    + _set(("scene_id", "lcz_class", "confidence", "probabilities", "geom")),
    # both crop models' rows: the same table, told apart by their model
    **dict.fromkeys(
        CROP_INDICATORS,
        _parcel_merge(
            "parcel_prediction",
            PARCEL_COLUMNS,
            [c for c in PARCEL_COLUMNS[3:] if c not in ("model_name", "model_version")],
            CROP_KEPT,
        ),
    ),
    "parcel_biophysics": _parcel_merge(
        "parcel_biophys", PARCEL_BIOPHYS_COLUMNS, ["scene_id", *PARCEL_BIOPHYS_VALUES, "pixels"]
    ),
}
for _indicator, _model, _values in (
    ("land_cover", "landcover", LANDCOVER_VALUES),
    ("biophysics", "biophys", BIOPHYS_VALUES),
):
    _filled = [*_values.values(), f"{_model}_model", f"{_model}_model_version", "scene_id"]
    MERGES[_indicator] = f"""
        INSERT INTO landcover_indicator (aoi_id, {", ".join(AREA_COLUMNS)})
        SELECT %(aoi_id)s, {", ".join(AREA_COLUMNS)} FROM {{stage}} ORDER BY area_key
        ON CONFLICT ON CONSTRAINT landcover_indicator_key DO UPDATE SET {_set(_filled)}
        """


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
        self.last_pass = Gauge(
            "revisit_store_last_pass_timestamp_seconds",
            "Sensing time of the latest pass of an AOI whose indicator is complete (stored, "
            "or no valid observation); filled from the database at start-up.",
            ["aoi", "indicator"],
            registry=registry,
        )
        self._last: dict[tuple[str, str], float] = {}

    def passed(self, aoi: str, indicator: str, acquired: datetime) -> None:
        """A pass is complete: the gauge keeps the latest (replays of old ones leave it)."""
        key, seconds = (aoi, indicator), acquired.timestamp()
        if seconds > self._last.get(key, float("-inf")):
            self._last[key] = seconds
            self.last_pass.labels(aoi, indicator).set(seconds)

    def load_last_passes(self, engine: Engine) -> None:
        """The latest complete pass of every AOI and indicator, as the database has it."""
        query = (
            select(Aoi.name, SceneProcessing.indicator, func.max(Scene.acquired_at))
            .join(Aoi, Aoi.id == SceneProcessing.aoi_id)
            .join(Scene, Scene.id == SceneProcessing.scene_id)
            .where(SceneProcessing.completed_at.is_not(None))
            .group_by(Aoi.name, SceneProcessing.indicator)
        )
        with database_errors(), engine.connect() as conn:
            for aoi, indicator, acquired in conn.execute(query):
                self.passed(aoi, indicator, acquired)


def write(engine: Engine, rows: StoreRows, metrics: StoreMetrics | None = None) -> None:
    outcome = rows.outcome
    with database_errors(), engine.begin() as conn:
        aoi_id = conn.execute(select(Aoi.id).where(Aoi.name == outcome.aoi_name)).scalar()
        if aoi_id is None:
            raise PoisonError(f"unknown AOI {outcome.aoi_name!r}")
        if rows.rows:
            of_the_aoi = _merge(conn, rows, aoi_id)
            if of_the_aoi != len(rows.rows):
                raise PoisonError(
                    f"{len(rows.rows) - of_the_aoi} of {len(rows.rows)} {outcome.indicator} rows "
                    f"name no entity of AOI {outcome.aoi_name!r} (unknown parcel ids?)"
                )
        if rows.classes:
            names = ("model_name", "model_version", "class_code", "class_name")
            known = insert(ModelClass).values(
                [dict(zip(names, c, strict=True)) for c in rows.classes]
            )
            conn.execute(known.on_conflict_do_nothing())
        if outcome.revision:  # the later pass's record, stage times and metrics stand
            return
        completed = datetime.now(UTC)
        status = insert(SceneProcessing).values(
            scene_id=outcome.scene_id,
            aoi_id=aoi_id,
            indicator=outcome.indicator,
            status=outcome.status,
            discovered_at=outcome.discovered_at,
            preprocessed_at=outcome.preprocessed_at,
            inferred_at=outcome.inferred_at,
            completed_at=completed,
            results=outcome.results,
        )
        conn.execute(
            status.on_conflict_do_update(
                index_elements=["scene_id", "aoi_id", "indicator"],
                set_={
                    "status": status.excluded.status,
                    "results": status.excluded.results,
                    # The first pass through each stage is the one that counts: a replay
                    # keeps it.
                    **{
                        c: func.coalesce(getattr(SceneProcessing, c), status.excluded[c])
                        for c in ("preprocessed_at", "inferred_at", "completed_at")
                    },
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
        metrics.passed(outcome.aoi_name, outcome.indicator, outcome.acquired_at)


def _merge(conn: Connection, rows: StoreRows, aoi_id: int) -> int:
    """COPY the rows into a staging table, merge it; returns the staged rows that name an
    entity of the AOI (merged, or kept out by a merge's condition)."""
    name, columns = f"stage_{rows.table}", COLUMNS[rows.table]
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        typed = ", ".join(f"{c} {TYPES[c]}" for c in columns)
        cur.execute(f"CREATE TEMP TABLE {name} ({typed}) ON COMMIT DROP")
        with cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
            copy.set_types([TYPES[c] for c in columns])
            for row in rows.rows:
                copy.write_row(row)
        merge = MERGES[rows.outcome.indicator].format(stage=name)
        cur.execute(merge, {"aoi_id": aoi_id, "epsg": rows.epsg})
        merged = int(cur.rowcount)
        if merged == len(rows.rows) or "parcel_id" not in columns:
            return merged
        # fewer merged: parcels of another AOI, or rows a merge's condition kept out
        cur.execute(f"SELECT count(*) FROM {OF_THE_AOI.format(stage=name)}", {"aoi_id": aoi_id})
        found = cur.fetchone()
        return int(found[0]) if found else 0
