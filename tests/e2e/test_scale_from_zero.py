"""Scale to zero and back on the embedded cluster: a request at zero replicas, what it gets, and the
scale-up it causes.

The cluster serves KEDA's ScaledObject (``up --serve keda``) and Istio's VirtualService but runs neither
controller, so the test plays exactly their parts that matter here, from what the operator
wrote:

- the gateway: routes the VirtualService's path prefix to its destination Service (through the cluster's
  Service proxy), answers 503 "no healthy upstream" at once when the Service has no ready pod (as Istio's
  Envoy does), and counts every request as ``istio_requests_total`` with Istio's labels, scraped by a real
  Prometheus;
- KEDA: reads the ScaledObject, runs each trigger's query on the Prometheus its ``serverAddress`` names, and
  scales the Deployment to zero while no trigger is active, to one when one is (KEDA's own scale-to/from-zero
  step; its cooldownPeriod is skipped), reporting Ready/Active in the ScaledObject's status.

What only a real cluster with KEDA and Istio shows: README, "Autoscaling on load".
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import DevCluster, wait_until
from prometheus_client import CollectorRegistry, Counter, generate_latest
from sentiment_devcluster.prometheus import Prometheus

NS = "zero"
NAME = "burst"
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
TEXTS = ["I love you!", "I hate you!"]


class Gateway:
    """Istio's ingress gateway, as far as the activation trigger sees it (see the module docstring)."""

    def __init__(self, prefix: str, upstream: str, service: str, namespace: str) -> None:
        self.prefix, self.upstream = prefix, upstream
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "istio_requests",
            "Requests the gateway proxied (Istio's standard metric)",
            ["reporter", "destination_service_name", "destination_service_namespace", "response_code"],
            registry=self.registry,
        )
        self.labels = {
            "reporter": "source",
            "destination_service_name": service,
            "destination_service_namespace": namespace,
        }
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = generate_latest(gateway.registry)
                self._answer(200, body, "text/plain; version=0.0.4")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = gateway.forward(self.path, body)
                self._answer(status, answer, "application/json" if status == 200 else "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        if not path.startswith(f"{self.prefix}/"):
            return 404, b"no route"
        try:
            response = httpx.post(
                f"{self.upstream}{path}",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            status, answer = response.status_code, response.content
        except httpx.TransportError:
            # No ready endpoint: the Service proxy closes the connection at once, Envoy answers 503.
            status, answer = 503, b"no healthy upstream"
        self.requests.labels(**self.labels, response_code=str(status)).inc()
        return status, answer

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def ready_for(cluster: DevCluster, reason: str) -> dict[str, Any] | None:
    """The SentimentModel once its Ready condition is True with ``reason``."""
    model = cluster.get("sentimentmodel", NAME, NS)
    ready = _condition(model, "Ready")
    return model if (ready.get("status"), ready.get("reason")) == ("True", reason) else None


def play_keda(cluster: DevCluster) -> tuple[bool, int]:
    """One pass of KEDA's scale loop for the ScaledObject: (active, replicas it set)."""
    scaled = cluster.get("scaledobject", NAME, NS)
    assert scaled is not None
    spec = scaled["spec"]
    active = False
    for trigger in spec["triggers"]:
        meta = trigger["metadata"]
        answer = httpx.get(
            f"{meta['serverAddress']}/api/v1/query", params={"query": meta["query"]}, timeout=10
        )
        result = answer.json()["data"]["result"]
        value = sum(float(item["value"][1]) for item in result)  # empty: 0 (KEDA's ignoreNullValues)
        active = active or value > float(meta.get("activationThreshold") or 0)
    deployment = cluster.get("deployment", spec["scaleTargetRef"]["name"], NS)
    assert deployment is not None
    replicas = int(deployment["spec"].get("replicas", 1))
    wanted = replicas
    if not active and spec["minReplicaCount"] == 0:
        wanted = 0
    elif active and replicas == 0:
        wanted = max(1, spec["minReplicaCount"])
    if wanted != replicas:
        patch = json.dumps({"spec": {"replicas": wanted}})
        cluster.kubectl("-n", NS, "patch", "deployment", NAME, "--type", "merge", "-p", patch)
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "ScaledObjectReady",
            "message": "ScaledObject is ready",
        },
        {"type": "Active", "status": str(active), "reason": "ScalerActive", "message": f"active: {active}"},
    ]
    status = json.dumps({"status": {"conditions": conditions}})
    cluster.kubectl(
        "-n", NS, "patch", "scaledobject", NAME, "--subresource", "status", "--type", "merge", "-p", status
    )
    return active, wanted


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with Prometheus(tmp_path_factory.mktemp("prometheus"), scrape_interval=0.5) as running:
        yield running


