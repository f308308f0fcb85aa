"""Writes the Grafana dashboards of infra/grafana/dashboards/ from code.

    python infra/grafana/generate.py          # (re)write the JSON files
    python infra/grafana/generate.py --check  # exit 1 if a committed file differs

Built with grafana-foundation-sdk (Grafana's own typed builders). Its PostgreSQL query
type is missing, so SQL targets are a small `Dataquery` of this file. Data sources are
referenced by the uids of provisioning/datasources/revisit.yaml: `prometheus` and
`postgis`. Only metrics that the services, Triton and postgres_exporter export are used
(tests/unit/test_dashboards.py checks it), and only SQL that the read-only role can run
(tests/integration/test_dashboard_sql.py runs it).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    geomap,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m

HERE = Path(__file__).resolve().parent
DASHBOARDS_DIR = HERE / "dashboards"
LCZ_MODULE = HERE.parent.parent / "services" / "models" / "revisit_models" / "lcz.py"

PROMETHEUS = dash_m.DataSourceRef(type_val="prometheus", uid="prometheus")
POSTGIS = dash_m.DataSourceRef(type_val="grafana-postgresql-datasource", uid="postgis")
RATE = "$__rate_interval"
#: Stages in pipeline order; the catalog polls STAC and consumes no topic.
SERVICES = ("catalog", "preprocess", "inference", "store")
CONSUMERS = ("preprocess", "inference", "store")
PRODUCERS = ("catalog", "preprocess", "inference")

#: WUDAPT's usual colours of the 17 Local Climate Zones (1..10 built, A..G land cover).
LCZ_COLORS = (
    "#8c0000", "#d10000", "#ff0000", "#bf4d00", "#ff6600", "#ff9955", "#faee05",
    "#bcbcbc", "#ffccaa", "#555555", "#006a00", "#00aa00", "#648525", "#b9db79",
    "#000000", "#fbf7ae", "#6a6aff",
)  # fmt: skip


def lcz_class_names() -> tuple[str, ...]:
    """`LCZ_CLASS_NAMES` of revisit_models.lcz, read from its source (no torch import)."""
    tree = ast.parse(LCZ_MODULE.read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign | ast.Assign)
            and "LCZ_CLASS_NAMES"
            in ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node.target)
            and node.value is not None
        ):
            names = ast.literal_eval(node.value)
            return tuple(str(n) for n in names)
    raise RuntimeError(f"LCZ_CLASS_NAMES not found in {LCZ_MODULE}")


def lcz_mappings(colored: bool) -> list[dash_m.ValueMapping]:
    options = {
        str(code): dash_m.ValueMappingResult(
            text=name, color=LCZ_COLORS[code - 1] if colored else None, index=code - 1
        )
        for code, name in enumerate(lcz_class_names(), start=1)
    }
    return [dash_m.ValueMap(options=options)]


# --- queries ---------------------------------------------------------------------------


class SqlQuery(cogvariants.Dataquery):
    """A target of Grafana's PostgreSQL data source, in code mode."""

    def __init__(self, ref_id: str, sql: str, fmt: str) -> None:
        self.ref_id, self.sql, self.fmt = ref_id, sql, fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": POSTGIS.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, ref_id: str, sql: str, fmt: str = "table") -> None:
        self._query = SqlQuery(ref_id, dedent(sql), fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def dedent(sql: str) -> str:
    lines = [line.rstrip() for line in sql.strip("\n").splitlines()]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line)
    return "\n".join(line[indent:] for line in lines)


def promql(ref_id: str, expr: str, legend: str, instant: bool = False) -> prom_b.Dataquery:
    query = prom_b.Dataquery().ref_id(ref_id).expr(expr).legend_format(legend)
    query = query.datasource(PROMETHEUS)
    return query.instant() if instant else query.range()


def refs(count: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:count]


def per_service(
    services: Sequence[str], expr: str, legend: str, instant: bool = False
) -> list[prom_b.Dataquery]:
    """One target per service: `expr` and `legend` with {s} for the service's name."""
    return [
        promql(ref, expr.format(s=s), legend.replace("{s}", s), instant)
        for ref, s in zip(refs(len(services)), services, strict=True)
    ]


