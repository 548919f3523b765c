"""The Reconciler's routing over the in-memory API (memory_kube.py): the provider from API discovery, the
route written as the version the cluster serves, the other provider's route removed on a switch, and
Routing from the HTTPRoute's status as its gateway controller reports it."""

from __future__ import annotations

import copy
from typing import Any

from memory_kube import MemoryApi, MemoryKube
from sentiment_operator import kinds
from sentiment_operator.reconciler import Reconciler

NS, NAME = "default", "demo"
MODELS = kinds.SENTIMENT_MODEL.collection_path(NS)
BASE: dict[str, Any] = {"autoscaling": {"enabled": False}, "cache": {"enabled": False}}
ISTIO, GATEWAY_API = "networking.istio.io", "gateway.networking.k8s.io"


def cluster(
    *, istio: bool = False, gateway_api: str | None = None
) -> tuple[MemoryApi, MemoryKube, Reconciler]:
    """An in-memory API serving Istio and/or Gateway API (at version ``gateway_api``), a client and a
    reconciler over it."""
    api = MemoryApi()
    if istio:
        api.install_istio()
    if gateway_api is not None:
        api.install_gateway_api(gateway_api)
    client = MemoryKube(api)
    return api, client, Reconciler(client)


async def create(client: MemoryKube, routing: dict[str, Any]) -> None:
    body = {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": NAME},
    }
    await client.request(
        "POST", MODELS, body={**body, "spec": {**BASE, "routing": {"enabled": True, **routing}}}
    )


async def respec(client: MemoryKube, spec: dict[str, Any]) -> None:
    await client.request(
        "PATCH",
        kinds.SENTIMENT_MODEL.object_path(NS, NAME),
        body={"spec": spec},
        content_type="application/merge-patch+json",
    )


def model(api: MemoryApi) -> dict[str, Any]:
    live = api.live("serving.sentiment.dev/v1alpha1", "sentimentmodels", NS, NAME)
    assert live is not None
    return live


def routing(api: MemoryApi) -> dict[str, Any]:
    condition: dict[str, Any] = next(c for c in model(api)["status"]["conditions"] if c["type"] == "Routing")
    return condition


def virtual_service(api: MemoryApi) -> dict[str, Any] | None:
    return api.live(f"{ISTIO}/v1", "virtualservices", NS, NAME)


def http_route(api: MemoryApi, version: str = "v1") -> dict[str, Any] | None:
    return api.live(f"{GATEWAY_API}/{version}", "httproutes", NS, NAME)


def gateway_peer(api: MemoryApi) -> list[dict[str, Any]]:
    policy = api.live("networking.k8s.io/v1", "networkpolicies", NS, NAME)
    assert policy is not None
    peers: list[dict[str, Any]] = policy["spec"]["ingress"][0]["from"][1:]
    return peers


async def accept(api: MemoryApi, client: MemoryKube, *, generation: int | None = None) -> None:
    """Play the gateway controller: report Accepted and ResolvedRefs on every parent of the HTTPRoute."""
    route = http_route(api)
    assert route is not None
    observed = generation or route["metadata"]["generation"]
    conditions = [
        {"type": t, "status": "True", "reason": t, "message": "", "observedGeneration": observed}
        for t in ("Accepted", "ResolvedRefs")
    ]
    parents = [
        {"parentRef": copy.deepcopy(ref), "controllerName": "example.com/gateway", "conditions": conditions}
        for ref in route["spec"]["parentRefs"]
    ]
    await client.request(
        "PATCH",
        kinds.HTTP_ROUTE.object_path(NS, NAME, "status"),
        body={"status": {"parents": parents}},
        content_type="application/merge-patch+json",
    )


