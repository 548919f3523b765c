"""The autoscaler builders, metric by metric: an HPA on cpu or memory, on the load gauges an HPA Pods metric
(no KEDA) or KEDA's ScaledObject (never both), and scale to zero with the gateway's activation trigger."""

from __future__ import annotations

from typing import Any

import pytest
import sentiment_contract as C
from sentiment_operator import names
from sentiment_operator.builders import Children, build_children
from sentiment_operator.builders.scaling import ACTIVATION_QUERIES, activation_query, load_query
from sentiment_operator.spec import InvalidSpecError, parse_spec

UID = "5f0b8f57-1c33-4c1e-9e4b-0a4d3c0f4a10"


def build(*, keda: bool = False, name: str = "demo", **raw: Any) -> Children:
    return build_children(name, "ns", parse_spec(name, raw), uid=UID, keda=keda)


def autoscalers(children: Children) -> list[tuple[str, str]]:
    return [
        (obj["kind"], obj["metadata"]["name"])
        for obj in children.objects()
        if obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]


def test_cpu_is_the_default_metric_with_or_without_keda() -> None:
    for keda in (False, True):
        children = build(keda=keda)
        assert autoscalers(children) == [("HorizontalPodAutoscaler", "demo")]
        assert children.hpa is not None
        assert children.hpa["spec"]["metrics"] == [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            }
        ]


def test_memory_metric_scales_on_memory_only_with_its_default_target() -> None:
    children = build(autoscaling={"metric": "memory"})
    assert children.hpa is not None
    assert children.hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}},
        }
    ]
    explicit = build(autoscaling={"metric": "memory", "targetMemoryUtilizationPercentage": 65})
    assert explicit.hpa is not None
    assert explicit.hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 65


@pytest.mark.parametrize(
    ("metric", "target_field", "series"),
    [
        ("queueDepth", "targetQueueDepth", C.QUEUE_DEPTH_METRIC),
        ("inFlight", "targetInFlight", C.IN_FLIGHT_METRIC),
    ],
)
def test_load_metric_without_keda_is_an_hpa_pods_metric(metric: str, target_field: str, series: str) -> None:
    children = build(autoscaling={"metric": metric, target_field: 5, "maxReplicas": 4})
    assert autoscalers(children) == [("HorizontalPodAutoscaler", "demo")]
    assert children.hpa is not None
    assert children.hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {"metric": {"name": series}, "target": {"type": "AverageValue", "averageValue": "5"}},
        }
    ]
    assert (children.hpa["spec"]["minReplicas"], children.hpa["spec"]["maxReplicas"]) == (1, 4)


@pytest.mark.parametrize(
    ("metric", "target_field", "series"),
    [
        ("queueDepth", "targetQueueDepth", C.QUEUE_DEPTH_METRIC),
        ("inFlight", "targetInFlight", C.IN_FLIGHT_METRIC),
    ],
)
def test_load_metric_with_keda_is_a_scaled_object_and_no_hpa(
    metric: str, target_field: str, series: str
) -> None:
    children = build(
        keda=True,
        autoscaling={
            "metric": metric,
            target_field: 12,
            "minReplicas": 2,
            "maxReplicas": 9,
            "prometheus": {"serverAddress": "http://prom.monitoring.svc:9090"},
        },
    )
    assert autoscalers(children) == [("ScaledObject", "demo")]
    assert children.hpa is None
    assert "replicas" not in children.deployment["spec"], "KEDA's HPA owns the replica count"
    so = children.scaled_object
    assert so is not None
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["metadata"]["ownerReferences"][0]["uid"] == UID
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 9)
    assert spec["triggers"] == [
        {
            "type": "prometheus",
            "name": "load",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": "http://prom.monitoring.svc:9090",
                "query": f'sum({series}{{namespace="ns",service="demo"}})',
                "threshold": "12",
            },
        }
    ]
    assert "advanced" not in spec


def test_keda_must_not_label_its_hpa_as_ours() -> None:
    """KEDA copies a ScaledObject's labels onto its HPA unless the annotation excludes them: every label of
    ours is excluded, so KEDA's HPA is never watched or pruned as one of our children."""
    so = build(keda=True, autoscaling={"metric": "inFlight"}).scaled_object
    assert so is not None
    excluded = so["metadata"]["annotations"][names.ANNOTATION_KEDA_HPA_EXCLUDED_LABELS].split(",")
    assert sorted(excluded) == sorted(so["metadata"]["labels"])
    assert names.LABEL_MANAGED_BY in excluded
    assert names.LABEL_INSTANCE in excluded


def test_behavior_reaches_the_hpa_keda_creates() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 30}}
    so = build(keda=True, autoscaling={"metric": "queueDepth", "behavior": behavior}).scaled_object
    assert so is not None
    assert so["spec"]["advanced"] == {"horizontalPodAutoscalerConfig": {"behavior": behavior}}


