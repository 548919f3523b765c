"""The embedded cluster's monitoring add-on and gateway stand-in: a ServiceMonitor the operator renders
becomes the scrape job a real Prometheus runs (the series get the labels its relabelings declare), and the
gateway follows a VirtualService's match, rewrite, weights and mirror."""

from __future__ import annotations

import asyncio
import collections
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import pytest
from polling import wait_until
from sentiment_devcluster.gateway import Gateway, route_for
from sentiment_devcluster.monitoring import Endpoint, MonitoringAddon, relabel_config, scrape_jobs
from sentiment_devcluster.prometheus import Prometheus
from sentiment_operator.builders import Release, build_children
from sentiment_operator.spec import parse_spec
from sentiment_operator.traffic import TrafficSplit

SPEC = {
    "routing": {"enabled": True},
    "monitoring": {"interval": "1s"},
    "rollout": {"strategy": "Canary", "interval": "2s"},
    "autoscaling": {"enabled": False},
}


def rendered(split: TrafficSplit | None = None) -> dict[str, Any]:
    """The objects the operator renders for model "demo" in "ns" with a canary serving (80/20 by default)."""
    split = split or TrafficSplit(80, 20)
    spec = parse_spec("demo", SPEC)
    children = build_children(
        "demo", "ns", spec, release=Release(stable_spec=spec, canary="serving", split=split)
    )
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in children.objects()}


def test_a_relabeling_is_translated_field_by_field() -> None:
    assert relabel_config({"sourceLabels": ["a"], "targetLabel": "b", "regex": "x", "replacement": "y"}) == {
        "source_labels": ["a"],
        "target_label": "b",
        "regex": "x",
        "replacement": "y",
        "action": "replace",
    }
    assert relabel_config({"action": "LabelDrop", "regex": "tmp_.*"})["action"] == "labeldrop"
    with pytest.raises(ValueError, match="sourceLabel"):
        relabel_config({"sourceLabel": ["a"]})


def test_the_service_monitor_selects_the_ready_pods_of_this_models_services() -> None:
    objects = rendered()
    services = [o for o in objects.values() if o["kind"] == "Service"]
    services.append(
        {"metadata": {"name": "other", "namespace": "ns", "labels": {"app": "x"}}, "spec": {"ports": []}}
    )

    def endpoints(namespace: str, name: str, port: Any) -> list[Endpoint]:
        return [Endpoint(f"{name}-pod", f"127.10.0.{len(name)}", 8000, "server")]

    ((job, groups),) = scrape_jobs([objects["ServiceMonitor/demo"]], services, endpoints)
    assert job.name == "serviceMonitor/ns/demo/0"
    assert (job.scrape_interval, job.metrics_path) == (1.0, "/metrics")
    assert sorted(g["labels"]["__meta_kubernetes_service_name"] for g in groups) == ["demo", "demo-canary"]
    canary = next(g for g in groups if g["labels"]["__meta_kubernetes_service_name"] == "demo-canary")
    assert canary["labels"]["__meta_kubernetes_service_label_app_kubernetes_io_component"] == "canary"
    assert canary["labels"]["__meta_kubernetes_pod_name"] == "demo-canary-pod"
    # The Prometheus operator's own relabelling comes first, then the monitor's relabelings.
    targets = [r.get("target_label") for r in job.relabel_configs]
    assert targets[-3:] == ["sentiment_model", "track", "track"]
    assert {"namespace", "service", "pod", "container", "job", "endpoint"} <= set(targets)


class Exporter(http.server.ThreadingHTTPServer):
    """A /metrics endpoint answering one counter, on a loopback address."""

    def __init__(self, host: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"# TYPE demo_total counter\ndemo_total 7\n")

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def exporters() -> Iterator[list[Exporter]]:
    started = [Exporter("127.0.0.1"), Exporter("127.0.0.1")]
    yield started
    for exporter in started:
        exporter.shutdown()
        exporter.server_close()