def quantiles(metric: str, by: str, legend: str) -> list[prom_b.Dataquery]:
    """Median and 95th percentile of a histogram, summed by `by`."""
    return [
        promql(
            ref,
            f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket[{RATE}])))",
            f"{legend} p{round(q * 100)}",
        )
        for ref, q in zip("AB", (0.5, 0.95), strict=True)
    ]


# --- panels ----------------------------------------------------------------------------


def timeseries_panel(
    title: str,
    description: str,
    targets: Sequence[cogbuilder.Builder[cogvariants.Dataquery]],
    unit: str,
    width: int = 12,
    datasource: dash_m.DataSourceRef = PROMETHEUS,
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).datasource(datasource)
    panel = panel.unit(unit).span(width).height(8).targets(list(targets))
    legend = common_b.VizLegendOptions().show_legend(True)
    legend = legend.display_mode(common_m.LegendDisplayMode.TABLE)
    legend = legend.placement(common_m.LegendPlacement.BOTTOM).calcs(["lastNotNull", "max"])
    return panel.legend(legend).tooltip(
        common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI)
    )


def threshold_steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=v, color=c) for v, c in steps])
    )


def stat_panel(
    title: str, description: str, targets: Sequence[prom_b.Dataquery], unit: str, width: int
) -> stat.Panel:
    panel = stat.Panel().title(title).description(description).datasource(PROMETHEUS)
    panel = panel.unit(unit).span(width).height(5).targets(list(targets))
    return panel.reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))


# --- the pipeline dashboard ------------------------------------------------------------


