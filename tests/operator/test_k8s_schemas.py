"""Every rendered object is valid for the real API: kubernetes-validate (1.30 and the newest schema it ships),
the VirtualService against Istio's CRD schema (tests/istio_schema.py), the ScaledObject against KEDA's
(tests/keda_schema.py) and the ServiceMonitor against the Prometheus operator's (tests/monitoring_schema.py),
all from PyPI packages, the HTTPRoute against Gateway API's (tests/gateway_api_schema.py, from an npm
package); each validator proven strict."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import crd_models
import gateway_api_schema
import istio_schema
import keda_schema
import kubernetes_validate
import monitoring_schema
import pytest
from builders_support import all_example_objects, children_of, model
from sentiment_operator.builders import Release, routing
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
    model(
        routing={
            "enabled": True,
            "provider": "gatewayAPI",
            "pathPrefix": "/public",
            "hosts": ["api.example.com", "*.example.org"],
            "gateways": ["gw", "infra/shared-gateway"],
            "canary": {"weight": 40},
        },
        server={"pathPrefix": "/"},
        networkPolicy={
            "gateway": {
                "namespaceSelector": {"matchExpressions": [{"key": "gateway", "operator": "Exists"}]},
                "podSelector": {"matchLabels": {"app": "proxy"}},
            }
        },
    ),
    model(routing={"enabled": True, "provider": "gatewayAPI", "pathPrefix": "/"}),
]
# Load-metric autoscalers on a cluster with KEDA (ScaledObjects, the canary's too) and without (HPA Pods).
LOAD_MODELS = [
    model(
        autoscaling={"metric": "queueDepth", "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
        routing={"enabled": True, "canary": {"weight": 20}},
    ),
    model(autoscaling={"metric": "inFlight", "minReplicas": 0}, routing={"enabled": True}),
]
EXTRA_OBJECTS = [
    *(("extra", obj) for doc in EXTRA_MODELS for obj in children_of(doc, uid="u-1").objects()),
    *(("load", obj) for doc in LOAD_MODELS for obj in children_of(doc, uid="u-1", keda=True).objects()),
    *(("load", obj) for doc in LOAD_MODELS[:1] for obj in children_of(doc, uid="u-1", keda=False).objects()),
]
# A canary rollout's states: mirrored, weighted (with the stable on the old template), rolled back; through
# Istio and through Gateway API (the HTTPRoute's weighted backendRefs and its RequestMirror filter).
ROLLOUT_SPEC: dict[str, Any] = {
    "image": "ghcr.io/sentiment-operator/inference:0.2.0",
    "monitoring": {"interval": "1s", "labels": {"release": "kube-prometheus-stack"}},
    "rollout": {"strategy": "Canary", "mirrorPercent": 30, "interval": "2s"},
}
ROLLOUTS = [
    model(name="rolling", routing={"enabled": True}, **ROLLOUT_SPEC),
    model(name="rolling-gw", routing={"enabled": True, "provider": "gatewayAPI"}, **ROLLOUT_SPEC),
]


def releases(doc: dict[str, Any]) -> list[Release]:
    name = doc["metadata"]["name"]
    old = parse_spec(name, {**doc["spec"], "image": "ghcr.io/sentiment-operator/inference:0.1.0"})
    return [
        Release(stable_spec=old, canary="serving", split=TrafficSplit(mirror=30)),
        Release(stable_spec=old, canary="serving", split=TrafficSplit(75, 25)),
        Release(stable_spec=old, canary="scaled-down"),
    ]


EXTRA_OBJECTS += [
    (f"rollout-{index}", obj)
    for doc in ROLLOUTS
    for index, release in enumerate(releases(doc))
    for obj in children_of(doc, uid="u-2", release=release).objects()
]
ALL_OBJECTS = EXAMPLE_OBJECTS + EXTRA_OBJECTS
# Each custom resource against its own project's CRD schema (a PyPI package, strict).
CRD_VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "VirtualService": istio_schema.validate,
    "ScaledObject": keda_schema.validate,
}
# Kinds of add-ons' CRDs, which kubernetes-validate does not know: checked against their own schemas.
ADD_ON_KINDS = (*CRD_VALIDATORS, "HTTPRoute", "ServiceMonitor")


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
        "HTTPRoute",
        "ScaledObject",
        "ServiceMonitor",
    }
    assert kinds == expected
    pods_metrics = [
        metric
        for _, obj in ALL_OBJECTS
        if obj["kind"] == "HorizontalPodAutoscaler"
        for metric in obj["spec"]["metrics"]
        if metric["type"] == "Pods"
    ]
    assert pods_metrics, "an HPA Pods metric (load metric without KEDA) should be schema-checked"


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


# The mirror is not reachable from a spec yet (a rollout's mirrored step will ask for it): rendered directly.
MIRRORED = routing.route_intent(
    "demo",
    "default",
    parse_spec("demo", {"routing": {"enabled": True, "pathPrefix": "/p", "canary": {}}}),
    TrafficSplit(mirror=25),
)
MIRRORED_VIRTUAL_SERVICE = ("mirror", routing.virtual_service(MIRRORED, "u-1", "cluster.local"))
VIRTUAL_SERVICES = [i for i in ALL_OBJECTS if i[1]["kind"] == "VirtualService"] + [MIRRORED_VIRTUAL_SERVICE]


@pytest.mark.parametrize(
    "item", [i for i in [*ALL_OBJECTS, MIRRORED_VIRTUAL_SERVICE] if i[1]["kind"] in CRD_VALIDATORS], ids=_id
)
def test_custom_resource_matches_its_projects_crd(item: tuple[str, dict[str, Any]]) -> None:
    obj = item[1]
    CRD_VALIDATORS[obj["kind"]](obj)
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
            r"no Prometheus operator schema for monitoring\.coreos\.com/v1 ServiceMonitorr",
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
    refused = r"no Istio schema for networking\.istio\.io/v1alpha9 VirtualService"
    with pytest.raises(istio_schema.IstioSchemaError, match=refused):
        istio_schema.validate(obj)


# --- Gateway API ----------------------------------------------------------------------------------------

HTTP_ROUTES = [i for i in ALL_OBJECTS if i[1]["kind"] == "HTTPRoute"] + [
    ("mirror", routing.http_route(MIRRORED, "u-1"))
]


def test_http_routes_are_rendered() -> None:
    assert len(HTTP_ROUTES) >= 4
    filters = {f["type"] for _, route in HTTP_ROUTES for f in route["spec"]["rules"][0].get("filters", [])}
    assert filters == {"URLRewrite", "RequestMirror"}
    assert any(
        "weight" in ref for _, route in HTTP_ROUTES for ref in route["spec"]["rules"][0]["backendRefs"]
    )


def test_http_routes_match_the_gateway_api_schema() -> None:
    found = gateway_api_schema.problems([obj for _, obj in HTTP_ROUTES])
    assert {_id(item): p for item, p in zip(HTTP_ROUTES, found, strict=True) if p} == {}
    for _, obj in HTTP_ROUTES:  # ObjectMeta (labels, ownerReferences) by the Kubernetes schema too
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, "1.30.0", strict=True
        )


def _http_route(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(HTTP_ROUTES[-1][1])
    gateway_api_schema.validate(obj)  # valid before the change, so the change is what is refused
    change(obj)
    return obj


SCALED_OBJECTS = [i for i in ALL_OBJECTS if i[1]["kind"] == "ScaledObject"]


def test_scaled_objects_are_rendered_with_and_without_activation() -> None:
    triggers = [len(obj["spec"]["triggers"]) for _, obj in SCALED_OBJECTS]
    assert sorted(set(triggers)) == [1, 2], triggers
    assert any(obj["metadata"]["name"].endswith("-canary") for _, obj in SCALED_OBJECTS)


def _broken_scaled_object(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(next(o for _, o in SCALED_OBJECTS if len(o["spec"]["triggers"]) == 2))
    keda_schema.validate(obj)  # valid before the change, so the change is what is refused
    change(obj)
    return obj


def _rule(obj: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = obj["spec"]["rules"][0]
    return rule


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda o: o["spec"].update(rule=[]), r"/spec/rule: unknown field"),
        (lambda o: _rule(o).update(backendRef=[]), r"/spec/rules/0/backendRef: unknown field"),
        (
            lambda o: _rule(o)["filters"][-1]["requestMirror"]["backendRef"].update(namespce="x"),
            r"requestMirror/backendRef/namespce: unknown field",
        ),
        (lambda o: o["metadata"].update(lables={}), r"/metadata/lables: unknown field"),
        (lambda o: _rule(o)["backendRefs"][0].update(weight="90"), r"backendRefs/0/weight: type"),
        (lambda o: _rule(o)["filters"][-1]["requestMirror"].update(percent=101), r"percent: maximum"),
        (lambda o: _rule(o)["matches"][0]["path"].update(type="Prefix"), r"path/type: enum"),
        (lambda o: _rule(o)["filters"][0].update(type="Rewrite"), r"filters/0/type: enum"),
        (lambda o: o["spec"]["parentRefs"][0].pop("name"), r"parentRefs/0: required .*name"),
        (lambda o: _rule(o)["filters"][0]["urlRewrite"]["path"].pop("type"), r"path: required .*type"),
        (lambda o: o.update(apiVersion="gateway.networking.k8s.io/v9"), r"no Gateway API schema"),
    ],
    ids=[
        "unknown-field",
        "unknown-field-in-a-rule",
        "unknown-field-deep-inside",
        "unknown-field-in-metadata",
        "wrong-type",
        "out-of-bounds",
        "bad-enum",
        "bad-enum-of-a-filter",
        "missing-required",
        "missing-required-deep-inside",
        "unknown-kind",
    ],
)
def test_gateway_api_schema_is_strict(change: Callable[[dict[str, Any]], None], problem: str) -> None:
    """The check above can fail: each kind of mistake is refused, naming where it is."""
    obj = _http_route(change)
    with pytest.raises(gateway_api_schema.GatewayApiSchemaError, match=problem):
        gateway_api_schema.validate(obj)


def test_gateway_api_schema_accepts_map_keys_and_every_known_field() -> None:
    """Labels are a map (any key is known), and optional fields the schema declares are not 'unknown'."""
    obj = _http_route(lambda o: o["metadata"]["labels"].update({"team.example.com/owner": "ml"}))
    _rule(obj)["timeouts"] = {"request": "10s"}
    obj["spec"]["parentRefs"][0]["sectionName"] = "http"
    gateway_api_schema.validate(obj)


def test_keda_schema_rejects_an_unknown_field() -> None:
    obj = _broken_scaled_object(lambda o: o["spec"].update(minReplicas=0))
    with pytest.raises(keda_schema.KedaSchemaError, match=r"spec\.minReplicas: unknown field"):
        keda_schema.validate(obj)


def test_keda_schema_rejects_an_unknown_field_deep_inside() -> None:
    obj = _broken_scaled_object(lambda o: o["spec"]["triggers"][0].update(metricsType="Value"))
    with pytest.raises(keda_schema.KedaSchemaError, match=r"triggers\[0\]\.metricsType: unknown field"):
        keda_schema.validate(obj)


def test_keda_schema_rejects_a_wrong_type() -> None:
    obj = _broken_scaled_object(lambda o: o["spec"]["triggers"][0]["metadata"].update(threshold=8))
    with pytest.raises(keda_schema.KedaSchemaError, match=r"threshold"):
        keda_schema.validate(obj)


def test_keda_schema_rejects_a_value_it_would_have_to_coerce() -> None:
    obj = _broken_scaled_object(lambda o: o["spec"].update(maxReplicaCount="8"))
    with pytest.raises(keda_schema.KedaSchemaError, match=r"maxReplicaCount: '8' is read as 8"):
        keda_schema.validate(obj)


def test_keda_schema_rejects_a_bad_enum() -> None:
    """KEDA's CRD has few enums (a trigger's metricType is a free string there, parsed by KEDA later):
    its kind is one, and the model enforces it."""
    obj = _broken_scaled_object(lambda o: o.update(kind="ScaledJob"))
    found = crd_models.problems(keda_schema.MODELS["keda.sh/v1alpha1", "ScaledObject"], obj)
    (problem,) = found
    assert "kind" in problem
    assert "'ScaledObject'" in problem


def test_keda_schema_rejects_a_missing_required_field() -> None:
    obj = _broken_scaled_object(lambda o: o["spec"]["scaleTargetRef"].pop("name"))
    with pytest.raises(keda_schema.KedaSchemaError, match=r"scaleTargetRef\.name\s+Field required"):
        keda_schema.validate(obj)


def test_keda_schema_rejects_a_kind_it_does_not_know() -> None:
    obj = _broken_scaled_object(lambda o: o.update(kind="ScaledJobs"))
    with pytest.raises(keda_schema.KedaSchemaError, match="no KEDA schema"):
        keda_schema.validate(obj)
