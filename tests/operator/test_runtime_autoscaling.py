"""The real operator against the emulated API server, autoscaling on load: with KEDA served (discovery) a
ScaledObject and no HPA, without it an HPA Pods metric whose condition says the metric must be served;
switching metrics deletes one autoscaler before the other is created (the emulator refuses the wrong order,
as KEDA's webhook does); scale to zero is refused until the cluster serves KEDA and the route."""

from __future__ import annotations

from typing import Any

from operator_emulator import NAMESPACE, Cluster, eventually

NAME = "demo"
BASE_SPEC: dict[str, Any] = {"image": "registry.example/inference:1.0", "cache": {"enabled": False}}
HPA = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECT = "keda.sh/v1alpha1/scaledobjects"
SCALED_OBJECTS_API = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"


def condition_is(cluster: Cluster, ctype: str, status: str, reason: str) -> Any:
    cond = cluster.condition(NAME, ctype)
    return cond if cond and (cond["status"], cond["reason"]) == (status, reason) else None


async def test_with_keda_a_load_metric_is_a_scaled_object_and_keda_reports_it(cluster: Cluster) -> None:
    cluster.api.install_keda()
    await cluster.start_operator()
    spec = {**BASE_SPEC, "autoscaling": {"metric": "queueDepth", "targetQueueDepth": 16, "maxReplicas": 4}}
    await cluster.create_model(NAME, spec)
    so = await eventually(lambda: cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME), what="ScaledObject")
    trigger = so["spec"]["triggers"][0]
    assert (
        trigger["metadata"]["query"]
        == f'sum(sentiment_queue_depth{{namespace="{NAMESPACE}",service="demo"}})'
    )
    assert trigger["metadata"]["threshold"] == "16"
    assert cluster.api.live(HPA, NAMESPACE, NAME) is None, "never an HPA beside the ScaledObject"
    deployment = cluster.api.live("apps/v1/deployments", NAMESPACE, NAME)
    assert deployment is not None
    # No KEDA controller runs here: until KEDA reports the ScaledObject Ready, the status says so.
    waiting = await eventually(
        lambda: condition_is(cluster, "Autoscaling", "False", "ScaledObjectNotReady"), what="not ready"
    )
    assert f"waiting for KEDA to report ScaledObject {NAME} Ready" in waiting["message"]
    # Play KEDA's controller: Ready and Active in the ScaledObject's status.
    conditions = [
        {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ok"},
        {"type": "Active", "status": "True", "reason": "ScalerActive", "message": "active"},
    ]
    await cluster.http(
        "PATCH",
        f"{SCALED_OBJECTS_API}/{NAME}/status",
        {"status": {"conditions": conditions}},
        content_type="application/merge-patch+json",
    )
    ready = await eventually(
        lambda: condition_is(cluster, "Autoscaling", "True", "ScaledObjectReady"), what="Autoscaling=True"
    )
    assert ready["message"] == (
        "KEDA scales 1-4 replicas at 16 queued texts per pod (sentiment_queue_depth); active"
    )


async def test_without_keda_a_load_metric_is_an_hpa_pods_metric_that_must_be_served(cluster: Cluster) -> None:
    # The resync timer notices the metrics adapter appearing (discovery changes send no event).
    await cluster.start_operator(timer_interval=0.5, timer_initial_delay=0.5)
    await cluster.create_model(NAME, {**BASE_SPEC, "autoscaling": {"metric": "inFlight"}})
    hpa = await eventually(lambda: cluster.api.live(HPA, NAMESPACE, NAME), what="HPA")
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "sentiment_requests_in_flight"},
                "target": {"type": "AverageValue", "averageValue": "8"},
            },
        }
    ]
    missing = await eventually(
        lambda: condition_is(cluster, "Autoscaling", "False", "MetricNotServed"), what="MetricNotServed"
    )
    assert "sentiment_requests_in_flight" in missing["message"]
    assert "examples/autoscaling/prometheus-adapter.yaml" in missing["message"]
    cluster.api.serve_custom_metrics("sentiment_requests_in_flight")
    served = await eventually(
        lambda: condition_is(cluster, "Autoscaling", "True", "HorizontalPodAutoscalerConfigured"),
        what="the metric served",
    )
    assert served["message"] == "1-10 replicas at 8 requests in flight per pod (sentiment_requests_in_flight)"


