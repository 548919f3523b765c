"""The real Prometheus runner (sentiment_devcluster.prometheus): file-based discovery with labels and
relabelling, instant queries, rule evaluation, and a clear error once it is gone."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until
from sentiment_devcluster.prometheus import Prometheus, PrometheusError

METRICS = b'# TYPE demo_requests_total counter\ndemo_requests_total{code="200"} 42\n'


@pytest.fixture
def exporter() -> Iterator[str]:
    """A /metrics endpoint on a free loopback port, in a thread: its host:port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            if self.path == "/metrics":
                self.wfile.write(METRICS)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_file_discovered_targets_are_scraped_with_their_labels_and_relabelling(
    tmp_path: Path, exporter: str
) -> None:
    relabel = [{"source_labels": ["__meta_role"], "target_label": "track"}]
    with Prometheus(tmp_path / "prom", relabel_configs=relabel) as prometheus:
        assert prometheus.query("demo_requests_total") == []
        prometheus.set_targets([{"targets": [exporter], "labels": {"model": "m", "__meta_role": "stable"}}])
        series = wait_until(lambda: prometheus.query("demo_requests_total"), what="the scraped series")
        assert len(series) == 1
        labels = series[0]["metric"]
        assert (labels["model"], labels["track"], labels["code"]) == ("m", "stable", "200")
        assert "__meta_role" not in labels  # meta labels are dropped after relabelling, as on a cluster
        assert float(series[0]["value"][1]) == 42.0
        assert [t["health"] for t in prometheus.targets()] == ["up"]
        # Targets that go away stop being scraped (the series goes stale).
        prometheus.set_targets([])
        wait_until(lambda: prometheus.targets() == [], what="the target dropped")


def test_rule_files_are_evaluated_and_reloaded(tmp_path: Path, exporter: str) -> None:
    rules = tmp_path / "rules.yml"
    rule = {"record": "demo:requests", "expr": "sum(demo_requests_total)"}
    rules.write_text(json.dumps({"groups": [{"name": "g", "rules": [rule]}]}))
    with Prometheus(tmp_path / "prom") as prometheus:
        prometheus.set_targets([{"targets": [exporter], "labels": {}}])
        prometheus.rule_files = [rules]
        prometheus.reload()
        series = wait_until(lambda: prometheus.query("demo:requests"), what="the recorded series")
        assert float(series[0]["value"][1]) == 42.0
        assert [g["name"] for g in prometheus.rules()] == ["g"]


def test_a_bad_query_and_a_stopped_server_raise_a_clear_error(tmp_path: Path) -> None:
    with Prometheus(tmp_path / "prom") as prometheus:
        with pytest.raises(PrometheusError, match="400"):
            prometheus.query("sum(")
        prometheus.kill()
        with pytest.raises(PrometheusError, match="/api/v1/query"):
            prometheus.query("up")
