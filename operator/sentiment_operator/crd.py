"""Generate the SentimentModel CustomResourceDefinition from the pydantic spec (one source of truth).

``python -m sentiment_operator.crd > crds/sentimentmodel.yaml``; a test checks the committed file is current.
``python -m sentiment_operator.crd --reference`` prints a Markdown table of every spec field for the docs.

pydantic's JSON schema becomes a Kubernetes *structural* schema: ``$ref`` inlined, ``Optional`` unwrapped
(absent or null means "use the default"; the API server prunes nulls of non-nullable fields), free-form
Kubernetes types marked ``x-kubernetes-preserve-unknown-fields``, object defaults reduced to what the leaf
defaults do not already supply, and the models' CEL rules kept as ``x-kubernetes-validations``.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import yaml

from .names import GROUP, KIND, LABEL_NAME, LABEL_PART_OF, MANAGED_BY, PLURAL, VERSION
from .spec import (
    MAX_NAME_LENGTH,
    SHORT_NAMES,
    SINGULAR,
    SentimentModelSpec,
)
from .status import Condition
from .status_model import SentimentModelStatus

Schema = dict[str, Any]

_DROP_KEYS = frozenset({"title"})
_KEY_ORDER = ("type", "description", "default", "required", "properties")

_READY = Condition.READY.value
PRINTER_COLUMNS: list[Schema] = [
    {
        "name": _READY,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{_READY}")].status',
    },
    {"name": "Replicas", "type": "string", "jsonPath": ".status.replicasSummary"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.id"},
    {"name": "Path", "type": "string", "jsonPath": ".status.gatewayPath"},
    {"name": Condition.ROLLOUT.value, "type": "string", "jsonPath": ".status.rollout.summary"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
    {"name": "Precision", "type": "string", "jsonPath": ".spec.model.precision", "priority": 1},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{_READY}")].reason',
        "priority": 1,
    },
]

ROOT_VALIDATIONS: list[Schema] = [
    {
        "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
        "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters (child names add suffixes)",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must be a DNS-1035 label (it names Services)",
    },
]


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline a $ref (sibling keys such as description/default win) and unwrap ``X | None``."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = defs[ref.rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [member for member in any_of if member != {"type": "null"}]
        if len(non_null) != len(any_of):
            del node["anyOf"]
            if node.get("default", "x") is None:
                del node["default"]
            if len(non_null) == 1:
                inner = _resolve(non_null[0], defs)
                node = {**inner, **{k: v for k, v in node.items() if k not in inner or k == "description"}}
            else:
                node["anyOf"] = non_null
    return node


def _minimal_default(schema: Schema, value: Any) -> Any:
    """Drop the parts of an object default that the nested defaults of ``schema`` already produce."""
    properties = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(properties, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        sub = properties.get(key)
        if sub is None:
            out[key] = item
            continue
        if "default" not in sub and "properties" in sub:
            # An optional sub-object without a CRD default: absent means "pydantic's default" already.
            continue
        reduced = _minimal_default(sub, item)
        if "default" in sub and sub["default"] == reduced:
            continue
        if isinstance(reduced, dict) and not reduced and sub.get("type") == "object" and "default" in sub:
            continue
        out[key] = reduced
    return out


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Convert one pydantic JSON-schema node (and its children) into a structural Kubernetes schema node."""
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = structural(value, defs)
            # False: structural schemas forbid it (unknown fields are pruned anyway). True: see below.
        elif key == "anyOf":
            out[key] = [structural(member, defs) for member in value]
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        # A free-form Kubernetes object (HPA behavior, tolerations): keep it as the user wrote it.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "default" in out:
        out["default"] = _minimal_default(out, out["default"])
    first = [key for key in _KEY_ORDER if key in out]
    return {**{key: out[key] for key in first}, **{k: v for k, v in out.items() if k not in first}}


def status_schema() -> Schema:
    """The structural openAPIV3Schema of ``.status``, from :class:`status_model.SentimentModelStatus`."""
    raw = SentimentModelStatus.model_json_schema(by_alias=True, mode="serialization")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def spec_schema() -> Schema:
    """The structural openAPIV3Schema of ``.spec``."""
    raw = SentimentModelSpec.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = structural(raw, defs)
    schema["default"] = {}
    return schema


def crd() -> Schema:
    """The complete CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {LABEL_NAME: MANAGED_BY, LABEL_PART_OF: MANAGED_BY},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["sentiment"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A sentiment-analysis service: server Deployment, Service, "
                            "optional Redis cache, HPA, Istio route and NetworkPolicies.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": copy.deepcopy(ROOT_VALIDATIONS),
                        }
                    },
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    """The CRD as YAML, exactly as committed in crds/sentimentmodel.yaml."""
    header = (
        "# Generated by `python -m sentiment_operator.crd` from sentiment_operator/spec.py; do not edit.\n"
    )
    return header + yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=110)


def _type_of(node: Schema) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"list of {_type_of(node.get('items') or {})}"
    if "enum" in node:
        return " \\| ".join(str(v) for v in node["enum"])
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type_of(node['additionalProperties'])}"
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None or high is not None:
        return f"{kind} ({'' if low is None else low}..{'' if high is None else high})"
    return kind


def _rows(node: Schema, path: str) -> list[str]:
    rows = []
    for name, sub in (node.get("properties") or {}).items():
        child = f"{path}.{name}"
        default = sub.get("default")
        shown = "" if default is None or default == {} else f"`{json.dumps(default)}`"
        description = str(sub.get("description", "")).replace("|", "\\|").replace("\n", " ")
        required = " (required)" if name in (node.get("required") or []) else ""
        rows.append(f"| `{child}` | {_type_of(sub)}{required} | {shown} | {description} |")
        if "properties" in sub:
            rows += _rows(sub, child)
        elif (
            isinstance(sub.get("items"), dict)
            and "properties" in sub["items"]
            and not sub["items"].get("x-kubernetes-preserve-unknown-fields")
        ):
            rows += _rows(sub["items"], f"{child}[]")
    return rows


def status_reference() -> str:
    """A Markdown table of every status field, generated from the status model like the CRD."""
    rows = ["| Field | Type | Meaning |", "| --- | --- | --- |"]
    fields = list(status_schema()["properties"].items())
    conditions = dict(fields)["conditions"]["items"]["properties"]
    fields += [(f"conditions[].{name}", node) for name, node in conditions.items()]
    for name, node in fields:
        kind = "list of conditions" if node.get("type") == "array" else str(node.get("type"))
        if "enum" in node:
            kind = " \\| ".join(node["enum"])
        description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `status.{name}` | {kind} | {description} |")
    return "\n".join(rows) + "\n"


def reference() -> str:
    """A Markdown table of every spec field (type, default, description), generated like the CRD."""
    header = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    return "\n".join(header + _rows(spec_schema(), "spec")) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sys.stdout.write(reference() if args == ["--reference"] else render())


if __name__ == "__main__":
    main()