def test_a_real_prometheus_scrapes_with_the_labels_the_monitor_declares(
    tmp_path: Path, exporters: list[Exporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy from the environment must not come between the add-on and its loopback Prometheus.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    objects = rendered()
    services = [o for o in objects.values() if o["kind"] == "Service"]
    ports = {"demo": exporters[0].server_address[1], "demo-canary": exporters[1].server_address[1]}

    def endpoints(namespace: str, name: str, port: Any) -> list[Endpoint]:
        return [Endpoint(f"{name}-abc", "127.0.0.1", ports[name], "server")]

    rules = [
        {
            "metadata": {"namespace": "ns", "name": "r"},
            "spec": {"groups": [{"name": "g", "rules": [{"record": "demo:sum", "expr": "sum(demo_total)"}]}]},
        }
    ]
    with Prometheus(tmp_path / "prom") as prometheus:
        addon = MonitoringAddon(
            prometheus,
            lambda: [objects["ServiceMonitor/demo"]],
            lambda: services,
            endpoints,
            rules=lambda: rules,
        )
        addon.sync()

        def both() -> list[dict[str, Any]] | None:
            series = prometheus.query("demo_total")
            return series if len(series) == 2 else None

        found = wait_until(both, what="both tracks scraped")
        labels = {(s["metric"]["sentiment_model"], s["metric"]["track"]) for s in found}
        assert labels == {("demo", "stable"), ("demo", "canary")}
        for sample in found:
            metric = sample["metric"]
            assert metric["namespace"] == "ns"
            assert metric["job"] in ("demo", "demo-canary")
            assert metric["pod"].startswith(metric["service"])
            assert metric["endpoint"] == "http"

        # The rule is evaluated on its own clock: an evaluation before the second target's first scrape sums
        # one side only, so wait for the one that sums both.
        def summed() -> list[dict[str, Any]] | None:
            recorded = prometheus.query("demo:sum")
            return recorded if recorded and float(recorded[0]["value"][1]) == 14.0 else None

        recorded = wait_until(summed, what="the recording rule over both tracks")
        assert float(recorded[0]["value"][1]) == 14.0
        # A monitor that goes away takes its job with it.
        addon.monitors = list
        addon.sync()
        assert [job["job_name"] for job in prometheus.config()["scrape_configs"]] == ["sentiment"]


def test_routes_match_rewrite_and_take_the_first_virtual_service() -> None:
    objects = rendered()
    service = objects["VirtualService/demo"]
    route, path = route_for([service], "/demo/predict")  # type: ignore[misc]
    assert path == "/demo/predict"
    assert [d["weight"] for d in route["route"]] == [80, 20]
    assert route_for([service], "/demonstration") is None
    other = json.loads(json.dumps(service))
    other["metadata"]["name"] = "z"
    other["spec"]["http"][0]["match"] = [{"uri": {"prefix": "/public/"}}]
    other["spec"]["http"][0]["rewrite"] = {"uri": "/demo/"}
    found = route_for([service, other], "/public/predict")
    assert found is not None
    assert found[1] == "/demo/predict"


async def test_the_gateway_splits_by_weight_and_mirrors_with_a_shadow_host() -> None:
    seen: dict[str, collections.Counter[str]] = {
        "demo": collections.Counter(),
        "demo-canary": collections.Counter(),
    }
    servers = []
    for name in seen:

        async def handle(request: aiohttp.web.Request, name: str = name) -> aiohttp.web.Response:
            seen[name][request.host.rsplit(":", 1)[0]] += 1
            return aiohttp.web.json_response({"from": name, "path": request.path})

        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        servers.append(runner)
    addresses = dict.fromkeys(seen, "127.0.0.1")
    objects = rendered(TrafficSplit(70, 30, mirror=50))
    service = objects["VirtualService/demo"]
    for destination, runner in zip(service["spec"]["http"][0]["route"], servers, strict=True):
        destination["destination"]["port"]["number"] = runner.addresses[0][1]
    service["spec"]["http"][0]["mirror"]["port"]["number"] = servers[1].addresses[0][1]
    gateway = Gateway(lambda: [service], lambda namespace, name: addresses.get(name))
    await gateway.start()
    try:
        answered: collections.Counter[str] = collections.Counter()
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                async with session.post(f"{gateway.url}/demo/predict", json={"text": ["x"]}) as response:
                    assert response.status == 200
                    answered[(await response.json())["from"]] += 1
            async with session.get(f"{gateway.url}/elsewhere") as response:
                assert response.status == 404
        await asyncio.sleep(0.5)  # the last mirrored copies
    finally:
        await gateway.close()
        for runner in servers:
            await runner.cleanup()
    assert 0.2 < answered["demo-canary"] / 400 < 0.4
    mirrored = seen["demo-canary"]["127.0.0.1-shadow"]
    assert 0.35 < mirrored / 400 < 0.65  # half the requests, their answers discarded
    assert seen["demo"]["127.0.0.1-shadow"] == 0