def pipeline() -> dash.Dashboard:
    consumed = "sum by (topic) (rate(revisit_{s}_messages_consumed_total[$__rate_interval]))"
    produced = "sum by (topic) (rate(revisit_{s}_messages_produced_total[$__rate_interval]))"
    failed = "sum by (kind) (rate(revisit_{s}_messages_failed_total[$__rate_interval]))"
    dlq = "sum by (topic) (increase(revisit_{s}_messages_dead_lettered_total[1h]))"
    handler_p95 = (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(revisit_{s}_handler_duration_seconds_bucket[$__rate_interval])))"
    )
    handler_mean = (
        "sum(rate(revisit_{s}_handler_duration_seconds_sum[$__rate_interval])) / "
        "sum(rate(revisit_{s}_handler_duration_seconds_count[$__rate_interval]))"
    )
    lag = "sum by (topic) (revisit_{s}_consumer_lag_messages)"
    d = dash.Dashboard("revisit: pipeline").uid("revisit-pipeline")
    d = d.description(
        "Throughput, latency, lag and errors of catalog → preprocess → inference → store."
    )
    d = d.tags(["revisit"]).time("now-6h", "now").refresh("30s").timezone("utc")
    d = d.tooltip(dash_m.DashboardCursorSync.CROSSHAIR)

    d = d.with_row(dash.Row("Throughput"))
    d = d.with_panel(
        timeseries_panel(
            "Messages consumed per second, by stage and topic",
            "Records read from each stage's input topic (the catalog polls STAC instead).",
            per_service(CONSUMERS, consumed, "{s} ← {{topic}}"),
            "ops",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Messages produced per second, by stage and topic",
            "Records acknowledged by the broker, DLQ records included.",
            per_service(PRODUCERS, produced, "{s} → {{topic}}"),
            "ops",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "STAC items per second, by outcome (catalog)",
            "What the catalog did with each item it saw: published, duplicate, too cloudy...",
            [
                promql(
                    "A",
                    f"sum by (outcome) (rate(revisit_catalog_items_total[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            "ops",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Payload bytes written per second, by service",
            "Arrays written to the payload store (they travel by reference between stages).",
            [
                promql(
                    "A",
                    f"sum by (service) (rate(revisit_payload_written_bytes_total[{RATE}]))",
                    "{{service}}",
                )
            ],
            "Bps",
        )
    )

    d = d.with_row(dash.Row("Latency"))
    d = d.with_panel(
        timeseries_panel(
            "Handler duration p95, by stage",
            "Time to process one message, outputs acknowledged (store: transaction committed).",
            per_service(SERVICES, handler_p95, "{s} p95"),
            "s",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Handler duration mean, by stage",
            "Mean time to process one message over the rate interval.",
            per_service(SERVICES, handler_mean, "{s} mean"),
            "s",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "End to end from discovery to PostGIS, by indicator",
            "From the catalog's discovery of a scene to its rows committed by the store.",
            quantiles(
                "revisit_store_end_to_end_from_discovery_seconds", ", indicator", "{{indicator}}"
            ),
            "s",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "End to end from acquisition to PostGIS, by indicator",
            "From the satellite's sensing time to the rows in PostGIS: minutes for a live "
            "pass, days or more for an archive.",
            quantiles(
                "revisit_store_end_to_end_from_acquisition_seconds", ", indicator", "{{indicator}}"
            ),
            "s",
        )
    )

    d = d.with_row(dash.Row("Lag and freshness"))
    d = d.with_panel(
        timeseries_panel(
            "Consumer lag, by stage and topic",
            "End offset minus committed offset of each stage's consumer group, read from "
            "the broker, summed over partitions.",
            per_service(CONSUMERS, lag, "{s} ← {{topic}}"),
            "short",
        )
    )
    d = d.with_panel(
        stat_panel(
            "Since each stage last succeeded",
            "Age of the last message processed successfully by each stage.",
            per_service(
                SERVICES, "time() - revisit_{s}_last_success_timestamp_seconds", "{s}", True
            ),
            "s",
            12,
        )
    )
    d = d.with_panel(
        bargauge.Panel()
        .title("Age of the latest stored pass, by AOI and indicator")
        .description(
            "Now minus the sensing time of the latest pass stored for each AOI and indicator."
        )
        .datasource(PROMETHEUS)
        .targets(
            [
                promql(
                    "A",
                    "time() - max by (aoi, indicator) (revisit_store_last_pass_timestamp_seconds)",
                    "{{aoi}} {{indicator}}",
                    True,
                )
            ]
        )
        .unit("s")
        .span(24)
        .height(7)
        .display_mode(common_m.BarGaugeDisplayMode.BASIC)
        .orientation(common_m.VizOrientation.HORIZONTAL)
    )

    d = d.with_row(dash.Row("Errors and dead letters"))
    d = d.with_panel(
        timeseries_panel(
            "Failed processing attempts per second, by stage and kind",
            "poison (sent to the DLQ), transient (retried with backoff), unexpected.",
            per_service(SERVICES, failed, "{s} {{kind}}"),
            "ops",
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Messages dead-lettered in the last hour, by stage and topic",
            "Messages a stage can never process, sent to <topic>.dlq with the reason "
            "(`revisit dlq` lists and replays them).",
            per_service(SERVICES, dlq, "{s} → {{topic}}"),
            "short",
        )
    )

    d = d.with_row(dash.Row("PostgreSQL"))
    d = d.with_panel(
        stat_panel(
            "PostgreSQL up",
            "postgres_exporter's connection to the database (1 up, 0 down).",
            [promql("A", "min(pg_up)", "up", True)],
            "none",
            6,
        )
        .mappings(
            [
                dash_m.ValueMap(
                    options={
                        "0": dash_m.ValueMappingResult(text="down", color="red", index=0),
                        "1": dash_m.ValueMappingResult(text="up", color="green", index=1),
                    }
                )
            ]
        )
        .color_mode(common_m.BigValueColorMode.BACKGROUND)
    )
    d = d.with_panel(
        timeseries_panel(
            "Connections, by database",
            "Backends connected to each database (services, Grafana, analysts).",
            [
                promql(
                    "A",
                    'sum by (datname) (pg_stat_database_numbackends{datname!~"template.*"})',
                    "{{datname}}",
                )
            ],
            "short",
            9,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Transactions committed per second, by database",
            "The store commits one transaction per prediction batch.",
            [
                promql(
                    "A",
                    "sum by (datname) "
                    f'(rate(pg_stat_database_xact_commit{{datname!~"template.*"}}[{RATE}]))',
                    "{{datname}}",
                )
            ],
            "ops",
            9,
        )
    )
    return d


# --- the models dashboard --------------------------------------------------------------


def models() -> dash.Dashboard:
    d = dash.Dashboard("revisit: models").uid("revisit-models")
    d = d.description("Triton serving (client and server side), drift and the circuit breaker.")
    d = d.tags(["revisit"]).time("now-6h", "now").refresh("30s").timezone("utc")
    d = d.tooltip(dash_m.DashboardCursorSync.CROSSHAIR)

    client = "revisit_inference_triton_request"
    d = d.with_row(dash.Row("Triton, as the inference service sees it"))
    d = d.with_panel(
        timeseries_panel(
            "Request latency (client), by model",
            "gRPC request to Triton and back, one request per batch cut to the model's max batch.",
            quantiles(f"{client}_duration_seconds", ", model", "{{model}}"),
            "s",
            8,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Items per request (client batch size), by model",
            "Mean and 95th percentile of the items sent in one request.",
            [
                promql(
                    "A",
                    f"sum by (model) (rate({client}_items_sum[{RATE}])) / "
                    f"sum by (model) (rate({client}_items_count[{RATE}]))",
                    "{{model}} mean",
                ),
                promql(
                    "B",
                    f"histogram_quantile(0.95, sum by (le, model) "
                    f"(rate({client}_items_bucket[{RATE}])))",
                    "{{model}} p95",
                ),
            ],
            "short",
            8,
        )
    )
    d = d.with_panel(
        statetimeline.Panel()
        .title("Circuit breaker, by model")
        .description(
            "Open after 5 failed calls in a row: the service stops calling the model for 30 s "
            "and holds its messages (nothing is lost)."
        )
        .datasource(PROMETHEUS)
        .targets(
            [promql("A", "max by (model) (revisit_inference_triton_circuit_open)", "{{model}}")]
        )
        .mappings(
            [
                dash_m.ValueMap(
                    options={
                        "0": dash_m.ValueMappingResult(text="closed", color="green", index=0),
                        "1": dash_m.ValueMappingResult(text="open", color="red", index=1),
                    }
                )
            ]
        )
        .span(8)
        .height(8)
    )

    d = d.with_row(dash.Row("Triton, as the server counts it (its /metrics)"))
    per_model = "sum by (model) (rate({m}[$__rate_interval]))"
    d = d.with_panel(
        timeseries_panel(
            "Inference requests per second, by model and result",
            "Successful and failed requests counted by Triton.",
            [
                promql("A", per_model.format(m="nv_inference_request_success"), "{{model}} ok"),
                promql("B", per_model.format(m="nv_inference_request_failure"), "{{model}} failed"),
            ],
            "reqps",
            6,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Server time per request, by model",
            "Mean time in Triton per successful request: end to end in the server, and "
            "waiting in its queue.",
            [
                promql(
                    "A",
                    per_model.format(m="nv_inference_request_duration_us")
                    + " / "
                    + per_model.format(m="nv_inference_request_success")
                    + " / 1e6",
                    "{{model}} request",
                ),
                promql(
                    "B",
                    per_model.format(m="nv_inference_queue_duration_us")
                    + " / "
                    + per_model.format(m="nv_inference_request_success")
                    + " / 1e6",
                    "{{model}} queue",
                ),
            ],
            "s",
            6,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Server batch size (inferences per execution), by model",
            "Items Triton computed per model execution: above the client's items per "
            "request when the server batches requests together.",
            [
                promql(
                    "A",
                    per_model.format(m="nv_inference_count")
                    + " / "
                    + per_model.format(m="nv_inference_exec_count"),
                    "{{model}}",
                )
            ],
            "short",
            6,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Inferences per second, by model",
            "Items computed by Triton (a request of 64 patches counts 64).",
            [promql("A", per_model.format(m="nv_inference_count"), "{{model}}")],
            "short",
            6,
        )
    )

    d = d.with_row(dash.Row("Drift (against each model's training data)"))
    d = d.with_panel(
        timeseries_panel(
            "Largest input shift, by model and AOI",
            "Last batch's mean of the feature furthest from training, in training standard "
            "deviations (alert RevisitInputDrift above 1 for 30 min).",
            [
                promql(
                    "A",
                    "max by (model, aoi) (revisit_inference_input_shift_max_sigma)",
                    "{{model}} {{aoi}}",
                )
            ],
            "none",
        )
        .thresholds(threshold_steps((None, "green"), (1, "red")))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.LINE)
        )
    )
    d = d.with_panel(
        bargauge.Panel()
        .title("Most shifted input features (last batch)")
        .description("The 10 features whose last batch's mean is furthest from training.")
        .datasource(PROMETHEUS)
        .targets(
            [
                promql(
                    "A",
                    "topk(10, abs(revisit_inference_input_shift_sigma))",
                    "{{model}} {{aoi}} {{feature}}",
                    True,
                )
            ]
        )
        .unit("none")
        .min(0)
        .thresholds(threshold_steps((None, "green"), (1, "orange"), (2, "red")))
        .display_mode(common_m.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_m.VizOrientation.HORIZONTAL)
        .span(12)
        .height(8)
    )
    d = d.with_panel(
        timeseries_panel(
            "Predicted-class PSI, by model and AOI",
            "Population stability index of the last batch's classes against the training "
            "prior: < 0.1 stable, > 0.25 a different population (alert).",
            [
                promql(
                    "A",
                    "max by (model, aoi) (revisit_inference_class_psi_ratio)",
                    "{{model}} {{aoi}}",
                )
            ],
            "none",
            8,
        )
        .thresholds(threshold_steps((None, "green"), (0.1, "orange"), (0.25, "red")))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.LINE)
        )
    )
    ratio = "sum by (model, aoi) (rate({m}_sum[1h])) / sum by (model, aoi) (rate({m}_count[1h]))"
    d = d.with_panel(
        timeseries_panel(
            "Mean confidence and entropy over 1 h, by model and AOI",
            "Confidence: probability of the predicted class (alert RevisitLowConfidence "
            "under 0.5). Entropy: 0 certain, 1 uniform.",
            [
                promql(
                    "A",
                    ratio.format(m="revisit_inference_prediction_confidence_ratio"),
                    "{{model}} {{aoi}} confidence",
                ),
                promql(
                    "B",
                    ratio.format(m="revisit_inference_prediction_entropy_ratio"),
                    "{{model}} {{aoi}} entropy",
                ),
            ],
            "percentunit",
            8,
        )
        .min(0)
        .max(1)
    )
    d = d.with_panel(
        bargauge.Panel()
        .title("Predicted classes, by model (time range)")
        .description("Predictions per class over the dashboard's time range.")
        .datasource(PROMETHEUS)
        .targets(
            [
                promql(
                    "A",
                    "sum by (model, class) "
                    "(increase(revisit_inference_predicted_classes_total[$__range]))",
                    "{{model}} {{class}}",
                    True,
                )
            ]
        )
        .unit("short")
        .display_mode(common_m.BarGaugeDisplayMode.BASIC)
        .orientation(common_m.VizOrientation.HORIZONTAL)
        .span(8)
        .height(8)
    )

    d = d.with_row(dash.Row("Late passes (crop types revised)"))
    d = d.with_panel(
        timeseries_panel(
            "Predictions revised and revisions failed, by model",
            "A pass that comes late changes the season of the later predictions: the latest "
            "crop type of each parcel it observed is predicted again. Failed: the later "
            "passes were no longer in the payload store (alert RevisitRevisionsFailed).",
            [
                promql(
                    "A",
                    "sum by (model) (increase(revisit_inference_revised_predictions_total[1h]))",
                    "{{model}} revised (1 h)",
                ),
                promql(
                    "B",
                    "sum by (model) (increase(revisit_inference_revisions_failed_total[1h]))",
                    "{{model}} failed (1 h)",
                ),
            ],
            "short",
        )
    )
    return d