def test_a_request_at_zero_replicas_gets_503_and_wakes_the_model(
    devcluster_with_keda: DevCluster, prometheus: Prometheus
) -> None:
    cluster = devcluster_with_keda
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    cluster.apply(
        {
            "apiVersion": "serving.sentiment.dev/v1alpha1",
            "kind": "SentimentModel",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "resources": SMALL,
                "cache": {"enabled": False},
                "autoscaling": {
                    "metric": "inFlight",
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "prometheus": {"serverAddress": prometheus.url},
                },
                "routing": {"enabled": True},
            },
        }
    )
    scaled = wait_until(lambda: cluster.get("scaledobject", NAME, NS), within=60, what="the ScaledObject")
    assert [t["name"] for t in scaled["spec"]["triggers"]] == ["load", "gateway-requests"]
    assert cluster.get("hpa", NAME, NS) is None
    route = wait_until(lambda: cluster.get("virtualservice", NAME, NS), within=60, what="the VirtualService")
    http_route = route["spec"]["http"][0]
    prefix = next(m["uri"]["prefix"] for m in http_route["match"] if "prefix" in m["uri"]).rstrip("/")
    destination = http_route["route"][0]["destination"]
    service = destination["host"].split(".")[0]
    upstream = f"http://{cluster.address(service, NS)}:{destination['port']['number']}"

    with Gateway(prefix, upstream, service, NS) as gateway:
        prometheus.set_targets([{"targets": [gateway.address], "labels": {"job": "istio-ingress"}}])
        # Idle: no trigger is active, KEDA takes the Deployment to zero pods.
        assert play_keda(cluster) == (False, 0)
        wait_until(lambda: not cluster.pods(NS, NAME), within=120, what="no pod left")
        idle = wait_until(lambda: ready_for(cluster, "ScaledToZero"), within=60, what="Ready/ScaledToZero")
        assert _condition(idle, "Available")["reason"] == "ScaledToZero"
        assert _condition(idle, "Autoscaling")["reason"] == "ScaledObjectReady"

        # The request at zero: answered at once, 503 from the gateway (never held, never a hang).
        url = f"http://{gateway.address}{prefix}/predict"
        started = time.monotonic()
        first = httpx.post(url, json={"text": TEXTS}, timeout=10)
        assert first.status_code == 503
        assert first.text == "no healthy upstream"

        # It counts at the gateway: the activation trigger turns active and KEDA scales to one pod.
        woke = wait_until(lambda: play_keda(cluster)[0], within=60, interval=0.5, what="the trigger active")
        assert woke
        deployment = cluster.get("deployment", NAME, NS)
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 1

        # Until the pod is ready, requests keep getting 503 at once; then they are served.
        def served() -> httpx.Response | None:
            response = httpx.post(url, json={"text": TEXTS}, timeout=30)
            assert response.status_code in (200, 503), response.text
            return response if response.status_code == 200 else None

        answer = wait_until(served, within=240, interval=1.0, what="a served request")
        waited = time.monotonic() - started
        assert len(answer.json()["predictions"]) == len(TEXTS)
        print(f"[scale-from-zero] first request 503 at zero; first 200 after {waited:.1f}s")
        ready = wait_until(lambda: ready_for(cluster, "Ready"), within=60, what="Ready with a pod")
        assert ready["status"]["replicasSummary"] == "1/1"
