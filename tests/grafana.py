"""Reading the Grafana dashboards and Prometheus rules of infra/ for tests: their panels,
the metric names their PromQL uses, the SQL of their PostGIS panels ready to run, and the
metric names that the services' code defines."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "infra" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "revisit.yaml"
RULES = REPO / "infra" / "prometheus" / "rules"
SERVICES = REPO / "services"

# --- dashboards ------------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard of infra/grafana/dashboards, parsed, by file name (`pipeline.json`)."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard, rows included, and the panels of collapsed rows."""

    def walk(items: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from walk(panel.get("panels") or [])

    return list(walk(dashboard.get("panels") or []))


def provisioned_datasources() -> dict[str, str]:
    """Type of each provisioned data source, by uid."""
    config = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds["type"] for ds in config["datasources"]}


def datasource_uid(panel: Mapping[str, Any], target: Mapping[str, Any] | None = None) -> str | None:
    """The uid of the data source a target (else its panel) queries."""
    for item in (target, panel):
        ref = (item or {}).get("datasource")
        if isinstance(ref, dict) and ref.get("uid"):
            return str(ref["uid"])
    return None


def targets(panel: Mapping[str, Any], uid: str) -> list[dict[str, Any]]:
    """The panel's targets that query data source `uid`."""
    return [t for t in panel.get("targets") or [] if datasource_uid(panel, t) == uid]


# --- PromQL ----------------------------------------------------------------------------

#: Functions, aggregations and keywords of PromQL: never metric names.
PROMQL_WORDS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
        "double_exponential_smoothing",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "start",
        "end",
        "inf",
        "nan",
    ]
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression, as written (`x_bucket` stays `x_bucket`).

    Strings, label matchers `{...}`, ranges `[...]`, grouping label lists (`by (...)`,
    `on (...)`...), Grafana variables (`$__rate_interval`), numbers, durations, function
    calls and keywords are not metric names; a metric selected only by
    `{__name__="..."}` is read from the matcher."""
    names = set(re.findall(r'__name__\s*=\s*"([a-zA-Z_:][\w:]*)"', expr))
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group(1)
        after = text[match.end() :].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        if re.fullmatch(r"\d\w*", word):  # never (the regex needs a leading letter)
            continue
        names.add(word)
    return names


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every Prometheus target of every dashboard."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in targets(panel, "prometheus"):
                found.append((name, panel.get("title", ""), str(target.get("expr", ""))))
        for variable in dashboard.get("templating", {}).get("list", []):
            if datasource_uid(variable) == "prometheus":
                query = variable.get("query")
                expr = query.get("query", "") if isinstance(query, dict) else str(query or "")
                found.append((name, f"variable {variable['name']}", expr))
    return found


def dashboard_metric_names() -> set[str]:
    """Every metric name that a dashboard's Prometheus panel or variable uses."""
    return {n for _, _, expr in dashboard_exprs() for n in promql_metric_names(expr)}


def rule_exprs() -> list[tuple[str, str, str]]:
    """(rule file, rule name, expr) of every recording and alerting rule."""
    found = []
    for path in sorted([*RULES.glob("*.yml"), *RULES.glob("*.yaml")]):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record") or ""
                found.append((path.name, str(name), str(rule["expr"])))
    return found


def recorded_names() -> set[str]:
    """The series that the recording rules write."""
    found = set()
    for path in sorted([*RULES.glob("*.yml"), *RULES.glob("*.yaml")]):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            found |= {r["record"] for r in group.get("rules", []) if "record" in r}
    return found


def rule_metric_names(include_recorded: bool = True) -> set[str]:
    """Every metric name that a rule's `expr` uses; with `include_recorded=False`, without
    the series that recording rules write themselves."""
    names = {n for _, _, expr in rule_exprs() for n in promql_metric_names(expr)}
    return names if include_recorded else names - recorded_names()


# --- the metrics the services define ---------------------------------------------------

_METRIC_TYPES = ("Counter", "Gauge", "Histogram", "Summary", "Info", "Enum")
_SUFFIXES = {
    "Counter": ("_total",),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "Summary": ("", "_sum", "_count"),
    "Info": ("_info",),
    "Enum": ("",),
}


def service_names() -> set[str]:
    """The services, as their code names them: `ServiceApp("<name>", ...)`."""
    found = set()
    for _, source in _service_sources("ServiceApp("):
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and _callee(node) == "ServiceApp"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value))
    return found


