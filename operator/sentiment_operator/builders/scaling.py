"""The autoscaler of a server Deployment: an HPA (resource or Pods metrics) or KEDA's ScaledObject, and the
PromQL KEDA runs.

Load metrics (``queueDepth``, ``inFlight``) are per-pod gauges the server exports. With KEDA they reach the
HPA KEDA creates through a Prometheus trigger summing the gauge over the model's pods (``AverageValue``: the
HPA divides by the pod count, so the threshold is the per-pod target). Without KEDA they are an HPA ``Pods``
metric, which a metrics adapter must serve (``examples/autoscaling/prometheus-adapter.yaml``).

Scale to zero needs a signal that exists while no pod runs: the server's own series vanish with its last
pod, so a second trigger watches the requests of the model's route at the gateway (a function of the
routing provider, :data:`ACTIVATION_QUERIES`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ..names import ANNOTATION_KEDA_HPA_EXCLUDED_LABELS, labels
from ..spec import RoutingProvider, SentimentModelSpec
from ..spec.scaling import LOAD_METRIC_SERIES
from .common import Manifest, metadata

# KEDA trigger names (shown in the external metric names of KEDA's HPA: s0-queue-depth, ...).
LOAD_TRIGGER: Final = "load"
ACTIVATION_TRIGGER: Final = "gateway-requests"
# The activation trigger only wakes the model (active while the route saw a request in the window); its
# threshold is a request count per pod no pod reaches, so it never asks for more than one pod: the load
# trigger sizes the Deployment.
ACTIVATION_WINDOW: Final = "1m"
ACTIVATION_ONLY_THRESHOLD: Final = "1000000"


def load_query(metric: str, namespace: str, service: str) -> str:
    """PromQL of KEDA's load trigger: the gauge summed over the pods behind one Service (labels as the
    ServiceMonitor in examples/monitoring sets them); KEDA's HPA divides it by the pod count."""
    series = LOAD_METRIC_SERIES[metric]
    return f'sum({series}{{namespace="{namespace}",service="{service}"}})'


def recent_requests(series: str) -> str:
    """PromQL: requests counted by the counter selector ``series`` in the last window, 0 when there were
    none (so the trigger has a value while no pod runs). A counter series born inside the window (the first
    503 of a route at zero pods) counts in full: ``increase`` alone needs two samples of a series, and would
    miss the very request that should wake the model."""
    window = ACTIVATION_WINDOW
    return (
        f"(sum(increase({series}[{window}])) or vector(0))"
        f" + (sum({series} unless {series} offset {window}) or vector(0))"
    )


def istio_requests(namespace: str, service: str) -> str:
    """Requests Istio's proxies (the ingress gateway among them) sent to the Service, counted on the client
    side (``reporter="source"``), so they count while the Service has no pod (answered 503 "no healthy
    upstream")."""
    return recent_requests(
        "istio_requests_total{"
        f'reporter="source",destination_service_namespace="{namespace}",destination_service_name="{service}"'
        "}"
    )


# Routing provider -> the PromQL of the requests its gateway sent to a Service (namespace, service) lately.
# Only these providers can wake a model at zero pods; another provider adds its own entry.
ACTIVATION_QUERIES: Final[Mapping[RoutingProvider, Callable[[str, str], str]]] = {"istio": istio_requests}


def activation_query(provider: RoutingProvider, namespace: str, service: str) -> str:
    """PromQL that is above zero while the route of ``service`` receives requests, even at zero pods
    (the requests of the last window)."""
    return ACTIVATION_QUERIES[provider](namespace, service)


def hpa_metrics(spec: SentimentModelSpec) -> list[dict[str, Any]]:
    """The ``metrics`` of an autoscaling/v2 HPA: resource utilization (cpu and/or memory), or the server's
    load gauge as a ``Pods`` metric (served by a metrics adapter under the gauge's own name)."""
    auto = spec.autoscaling
    if auto.load_metric:
        return [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": auto.load_series},
                    "target": {"type": "AverageValue", "averageValue": str(auto.load_target)},
                },
            }
        ]
    metrics: list[dict[str, Any]] = []
    if auto.metric == "cpu":
        metrics.append(_utilization("cpu", auto.target_cpu_utilization_percentage))
    if auto.memory_target is not None:
        metrics.append(_utilization("memory", auto.memory_target))
    return metrics


def _utilization(resource: str, percent: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": percent}},
    }


def scaled_object(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    *,
    obj_name: str,
    component: str,
    uid: str | None,
    provider: RoutingProvider | None = None,
) -> Manifest:
    """KEDA's ScaledObject for Deployment ``obj_name`` (stable or canary): the load trigger, plus the
    gateway activation trigger of the routing ``provider`` when the spec scales to zero. KEDA creates and
    owns the HPA itself (``keda-hpa-<name>``); the operator never renders one beside it."""
    auto = spec.autoscaling
    address = auto.prometheus.server_address
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "name": LOAD_TRIGGER,
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": address,
                "query": load_query(auto.metric, namespace, obj_name),
                "threshold": str(auto.load_target),
            },
        }
    ]
    if auto.min_replicas == 0:
        assert provider is not None, "scale to zero is refused without a routing provider (check_cluster)"
        triggers.append(
            {
                "type": "prometheus",
                "name": ACTIVATION_TRIGGER,
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": address,
                    "query": activation_query(provider, namespace, obj_name),
                    "threshold": ACTIVATION_ONLY_THRESHOLD,
                    "activationThreshold": "0",
                },
            }
        )
    meta = metadata(obj_name, namespace, name, component, uid)
    # KEDA copies a ScaledObject's labels onto its HPA: without ours there, that HPA is not mistaken for
    # one of our children (watched, listed for pruning).
    meta["annotations"] = {ANNOTATION_KEDA_HPA_EXCLUDED_LABELS: ",".join(sorted(labels(name, component)))}
    so_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": obj_name},
        "minReplicaCount": auto.min_replicas,
        "maxReplicaCount": auto.max_replicas,
        "triggers": triggers,
    }
    if auto.behavior is not None:
        so_spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": dict(auto.behavior)}}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta, "spec": so_spec}
