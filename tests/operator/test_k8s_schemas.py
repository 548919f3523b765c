"""Every rendered object is valid for the real API: kubernetes-validate (1.30 and the newest schema it ships),
the VirtualService against Istio's CRD schema (tests/istio_schema.py) and the ServiceMonitor against the
Prometheus operator's (tests/monitoring_schema.py), both from PyPI packages."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import istio_schema
import kubernetes_validate
import monitoring_schema
import pytest
from builders_support import all_example_objects, children_of, model
from sentiment_operator.builders import Release
from sentiment_operator.spec import parse_spec
from sentiment_operator.traffic import TrafficSplit

K8S_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
EXAMPLE_OBJECTS = list(all_example_objects())

# Specs the examples do not cover, so each builder branch is schema-checked too.
EXTRA_MODELS = [
    model(podSecurity="baseline", cache={"enabled": False}, autoscaling={"enabled": False}, replicas=0),
    model(
        model={"source": {"download": {"revision": "v1"}}},
        initContainers=[{"name": "warm", "image": "busybox:1.36", "command": ["true"]}],
        env=[{"name": "EXTRA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        tolerations=[{"key": "k", "operator": "Exists"}],
        topologySpread=[
            {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
        ],
        disruptionBudget={"maxUnavailable": 2},
        nodeSelector={"pool": "cpu"},
        autoscaling={
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
            "targetMemoryUtilizationPercentage": 75,
        },
    ),
    model(
        routing={"enabled": True, "pathPrefix": "/public", "canary": {"weight": 40}},
        server={"pathPrefix": "/"},
    ),
]
EXTRA_OBJECTS = [("extra", obj) for doc in EXTRA_MODELS for obj in children_of(doc, uid="u-1").objects()]
# A canary rollout's states: mirrored, weighted (with the stable on the old template), rolled back.
ROLLOUT = model(
    name="rolling",
    image="ghcr.io/sentiment-operator/inference:0.2.0",
    routing={"enabled": True},
    monitoring={"interval": "1s", "labels": {"release": "kube-prometheus-stack"}},
    rollout={"strategy": "Canary", "mirrorPercent": 30, "interval": "2s"},
)
OLD = parse_spec("rolling", {**ROLLOUT["spec"], "image": "ghcr.io/sentiment-operator/inference:0.1.0"})
RELEASES = [
    Release(stable_spec=OLD, canary="serving", split=TrafficSplit(mirror=30)),
    Release(stable_spec=OLD, canary="serving", split=TrafficSplit(75, 25)),
    Release(stable_spec=OLD, canary="scaled-down"),
]
EXTRA_OBJECTS += [
    (f"rollout-{index}", obj)
    for index, release in enumerate(RELEASES)
    for obj in children_of(ROLLOUT, uid="u-2", release=release).objects()
]
ALL_OBJECTS = EXAMPLE_OBJECTS + EXTRA_OBJECTS
# Kinds of add-ons' CRDs, which kubernetes-validate does not know: checked against their own schemas below.
ADD_ON_KINDS = ("VirtualService", "ServiceMonitor")


def _id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


def test_there_is_something_to_validate() -> None:
    kinds = {obj["kind"] for _, obj in ALL_OBJECTS}
    expected = {
        "Deployment",
        "Service",
        "Secret",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "VirtualService",
        "ServiceMonitor",
    }
    assert kinds == expected


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", [i for i in ALL_OBJECTS if i[1]["kind"] not in ADD_ON_KINDS], ids=_id)
def test_kubernetes_schema(item: tuple[str, dict[str, Any]], version: str) -> None:
    kubernetes_validate.validate(item[1], version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_validator_rejects_a_broken_object(version: str) -> None:
    """The check above can fail: a misspelled field and a wrong type are caught."""
    deployment = next(
        obj
        for _, obj in EXAMPLE_OBJECTS
        if obj["kind"] == "Deployment" and "rollingUpdate" in obj["spec"]["strategy"]
    )
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


VIRTUAL_SERVICES = [i for i in ALL_OBJECTS if i[1]["kind"] == "VirtualService"]


@pytest.mark.parametrize("item", VIRTUAL_SERVICES, ids=_id)
def test_virtual_service_matches_the_istio_crd(item: tuple[str, dict[str, Any]]) -> None:
    obj = item[1]
    istio_schema.validate(obj)
    # Checked as ObjectMeta (labels, ownerReferences) by the Kubernetes schema too, via a carrier kind.
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, "1.30.0", strict=True
    )


def test_virtual_services_are_rendered() -> None:
    assert len(VIRTUAL_SERVICES) >= 4
    mirrored = [obj for _, obj in VIRTUAL_SERVICES if "mirror" in obj["spec"]["http"][0]]
    assert mirrored, "the mirrored step is schema-checked too"


SERVICE_MONITORS = [i for i in ALL_OBJECTS if i[1]["kind"] == "ServiceMonitor"]


@pytest.mark.parametrize("item", SERVICE_MONITORS, ids=_id)
def test_service_monitor_matches_the_prometheus_operator_crd(item: tuple[str, dict[str, Any]]) -> None:
    obj = item[1]
    monitoring_schema.validate(obj)
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, "1.30.0", strict=True
    )


def _broken_monitor(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(SERVICE_MONITORS[0][1])
    monitoring_schema.validate(obj)  # valid before the change, so the change is what is refused
    change(obj)
    return obj


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (
            lambda o: o["spec"]["endpoints"][0].update(intervall="5s"),
            r"endpoints\[0\]\.intervall: unknown field",
        ),
        (lambda o: o["spec"]["endpoints"][0]["relabelings"][0].update(action="Rename"), r"action"),
        (lambda o: o["spec"]["endpoints"][0].update(honorLabels="yes"), r"honorLabels"),
        (lambda o: o["spec"].pop("selector"), r"selector\s+Field required"),
        (
            lambda o: o.update(kind="ServiceMonitorr"),
            r"no schema for monitoring.coreos.com/v1 ServiceMonitorr",
        ),
    ],
    ids=["unknown field", "bad enum", "wrong type", "missing required", "unknown kind"],
)
def test_monitoring_schema_is_strict(change: Callable[[dict[str, Any]], None], refused: str) -> None:
    with pytest.raises(monitoring_schema.MonitoringSchemaError, match=refused):
        monitoring_schema.validate(_broken_monitor(change))


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(VIRTUAL_SERVICES[0][1])
    istio_schema.validate(obj)  # valid before the change, so the change is what is refused
    change(obj)
    return obj


def _route(obj: dict[str, Any]) -> dict[str, Any]:
    route: dict[str, Any] = obj["spec"]["http"][0]["route"][0]
    return route


def test_istio_schema_rejects_an_unknown_field() -> None:
    obj = _broken(lambda o: o["spec"]["http"][0].update(rout=[]))
    with pytest.raises(istio_schema.IstioSchemaError, match=r"http\[0\]\.rout: unknown field"):
        istio_schema.validate(obj)


def test_istio_schema_rejects_an_unknown_field_deep_inside() -> None:
    obj = _broken(lambda o: _route(o)["destination"].update(hostname="x"))
    with pytest.raises(istio_schema.IstioSchemaError, match=r"destination\.hostname: unknown field"):
        istio_schema.validate(obj)


def test_istio_schema_rejects_a_wrong_type() -> None:
    obj = _broken(lambda o: _route(o).update(weight="ninety"))
    with pytest.raises(istio_schema.IstioSchemaError, match=r"weight"):
        istio_schema.validate(obj)


def test_istio_schema_rejects_a_value_it_would_have_to_coerce() -> None:
    obj = _broken(lambda o: _route(o).update(weight="90"))
    with pytest.raises(istio_schema.IstioSchemaError, match=r"weight: '90' is read as 90"):
        istio_schema.validate(obj)


def test_istio_schema_rejects_a_missing_required_field() -> None:
    obj = _broken(lambda o: _route(o)["destination"].pop("host"))
    with pytest.raises(istio_schema.IstioSchemaError, match=r"destination\.host\s+Field required"):
        istio_schema.validate(obj)


def test_istio_schema_rejects_a_kind_it_does_not_know() -> None:
    obj = _broken(lambda o: o.update(apiVersion="networking.istio.io/v1alpha9"))
    with pytest.raises(
        istio_schema.IstioSchemaError, match=r"no schema for networking\.istio\.io/v1alpha9 VirtualService"
    ):
        istio_schema.validate(obj)
