"""Routing status, pure: what the cluster serves decides the reason; an HTTPRoute's verdict comes from its
gateway controllers' status.parents, per parent, counting only the route's current generation."""

from __future__ import annotations

from typing import Any

import pytest
from sentiment_operator import status
from sentiment_operator.events import Event, change_events
from sentiment_operator.spec import parse_spec
from sentiment_operator.status_model import SentimentModelStatus

NAME, NS = "demo", "prod"
GATEWAYS = ["infra/public", "internal"]


def route(generation: int = 2, parents: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An HTTPRoute as the API server returns it, with what the gateway controllers reported."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "namespace": NS, "generation": generation},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "namespace": "infra",
                    "name": "public",
                },
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "internal"},
            ]
        },
        "status": {"parents": parents or []},
    }


def report(
    name: str,
    namespace: str | None = None,
    *,
    generation: int = 2,
    accepted: str = "True",
    resolved: str = "True",
    reason: str | None = None,
    message: str = "",
) -> dict[str, Any]:
    """One gateway controller's entry in status.parents (Gateway API's RouteParentStatus); the parentRef as
    the controller writes it, defaults left out or filled in."""
    ref: dict[str, Any] = {"name": name}
    if namespace is not None:
        ref.update(namespace=namespace, group="gateway.networking.k8s.io", kind="Gateway")
    return {
        "parentRef": ref,
        "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
        "conditions": [
            {
                "type": "Accepted",
                "status": accepted,
                "reason": reason or ("Accepted" if accepted == "True" else "NotAllowedByListeners"),
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "ResolvedRefs",
                "status": resolved,
                "reason": "ResolvedRefs" if resolved == "True" else "BackendNotFound",
                "message": "" if resolved == "True" else "Service prod/demo-canary not found",
                "observedGeneration": generation,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
    }


def compute(observed: status.Observed, provider: str = "gatewayAPI") -> dict[str, Any]:
    spec = parse_spec(NAME, {"routing": {"enabled": True, "provider": provider, "gateways": GATEWAYS}})
    computed = status.compute_status(
        name=NAME,
        url="http://demo.prod.svc.cluster.local:8000/demo",
        generation=7,
        spec=spec,
        observed=observed,
        previous=None,
        now="2026-01-01T00:00:00Z",
    )
    SentimentModelStatus.model_validate(computed)
    return computed


def routing_of(live: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    computed = compute(status.Observed(routing="applied", routing_provider="gatewayAPI", route=live))
    condition = next(c for c in computed["conditions"] if c["type"] == "Routing")
    return condition, computed


def test_every_parent_accepted_and_resolved_for_this_generation_routes() -> None:
    condition, computed = routing_of(route(parents=[report("public", "infra"), report("internal")]))
    assert (condition["status"], condition["reason"]) == ("True", "HTTPRouteAccepted")
    assert (
        condition["message"]
        == "HTTPRoute demo routes /demo on infra/public, internal (accepted, references resolved)"
    )
    assert computed["gatewayPath"] == "/demo"
    assert computed["routingProvider"] == "gatewayAPI"
    assert condition["observedGeneration"] == 7


def test_a_stale_accepted_is_not_ready() -> None:
    """The route changed (generation 3); the controllers have reported on generation 2 only."""
    condition, computed = routing_of(
        route(generation=3, parents=[report("public", "infra"), report("internal", generation=3)])
    )
    assert (condition["status"], condition["reason"]) == ("False", "HTTPRoutePending")
    assert condition["message"] == (
        "waiting for the gateway controller to accept HTTPRoute demo (generation 3) on "
        "infra/public (last report for generation 2)"
    )
    assert computed["gatewayPath"] is None, "no path is claimed before the gateways accepted this generation"


def test_a_parent_nobody_reported_on_yet_is_pending() -> None:
    condition, _ = routing_of(route(parents=[report("public", "infra")]))
    assert condition["reason"] == "HTTPRoutePending"
    assert condition["message"].endswith(" on prod/internal")
    condition, _ = routing_of(route())
    assert condition["reason"] == "HTTPRoutePending"
    assert condition["message"].endswith(" on infra/public, prod/internal")


def test_a_refusing_parent_is_named_with_its_controllers_reason() -> None:
    refused = report("public", "infra", accepted="False", message="no listener allows routes from prod")
    condition, computed = routing_of(route(parents=[refused, report("internal")]))
    assert (condition["status"], condition["reason"]) == ("False", "HTTPRouteNotAccepted")
    assert condition["message"] == (
        "HTTPRoute demo is not accepted by infra/public: Accepted=False NotAllowedByListeners: "
        "no listener allows routes from prod"
    )
    assert computed["gatewayPath"] is None


def test_a_stale_refusal_does_not_count_either() -> None:
    """An Accepted=False for an older generation says nothing about the route as it is now."""
    old_refusal = report("public", "infra", generation=1, accepted="False")
    condition, _ = routing_of(route(parents=[old_refusal, report("internal")]))
    assert condition["reason"] == "HTTPRoutePending"
    assert "infra/public (last report for generation 1)" in condition["message"]


def test_unresolved_references_are_reported_per_parent() -> None:
    condition, _ = routing_of(
        route(parents=[report("public", "infra", resolved="False"), report("internal")])
    )
    assert (condition["status"], condition["reason"]) == ("False", "HTTPRouteRefsNotResolved")
    assert condition["message"] == (
        "HTTPRoute demo has unresolved references on infra/public: ResolvedRefs=False BackendNotFound: "
        "Service prod/demo-canary not found"
    )


def test_a_report_on_another_parent_or_section_does_not_count() -> None:
    """Reports are matched to parentRefs with Gateway API's defaults (group, kind, the route's namespace);
    a report on a listener (sectionName) the route does not name is some other attachment."""
    other_namespace = report("internal", "elsewhere")
    section = report("public", "infra")
    section["parentRef"]["sectionName"] = "https"
    condition, _ = routing_of(route(parents=[section, other_namespace]))
    assert condition["reason"] == "HTTPRoutePending"
    assert condition["message"].endswith(" on infra/public, prod/internal")


def test_two_controllers_on_one_parent_a_refusal_wins() -> None:
    refused = report("internal", accepted="False", message="listener is TLS only")
    condition, _ = routing_of(route(parents=[report("public", "infra"), report("internal"), refused]))
    assert condition["reason"] == "HTTPRouteNotAccepted"
    assert "prod/internal: Accepted=False" in condition["message"]


def test_a_route_that_could_not_be_read_is_pending() -> None:
    condition, _ = routing_of(None)
    assert (condition["reason"], condition["message"]) == (
        "HTTPRoutePending",
        "HTTPRoute demo of this model not found",
    )


@pytest.mark.parametrize(
    ("provider", "reason", "missing"),
    [
        ("istio", "IstioNotInstalled", "does not serve Istio's VirtualService (networking.istio.io)"),
        (
            "gatewayAPI",
            "GatewayAPINotInstalled",
            "does not serve Gateway API's HTTPRoute (gateway.networking.k8s.io)",
        ),
        ("auto", "IstioAndGatewayAPINotInstalled", "serves neither Istio's VirtualService"),
    ],
)
def test_no_api_served_names_what_is_missing_and_the_service_still_runs(
    provider: str, reason: str, missing: str
) -> None:
    computed = compute(status.Observed(routing="not-served"), provider)
    condition = next(c for c in computed["conditions"] if c["type"] == "Routing")
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert missing in condition["message"]
    assert "the Service still answers" in condition["message"]
    assert (computed["gatewayPath"], computed["routingProvider"]) == (None, None)


def test_each_routing_problem_is_announced_once_when_it_appears() -> None:
    def with_routing(reason: str, message: str = "m") -> dict[str, Any]:
        return {"conditions": [{"type": "Routing", "status": "False", "reason": reason, "message": message}]}

    def events(previous: dict[str, Any], new: dict[str, Any]) -> list[Event]:
        return change_events(applied={}, deleted=[], previous=previous, new_status=new, routing_enabled=True)

    pending = with_routing("HTTPRoutePending")
    refused = with_routing("HTTPRouteNotAccepted", "refused by infra/public")
    assert events({}, pending) == [], "waiting for the gateway controller is not a problem"
    assert events(pending, refused) == [Event("Warning", "HTTPRouteNotAccepted", "refused by infra/public")]
    assert events(refused, refused) == []
    unresolved = with_routing("HTTPRouteRefsNotResolved")
    assert events(refused, unresolved) == [Event("Warning", "HTTPRouteRefsNotResolved", "m")]
    for reason in ("GatewayAPINotInstalled", "IstioAndGatewayAPINotInstalled"):
        assert events(pending, with_routing(reason)) == [Event("Warning", reason, "m")]
