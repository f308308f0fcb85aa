"""`revisit demo`: the whole chain on the real sample passes, and what it produced."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import create_engine, text

from revisit_cli.demo_data import build_catalog, demo_parcels, demo_units
from revisit_cli.models import build_models
from revisit_cli.services import ServicesConfig, endpoints, start_services
from revisit_cli.stack import StackConfig, up
from revisit_common.db.migrate import upgrade
from revisit_common.db.parcels import load_parcels
from revisit_common.db.units import load_units

LCZ_CODES = [str(i) for i in range(1, 11)] + list("ABCDEFG")

PROGRESS_SQL = text(
    "SELECT count(*) FILTER (WHERE status <> 'discovered'), count(*) FROM scene_processing"
)
LCZ_SQL = text(
    """
    SELECT a.name, s.acquired_at::date, sp.status, c.lcz_class, count(c.id)
    FROM scene_processing sp
    JOIN aoi a ON a.id = sp.aoi_id
    JOIN scene s ON s.id = sp.scene_id
    LEFT JOIN lcz_cell c ON c.scene_id = sp.scene_id AND c.aoi_id = sp.aoi_id
    WHERE sp.indicator = 'lcz'
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4
    """
)
CROP_SQL = text(
    """
    SELECT p.acquired_at::date, p.model_name, p.class_name, count(*),
        round(avg(p.observations), 1), round(avg(p.confidence)::numeric, 2)
    FROM parcel_prediction p GROUP BY 1, 2, 3 ORDER BY 1, 2, 4 DESC
    """
)
PARCEL_BIOPHYS_SQL = text(
    """
    SELECT acquired_at::date, count(*), round(avg(lai_mean)::numeric, 2),
        round(min(lai_mean)::numeric, 2), round(max(lai_mean)::numeric, 2),
        round(avg(ccc_mean)::numeric, 2), round(avg(fcover_mean)::numeric, 2),
        round(avg(pixels)::numeric)
    FROM parcel_biophys GROUP BY 1 ORDER BY 1
    """
)
AREA_SQL = text(
    """
    SELECT a.name, l.acquired_at::date, round(l.tree_fraction::numeric, 2),
        round(l.built_up_fraction::numeric, 2), round(l.cropland_fraction::numeric, 2),
        round(l.lai_mean::numeric, 2), round(l.ccc_mean::numeric, 2),
        round(l.fcover_mean::numeric, 2), round(l.valid_pixel_share::numeric, 2)
    FROM landcover_indicator l JOIN aoi a ON a.id = l.aoi_id
    WHERE l.area_key = a.name ORDER BY 1, 2
    """
)
UNIT_SQL = text(
    """
    SELECT u.aoi, u.unit_name, u.acquired_at::date, round(u.tree_fraction::numeric, 2),
        round(u.built_up_fraction::numeric, 2), round(u.cropland_fraction::numeric, 2),
        round(u.lai_mean::numeric, 2), round(u.ccc_mean::numeric, 2),
        round(u.fcover_mean::numeric, 2), round(u.valid_pixel_share::numeric, 2)
    FROM area_unit_indicator u
    WHERE u.acquired_at = (SELECT max(acquired_at) FROM area_unit_indicator v
                           WHERE v.aoi = u.aoi AND v.lai_mean IS NOT NULL)
    ORDER BY 1, 2
    """
)


def bring_up(config: StackConfig, services: ServicesConfig, say: Callable[[str], None]) -> None:
    """Demo data, model repository, infrastructure, schema, services: each if missing."""
    t0 = time.monotonic()
    catalog = build_catalog(config.state_dir / "demo")
    say(f"demo data: {catalog} ({time.monotonic() - t0:.1f} s)")
    for path in build_models(config.triton_model_repository):
        say(f"model repository: wrote {path}")
    for name, seconds in up(config, progress=say).items():
        say(f"{name}: up ({seconds:.1f} s)")
    for line in prepare_database(config.database_url, services):
        say(line)
    for name, seconds in start_services(config, services).items():
        say(f"{name}: healthy ({seconds:.1f} s)")


def prepare_database(database_url: str, services: ServicesConfig) -> list[str]:
    """Schema, the demo AOIs, the parcels of its `parcels` AOIs and the area units of
    its `region` AOIs, before any service runs: the first passes find them there."""
    from revisit_catalog.registry import load_subscriptions, save_subscriptions

    upgrade(database_url)
    subs = load_subscriptions(services.catalog_aoi_file)
    engine = create_engine(database_url)
    try:
        save_subscriptions(engine, subs)
        done = [f"AOIs: {', '.join(f'{s.aoi.name} ({s.aoi.kind})' for s in subs)}"]
        parcel_aois = [s.aoi.name for s in subs if s.aoi.kind == "parcels"]
        parcels = demo_parcels() if parcel_aois else []
        for name in parcel_aois:
            n = load_parcels(engine, name, parcels)
            done.append(f"parcels of {name}: {n} (WorldCereal cropland map)")
        for sub in subs:
            if sub.aoi.kind == "region":
                units = load_units(
                    engine, sub.aoi.name, demo_units(sub.aoi.name, sub.aoi.geometry_wkt)
                )
                done.append(f"area units of {sub.aoi.name}: {units.loaded} (its four quarters)")
    finally:
        engine.dispose()
    return done


def wait_for_scenes(
    database_url: str, expected: int, timeout_s: float, say: Callable[[str], None]
) -> float:
    """Wait until `expected` scene × AOI records are complete; returns the seconds waited."""
    engine = create_engine(database_url)
    t0, last = time.monotonic(), (-1, -1)
    try:
        while True:
            with engine.connect() as conn:
                done, total = conn.execute(PROGRESS_SQL).one()
            if (done, total) != last:
                say(f"pass × indicator records complete: {done}/{max(total, expected)}")
                last = (done, total)
            if done >= expected:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise SystemExit(
                    f"only {done} of {expected} pass × indicator records complete after "
                    f"{timeout_s:.0f} s: read the service logs in .revisit/logs/"
                )
            time.sleep(1.0)
    finally:
        engine.dispose()


LATENCY_SQL = text(
    """
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), max(d)
    FROM (SELECT extract(epoch FROM completed_at - discovered_at) AS d
          FROM scene_processing WHERE completed_at IS NOT NULL) AS latency
    """
)


def latency_summary(database_url: str) -> str:
    """Discovery of a scene by the catalog → its rows committed in PostGIS."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        median, worst = conn.execute(LATENCY_SQL).one()
    engine.dispose()
    if median is None:
        return "no scene completed yet"
    return f"discovery → rows in PostGIS: median {median:.1f} s, max {worst:.1f} s per scene"


