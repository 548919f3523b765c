"""The real operator (kopf + our handlers) against the emulated API server, routing through Istio or Gateway
API: discovery both ways, switching providers, and Routing following the HTTPRoute's status as a gateway
controller (the test) writes it, stale generations included."""

from __future__ import annotations

from typing import Any

import pytest
from operator_emulator import NAMESPACE, Cluster, eventually

NAME = "demo"
SPEC: dict[str, Any] = {
    "image": "registry.example/inference:1.0",
    "autoscaling": {"enabled": False},
    "cache": {"enabled": False},
}
VIRTUAL_SERVICES = "networking.istio.io/v1/virtualservices"


def routes(version: str = "v1") -> str:
    return f"gateway.networking.k8s.io/{version}/httproutes"


def routing_is(cluster: Cluster, status: str, reason: str) -> dict[str, Any] | None:
    condition = cluster.condition(NAME, "Routing")
    return condition if condition and (condition["status"], condition["reason"]) == (status, reason) else None


def gateway_path(cluster: Cluster) -> str | None:
    path: str | None = ((cluster.model(NAME) or {}).get("status") or {}).get("gatewayPath")
    return path


@pytest.mark.parametrize("version", ["v1", "v1beta1"], ids=["gateway-api-1.0+", "gateway-api-before-1.0"])
async def test_auto_routes_through_gateway_api_where_only_gateway_api_is_served(
    cluster: Cluster, version: str
) -> None:
    cluster.api.install_gateway_api(version)
    await cluster.start_operator()
    await cluster.create_model(NAME, {**SPEC, "routing": {"enabled": True, "canary": {"weight": 20}}})
    route = await eventually(lambda: cluster.api.live(routes(version), NAMESPACE, NAME), what="HTTPRoute")
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        (NAME, 80),
        (f"{NAME}-canary", 20),
    ]
    pending = await eventually(lambda: routing_is(cluster, "False", "HTTPRoutePending"), what="pending")
    assert "waiting for the gateway controller" in pending["message"]
    assert gateway_path(cluster) is None
    assert (cluster.model(NAME) or {})["status"]["routingProvider"] == "gatewayAPI"
    policy = cluster.api.live("networking.k8s.io/v1/networkpolicies", NAMESPACE, NAME)
    assert policy is not None
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"kubernetes.io/metadata.name": "envoy-gateway-system"} in [
        p.get("namespaceSelector", {}).get("matchLabels") for p in peers
    ], "Envoy Gateway's proxies are admitted"

    # Routing off: the HTTPRoute goes, written as whichever version the cluster serves.
    await cluster.patch_model(NAME, {"spec": {"routing": {"enabled": False, "canary": None}}})
    await eventually(lambda: cluster.api.live(routes(version), NAMESPACE, NAME) is None, what="route removed")


async def test_routing_follows_the_gateway_controllers_verdict_for_the_current_generation(
    cluster: Cluster,
) -> None:
    cluster.api.install_gateway_api()
    await cluster.start_operator()
    await cluster.create_model(NAME, {**SPEC, "routing": {"enabled": True, "provider": "gatewayAPI"}})
    await eventually(lambda: cluster.api.live(routes(), NAMESPACE, NAME), what="HTTPRoute")
    await eventually(lambda: routing_is(cluster, "False", "HTTPRoutePending"), what="pending")

    # The gateway controller accepts generation 1: its status write reaches the SentimentModel.
    await cluster.report_route(NAME)
    await eventually(lambda: routing_is(cluster, "True", "HTTPRouteAccepted"), what="Routing=True")
    assert gateway_path(cluster) == f"/{NAME}"

    # A new path: the route's generation 2 is not accepted yet, the verdict on generation 1 is stale.
    await cluster.patch_model(NAME, {"spec": {"routing": {"pathPrefix": "/v2"}}})
    stale = await eventually(lambda: routing_is(cluster, "False", "HTTPRoutePending"), what="stale verdict")
    assert "(generation 2)" in stale["message"]
    assert "last report for generation 1" in stale["message"]
    assert gateway_path(cluster) is None, "the old path is no longer routed, the new one not yet"

    # A refusal, then acceptance, of generation 2.
    await cluster.report_route(NAME, accepted=False, reason="NotAllowedByListeners", message="no listener")
    refused = await eventually(lambda: routing_is(cluster, "False", "HTTPRouteNotAccepted"), what="refused")
    assert "NotAllowedByListeners: no listener" in refused["message"]
    await eventually(lambda: cluster.events(reason="HTTPRouteNotAccepted", type="Warning"), what="Warning")
    await cluster.report_route(NAME)
    await eventually(lambda: routing_is(cluster, "True", "HTTPRouteAccepted"), what="accepted again")
    assert gateway_path(cluster) == "/v2"


async def test_switching_providers_moves_the_route(cluster: Cluster) -> None:
    cluster.api.install_istio()
    cluster.api.install_gateway_api()
    await cluster.start_operator()
    await cluster.create_model(NAME, {**SPEC, "routing": {"enabled": True}})
    await eventually(lambda: cluster.api.live(VIRTUAL_SERVICES, NAMESPACE, NAME), what="auto: Istio first")
    await eventually(lambda: routing_is(cluster, "True", "VirtualServiceConfigured"), what="Routing=True")
    assert cluster.api.live(routes(), NAMESPACE, NAME) is None

    await cluster.patch_model(NAME, {"spec": {"routing": {"provider": "gatewayAPI"}}})
    await eventually(
        lambda: (
            cluster.api.live(routes(), NAMESPACE, NAME) is not None
            and cluster.api.live(VIRTUAL_SERVICES, NAMESPACE, NAME) is None
        ),
        what="the HTTPRoute instead of the VirtualService",
    )
    await eventually(lambda: cluster.events(reason="Deleted"), what="the VirtualService's deletion announced")
    await cluster.report_route(NAME)
    await eventually(lambda: routing_is(cluster, "True", "HTTPRouteAccepted"), what="Routing=True")

    await cluster.patch_model(NAME, {"spec": {"routing": {"provider": "istio"}}})
    await eventually(
        lambda: (
            cluster.api.live(VIRTUAL_SERVICES, NAMESPACE, NAME) is not None
            and cluster.api.live(routes(), NAMESPACE, NAME) is None
        ),
        what="the VirtualService back, the HTTPRoute gone",
    )
    await eventually(lambda: routing_is(cluster, "True", "VirtualServiceConfigured"), what="Routing=True")


async def test_a_provider_that_is_not_served_is_reported_and_the_service_still_runs(cluster: Cluster) -> None:
    cluster.api.install_istio()
    await cluster.start_operator()
    await cluster.create_model(NAME, {**SPEC, "routing": {"enabled": True, "provider": "gatewayAPI"}})
    missing = await eventually(lambda: routing_is(cluster, "False", "GatewayAPINotInstalled"), what="reason")
    assert "gateway.networking.k8s.io" in missing["message"]
    await eventually(lambda: cluster.events(reason="GatewayAPINotInstalled", type="Warning"), what="Warning")
    assert cluster.api.live(VIRTUAL_SERVICES, NAMESPACE, NAME) is None
    assert cluster.api.live("apps/v1/deployments", NAMESPACE, NAME) is not None
    assert not cluster.events(reason="ReconcileFailed")
    await cluster.set_deployment_status(NAME, ready=1)
    await eventually(lambda: (cluster.condition(NAME, "Ready") or {}).get("status") == "True", what="Ready")
