"""examples/grafana/sentiment-dashboard.json and examples/monitoring/servicemonitor.yaml.

Every PromQL query parses (promql-parser, a real PromQL parser) and every sentiment_* series it selects is
one the real server exposes at /metrics; the others come from kube-state-metrics / cAdvisor, listed here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import promql_parser
import pytest
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
    for where, expr in _queries():
        names = selected_series(expr)
        assert names, f"{where}: selects no series"
        for name in names:
            if name.startswith("sentiment_"):
                assert name in exposed, f"{where}: {name} is not exposed by sentiment-serve's /metrics"
            else:
                assert name in EXTERNAL_SERIES, f"{where}: {name}: not the server's, not a known exporter's"
        used |= names
    # The essentials of a sentiment service's dashboard are all there.
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
                assert used in variables or used == "__rate_interval", f"{panel['title']}: ${used}"


@pytest.fixture(scope="module")
def service_monitor() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples" / "monitoring" / "servicemonitor.yaml").read_text(encoding="utf-8")
    )
    return doc


def test_service_monitor_selects_the_inference_services_the_operator_builds(
    service_monitor: dict[str, Any],
) -> None:
    from sentiment_operator.cli import render_documents

    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert service_monitor["kind"] == "ServiceMonitor"
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    selected: list[str] = []
    for obj in render_documents(
        [str(ROOT / "examples" / "canary.yaml"), str(ROOT / "examples" / "project.yaml")]
    ):
        if obj["kind"] != "Service":
            continue
        labels = obj["metadata"]["labels"]
        if selector.items() <= labels.items():
            selected.append(obj["metadata"]["name"])
            assert endpoint["port"] in {p["name"] for p in obj["spec"]["ports"]}
        else:
            assert labels.get("app.kubernetes.io/component") == "cache", f"{obj['metadata']['name']} missed"
    assert "project" in selected
    assert any(name.endswith("-canary") for name in selected)
    assert not any(name.endswith("-redis") for name in selected)
