"""Custom resources against
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
("Field pruning", "Defaulting", "Validation rules"), on the project's own CRD
(apiserver/structural.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sentiment_devcluster.apiserver.schema import TypeInfo
from sentiment_devcluster.apiserver.structural import Invalid, prune, store

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "sentimentmodel.yaml").read_text())
SCHEMA: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def model(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": spec,
        **extra,
    }


def test_unknown_fields_are_pruned_spec_status_and_metadata() -> None:
    """ "Field pruning": fields the structural schema does not specify are dropped, in status too; metadata
    keeps only its own fields."""
    stored = store(
        model(
            {"replicas": 2, "replicaz": 3, "server": {"pathPrefix": "/x", "typo": 1}},
            status={"observedGeneration": 1, "made": "up"},
            metadata={"name": "m", "labels": {"a": "b"}, "bogus": 1},
            extra="top",
        ),
        SCHEMA,
    )
    assert "replicaz" not in stored["spec"]
    assert "typo" not in stored["spec"]["server"]
    assert stored["status"] == {"observedGeneration": 1}
    assert stored["metadata"] == {"name": "m", "labels": {"a": "b"}}
    assert "extra" not in stored


def test_preserve_unknown_fields_keeps_what_is_below() -> None:
    schema = {
        "type": "object",
        "properties": {"free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    assert prune({"free": {"any": {"thing": 1}}, "gone": 1}, schema) == {"free": {"any": {"thing": 1}}}


def test_schema_defaults_are_set() -> None:
    """ "Defaulting": missing fields with a ``default`` are set after pruning."""
    stored = store(model({}), SCHEMA)
    spec_schema = SCHEMA["properties"]["spec"]["properties"]
    defaulted = [key for key, sub in spec_schema.items() if "default" in sub]
    assert defaulted
    for key in defaulted:
        default = spec_schema[key]["default"]
        if isinstance(default, dict):
            assert default.items() <= stored["spec"][key].items(), key
        else:
            assert stored["spec"][key] == default, key
    # Defaults apply below a defaulted object too (a default {} is then filled by its properties' defaults).
    model_id = spec_schema["model"]["properties"]["id"]["default"]
    assert stored["spec"]["model"]["id"] == model_id


def test_cel_rules_are_enforced() -> None:
    """ "Validation rules": a rule that evaluates to false rejects the write with its message."""
    with pytest.raises(Invalid, match="exactly one of image, pvc or download must be set"):
        store(model({"model": {"source": {"image": {}, "pvc": {"claimName": "c"}}}}), SCHEMA)
    with pytest.raises(Invalid, match="minReplicas must be less than or equal to maxReplicas"):
        store(model({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}), SCHEMA)


def test_a_valid_model_is_stored_whole() -> None:
    spec = {"replicas": 1, "model": {"id": "x"}}
    stored = store(model(spec), SCHEMA)
    assert stored["spec"]["replicas"] == 1
    assert stored["spec"]["model"]["id"] == "x"


def test_crd_list_types_come_from_the_schema() -> None:
    info = TypeInfo("SentimentModel", crd_schema=SCHEMA)
    assert info.list_type(("status", "conditions")).keys == ("type",)
    assert info.list_type(("spec", "tolerations")).atomic


def test_the_openapi_schema_is_enforced() -> None:
    """ "Validation": types, enums and bounds of the schema are checked (422) after pruning and defaulting."""
    with pytest.raises(Invalid, match=r"spec\.model\.precision: Invalid value: 'fp16' is not one of"):
        store(model({"model": {"precision": "fp16"}}), SCHEMA)
    with pytest.raises(Invalid, match=r"spec\.replicas: Invalid value: 'two' is not of type 'integer'"):
        store(model({"replicas": "two"}), SCHEMA)
    # A CRD without these checks stores what it is given (minus unknown fields).
    assert store(model({"replicas": "two"}), SCHEMA, validate=False)["spec"]["replicas"] == "two"