def test_canary_gets_its_own_autoscaler_of_the_same_kind() -> None:
    routing = {"enabled": True, "canary": {"weight": 20}}
    with_keda = build(keda=True, autoscaling={"metric": "queueDepth"}, routing=routing)
    assert autoscalers(with_keda) == [("ScaledObject", "demo"), ("ScaledObject", "demo-canary")]
    canary = with_keda.canary_scaled_object
    assert canary is not None
    assert canary["spec"]["scaleTargetRef"]["name"] == "demo-canary"
    assert 'service="demo-canary"' in canary["spec"]["triggers"][0]["metadata"]["query"]
    assert canary["metadata"]["labels"][names.LABEL_COMPONENT] == names.COMPONENT_CANARY
    without = build(autoscaling={"metric": "queueDepth"}, routing=routing)
    assert autoscalers(without) == [
        ("HorizontalPodAutoscaler", "demo"),
        ("HorizontalPodAutoscaler", "demo-canary"),
    ]


def test_scale_to_zero_adds_the_gateway_activation_trigger() -> None:
    children = build(
        keda=True, autoscaling={"metric": "inFlight", "minReplicas": 0}, routing={"enabled": True}
    )
    so = children.scaled_object
    assert so is not None
    assert so["spec"]["minReplicaCount"] == 0
    load, gateway = so["spec"]["triggers"]
    assert load["name"] == "load"
    assert "activationThreshold" not in load["metadata"]
    assert gateway["name"] == "gateway-requests"
    istio = (
        'istio_requests_total{reporter="source",destination_service_namespace="ns",'
        'destination_service_name="demo"}'
    )
    assert gateway["metadata"]["query"] == (
        f"(sum(increase({istio}[1m])) or vector(0)) + (sum({istio} unless {istio} offset 1m) or vector(0))"
    )
    assert gateway["metadata"]["activationThreshold"] == "0"  # any request wakes the model
    # Only the load trigger sizes the Deployment: the gateway's asks for one pod at most.
    assert float(gateway["metadata"]["threshold"]) >= 1e6
    assert children.disruption_budget is None, "no budget for a Deployment that may run no pod"


def test_scale_to_zero_without_keda_is_an_invalid_spec_naming_the_field() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        build(autoscaling={"metric": "inFlight", "minReplicas": 0}, routing={"enabled": True})
    assert caught.value.field == "spec.autoscaling.minReplicas"
    assert "needs KEDA" in caught.value.message
    assert "keda.sh/v1alpha1 ScaledObject" in caught.value.message


def test_scale_to_zero_needs_a_provider_whose_gateway_requests_are_counted() -> None:
    """The route's requests wake a model at zero pods: without a served route, or with a provider whose
    gateway requests the operator does not count, minReplicas 0 is an InvalidSpec saying what to change."""
    spec = parse_spec(
        "demo", {"autoscaling": {"metric": "inFlight", "minReplicas": 0}, "routing": {"enabled": True}}
    )
    with pytest.raises(InvalidSpecError, match=r"serves no route for routing\.provider auto"):
        build_children("demo", "ns", spec, keda=True, served=set())
    gateway = parse_spec(
        "demo",
        {
            "autoscaling": {"metric": "inFlight", "minReplicas": 0},
            "routing": {"enabled": True, "provider": "gatewayAPI"},
        },
    )
    with pytest.raises(InvalidSpecError) as caught:
        build_children("demo", "ns", gateway, keda=True, served={"istio", "gatewayAPI"})
    assert caught.value.field == "spec.autoscaling.minReplicas"
    assert "for istio only, not for the gatewayAPI route" in caught.value.message
    # Under auto, a cluster serving both gets Istio's route, whose requests are counted.
    auto = build_children("demo", "ns", spec, keda=True, served={"istio", "gatewayAPI"})
    assert auto.routing_provider == "istio"
    assert auto.scaled_object is not None


def test_activation_query_is_a_function_of_the_routing_provider() -> None:
    assert set(ACTIVATION_QUERIES) == {"istio"}
    assert 'destination_service_name="api"' in activation_query("istio", "prod", "api")
    with pytest.raises(KeyError):
        activation_query("nginx", "prod", "api")


def test_load_query_selects_one_services_pods() -> None:
    assert load_query("queueDepth", "a", "b") == 'sum(sentiment_queue_depth{namespace="a",service="b"})'
    assert load_query("inFlight", "a", "b") == 'sum(sentiment_requests_in_flight{namespace="a",service="b"})'


def test_autoscaling_off_renders_no_autoscaler_at_all() -> None:
    children = build(keda=True, autoscaling={"enabled": False, "metric": "queueDepth"}, replicas=3)
    assert autoscalers(children) == []
    assert children.deployment["spec"]["replicas"] == 3