def _autoscaler_writes(cluster: Cluster) -> list[tuple[str, str]]:
    """(method, plural) of every write of the operator to an autoscaler, in order."""
    return [
        (str(request.method.value).upper(), str(request.resource.plural))
        for request in cluster.api.requests_log()
        if request.resource is not None
        and request.resource.plural in ("horizontalpodautoscalers", "scaledobjects")
        and str(request.method.value).upper() in ("POST", "PATCH", "DELETE")
        and request.headers.get("User-Agent", "").startswith("sentiment-operator")
    ]


async def test_switching_metrics_deletes_one_autoscaler_before_creating_the_other(cluster: Cluster) -> None:
    cluster.api.install_keda()
    await cluster.start_operator()
    await cluster.create_model(NAME, BASE_SPEC)
    await eventually(lambda: cluster.api.live(HPA, NAMESPACE, NAME), what="the CPU HPA")
    before = len(_autoscaler_writes(cluster))

    await cluster.patch_model(NAME, {"spec": {"autoscaling": {"metric": "inFlight"}}})
    await eventually(lambda: cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME), what="ScaledObject")
    assert cluster.api.live(HPA, NAMESPACE, NAME) is None
    writes = _autoscaler_writes(cluster)[before:]
    assert writes[0] == ("DELETE", "horizontalpodautoscalers"), writes
    assert ("PATCH", "scaledobjects") in writes
    assert not cluster.events(reason="ApplyFailed"), "KEDA's webhook rule never refused the switch"
    await eventually(lambda: cluster.events(reason="Deleted"), what="a Deleted Event for the HPA")

    before = len(_autoscaler_writes(cluster))
    await cluster.patch_model(NAME, {"spec": {"autoscaling": {"metric": "memory"}}})
    hpa = await eventually(lambda: cluster.api.live(HPA, NAMESPACE, NAME), what="the memory HPA")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "memory"
    assert cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME) is None
    writes = _autoscaler_writes(cluster)[before:]
    assert writes[0] == ("DELETE", "scaledobjects"), writes
    await eventually(
        lambda: condition_is(cluster, "Autoscaling", "True", "HorizontalPodAutoscalerConfigured"),
        what="Autoscaling on memory",
    )


async def test_the_wrong_order_is_refused_as_kedas_webhook_does(cluster: Cluster) -> None:
    """Someone else's HPA on the Deployment: the ScaledObject is refused, and the status says so."""
    cluster.api.install_keda()
    await cluster.start_operator()
    await cluster.http(
        "POST",
        f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers",
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "hand-made"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                "maxReplicas": 3,
            },
        },
    )
    await cluster.create_model(NAME, {**BASE_SPEC, "autoscaling": {"metric": "queueDepth"}})
    refused = await eventually(lambda: condition_is(cluster, "Ready", "False", "ApplyFailed"), what="refused")
    assert "already managed by the hpa 'hand-made'" in refused["message"]
    assert cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME) is None


