"""Every rendered object is valid for the real API: kubernetes-validate (1.30 and the newest schema it ships),
and the VirtualService against the Istio CRD's own openAPIV3Schema."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from builders_support import ISTIO_SCHEMAS, all_example_objects, children_of, model

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
ALL_OBJECTS = EXAMPLE_OBJECTS + EXTRA_OBJECTS


def _id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


def test_there_is_something_to_validate() -> None:
    kinds = {obj["kind"] for _, obj in ALL_OBJECTS}
    expected = {
        "Deployment",
        "Service",
        "Secret",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "VirtualService",
    }
    assert kinds == expected


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", [i for i in ALL_OBJECTS if i[1]["kind"] != "VirtualService"], ids=_id)
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


def _istio_virtual_service_schema(api_version: str) -> dict[str, Any]:
    path = ISTIO_SCHEMAS / "virtualservices.networking.istio.io.yaml"
    # Not a skip: CI must fail when the schema is missing.
    assert path.is_file(), f"Istio VirtualService CRD schema missing at {path}"
    crd = yaml.safe_load(path.read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert served["served"], f"{api_version} is not served by the Istio CRD"
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def _strict(schema: Any) -> Any:
    """Reject unknown fields like the API server's pruning would (silently dropped = a bug for us)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


VIRTUAL_SERVICES = [i for i in ALL_OBJECTS if i[1]["kind"] == "VirtualService"]


@pytest.mark.parametrize("item", VIRTUAL_SERVICES, ids=_id)
def test_virtual_service_matches_the_istio_crd(item: tuple[str, dict[str, Any]]) -> None:
    obj = item[1]
    schema = _strict(_istio_virtual_service_schema(obj["apiVersion"]))
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"type": "string"}
    schema["properties"]["kind"] = {"type": "string"}
    jsonschema.validate(obj, schema)
    # The CRD leaves metadata open; check it as ObjectMeta (labels, ownerReferences) via a carrier kind.
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, "1.30.0", strict=True
    )


def test_virtual_services_are_rendered() -> None:
    assert len(VIRTUAL_SERVICES) >= 4


def test_istio_schema_check_can_fail() -> None:
    obj = copy.deepcopy(VIRTUAL_SERVICES[0][1])
    obj["spec"]["http"][0]["route"][0]["weight"] = "ninety"
    schema = _strict(_istio_virtual_service_schema(obj["apiVersion"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, schema)
    obj = copy.deepcopy(VIRTUAL_SERVICES[0][1])
    obj["spec"]["http"][0]["rout"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, schema)
