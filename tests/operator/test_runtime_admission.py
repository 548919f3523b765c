"""The real operator under a real cluster's authorization and admission.

RBAC: the test API server authorizes the operator's requests with the ClusterRole that deploy/base/rbac.yaml
ships (bound to the operator's ServiceAccount), including OwnerReferencesPermissionEnforcement
(blockOwnerDeletion needs update on the owner's finalizers). Pod Security: the namespace enforces
"restricted", and every pod template the operator renders must pass it (the API server would warn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from operator_emulator import NAMESPACE, Cluster, eventually
from sentiment_devcluster.apiserver.rbac import Authorizer, without_resource

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = list(yaml.safe_load_all((ROOT / "deploy" / "base" / "rbac.yaml").read_text(encoding="utf-8")))
SERVICE_ACCOUNT = ("sentiment-system", "sentiment-operator")
NAME = "demo"
SPEC: dict[str, Any] = {"image": "registry.example/inference:1.0"}


def _children(cluster: Cluster) -> bool:
    paths = ("apps/v1/deployments", "v1/services", "autoscaling/v2/horizontalpodautoscalers")
    return all(cluster.api.live_all(path, NAMESPACE) for path in paths)


async def test_the_shipped_role_covers_a_whole_reconcile(cluster: Cluster) -> None:
    """Every request of a create-to-Ready reconcile is allowed by the shipped ClusterRole, and so is every
    blockOwnerDeletion (Real-cluster correctness #4: it needs update on sentimentmodels/finalizers)."""
    cluster.api.authorizer = Authorizer.for_service_account(SHIPPED, *SERVICE_ACCOUNT)
    await cluster.start_operator()
    await cluster.create_model(NAME, SPEC)
    await eventually(lambda: _children(cluster), within=30, what="every child under RBAC")
    await eventually(lambda: (cluster.model(NAME) or {}).get("status", {}).get("observedGeneration") == 1)
    assert cluster.api.denied == [], cluster.api.denied


async def test_without_the_finalizers_rule_every_child_create_is_refused(cluster: Cluster) -> None:
    """The regression this rule prevents: the shipped role minus it, and the admission plugin says no."""
    without = without_resource(SHIPPED, "sentimentmodels/finalizers")
    cluster.api.authorizer = Authorizer.for_service_account(without, *SERVICE_ACCOUNT)
    await cluster.start_operator()
    await cluster.create_model(NAME, SPEC)
    await eventually(
        lambda: any(a.subresource == "finalizers" for a in cluster.api.denied), within=20, what="a 403"
    )
    assert not cluster.api.live_all("apps/v1/deployments", NAMESPACE)


async def test_rbac_denials_reach_the_operator_as_403(cluster: Cluster) -> None:
    """The emulator really enforces: with no role bound, the operator's first reads are refused."""
    cluster.api.authorizer = Authorizer.for_service_account([], *SERVICE_ACCOUNT)
    await cluster.start_operator()
    await eventually(lambda: cluster.api.denied, within=10, what="a denied request")
    assert all(attrs.verb in ("list", "watch", "get") for attrs in cluster.api.denied)


def _restricted_namespace(cluster: Cluster) -> None:
    cluster.api.objects["v1/namespaces", None, NAMESPACE] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }


async def test_every_rendered_pod_template_passes_restricted_pod_security(cluster: Cluster) -> None:
    """The inference and Redis Deployments, init containers included, draw no Pod Security warning."""
    _restricted_namespace(cluster)
    await cluster.start_operator()
    await cluster.create_model(NAME, {**SPEC, "model": {"source": {"download": {}}}})
    await eventually(lambda: len(cluster.api.live_all("apps/v1/deployments", NAMESPACE)) == 2, what="both")
    templates = [
        d["spec"]["template"]["spec"] for d in cluster.api.live_all("apps/v1/deployments", NAMESPACE)
    ]
    assert any(t.get("initContainers") for t in templates)
    assert cluster.api.warnings == []


async def test_a_baseline_spec_draws_the_warning_a_real_cluster_gives(cluster: Cluster) -> None:
    """podSecurity: baseline asks for less than restricted: the API server warns, naming the controls."""
    _restricted_namespace(cluster)
    await cluster.start_operator()
    await cluster.create_model(NAME, {**SPEC, "podSecurity": "baseline", "cache": {"enabled": False}})
    await eventually(lambda: cluster.api.warnings, what="a Pod Security warning")
    assert all(w.startswith('would violate PodSecurity "restricted:latest"') for w in cluster.api.warnings)


async def test_child_watches_are_filtered_by_the_api_server(cluster: Cluster) -> None:
    """Real-cluster correctness #11: the child lists and watches carry our label selector, so a Deployment
    that is not ours never reaches the operator at all."""
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "someone-elses", "labels": {"app": "x"}},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    await cluster.http("POST", "/apis/apps/v1/namespaces/default/deployments", other)
    await cluster.start_operator()
    await cluster.create_model(NAME, SPEC)
    await eventually(lambda: _children(cluster), within=30, what="every child")
    for plural in ("deployments", "services", "horizontalpodautoscalers", "networkpolicies"):
        reads = [
            r
            for r in cluster.requests(method="GET", plural=plural)
            if r.headers.get("User-Agent", "").startswith("kopf") and r.name is None
        ]
        assert reads, plural
        assert all(
            r.params.get("labelSelector")
            == "app.kubernetes.io/managed-by=sentiment-operator,app.kubernetes.io/instance"
            for r in reads
        ), [r.params for r in reads]
