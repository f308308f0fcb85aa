"""`revisit demo`: the whole chain on the real sample passes, and what it produced."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import create_engine, text

from revisit_cli.demo_data import build_catalog
from revisit_cli.models import build_models
from revisit_cli.services import ServicesConfig, endpoints, start_services
from revisit_cli.stack import StackConfig, up
from revisit_common.db.migrate import upgrade

LCZ_CODES = [str(i) for i in range(1, 11)] + list("ABCDEFG")

PROGRESS_SQL = text(
    "SELECT count(*) FILTER (WHERE status <> 'discovered'), count(*) FROM scene_processing"
)
TABLE_SQL = text(
    """
    SELECT a.name, s.acquired_at::date, sp.status, c.lcz_class, count(c.id)
    FROM scene_processing sp
    JOIN aoi a ON a.id = sp.aoi_id
    JOIN scene s ON s.id = sp.scene_id
    LEFT JOIN lcz_cell c ON c.scene_id = sp.scene_id AND c.aoi_id = sp.aoi_id
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4
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
    upgrade(config.database_url)
    for name, seconds in start_services(config, services).items():
        say(f"{name}: healthy ({seconds:.1f} s)")


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
                say(f"scenes processed: {done}/{max(total, expected)}")
                last = (done, total)
            if done >= expected:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise SystemExit(
                    f"only {done} of {expected} scenes processed after {timeout_s:.0f} s: "
                    "read the service logs in .revisit/logs/"
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


def lcz_table(database_url: str) -> str:
    """AOI, date, status and the number of cells of each LCZ class."""
    engine = create_engine(database_url)
    counts: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
    with engine.connect() as conn:
        for aoi, day, status, lcz, n in conn.execute(TABLE_SQL):
            counts[(aoi, str(day), status)][lcz] = n
    engine.dispose()
    used = sorted({c for row in counts.values() for c in row if c is not None})
    header = ["AOI", "date", "status"] + [f"LCZ {LCZ_CODES[c - 1]}" for c in used]
    lines = [header]
    for (aoi, day, status), row in sorted(counts.items()):
        lines.append([aoi, day, status] + [str(row.get(c, 0)) for c in used])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(rendered)


def where_to_look(config: StackConfig, services: ServicesConfig) -> str:
    urls = "\n".join(f"  {e.name:<10} {e.metrics_url}" for e in endpoints(services))
    return (
        "Explore the results:\n"
        f"  psql -h 127.0.0.1 -p {config.postgres_port} -U {config.postgres_user} "
        f"{config.postgres_db} -c 'SELECT * FROM lcz_cell LIMIT 5'\n"
        "Metrics:\n"
        f"{urls}\n"
        f"  triton     http://127.0.0.1:{config.triton_metrics_port}/metrics\n"
        f"Logs: {config.logs_dir}\n"
        "Stop everything: make down"
    )
