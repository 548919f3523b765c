"""The committed CRD is generated from the pydantic spec, is a valid structural schema, and agrees with the
pydantic validation: same defaults, and its CEL rules reject what the Python validators reject."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import cel
import jsonschema
import kubernetes_validate
import pytest
import yaml
from builders_support import CRD_FILE, example_files, load_models
from sentiment_operator import crd as crd_module
from sentiment_operator.spec import InvalidSpecError, parse_spec

Schema = dict[str, Any]


def committed() -> Schema:
    loaded: Schema = yaml.safe_load(CRD_FILE.read_text())
    return loaded


def root_schema() -> Schema:
    schema: Schema = committed()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_generated_output() -> None:
    assert CRD_FILE.read_text() == crd_module.render(), (
        "crds/sentimentmodel.yaml is stale: run `python -m sentiment_operator.crd > crds/sentimentmodel.yaml`"
    )


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.utils.latest_version()])
def test_crd_is_a_valid_custom_resource_definition(version: str) -> None:
    kubernetes_validate.validate(committed(), version, strict=True)


def test_names_scope_and_status_subresource() -> None:
    spec = committed()["spec"]
    assert committed()["metadata"]["name"] == "sentimentmodels.serving.sentiment.dev"
    assert spec["group"] == "serving.sentiment.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "SentimentModel",
        "listKind": "SentimentModelList",
        "plural": "sentimentmodels",
        "singular": "sentimentmodel",
        "shortNames": ["sm"],
        "categories": ["sentiment"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    status = root_schema()["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions", "replicas", "readyReplicas", "updatedReplicas"} <= set(status)
    assert {"replicasSummary", "url", "gatewayPath"} <= set(status)
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in committed()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Replicas"]["jsonPath"] == ".status.replicasSummary"
    assert columns["Model"]["jsonPath"] == ".spec.model.id"
    assert columns["Path"]["jsonPath"] == ".status.gatewayPath"
    assert columns["Rollout"]["jsonPath"] == ".status.rollout.summary"
    assert columns["Age"]["type"] == "date"
    assert {name for name, c in columns.items() if c.get("priority") == 1} == {"URL", "Precision", "Reason"}


# --- structural schema rules ------------------------------------------------------------------------


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural() -> None:
    problems = []
    for path, node in walk(root_schema()):
        special = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        if "type" not in node and not special:
            problems.append(f"{path}: no type")
        if "$ref" in node or "title" in node or "$defs" in node:
            problems.append(f"{path}: $ref/title/$defs")
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: anyOf outside int-or-string")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties")
        if isinstance(node.get("additionalProperties"), bool):
            problems.append(f"{path}: boolean additionalProperties")
        if node.get("type") == "object" and not (
            "properties" in node or "additionalProperties" in node or special or path == ".metadata"
        ):
            problems.append(f"{path}: object without properties must preserve unknown fields")
        if node.get("default", 0) is None:
            problems.append(f"{path}: null default")
    assert problems == []


def test_preserved_kubernetes_types() -> None:
    spec = root_schema()["properties"]["spec"]["properties"]
    assert spec["autoscaling"]["properties"]["behavior"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["tolerations"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["env"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["initContainers"]["items"]["required"] == ["name", "image"]
    quantity = spec["resources"]["properties"]["requests"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True


def _to_jsonschema(node: Any) -> Any:
    """Kubernetes-flavoured OpenAPI v3 to JSON Schema; unknown fields fail (pruning would drop them)."""
    if isinstance(node, list):
        return [_to_jsonschema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"
    }
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def test_defaults_are_valid_for_their_own_schema() -> None:
    checked = 0
    for _path, node in walk(root_schema()):
        if "default" in node:
            jsonschema.validate(node["default"], _to_jsonschema(node))
            checked += 1
    assert checked > 30


EXAMPLE_DOCS = [(p.name, doc) for p in example_files() for doc in load_models(p)]


@pytest.mark.parametrize(("name", "doc"), EXAMPLE_DOCS, ids=[d[0] for d in EXAMPLE_DOCS])
def test_examples_validate_against_the_crd_schema(name: str, doc: Schema) -> None:
    jsonschema.validate(doc, _to_jsonschema(root_schema()))


def test_crd_schema_rejects_unknown_and_mistyped_fields() -> None:
    schema = _to_jsonschema(root_schema())
    doc = copy.deepcopy(EXAMPLE_DOCS[0][1])
    doc["spec"] = {"autoscaling": {"minReplica": 1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    doc["spec"] = {"model": {"precision": "fp16"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


# --- defaulting and CEL, evaluated offline ----------------------------------------------------------


def apply_defaults(node: Schema, value: Any) -> Any:
    """What the API server's structural defaulting does (defaults of absent fields, recursively)."""
    if isinstance(value, dict) and "properties" in node:
        out = dict(value)
        for key, sub in node["properties"].items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key])
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [apply_defaults(node["items"], item) for item in value]
    return value


def cel_failures(node: Schema, value: Any, path: str = "spec") -> list[str]:
    """Messages of every x-kubernetes-validations rule that fails anywhere in ``value``."""
    failures = []
    for rule in node.get("x-kubernetes-validations", []):
        if cel.evaluate(rule["rule"], {"self": value}) is not True:
            failures.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in (node.get("properties") or {}).items():
            if key in value:
                failures += cel_failures(sub, value[key], f"{path}.{key}")
    return failures


def spec_node() -> Schema:
    node: Schema = root_schema()["properties"]["spec"]
    return node