async def test_auto_routes_through_istio_first_then_gateway_api_once_istio_is_gone() -> None:
    api, client, reconciler = cluster(istio=True, gateway_api="v1")
    await create(client, {})
    await reconciler.reconcile(NS, NAME)
    assert virtual_service(api) is not None
    assert http_route(api) is None
    assert model(api)["status"]["routingProvider"] == "istio"
    assert gateway_peer(api)[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == (
        "istio-ingress"
    )

    api.uninstall(ISTIO)  # Istio's CRDs deleted: the VirtualService went with them
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert http_route(api) is not None
    assert model(api)["status"]["routingProvider"] == "gatewayAPI"
    assert routing(api)["reason"] == "HTTPRoutePending"
    assert "gatewayPath" not in model(api)["status"]
    assert gateway_peer(api)[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == (
        "envoy-gateway-system"
    )
    await accept(api, client)
    await reconciler.refresh_status(NS, NAME)
    assert (routing(api)["status"], routing(api)["reason"]) == ("True", "HTTPRouteAccepted")
    assert model(api)["status"]["gatewayPath"] == "/demo"


async def test_switching_providers_removes_the_old_route() -> None:
    api, client, reconciler = cluster(istio=True, gateway_api="v1")
    await create(client, {"provider": "istio"})
    await reconciler.reconcile(NS, NAME)
    assert virtual_service(api) is not None

    await respec(client, {"routing": {"provider": "gatewayAPI"}})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert virtual_service(api) is None
    assert http_route(api) is not None
    assert f"VirtualService {NS}/{NAME}" in result.deleted
    assert result.applied[f"HTTPRoute {NS}/{NAME}"] == "created"

    await respec(client, {"routing": {"provider": "istio"}})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert (virtual_service(api) is not None, http_route(api) is None) == (True, True)
    assert result.deleted == [f"HTTPRoute {NS}/{NAME}"]

    await respec(client, {"routing": {"enabled": False}})
    await reconciler.reconcile(NS, NAME)
    assert (virtual_service(api), http_route(api)) == (None, None)


async def test_the_route_is_written_as_the_version_the_cluster_serves() -> None:
    """Gateway API before 1.0 serves HTTPRoute as v1beta1 only (the same fields)."""
    api, client, reconciler = cluster(gateway_api="v1beta1")
    await create(client, {"provider": "gatewayAPI", "canary": {"weight": 10}})
    await reconciler.reconcile(NS, NAME)
    route = http_route(api, "v1beta1")
    assert route is not None
    assert route["apiVersion"] == f"{GATEWAY_API}/v1beta1"
    assert [ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    await respec(client, {"routing": {"enabled": False, "canary": None}})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert http_route(api, "v1beta1") is None


async def test_a_provider_the_cluster_does_not_serve_is_reported_and_nothing_else_fails() -> None:
    api, client, reconciler = cluster(istio=True)
    await create(client, {"provider": "gatewayAPI"})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert (routing(api)["status"], routing(api)["reason"]) == ("False", "GatewayAPINotInstalled")
    assert virtual_service(api) is None, "gatewayAPI asked for: Istio is not a fallback"
    assert api.live("apps/v1", "deployments", NS, NAME) is not None, "the service still runs"
    assert gateway_peer(api) == [], "no route written, no data plane admitted"
    assert [e.reason for e in result.events if e.type == "Warning"] == ["GatewayAPINotInstalled"]
    again = await reconciler.reconcile(NS, NAME)
    assert again is not None
    assert [e for e in again.events if e.type == "Warning"] == [], "announced once"


async def test_a_new_generation_of_the_route_waits_for_a_new_verdict() -> None:
    """The spec changes the route (generation 2): the verdict on generation 1 is stale, so Routing waits
    (and the path is not claimed) until the gateway controller reports on generation 2."""
    api, client, reconciler = cluster(gateway_api="v1")
    await create(client, {"provider": "gatewayAPI"})
    await reconciler.reconcile(NS, NAME)
    await accept(api, client)
    await reconciler.refresh_status(NS, NAME)
    assert routing(api)["status"] == "True"

    await respec(client, {"routing": {"pathPrefix": "/v2"}})
    await reconciler.reconcile(NS, NAME)
    route = http_route(api)
    assert route is not None
    assert route["metadata"]["generation"] == 2
    assert routing(api)["reason"] == "HTTPRoutePending"
    assert "last report for generation 1" in routing(api)["message"]
    assert "gatewayPath" not in model(api)["status"]
    await accept(api, client)
    await reconciler.refresh_status(NS, NAME)
    assert routing(api)["reason"] == "HTTPRouteAccepted"
    assert model(api)["status"]["gatewayPath"] == "/v2"


async def test_someone_elses_route_with_our_name_is_neither_taken_over_nor_believed() -> None:
    """An HTTPRoute that is not this model's (no ownerReference to it) is left alone, and the verdict its
    gateway controller wrote on it does not make our Routing True."""
    api, client, reconciler = cluster(gateway_api="v1")
    theirs = {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"parentRefs": [{"name": "sentiment-gateway", "namespace": "istio-ingress"}], "rules": [{}]},
    }
    await client.request("POST", kinds.HTTP_ROUTE.collection_path(NS), body=theirs)
    await accept(api, client)
    await create(client, {"provider": "gatewayAPI"})
    result = await reconciler.reconcile(NS, NAME)
    assert result is not None
    assert any(f"HTTPRoute {NS}/{NAME} already exists" in clash for clash in result.not_owned)
    assert f"HTTPRoute {NS}/{NAME}" not in result.applied, "no outcome (nor Event) for what was not written"
    assert routing(api)["reason"] == "HTTPRoutePending"
    assert "gatewayPath" not in model(api)["status"]
    live = http_route(api)
    assert live is not None
    assert "ownerReferences" not in live["metadata"]