# --- the indicators dashboard (PostGIS) ------------------------------------------------

AOI_IN = "IN ($aoi)"


def marker_layer(
    name: str, ref_id: str, color: dict[str, Any], symbol: str, size: int, text: str | None
) -> common_b.MapLayerOptions:
    style: dict[str, Any] = {
        "color": color,
        "opacity": 0.8,
        "size": {"fixed": size, "min": 2, "max": 20},
        "symbol": {"fixed": f"img/icons/marker/{symbol}.svg", "mode": "fixed"},
        "symbolAlign": {"horizontal": "center", "vertical": "center"},
    }
    if text:
        style["text"] = {"field": text, "fixed": "", "mode": "field"}
        style["textConfig"] = {
            "fontSize": 10,
            "offsetX": 0,
            "offsetY": -12,
            "textAlign": "center",
            "textBaseline": "middle",
        }
    location = common_b.FrameGeometrySource().mode(common_m.FrameGeometrySourceMode.COORDS)
    location = location.latitude("latitude").longitude("longitude")
    return (
        common_b.MapLayerOptions()
        .type("markers")
        .name(name)
        .config({"showLegend": True, "style": style})
        .location(location)
        .filter_data({"id": "byRefId", "options": ref_id})
        .tooltip(True)
    )


def map_panel(
    title: str,
    description: str,
    targets: Sequence[Sql],
    layers: Sequence[common_b.MapLayerOptions],
) -> geomap.Panel:
    basemap = common_b.MapLayerOptions().type("default").name("Basemap").config({})
    view = geomap.MapViewConfig().id("fit").all_layers(True).zoom(15).max_zoom(18)
    controls = geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True)
    return (
        geomap.Panel()
        .title(title)
        .description(description)
        .datasource(POSTGIS)
        .targets(list(targets))
        .basemap(basemap)
        .layers(list(layers))
        .view(view)
        .controls(controls)
        .tooltip(geomap.TooltipOptions().mode(common_m.TooltipDisplayMode.SINGLE))
        .span(12)
        .height(14)
    )


