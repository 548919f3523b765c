"""The real operator (kopf + our handlers) against kmock's emulated API server: issue 3's behaviours."""

from __future__ import annotations

from typing import Any

import pytest
from operator_emulator import NAMESPACE, Cluster, OperatorHandle, assert_no_secret_leak, eventually

NAME = "demo"
BASE_SPEC: dict[str, Any] = {"image": "registry.example/inference:1.0"}

CHILDREN = [
    ("apps/v1/deployments", NAME),
    ("v1/services", NAME),
    ("apps/v1/deployments", f"{NAME}-redis"),
    ("v1/services", f"{NAME}-redis"),
    ("v1/secrets", f"{NAME}-redis-auth"),
    ("autoscaling/v2/horizontalpodautoscalers", NAME),
    ("networking.k8s.io/v1/networkpolicies", NAME),
    ("networking.k8s.io/v1/networkpolicies", f"{NAME}-redis"),
]


def _children_exist(cluster: Cluster) -> bool:
    return all(cluster.api.live(path, NAMESPACE, name) is not None for path, name in CHILDREN)


async def test_create_builds_every_child_with_owner_references_and_status(
    cluster: Cluster, operator: OperatorHandle, all_logs: pytest.LogCaptureFixture
) -> None:
    created = await cluster.create_model(NAME, BASE_SPEC)
    uid = created["metadata"]["uid"]

    await eventually(lambda: _children_exist(cluster), what="every child object")
    for path, name in CHILDREN:
        obj = cluster.api.live(path, NAMESPACE, name)
        assert obj is not None
        refs = obj["metadata"].get("ownerReferences") or []
        assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs] == [
            ("SentimentModel", NAME, uid, True)
        ], f"{path} {name}"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == NAME
        assert labels["app.kubernetes.io/managed-by"] == "sentiment-operator"

    status = await eventually(lambda: (cluster.model(NAME) or {}).get("status", {}).get("conditions"), what="status")
    model = cluster.model(NAME)
    assert model is not None
    st = model["status"]
    assert st["observedGeneration"] == 1
    assert st["url"] == f"http://{NAME}.{NAMESPACE}.svc.cluster.local:8000/{NAME}"
    assert st["replicasSummary"] == "0/1"
    assert {c["type"] for c in status} == {"Ready", "Available", "CacheReady", "Autoscaling", "Routing"}
    ready = cluster.condition(NAME, "Ready")
    assert ready is not None and ready["status"] == "False"
    # No handler results or other clutter in status; kopf's bookkeeping under our domain.
    assert set(st) <= {
        "observedGeneration", "conditions", "replicas", "readyReplicas", "updatedReplicas", "replicasSummary", "url",
        "gatewayPath",
    }
    annotations = model["metadata"].get("annotations") or {}
    assert annotations and all(k.startswith("serving.sentiment.dev/") for k in annotations)
    for finalizer in model["metadata"].get("finalizers") or []:
        assert finalizer.startswith("serving.sentiment.dev/")

    # Each child was created exactly once.
    for path, name in CHILDREN:
        plural = path.rsplit("/", 1)[1]
        assert len(cluster.requests(method="POST", plural=plural, name=name)) == 1, f"{plural}/{name}"
    assert_no_secret_leak(cluster, NAME, all_logs)
