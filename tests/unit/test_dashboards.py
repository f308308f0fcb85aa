"""The Grafana dashboards: generated from infra/grafana/generate.py and up to date, every
panel on a provisioned data source, every PromQL metric one that the services' code
defines (or Triton / postgres_exporter export), every SQL panel free of unknown macros.

The metric names are compared with the definitions found in services/ by reading the
source (tests/grafana.py, `service_metric_definitions`): the same calls that create the
metrics, so a renamed or deleted metric fails here without a list to keep in step, and
nothing is imported (no torch, no registry side effects)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.grafana import (
    DATASOURCES,
    EXPORTER_METRICS,
    GRAFANA,
    REPO,
    dashboard_exprs,
    dashboard_metric_names,
    dashboards,
    datasource_uid,
    panel_sql,
    panels,
    promql_metric_names,
    provisioned_datasources,
    recorded_names,
    rule_metric_names,
    service_metric_definitions,
    service_metric_names,
    targets,
)

DASHBOARD_FILES = ("indicators.json", "models.json", "pipeline.json")


def test_the_three_dashboards_parse_with_unique_uids_titles_and_panel_ids() -> None:
    found = dashboards()
    assert tuple(found) == DASHBOARD_FILES
    uids = [d["uid"] for d in found.values()]
    titles = [d["title"] for d in found.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    assert len(set(titles)) == len(titles)
    for dashboard in found.values():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), dashboard["uid"]
        assert all(p.get("title") for p in panels(dashboard))


def test_generated_json_is_up_to_date() -> None:
    run = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_provisioning_reads_secrets_from_the_environment() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    assert provisioned_datasources() == {
        "prometheus": "prometheus",
        "postgis": "grafana-postgresql-datasource",
    }
    postgis = by_uid["postgis"]
    assert postgis["user"] == "revisit_reader"
    assert re.fullmatch(r"\$\{?\w+\}?", postgis["secureJsonData"]["password"])
    assert re.fullmatch(r"\$\{?\w+\}?", by_uid["prometheus"]["url"])
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/revisit.yaml").read_text())
    assert [p["type"] for p in providers["providers"]] == ["file"]


def test_every_panel_and_variable_queries_a_provisioned_data_source() -> None:
    provisioned = provisioned_datasources()
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            uid = datasource_uid(panel)
            assert uid in provisioned, (name, panel["title"])
            assert panel["datasource"]["type"] == provisioned[uid]
            assert panel.get("targets"), (name, panel["title"])
            for target in panel["targets"]:
                target_uid = datasource_uid(panel, target)
                assert target_uid in provisioned, (name, panel["title"])
                assert target.get("refId"), (name, panel["title"])
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), (name, panel["title"])
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable["type"] == "query":
                assert datasource_uid(variable) in provisioned, (name, variable["name"])


def test_promql_metric_names_are_found_as_written() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (le, model) (rate(x_seconds_bucket{model!~"a|b"}'
        "[$__rate_interval])))"
    ) == {"x_seconds_bucket"}
    assert promql_metric_names(
        "sum by (model) (rate(a_sum[1h])) / sum without (aoi) (rate(a_count[5m] offset 1h))"
    ) == {"a_sum", "a_count"}
    assert promql_metric_names("time() - max by (aoi) (b_timestamp_seconds) > 3600") == {
        "b_timestamp_seconds"
    }
    assert promql_metric_names("x / on (model) group_left (aoi) y * 1e6 unless z") == {
        "x",
        "y",
        "z",
    }
    assert promql_metric_names('label_replace(up, "dst", "$1", "job", "(.*)")') == {"up"}
    assert promql_metric_names('{__name__="only_by_name", job="x"}') == {"only_by_name"}
    assert promql_metric_names("revisit:confidence:mean1h < 0.5") == {"revisit:confidence:mean1h"}
    assert promql_metric_names("topk(10, abs(s)) and bool 1") == {"s"}


def test_every_prometheus_panel_uses_only_metrics_that_are_exported() -> None:
    exported = service_metric_names() | EXPORTER_METRICS
    unknown = []
    for name, title, expr in dashboard_exprs():
        assert expr.strip(), (name, title)
        used = promql_metric_names(expr)
        assert used, (name, title, expr)
        unknown += [(name, title, metric) for metric in sorted(used - exported)]
    assert not unknown


def test_the_service_metric_definitions_are_found_in_the_code() -> None:
    defined = service_metric_definitions()
    # one of each way a metric is defined: per service by f-string, by literal, aliased
    assert defined["revisit_store_handler_duration_seconds"] == "Histogram"
    assert defined["revisit_catalog_items"] == "Counter"  # `Counter as MetricCounter`
    assert defined["revisit_inference_triton_circuit_open"] == "Gauge"
    assert "revisit_preprocess_messages_consumed_total" in service_metric_names()
    assert not any(n.startswith("revisit_revisit") for n in defined)


def test_dashboards_cover_each_service_and_the_exporters() -> None:
    used = dashboard_metric_names()
    for service in ("catalog", "preprocess", "inference", "store"):
        assert f"revisit_{service}_handler_duration_seconds_bucket" in used
    assert any(n.startswith("nv_inference_") for n in used)
    assert "pg_up" in used
    assert used <= service_metric_names() | EXPORTER_METRICS


def test_rule_metric_names_read_every_rule_file() -> None:
    names = rule_metric_names()
    assert "revisit_inference_input_shift_max_sigma" in names
    assert recorded_names() <= names or not recorded_names()
    assert not rule_metric_names(include_recorded=False) & recorded_names()


@pytest.mark.parametrize("dashboard_file", DASHBOARD_FILES)
def test_sql_panels_expand_every_macro_and_variable(dashboard_file: str) -> None:
    for panel in panels(dashboards()[dashboard_file]):
        sql_targets = targets(panel, "postgis")
        for target in sql_targets:
            assert target.get("rawSql", "").strip(), panel["title"]
            assert target.get("format") in ("table", "time_series"), panel["title"]
            # multi-value variables are only used as IN ($var): an 'All' expands to a list
            for match in re.finditer(r"\$(\w+)", target["rawSql"]):
                if not match.group(1).startswith("__"):
                    start = target["rawSql"].rfind("IN (", 0, match.start())
                    assert start == match.start() - 4, (panel["title"], match.group(0))
        for sql in panel_sql(panel):
            assert "$" not in sql and "[[" not in sql, (panel["title"], sql)
        for sql in panel_sql(panel, variables={"aoi": ["1", "2"]}):
            assert "IN ('1','2')" in sql or "aoi" not in panel["targets"][0]["rawSql"]


def test_geomap_layers_read_fields_that_their_sql_returns() -> None:
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            if panel["type"] != "geomap":
                continue
            sql = {t["refId"]: t["rawSql"] for t in panel["targets"]}
            for layer in panel["options"]["layers"]:
                ref_id = layer["filterData"]["options"]
                location = layer["location"]
                assert location["mode"] == "coords"
                style = layer["config"]["style"]
                fields = [location["latitude"], location["longitude"]]
                fields += [
                    style[k]["field"] for k in ("color", "text") if style.get(k, {}).get("field")
                ]
                for field in fields:
                    assert re.search(rf"\b(AS\s+)?{field}\b", sql[ref_id]), (panel["title"], field)
