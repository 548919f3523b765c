"""Custom resources as the API server stores them: pruned and defaulted by the CRD's structural schema, and
checked by its CEL rules.

https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/ :
"Field pruning": fields not specified in the schema are dropped on write (status included), except below
``x-kubernetes-preserve-unknown-fields: true``; ``metadata`` keeps only name, namespace, labels, annotations,
ownerReferences, finalizers and the server's own fields. "Defaulting": ``default`` values are set for missing
fields, after pruning, on write and on read. "Validation rules": ``x-kubernetes-validations`` CEL rules are
evaluated with ``self`` bound to the field (``oldSelf`` for transition rules, skipped on create).
"""

from __future__ import annotations

import copy
from typing import Any

import cel
import jsonschema

Schema = dict[str, Any]


class Invalid(ValueError):
    """422: the object breaks a CEL rule of its schema."""


def prune(value: Any, schema: Schema | None) -> Any:
    """``value`` with every field its structural schema does not declare removed."""
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        out = {}
        for key, sub in value.items():
            if properties is not None and key in properties:
                out[key] = prune(sub, properties[key])
            elif isinstance(additional, dict):
                out[key] = prune(sub, additional)
            elif additional is True:
                out[key] = copy.deepcopy(sub)
        return out
    if isinstance(value, list):
        return [prune(item, schema.get("items")) for item in value]
    return value


def apply_defaults(value: Any, schema: Schema | None) -> Any:
    """``value`` with its schema's ``default``s set where fields are missing (recursively)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in out:
                if key not in (schema.get("properties") or {}):
                    out[key] = apply_defaults(out[key], additional)
        return out
    if isinstance(value, list):
        return [apply_defaults(item, schema.get("items")) for item in value]
    return value


_META_KEPT = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    }
)


def _evaluate(rule: str, context: dict[str, Any]) -> Any:
    try:
        return cel.evaluate(rule, context)
    except Exception as exc:  # a rule that errors is a failed rule, as in the API server
        return f"error: {exc}"


def cel_failures(value: Any, schema: Schema | None, path: str, old: Any = None) -> list[str]:
    if schema is None or value is None:
        return []
    failures = []
    for rule in schema.get("x-kubernetes-validations") or []:
        text = rule["rule"]
        if "oldSelf" in text:
            if old is None:
                continue
            context = {"self": value, "oldSelf": old}
        else:
            context = {"self": value}
        if _evaluate(text, context) is not True:
            failures.append(f"{path}: Invalid value: {rule.get('message') or 'failed rule: ' + text}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                prior = old.get(key) if isinstance(old, dict) else None
                failures += cel_failures(value[key], sub, f"{path}.{key}", prior)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            failures += cel_failures(item, schema.get("items"), f"{path}[{i}]")
    return failures


def _as_json_schema(node: Any) -> Any:
    """Kubernetes-flavoured OpenAPI v3 as JSON Schema (int-or-string, nullable; the x- extensions dropped)."""
    if isinstance(node, list):
        return [_as_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def schema_errors(value: Any, schema: Schema) -> list[str]:
    """OpenAPI validation (types, enums, bounds, patterns, required) with the API server's field paths."""
    validator = jsonschema.Draft7Validator(_as_json_schema(schema))
    out = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        out.append(f"{path}: Invalid value: {error.message}")
    return out


def store(
    obj: dict[str, Any], schema: Schema, old: dict[str, Any] | None = None, *, validate: bool = True
) -> dict[str, Any]:
    """What the API server stores for a custom resource: pruned, defaulted, then checked against the schema
    and its CEL rules (``Invalid``; ``validate=False`` skips the checks, as for a CRD that has none)."""
    meta = {k: copy.deepcopy(v) for k, v in (obj.get("metadata") or {}).items() if k in _META_KEPT}
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    top = {
        k: v
        for k, v in (schema.get("properties") or {}).items()
        if k not in ("apiVersion", "kind", "metadata")
    }
    pruned = prune(body, {**schema, "properties": top})
    defaulted = apply_defaults(pruned, schema)
    if not validate:
        return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta, **defaulted}
    body_schema = {**schema, "properties": top}
    failures = schema_errors(defaulted, body_schema)
    for key, sub in (schema.get("properties") or {}).items():
        if key in defaulted:
            failures += cel_failures(defaulted[key], sub, key, (old or {}).get(key))
    for rule in schema.get("x-kubernetes-validations") or []:
        if _evaluate(rule["rule"], {"self": {**defaulted, "metadata": meta}}) is not True:
            failures.append(rule.get("message") or rule["rule"])
    if failures:
        raise Invalid("; ".join(failures))
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta, **defaulted}
