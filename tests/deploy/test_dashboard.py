"""examples/grafana/sentiment-dashboard.json and examples/monitoring/prometheusrule.yaml.

Every PromQL query parses (promql-parser, a real PromQL parser) and every sentiment_* series it selects is
one the real server exposes at /metrics, every sentiment_operator_* one the operator's metrics; the others
come from kube-state-metrics / cAdvisor, listed here. tests/e2e/test_canary_rollouts.py evaluates the
queries of the server's and the operator's series, and the rules, against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import promql_parser
import yaml
from deploy_support import ROOT
from prometheus_client.parser import text_string_to_metric_families
from serving import ServerProcess

DASHBOARD: dict[str, Any] = json.loads(
    (ROOT / "examples" / "grafana" / "sentiment-dashboard.json").read_text(encoding="utf-8")
)
# Series the dashboard may use that are not the server's: kube-state-metrics and the kubelet's cAdvisor.
EXTERNAL_SERIES = frozenset(
    {
        "kube_deployment_spec_replicas",
        "kube_deployment_status_replicas_available",
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
    }
)
# Grafana's variables, replaced by representative values before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$namespace": ".*",
    "$service": ".*",
}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out: list[tuple[str, str]] = []
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            out.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, f"variable {variable['name']}: unexpected query {variable['query']}"
            out.append((f"variable {variable['name']}", match.group("selector")))
    return out


def _expand(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"undefined Grafana variable in {expr}"
    return expr


def selected_series(expr: str) -> set[str]:
    """The metric names an expression selects (parsed, not pattern-matched)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr}"
            names.add(node.name)
        elif isinstance(node, promql_parser.MatrixSelector) and node.vector_selector.name:
            names.add(node.vector_selector.name)
        return True

    promql_parser.walk(promql_parser.parse(_expand(expr)), pre_visit=visit)
    return names


def exposed_series(metrics_text: str) -> set[str]:
    """Every sample name the exposition can contain, including families that have no samples yet."""
    out: set[str] = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in text_string_to_metric_families(metrics_text):
        out.add(family.name)
        for suffix in suffixes.get(family.type, [""]):
            out.add(family.name + suffix)
        out.update(sample.name for sample in family.samples)
    return out


def test_series_selector_sees_through_functions_and_ranges() -> None:
    # Guard for the parser-based extraction the next test relies on.
    expr = 'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="1"}[$__rate_interval]))) / clamp_min(b, 1)'
    assert selected_series(expr) == {"a_bucket", "b"}


def test_every_series_the_dashboard_uses_exists(deploy_server: ServerProcess) -> None:
    # Some traffic first, so labelled series have samples too (their families exist regardless).
    httpx.post(deploy_server.url("/predict"), json={"text": ["I love you!", "I hate you!"]}, timeout=30)
    metrics_text = httpx.get(f"{deploy_server.base_url}/metrics", timeout=10).text
    exposed = exposed_series(metrics_text)
    from sentiment_inference.metrics import METRIC_NAMES

    assert set(METRIC_NAMES) <= exposed, "metrics.METRIC_NAMES documents series /metrics does not expose"

    used: set[str] = set()
    from sentiment_operator.metrics import METRIC_NAMES as OPERATOR_METRICS

    for where, expr in _queries():
        names = selected_series(expr)
        assert names, f"{where}: selects no series"
        for name in names:
            if name.startswith("sentiment_operator_"):
                assert name in OPERATOR_METRICS, f"{where}: {name} is not one of the operator's metrics"
            elif name.startswith("sentiment_"):
                assert name in exposed, f"{where}: {name} is not exposed by sentiment-serve's /metrics"
            else:
                assert name in EXTERNAL_SERIES, f"{where}: {name}: not the server's, not a known exporter's"
        used |= names
    # The seed dashboards' essentials are all there.
    for required in (
        "sentiment_requests_total",
        "sentiment_request_duration_seconds_bucket",
        "sentiment_cache_hits_total",
        "sentiment_cache_misses_total",
        "sentiment_batch_size_bucket",
        "kube_deployment_status_replicas_available",
    ):
        assert required in used, f"no panel uses {required}"


def test_latency_panel_shows_p50_p95_p99() -> None:
    quantiles: set[float] = set()
    for _, expr in _queries():
        for match in re.finditer(
            r"histogram_quantile\((0\.\d+), [^\n]*sentiment_request_duration_seconds", expr
        ):
            quantiles.add(float(match.group(1)))
    assert {0.5, 0.95, 0.99} <= quantiles


def test_dashboard_structure() -> None:
    assert DASHBOARD["uid"]
    assert DASHBOARD["title"]
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert {"datasource", "namespace", "service"} <= variables
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        for target in panel["targets"]:
            for used in re.findall(r"\$(\w+)", target["expr"]):
                assert used in variables or used in ("__rate_interval", "__range"), (
                    f"{panel['title']}: ${used}"
                )


def test_the_rollout_panels_show_weights_and_both_tracks_error_rate_and_p99() -> None:
    titles = {panel["title"]: panel for panel in DASHBOARD["panels"]}
    weights = titles["Rollout: traffic split"]["targets"][0]["expr"]
    assert "sentiment_operator_rollout_weight" in weights
    for title in ("Rollout: error rate, canary vs stable", "Rollout: p99 latency, canary vs stable"):
        assert "by (sentiment_model, track" in titles[title]["targets"][0]["expr"]


RULES: dict[str, Any] = yaml.safe_load(
    (ROOT / "examples" / "monitoring" / "prometheusrule.yaml").read_text(encoding="utf-8")
)


def test_the_prometheus_rule_matches_the_prometheus_operator_crd_and_promtool() -> None:
    import shutil
    import subprocess
    import tempfile

    import monitoring_schema

    monitoring_schema.validate(RULES)
    alerts = {r["alert"] for g in RULES["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "SentimentRolloutRolledBack",
        "SentimentModelNotReady",
        "SentimentPredictLatencyHigh",
        "SentimentPredictOverloaded",
    }
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the prometheus package (make install)"
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as rules:
        yaml.safe_dump({"groups": RULES["spec"]["groups"]}, rules)
        rules.flush()
        checked = subprocess.run([promtool, "check", "rules", rules.name], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_rule_series_are_the_servers_and_the_operators(deploy_server: ServerProcess) -> None:
    from sentiment_inference.metrics import METRIC_NAMES
    from sentiment_operator.metrics import METRIC_NAMES as OPERATOR_METRICS

    known = set(OPERATOR_METRICS) | {
        f"{name}{suffix}" for name in METRIC_NAMES for suffix in ("", "_bucket", "_sum", "_count")
    }
    recorded = {r["record"] for g in RULES["spec"]["groups"] for r in g["rules"] if "record" in r}
    for group in RULES["spec"]["groups"]:
        for rule in group["rules"]:
            for name in selected_series(rule["expr"]):
                assert name in known or name in recorded, f"{rule.get('alert') or rule['record']}: {name}"