def _service_sources(needle: str) -> list[tuple[Path, str]]:
    """The services' Python sources that contain `needle` (the others are not parsed)."""
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        source = path.read_text()
        if needle in source:
            found.append((path, source))
    return found


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def service_metric_definitions() -> dict[str, str]:
    """Type of every metric that the services' code defines, by base name.

    Read from the source (no import): each call of a prometheus_client metric class
    (under whatever name the module imported it) with its name as first argument. An
    f-string name (`f"{prefix}_messages_consumed"`, prefix `revisit_<service>`) stands
    for each service of `service_names()`."""
    services = service_names()
    fills = services | {f"revisit_{s}" for s in services}
    found: dict[str, str] = {}
    for _, source in _service_sources("prometheus_client"):
        tree = ast.parse(source)
        aliases = {
            alias.asname or alias.name: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
            for alias in node.names
            if alias.name in _METRIC_TYPES
        }
        module_aliases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name == "prometheus_client"
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            kind = None
            if isinstance(func, ast.Name):
                kind = aliases.get(func.id)
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in module_aliases
                and func.attr in _METRIC_TYPES
            ):
                kind = func.attr
            if kind is None:
                continue
            for name in _names(node.args[0], fills):
                if kind == "Counter":
                    name = name.removesuffix("_total")
                found[name] = kind
    return found


def _names(arg: ast.expr, fills: set[str]) -> set[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return {arg.value}
    if not isinstance(arg, ast.JoinedStr):
        return set()
    candidates = {""}
    for part in arg.values:
        if isinstance(part, ast.Constant):
            candidates = {c + str(part.value) for c in candidates}
        else:
            candidates = {c + fill for c in candidates for fill in fills}
    return {c for c in candidates if c.startswith("revisit_") and "revisit_revisit" not in c}


def service_metric_names() -> set[str]:
    """The exposition names (`_total`, `_bucket`, `_sum`, `_count`...) of every metric
    that the services define."""
    return {
        name + suffix
        for name, kind in service_metric_definitions().items()
        for suffix in _SUFFIXES[kind]
    }


#: Metrics of the exporters that revisit does not write: Triton's /metrics and
#: prometheus-postgres-exporter (their names are theirs; the live test proves they are
#: scraped). Only those the dashboards use.
EXPORTER_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "pg_up",
        "pg_stat_database_numbackends",
        "pg_stat_database_xact_commit",
    }
)

# --- SQL -------------------------------------------------------------------------------

DEFAULT_TIME_FROM = "2000-01-01T00:00:00Z"
DEFAULT_TIME_TO = "2100-01-01T00:00:00Z"


def dashboard_variables() -> dict[str, dict[str, Any]]:
    """Every template variable of every dashboard, by name."""
    return {
        variable["name"]: variable
        for dashboard in dashboards().values()
        for variable in dashboard.get("templating", {}).get("list", [])
    }


def sql_values(values: Sequence[str]) -> str:
    """Values of a multi-value variable as Grafana's SQL data sources write them."""
    return ",".join("'" + str(v).replace("'", "''") + "'" for v in values)


def panel_sql(
    panel: Mapping[str, Any],
    variables: Mapping[str, str | Sequence[str]] | None = None,
    time_from: str = DEFAULT_TIME_FROM,
    time_to: str = DEFAULT_TIME_TO,
) -> list[str]:
    """The SQL of the panel's PostGIS targets with Grafana's macros and variables replaced,
    ready to run.

    `$__timeFilter(col)`, `$__timeFrom()`, `$__timeTo()`, `$__time(col)` become SQL over
    [time_from, time_to] (by default 2000 to 2100, so every row is in range); a variable
    (`$aoi`, `${aoi}`, `[[aoi]]`) becomes its values from `variables` (a list: quoted and
    comma-separated as Grafana does; a string: as is), else the SQL of its own query:
    `SELECT __value FROM (<its query>)`, which is what 'All' stands for. An unknown macro
    or variable raises ValueError."""
    variables = dict(variables or {})
    known = dashboard_variables()
    found = []
    for target in targets(panel, "postgis"):
        sql = str(target.get("rawSql", ""))
        start, end = f"'{time_from}'::timestamptz", f"'{time_to}'::timestamptz"
        sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {start} AND {end}", sql)
        sql = re.sub(r"\$__timeFrom\(\)", start, sql)
        sql = re.sub(r"\$__timeTo\(\)", end, sql)
        sql = re.sub(r"\$__time\(([^)]+)\)", r'\1 AS "time"', sql)
        sql = re.sub(r"\$__unixEpochFrom\(\)", f"extract(epoch FROM {start})", sql)
        sql = re.sub(r"\$__unixEpochTo\(\)", f"extract(epoch FROM {end})", sql)

        def value(match: re.Match[str]) -> str:
            name = next(g for g in match.groups() if g)
            if name.startswith("__"):
                raise ValueError(f"macro ${name} is not handled by panel_sql")
            if name in variables:
                given = variables[name]
                return given if isinstance(given, str) else sql_values(given)
            if name in known:
                query = known[name].get("query")
                query = query.get("rawSql", "") if isinstance(query, dict) else str(query)
                return f"SELECT __value FROM ({query}) AS {name}_values"
            raise ValueError(f"variable ${name} is not a dashboard variable")

        sql = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, sql)
        found.append(sql)
    return found