def _render(header: list[str], lines: list[list[str]]) -> str:
    rows = [header, *lines]
    widths = [max(len(line[i]) for line in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in rows
    )


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def indicator_tables(database_url: str) -> str:
    """What the demo stored, one table per indicator."""
    engine = create_engine(database_url)
    counts: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
    with engine.connect() as conn:
        for aoi, day, status, lcz, n in conn.execute(LCZ_SQL):
            counts[(aoi, str(day), status)][lcz] = n
        by_day: dict[tuple[str, str], list[str]] = defaultdict(list)
        used_passes: dict[tuple[str, str], str] = {}
        for day, model, name, n, passes, confidence in conn.execute(CROP_SQL):
            by_day[(str(day), model)].append(f"{name} {n} ({confidence})")
            used_passes[(str(day), model)] = str(passes)
        crops = [[*key, used_passes[key], ", ".join(v)] for key, v in sorted(by_day.items())]
        areas = [[_cell(v) for v in row] for row in conn.execute(AREA_SQL)]
        units = [[_cell(v) for v in row] for row in conn.execute(UNIT_SQL)]
        parcel_bio = [[_cell(v) for v in row] for row in conn.execute(PARCEL_BIOPHYS_SQL)]
    engine.dispose()
    used = sorted({c for row in counts.values() for c in row if c is not None})
    lcz = _render(
        ["AOI", "date", "status"] + [f"LCZ {LCZ_CODES[c - 1]}" for c in used],
        [
            [aoi, day, status] + [str(row.get(c, 0)) for c in used]
            for (aoi, day, status), row in sorted(counts.items())
        ],
    )
    crop = _render(["as of", "model", "passes", "parcels per crop type (mean confidence)"], crops)
    area = _render(
        ["AOI", "date", "tree", "built-up", "cropland", "LAI", "CCC g/m²", "FCOVER", "valid"],
        areas,
    )
    per_unit = _render(
        [
            "AOI",
            "unit",
            "date",
            "tree",
            "built-up",
            "cropland",
            "LAI",
            "CCC g/m²",
            "FCOVER",
            "valid",
        ],
        units,
    )
    per_parcel = _render(
        ["date", "parcels", "LAI mean", "min", "max", "CCC g/m²", "FCOVER", "valid px"],
        parcel_bio,
    )
    return (
        "Local Climate Zones (cells of 320 m, lcz_cell / lcz_latest):\n"
        f"{lcz}\n\n"
        "Crop type of the parcels from their season so far (parcel_prediction / "
        "parcel_latest):\npsetae_s2 on each Sentinel-2 pass; psetae_s1s2 on each pass, from "
        "both seasons\n(its passes count those of both sensors; of two at one date, the one "
        "from more passes):\n"
        f"{crop}\n\n"
        "LAI, CCC and FCOVER per parcel, averaged over the parcels (parcel_biophys):\n"
        f"{per_parcel}\n\n"
        "Land-cover fractions and biophysical means of the region (landcover_indicator):\n"
        f"{area}\n\n"
        "The same per area unit, at the latest pass with biophysics (area_unit_indicator):\n"
        f"{per_unit}\n\n"
        "Read these as a demonstration of the chain, not as results: the crop-type and\n"
        "land-cover models were trained elsewhere (WorldCereal extractions, the eo-learn\n"
        "patch in Slovenia) and this patch is out of their domain; the drift metrics of\n"
        "the inference service say so (revisit_inference_input_shift_max_sigma,\n"
        "revisit_inference_class_psi_ratio). Model cards: data/models/*/*/card.md."
    )


def where_to_look(config: StackConfig, services: ServicesConfig) -> str:
    urls = "\n".join(f"  {e.name:<10} {e.metrics_url}" for e in endpoints(services))
    return (
        "Explore the results:\n"
        f"  psql -h 127.0.0.1 -p {config.postgres_port} -U {config.postgres_reader} "
        f"{config.postgres_db} -c 'SELECT * FROM parcel_latest LIMIT 5'\n"
        "  (tables: lcz_cell, parcel_prediction, parcel_biophys, landcover_indicator, "
        "area_unit; views: lcz_latest, lcz_share, parcel_latest, parcel_control, "
        "parcel_biophys_latest, area_unit_indicator; recipes in docs/queries.md)\n"
        f"Prometheus: {config.prometheus_url} (alerts: {config.prometheus_url}/alerts)\n"
        "Metrics:\n"
        f"{urls}\n"
        f"  triton     http://127.0.0.1:{config.triton_metrics_port}/metrics\n"
        f"  postgres   http://127.0.0.1:{config.postgres_exporter_port}/metrics\n"
        "Grafana dashboards (no Grafana here): infra/grafana/README.md\n"
        f"Logs: {config.logs_dir}\n"
        "Stop everything: make down"
    )
