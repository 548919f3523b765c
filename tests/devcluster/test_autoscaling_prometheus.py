"""The load autoscalers' PromQL on a real Prometheus (Debian's ``prometheus``) scraping two real
``sentiment-serve`` processes ("pods") under load: KEDA's trigger query as the operator renders it, and the
prometheus-adapter rules of examples/autoscaling/prometheus-adapter.yaml as the adapter would run them for
the operator's HPA Pods metric, both return the expected non-empty values.

The targets carry the labels the ServiceMonitor of examples/monitoring gives a scraped pod on a cluster
(namespace, service, pod), through file-based discovery.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from polling import eventually
from sentiment_devcluster.prometheus import Prometheus
from sentiment_operator.builders import build_children
from sentiment_operator.spec import parse_spec
from serving import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
ADAPTER_VALUES = ROOT / "examples" / "autoscaling" / "prometheus-adapter.yaml"
NAMESPACE, SERVICE = "sentiment", "queue"
PODS = ("queue-7d9f-a", "queue-7d9f-b")
CLIENTS = 24  # closed loop: each keeps one request in flight at all times
TEXTS_PER_REQUEST = 16


def adapter_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return rules


def adapter_query(rule: dict[str, Any], namespace: str, pods: tuple[str, ...]) -> str:
    """The rule's metricsQuery as prometheus-adapter fills its template for an HPA's Pods metric: the series,
    the HPA's namespace and pods as label matchers, grouped by pod."""
    series = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"])
    assert series is not None
    matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series.group(1))
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", "pod")
    )


def rendered(metric: str, *, keda: bool) -> dict[str, Any]:
    """The operator's autoscaler for a SentimentModel on ``metric`` (with or without KEDA)."""
    spec = parse_spec(SERVICE, {"autoscaling": {"metric": metric}})
    children = build_children(SERVICE, NAMESPACE, spec, keda=keda)
    autoscaler = children.scaled_object if keda else children.hpa
    assert autoscaler is not None
    return autoscaler


async def _load(servers: list[ServerProcess], stop: asyncio.Event) -> int:
    """Closed-loop clients with unique texts (no cache hits) until ``stop``; returns the answers counted."""
    counter = itertools.count()
    answered = 0

    async def client(server: ServerProcess) -> None:
        nonlocal answered
        async with httpx.AsyncClient(timeout=30.0) as http:
            while not stop.is_set():
                n = next(counter)
                texts = [f"review {n}-{i}: the service was fine, mostly" for i in range(TEXTS_PER_REQUEST)]
                response = await http.post(server.url("/predict"), json={"text": texts})
                assert response.status_code in (200, 429), response.text
                answered += 1

    await asyncio.gather(*(client(servers[i % len(servers)]) for i in range(CLIENTS)))
    return answered


def _values(result: list[dict[str, Any]]) -> dict[str, float]:
    return {str(item["metric"].get("pod", "")): float(item["value"][1]) for item in result}


def _query(prometheus: Prometheus, promql: str) -> Awaitable[list[dict[str, Any]]]:
    """An instant query off the event loop (the load runs on it meanwhile)."""
    return asyncio.to_thread(prometheus.query, promql)


async def _busy(prometheus: Prometheus, promql: str) -> list[dict[str, Any]]:
    """The query's samples, if every one of them is above zero (else none)."""
    result = await _query(prometheus, promql)
    return result if result and all(float(r["value"][1]) > 0 for r in result) else []


@pytest.mark.slow
async def test_keda_and_adapter_queries_return_the_load_of_real_servers(
    serve_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    env = {"SENTIMENT_MODEL_WORKERS": "1", "SENTIMENT_MAX_WAIT_MS": "5"}
    servers = [serve_process(env=env) for _ in PODS]
    queue_keda = rendered("queueDepth", keda=True)["spec"]["triggers"][0]["metadata"]["query"]
    flight_keda = rendered("inFlight", keda=True)["spec"]["triggers"][0]["metadata"]["query"]
    rules = {rule["name"]["as"]: rule for rule in adapter_rules()}
    # The adapter exposes exactly the names the operator's HPA Pods metrics ask for.
    hpa_names = {
        rendered(metric, keda=False)["spec"]["metrics"][0]["pods"]["metric"]["name"]
        for metric in ("queueDepth", "inFlight")
    }
    assert set(rules) == hpa_names

    with Prometheus(tmp_path / "prometheus", scrape_interval=0.5) as prometheus:
        prometheus.set_targets(
            [
                {
                    "targets": [f"127.0.0.1:{server.port}"],
                    "labels": {"namespace": NAMESPACE, "service": SERVICE, "pod": pod},
                }
                for server, pod in zip(servers, PODS, strict=True)
            ]
        )

        # Idle: the series exist (the adapter's seriesQuery finds them) and say zero.
        async def every_pod(promql: str) -> set[str]:
            pods = {item["metric"]["pod"] for item in await _query(prometheus, promql)}
            return pods if pods == set(PODS) else set()

        for rule in rules.values():
            found = await eventually(
                lambda r=rule: every_pod(r["seriesQuery"]),
                within=60,
                what="the adapter's series of both pods",
            )
            assert found == set(PODS)
        idle = await eventually(lambda: _query(prometheus, flight_keda), within=30, what="the in-flight sum")
        assert float(idle[0]["value"][1]) == 0.0

        stop = asyncio.Event()
        load = asyncio.create_task(_load(servers, stop))
        try:
            # KEDA's trigger queries: one sample, the gauge summed over the Service's pods.
            flight = await eventually(
                lambda: _busy(prometheus, flight_keda), within=60, what="requests in flight under load"
            )
            assert len(flight) == 1
            assert 0 < float(flight[0]["value"][1]) <= CLIENTS
            queued = await eventually(
                lambda: _busy(prometheus, queue_keda), within=60, what="texts queued under load"
            )
            assert len(queued) == 1
            assert 0 < float(queued[0]["value"][1]) <= CLIENTS * TEXTS_PER_REQUEST
            # The adapter rules as the adapter runs them for the HPA: one value per pod, busy pods above 0.
            for name, rule in rules.items():
                query = adapter_query(rule, NAMESPACE, PODS)
                per_pod = _values(
                    await eventually(
                        lambda q=query: _busy(prometheus, q), within=60, what=f"{name} per pod under load"
                    )
                )
                assert set(per_pod) == set(PODS)
        finally:
            stop.set()
            answered = await asyncio.wait_for(load, timeout=60)
        assert answered > 0
