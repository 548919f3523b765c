"""Label and field selectors on list and watch, filtered by the server.

https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors : equality-based
(``=``, ``==``, ``!=``) and set-based (``in``, ``notin``, ``key``, ``!key``) requirements, comma-separated,
all of which must hold. https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/ :
``=``, ``==``, ``!=`` on ``metadata.name`` and ``metadata.namespace`` for every kind (plus kind-specific
fields, of which the emulator knows ``involvedObject.*``, ``reason`` and ``type`` for Events). An
unsupported field is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class BadSelector(ValueError):
    """400 Bad Request: the selector cannot be parsed or names a field the kind cannot be selected by."""


def _split(text: str) -> list[str]:
    """Split on the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ = re.compile(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$")
_EXISTS = re.compile(r"^(!?)([\w./-]+)$")


def _member(key: str, values: set[str], *, negate: bool) -> Predicate:
    return lambda labels: (labels.get(key) in values) != negate


def _equal(key: str, value: str, *, negate: bool) -> Predicate:
    return lambda labels: (labels.get(key) == value) != negate


def _exists(key: str, *, negate: bool) -> Predicate:
    return lambda labels: (key in labels) != negate


def _field_equal(read: Callable[[dict[str, Any]], str], value: str, *, negate: bool) -> Predicate:
    return lambda obj: (read(obj) == value) != negate


def label_selector(text: str) -> Predicate:
    requirements: list[Predicate] = []
    for part in _split(text):
        if match := _SET.match(part):
            key, op, raw = match.groups()
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if op == "in":
                requirements.append(_member(key, values, negate=False))
            else:
                requirements.append(_member(key, values, negate=True))
        elif match := _EQ.match(part):
            key, op, value = match.groups()
            if op == "!=":
                requirements.append(_equal(key, value, negate=True))
            else:
                requirements.append(_equal(key, value, negate=False))
        elif match := _EXISTS.match(part):
            negate, key = match.groups()
            requirements.append(_exists(key, negate=bool(negate)))
        else:
            raise BadSelector(f"unable to parse requirement: {part!r}")

    def check(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return check


_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.name",
    "involvedObject.namespace",
    "involvedObject.uid",
    "reason",
    "type",
    "source",
)


def field_selector(text: str, kind: str) -> Predicate:
    allowed = {"metadata.name", "metadata.namespace", *(_EVENT_FIELDS if kind == "Event" else ())}
    requirements: list[Predicate] = []
    for part in _split(text):
        match = _EQ.match(part)
        if not match:
            raise BadSelector(f"invalid field selector: {part!r}")
        field, op, value = match.groups()
        if field not in allowed:
            raise BadSelector(f"field label not supported: {field}")

        def read(obj: dict[str, Any], path: str = field) -> str:
            node: Any = obj
            for step in path.split("."):
                node = node.get(step) if isinstance(node, dict) else None
            return "" if node is None else str(node)

        requirements.append(_field_equal(read, value, negate=op == "!="))
    return lambda obj: all(requirement(obj) for requirement in requirements)


def selector(params: Mapping[str, str], kind: str) -> Predicate | None:
    """The list/watch request's ``labelSelector`` and ``fieldSelector`` as one predicate (None: no filter)."""
    checks = []
    if params.get("labelSelector"):
        checks.append(label_selector(params["labelSelector"]))
    if params.get("fieldSelector"):
        checks.append(field_selector(params["fieldSelector"], kind))
    if not checks:
        return None
    return lambda obj: all(check(obj) for check in checks)