def test_all_cel_rules_are_present() -> None:
    rules = [r["rule"] for _, node in walk(root_schema()) for r in node.get("x-kubernetes-validations", [])]
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert "self.weight >= 0 && self.weight <= 100" in rules
    assert any("has(self.image)" in r and "has(self.pvc)" in r and "has(self.download)" in r for r in rules)
    assert "!(has(self.managed) && has(self.external))" in rules
    assert "!has(self.canary) || self.enabled" in rules
    assert any("self.metadata.name" in r for r in rules)


@pytest.mark.parametrize(("name", "doc"), EXAMPLE_DOCS, ids=[d[0] for d in EXAMPLE_DOCS])
def test_crd_defaults_agree_with_pydantic(name: str, doc: Schema) -> None:
    raw = doc.get("spec") or {}
    defaulted = apply_defaults(spec_node(), copy.deepcopy(raw))
    model_name = doc["metadata"]["name"]
    assert parse_spec(model_name, defaulted) == parse_spec(model_name, raw)
    assert cel_failures(spec_node(), defaulted) == []
    for rule in root_schema()["x-kubernetes-validations"]:
        assert cel.evaluate(rule["rule"], {"self": {"metadata": doc["metadata"]}}) is True


def test_empty_spec_defaults_agree_with_pydantic() -> None:
    defaulted = apply_defaults(spec_node(), {})
    assert parse_spec("a", defaulted) == parse_spec("a", {})
    assert defaulted["cache"] == {"enabled": True, "ttlSeconds": 3600}, "managed must stay implicit"
    assert "source" not in defaulted["model"], "source must stay implicit"


# (spec, the failure message fragment CEL must give, the field pydantic must name)
CEL_CASES = [
    (
        {"autoscaling": {"minReplicas": 4, "maxReplicas": 3}},
        "minReplicas must be",
        "spec.autoscaling.minReplicas",
    ),
    ({"model": {"source": {"image": {}, "download": {}}}}, "exactly one of", "spec.model.source.image"),
    ({"model": {"source": {}}}, "exactly one of", "spec.model.source.image"),
    (
        {"cache": {"managed": {}, "external": {"urlSecretRef": {"name": "r", "key": "k"}}}},
        "mutually exclusive",
        "spec.cache.external",
    ),
    ({"routing": {"canary": {"weight": 5}}}, "canary requires routing", "spec.routing.canary"),
    (
        {"autoscaling": {"minReplicas": 0}, "routing": {"enabled": True}},
        "minReplicas 0 needs a load metric",
        "spec.autoscaling.minReplicas",
    ),
    (
        {"autoscaling": {"minReplicas": 0, "metric": "queueDepth"}},
        "minReplicas 0 needs routing enabled",
        "spec.autoscaling.minReplicas",
    ),
    (
        {"server": {"batching": {"maxQueue": 10}}},
        "maxQueue must be at least",
        "spec.server.batching.maxQueue",
    ),
    (
        {"server": {"batching": {"maxQueue": 100}, "limits": {"maxTextsPerRequest": 101}}},
        "maxQueue must be at least",
        "spec.server.batching.maxQueue",
    ),
    (
        {"routing": {"enabled": True, "canary": {"weight": 150}}},
        "weight must be between",
        "spec.routing.canary.weight",
    ),
    (
        {
            "routing": {
                "enabled": True,
                "canary": {"model": {"source": {"pvc": {"claimName": "a"}, "image": {}}}},
            }
        },
        "exactly one of",
        "spec.routing.canary.model.source.image",
    ),
]


CEL_CASES += [
    ({"rollout": {"strategy": "Canary"}}, "it needs routing.enabled", "spec.rollout.strategy"),
    (
        {"rollout": {"strategy": "Canary"}, "routing": {"enabled": True, "canary": {"weight": 5}}},
        "cannot be combined",
        "spec.routing.canary",
    ),
]


@pytest.mark.parametrize(("raw", "message", "field"), CEL_CASES, ids=[c[2] for c in CEL_CASES])
def test_cel_and_pydantic_reject_the_same_specs(raw: Schema, message: str, field: str) -> None:
    failures = cel_failures(spec_node(), apply_defaults(spec_node(), copy.deepcopy(raw)))
    assert any(message in failure for failure in failures), failures
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec("demo", raw)
    assert caught.value.field == field


@pytest.mark.parametrize("name", ["a" * 57, "Upper", "9lives", "trailing-"])
def test_cel_rejects_bad_names(name: str) -> None:
    results = [
        cel.evaluate(rule["rule"], {"self": {"metadata": {"name": name}}})
        for rule in root_schema()["x-kubernetes-validations"]
    ]
    assert False in results
    with pytest.raises(InvalidSpecError):
        parse_spec(name, {})


def test_status_example_validates() -> None:
    status = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidSpec",
                "message": "spec.autoscaling.minReplicas: must be <= maxReplicas",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "replicas": 2,
        "readyReplicas": 1,
        "updatedReplicas": 2,
        "replicasSummary": "1/2",
        "url": "http://a.b.svc.cluster.local:8000/a",
        "gatewayPath": None,
    }
    jsonschema.validate(status, _to_jsonschema(root_schema()["properties"]["status"]))
    status["conditions"][0]["status"] = "Maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(status, _to_jsonschema(root_schema()["properties"]["status"]))


def test_field_reference_lists_every_spec_field() -> None:
    text = crd_module.reference()
    # Items of free-form Kubernetes lists (env, tolerations, initContainers) are documented by Kubernetes.
    paths = [
        path
        for path, _ in walk(spec_node(), "spec")
        if path != "spec"
        and "{}" not in path
        and ("[]" not in path or path.startswith("spec.networkPolicy.allowFrom[]."))
    ]
    assert len(paths) > 60
    assert [path for path in paths if f"| `{path}` |" not in text] == []
    assert "| `spec.autoscaling.minReplicas` | integer (0..) | `1` |" in text
