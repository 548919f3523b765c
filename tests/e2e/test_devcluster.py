"""End to end: the real operator reconciles SentimentModels on the embedded cluster, the node agent runs the
pods it renders (the server from its env, args and Secret refs; Redis with its generated password), and
requests go through the reconciled Services."""

from __future__ import annotations

import base64
import os
import signal
import threading
from typing import Any

import httpx
import pytest
import redis
from e2e_support import DevCluster, alive, metric, wait_until

NS = "e2e"
TEXTS = ["I love you!", "I hate you!", "I am a k8s Cluster!"]
# A loaded 2-CPU CI machine: give the cache round trip (client -> proxy -> Redis) more than the 50 ms default.
SLOW_MACHINE_ENV = [{"name": "SENTIMENT_CACHE_TIMEOUT_MS", "value": "2000"}]
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"resources": SMALL, "env": SLOW_MACHINE_ENV, "autoscaling": {"enabled": False}, **spec},
    }


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def ready(cluster: DevCluster, name: str, replicas: int) -> dict[str, Any] | None:
    obj = cluster.get("sentimentmodel", name, NS)
    status = (obj or {}).get("status") or {}
    ok = condition(obj, "Ready").get("status") == "True" and status.get("readyReplicas") == replicas
    return obj if ok and status.get("updatedReplicas") == replicas else None


def predict(base: str, prefix: str, client: httpx.Client | None = None) -> list[Any]:
    client = client or httpx.Client(timeout=30)
    response = client.post(f"{base}{prefix}/predict", json={"text": TEXTS})
    assert response.status_code == 200, response.text
    predictions: list[Any] = response.json()["predictions"]
    return predictions


@pytest.fixture(scope="module")
def namespace(devcluster: DevCluster) -> str:
    devcluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return NS


@pytest.fixture(scope="module")
def alpha(devcluster: DevCluster, namespace: str) -> str:
    """One SentimentModel with the managed Redis (the default), Ready."""
    devcluster.apply(model("alpha", replicas=1))
    wait_until(lambda: ready(devcluster, "alpha", 1), what="alpha Ready")
    return "alpha"


def test_predictions_through_the_service_from_the_managed_redis(devcluster: DevCluster, alpha: str) -> None:
    base = f"http://{devcluster.address(alpha, NS)}:8000"
    predictions = predict(base, f"/{alpha}")
    assert len(predictions) == len(TEXTS)
    best = [max(scores, key=lambda s: s["score"])["label"] for scores in predictions]
    assert best[:2] == ["POSITIVE", "NEGATIVE"]
    assert predict(base, f"/{alpha}") == predictions
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert metric(metrics, "sentiment_cache_hits_total", {"backend": "redis"}) >= len(TEXTS)

    # The managed Redis holds the answers and is reached only with the password the operator generated.
    secret = devcluster.get("secret", f"{alpha}-redis-auth", NS)
    assert secret is not None
    password = base64.b64decode(secret["data"]["password"]).decode()
    address = devcluster.address(f"{alpha}-redis", NS)
    assert redis.Redis(host=address, port=6379, password=password, socket_timeout=5).dbsize() >= len(TEXTS)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=address, port=6379, socket_timeout=5).dbsize()


def test_a_killed_server_restarts_and_the_status_shows_it(devcluster: DevCluster, alpha: str) -> None:
    (pod,) = devcluster.pods(NS, alpha)
    server = next(c for c in pod["containers"] if c["name"] == "server")
    assert server["pid"]
    assert server["restarts"] == 0
    os.kill(server["pid"], signal.SIGKILL)

    def not_ready() -> Any:
        obj = devcluster.get("sentimentmodel", alpha, NS)
        return ((obj or {}).get("status") or {}).get("readyReplicas") == 0 and condition(obj, "Ready")

    dropped = wait_until(not_ready, within=60, interval=0.1, what="the status to show no ready replica")
    assert dropped["status"] == "False"
    wait_until(lambda: ready(devcluster, alpha, 1), what="alpha Ready again")
    (pod,) = devcluster.pods(NS, alpha)
    restarted = next(c for c in pod["containers"] if c["name"] == "server")
    assert restarted["restarts"] == 1
    assert restarted["pid"] != server["pid"]
    restarts = devcluster.kubectl(
        "-n",
        NS,
        "get",
        "pod",
        pod["name"],
        "-o",
        'jsonpath={.status.containerStatuses[?(@.name=="server")].restartCount}',
    )
    assert restarts == "1"
    assert not alive(server["pid"])
    predict(f"http://{devcluster.address(alpha, NS)}:8000", f"/{alpha}")


def test_a_spec_change_rolls_two_replicas_without_a_failed_request(
    devcluster: DevCluster, alpha: str
) -> None:
    devcluster.apply(model("beta", replicas=2, cache={"enabled": False}))
    wait_until(lambda: ready(devcluster, "beta", 2), what="beta Ready with 2 replicas")
    base = f"http://{devcluster.address('beta', NS)}:8000"
    old = {p["name"] for p in devcluster.pods(NS, "beta")}
    results: list[int | str] = []
    stop = threading.Event()

    def loop() -> None:
        # A new connection per request, as kube-proxy balances connections (not requests).
        with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not stop.is_set() and len(results) < 100_000:
                try:
                    results.append(client.post(f"{base}/beta/predict", json={"text": TEXTS}).status_code)
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(results) >= 3, within=60, what="the client looping")
        patch = '{"spec":{"model":{"precision":"int8"}}}'
        devcluster.kubectl("-n", NS, "patch", "sentimentmodel", "beta", "--type", "merge", "-p", patch)
        wait_until(
            lambda: (
                not old & {p["name"] for p in devcluster.pods(NS, "beta")} and ready(devcluster, "beta", 2)
            ),
            within=300,
            what="the rollout to replace both pods",
        )
        served = len(results)
        wait_until(lambda: len(results) >= served + 3, within=60, what="requests after the rollout")
    finally:
        stop.set()
        thread.join(timeout=60)
    failed = [r for r in results if r != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed during the rollout: {failed[:5]}"
    assert httpx.get(f"{base}/beta/model", timeout=10).json()["precision"] == "int8"


def test_deleting_the_models_stops_every_process(devcluster: DevCluster, alpha: str) -> None:
    pids = [c["pid"] for p in devcluster.pods(NS) for c in p["containers"] if c["pid"]]
    assert len(pids) >= 2  # at least a server and its Redis
    devcluster.kubectl("-n", NS, "delete", "sentimentmodels", "--all", "--wait", "--timeout=120s")
    wait_until(lambda: not devcluster.pods(NS), within=120, what="no pod left in the namespace")
    assert not [pid for pid in pids if alive(pid)]
    left = devcluster.kubectl("-n", NS, "get", "deployments,services,secrets", "-o", "name")
    assert left.strip() == ""