async def test_scale_to_zero_waits_for_keda_and_the_route(cluster: Cluster) -> None:
    await cluster.start_operator(timer_interval=0.5, timer_initial_delay=0.5)
    spec = {
        **BASE_SPEC,
        "autoscaling": {"metric": "inFlight", "minReplicas": 0},
        "routing": {"enabled": True},
    }
    await cluster.create_model(NAME, spec)
    no_keda = await eventually(lambda: condition_is(cluster, "Ready", "False", "InvalidSpec"), what="no KEDA")
    assert no_keda["message"].startswith("spec.autoscaling.minReplicas: 0 needs KEDA")
    await eventually(
        lambda: len(cluster.events(reason="InvalidSpec", type="Warning")) == 1, what="one InvalidSpec Event"
    )
    assert cluster.api.live("apps/v1/deployments", NAMESPACE, NAME) is None, "nothing is built"

    cluster.api.install_keda()

    def invalid_for_the_route() -> Any:
        cond = condition_is(cluster, "Ready", "False", "InvalidSpec")
        return cond if cond and "serves no route" in cond["message"] else None

    no_route = await eventually(invalid_for_the_route, what="no route")
    assert "Istio's VirtualService or Gateway API's HTTPRoute" in no_route["message"]

    cluster.api.install_istio()
    so = await eventually(lambda: cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME), what="ScaledObject")
    assert so["spec"]["minReplicaCount"] == 0
    assert [t["name"] for t in so["spec"]["triggers"]] == ["load", "gateway-requests"]
    assert cluster.api.live(HPA, NAMESPACE, NAME) is None
    deployment = cluster.api.live("apps/v1/deployments", NAMESPACE, NAME)
    assert deployment is not None

    # KEDA scales the idle model to zero: Available says so, and Ready stays True (it wakes on a request).
    await cluster.http(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}",
        {"spec": {"replicas": 0}},
        content_type="application/merge-patch+json",
    )
    await cluster.set_deployment_status(NAME, ready=0, replicas=0)
    idle = await eventually(lambda: condition_is(cluster, "Ready", "True", "ScaledToZero"), what="idle")
    assert "the next request through the gateway wakes a pod" in idle["message"]
    assert condition_is(cluster, "Available", "False", "ScaledToZero")
    model = cluster.model(NAME)
    assert model is not None
    assert model["status"]["replicasSummary"] == "0/0"


async def test_a_scaled_object_held_by_kedas_finalizer_delays_the_hpa(cluster: Cluster) -> None:
    """KEDA puts its finalizer on every ScaledObject: deleted, it stays until KEDA has cleaned up. The HPA
    replacing it waits for it to be gone (the deletion's watch event completes the switch)."""
    cluster.api.install_keda()
    await cluster.start_operator()
    await cluster.create_model(NAME, {**BASE_SPEC, "autoscaling": {"metric": "queueDepth"}})
    await eventually(lambda: cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME), what="ScaledObject")
    finalizer = {"metadata": {"finalizers": ["finalizer.keda.sh"]}}  # as KEDA's controller adds it
    merge = "application/merge-patch+json"
    await cluster.http("PATCH", f"{SCALED_OBJECTS_API}/{NAME}", finalizer, content_type=merge)

    await cluster.patch_model(NAME, {"spec": {"autoscaling": {"metric": "cpu"}}})
    switching = await eventually(
        lambda: condition_is(cluster, "Autoscaling", "False", "AutoscalerSwitching"), what="switching"
    )
    assert f"ScaledObject {NAMESPACE}/{NAME}" in switching["message"]
    terminating = cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME)
    assert terminating is not None
    assert terminating["metadata"]["deletionTimestamp"]
    assert cluster.api.live(HPA, NAMESPACE, NAME) is None, "no HPA while the ScaledObject is still there"

    # KEDA finishes its cleanup and removes its finalizer: the ScaledObject goes, the HPA comes.
    await cluster.http(
        "PATCH", f"{SCALED_OBJECTS_API}/{NAME}", {"metadata": {"finalizers": None}}, content_type=merge
    )
    hpa = await eventually(lambda: cluster.api.live(HPA, NAMESPACE, NAME), what="the HPA after the switch")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert cluster.api.live(SCALED_OBJECT, NAMESPACE, NAME) is None
    await eventually(
        lambda: condition_is(cluster, "Autoscaling", "True", "HorizontalPodAutoscalerConfigured"),
        what="Autoscaling on CPU",
    )