PARCELS_LATEST_SEASON = f"""
    SELECT a.name AS aoi, c.external_id, c.declared_crop, c.expected_class, c.class_name,
           round(c.confidence::numeric, 2) AS confidence, c.observations, c.acquired_at,
           c.model_name, c.flagged::int AS flagged,
           ST_Y(ST_PointOnSurface(c.geom)) AS latitude,
           ST_X(ST_PointOnSurface(c.geom)) AS longitude
    FROM parcel_control c
    JOIN aoi a ON a.id = c.aoi_id
    WHERE c.aoi_id {AOI_IN}
      AND c.season = (SELECT max(l.season) FROM parcel_latest l WHERE l.aoi_id = c.aoi_id)
"""


def indicators() -> dash.Dashboard:
    d = dash.Dashboard("revisit: indicators").uid("revisit-indicators")
    d = d.description(
        "The indicators in PostGIS (read as revisit_reader): Local Climate Zones of cities, "
        "crop type and CAP-control flags of parcels, land cover and LAI of regions."
    )
    d = d.tags(["revisit"]).time("now-10y", "now").timezone("utc")
    d = d.with_variable(
        dash.QueryVariable("aoi")
        .label("AOI")
        .description("Areas of interest (city, parcels, region) whose indicators are shown.")
        .datasource(POSTGIS)
        .query("SELECT id AS __value, name || ' (' || kind || ')' AS __text FROM aoi ORDER BY name")
        .refresh(dash_m.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )

    lcz_color = {"field": "lcz_class", "fixed": "dark-green"}
    d = d.with_panel(
        map_panel(
            "LCZ map (latest class per cell)",
            "Local Climate Zone of each 320 m cell of the city AOIs, from its latest pass "
            "(lcz_latest), at the cell's centre, in WUDAPT colours.",
            [
                Sql(
                    "A",
                    f"""
                    SELECT a.name AS aoi, c.cell_id, c.lcz_class,
                           round(c.confidence::numeric, 2) AS confidence, c.acquired_at,
                           ST_Y(ST_Centroid(c.geom)) AS latitude,
                           ST_X(ST_Centroid(c.geom)) AS longitude
                    FROM lcz_latest c
                    JOIN aoi a ON a.id = c.aoi_id
                    WHERE c.aoi_id {AOI_IN}
                    ORDER BY a.name, c.cell_id
                    """,
                )
            ],
            [marker_layer("LCZ", "A", lcz_color, "square", 10, None)],
        ).override_by_name(
            "lcz_class", [dash_m.DynamicConfigValue(id_val="mappings", value=lcz_mappings(True))]
        )
    )
    confidence_color = {"field": "confidence", "fixed": "blue"}
    d = d.with_panel(
        map_panel(
            "Crop map (latest prediction per parcel) and flagged parcels",
            "Each parcel's predicted crop of the latest season (label), coloured by "
            "confidence; a red cross marks parcels whose prediction disagrees with the "
            "declared crop at confidence ≥ 0.8 (parcel_control).",
            [
                Sql("A", dedent(PARCELS_LATEST_SEASON) + "\nORDER BY a.name, c.external_id"),
                Sql(
                    "B",
                    dedent(PARCELS_LATEST_SEASON)
                    + "\n  AND c.flagged\nORDER BY a.name, c.external_id",
                ),
            ],
            [
                marker_layer("Crop type", "A", confidence_color, "circle", 8, "class_name"),
                marker_layer(
                    "Flagged",
                    "B",
                    {"fixed": "red"},
                    "x-mark",
                    14,
                    None,
                ),
            ],
        ).override_by_name(
            "confidence",
            [
                dash_m.DynamicConfigValue(id_val="min", value=0),
                dash_m.DynamicConfigValue(id_val="max", value=1),
                dash_m.DynamicConfigValue(id_val="color", value={"mode": "continuous-RdYlGr"}),
            ],
        )
    )

    area = (
        "CASE WHEN l.area_key = a.name THEN a.name ELSE a.name || ' / ' || l.area_key END AS area"
    )
    d = d.with_panel(
        timeseries_panel(
            "Land-cover fractions, by area",
            "Expected tree, built-up, water and cropland fractions per pass "
            "(landcover_indicator; water is empty when the model has no water class).",
            [
                Sql(
                    "A",
                    f"""
                    SELECT l.acquired_at AS "time", {area},
                           l.tree_fraction AS tree, l.built_up_fraction AS built_up,
                           l.water_fraction AS water, l.cropland_fraction AS cropland
                    FROM landcover_indicator l
                    JOIN aoi a ON a.id = l.aoi_id
                    WHERE $__timeFilter(l.acquired_at) AND l.aoi_id {AOI_IN}
                      AND l.landcover_model IS NOT NULL
                    ORDER BY 1
                    """,
                    "time_series",
                )
            ],
            "percentunit",
            datasource=POSTGIS,
        )
        .min(0)
        .max(1)
        .show_points(common_m.VisibilityMode.ALWAYS)
    )
    d = d.with_panel(
        timeseries_panel(
            "Leaf area index, by area",
            "Mean and median LAI (m²/m²) of the valid pixels of each pass (biophysical "
            "model, landcover_indicator).",
            [
                Sql(
                    "A",
                    f"""
                    SELECT l.acquired_at AS "time", {area},
                           l.lai_mean, l.lai_median
                    FROM landcover_indicator l
                    JOIN aoi a ON a.id = l.aoi_id
                    WHERE $__timeFilter(l.acquired_at) AND l.aoi_id {AOI_IN}
                      AND l.biophys_model IS NOT NULL
                    ORDER BY 1
                    """,
                    "time_series",
                )
            ],
            "none",
            datasource=POSTGIS,
        )
        .min(0)
        .show_points(common_m.VisibilityMode.ALWAYS)
    )
    d = d.with_panel(
        table.Panel()
        .title("LCZ shares, by city")
        .description("Share of each city's cells in each Local Climate Zone (lcz_share).")
        .datasource(POSTGIS)
        .targets(
            [
                Sql(
                    "A",
                    f"""
                    SELECT aoi_name AS aoi, lcz_class, cells, share, latest_pass
                    FROM lcz_share
                    WHERE aoi_id {AOI_IN}
                    ORDER BY aoi_name, lcz_class
                    """,
                )
            ]
        )
        .override_by_name(
            "lcz_class", [dash_m.DynamicConfigValue(id_val="mappings", value=lcz_mappings(False))]
        )
        .override_by_name("share", [dash_m.DynamicConfigValue(id_val="unit", value="percentunit")])
        .span(8)
        .height(10)
    )
    d = d.with_panel(
        table.Panel()
        .title("Flagged parcels (latest season)")
        .description(
            "Parcels whose predicted crop disagrees with the declared one at confidence ≥ 0.8."
        )
        .datasource(POSTGIS)
        .targets(
            [
                Sql(
                    "A",
                    f"""
                    SELECT a.name AS aoi, c.external_id, c.declared_crop, c.expected_class,
                           c.class_name AS predicted, c.confidence, c.observations,
                           c.acquired_at AS as_of, c.model_name, c.model_version
                    FROM parcel_control c
                    JOIN aoi a ON a.id = c.aoi_id
                    WHERE c.flagged AND c.aoi_id {AOI_IN}
                      AND c.season = (SELECT max(l.season) FROM parcel_latest l
                                      WHERE l.aoi_id = c.aoi_id)
                    ORDER BY c.confidence DESC, a.name, c.external_id
                    """,
                )
            ]
        )
        .override_by_name(
            "confidence", [dash_m.DynamicConfigValue(id_val="unit", value="percentunit")]
        )
        .span(8)
        .height(10)
    )
    d = d.with_panel(
        table.Panel()
        .title("Passes, by AOI, indicator and status")
        .description(
            "Scenes acquired in the time range and what became of them (scene_processing): "
            "stored, no valid observation, or still on their way."
        )
        .datasource(POSTGIS)
        .targets(
            [
                Sql(
                    "A",
                    f"""
                    SELECT a.name AS aoi, p.indicator, p.status, count(*) AS passes,
                           max(s.acquired_at) AS latest_acquired,
                           max(p.completed_at) AS latest_completed,
                           percentile_cont(0.5) WITHIN GROUP (ORDER BY
                               extract(epoch FROM p.completed_at - p.discovered_at))
                               AS median_seconds_to_store
                    FROM scene_processing p
                    JOIN aoi a ON a.id = p.aoi_id
                    JOIN scene s ON s.id = p.scene_id
                    WHERE $__timeFilter(s.acquired_at) AND p.aoi_id {AOI_IN}
                    GROUP BY a.name, p.indicator, p.status
                    ORDER BY a.name, p.indicator, p.status
                    """,
                )
            ]
        )
        .override_by_name(
            "median_seconds_to_store", [dash_m.DynamicConfigValue(id_val="unit", value="s")]
        )
        .span(8)
        .height(10)
    )
    return d


# --- output ----------------------------------------------------------------------------

DASHBOARDS = {"pipeline": pipeline, "models": models, "indicators": indicators}


def render(build: dash.Dashboard) -> str:
    """The dashboard's JSON, panels numbered in order (rows included)."""
    model: dict[str, Any] = json.loads(json.dumps(build.build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
    return json.dumps(model, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed dashboard differs"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, make in DASHBOARDS.items():
        path = DASHBOARDS_DIR / f"{name}.json"
        text = render(make())
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    extra = {p.stem for p in DASHBOARDS_DIR.glob("*.json")} - set(DASHBOARDS)
    if stale or (args.check and extra):
        for path in stale:
            print(f"{path} differs from generate.py: run python {Path(__file__).as_posix()}")
        for name in sorted(extra):
            print(f"{DASHBOARDS_DIR / name}.json is not generated by generate.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
