"""Kubernetes resource quantities and Redis memory sizes, parsed and canonicalized."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import (
    BeforeValidator,
    WithJsonSchema,
)

_QUANTITY = re.compile(
    r"^(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
)
_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3)}
_DECIMAL.update({"M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15)})
_DECIMAL["E"] = Decimal(10**18)


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a non-negative Kubernetes resource quantity ("500m", "1Gi", "2") into a Decimal of base units."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a valid Kubernetes quantity (examples: 500m, 2, 1Gi)")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex only admits valid decimals
        raise ValueError(f"{text!r} is not a valid Kubernetes quantity") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number


def _coerce_quantity(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a quantity must be a string or a number")
    text = str(value).strip()
    parse_quantity(text)
    return text


Quantity = Annotated[
    str,
    BeforeValidator(_coerce_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

_REDIS_MEMORY = re.compile(r"^([0-9]+)([bB]|[kKmMgG][bB]?)?$")
_REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}


def parse_redis_memory(value: str) -> int:
    """Bytes of a redis.conf memory size ("256mb", "1gb", "100000")."""
    match = _REDIS_MEMORY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Redis memory size (examples: 256mb, 1gb)")
    return int(match[1]) * _REDIS_UNITS[(match[2] or "").lower()]


# Go's time.ParseDuration syntax, which Kubernetes durations use ("90s", "1m30s", "500ms"); no sign, no "us".
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def parse_duration(value: str) -> float:
    """Seconds of a duration such as "1m30s", "2s" or "500ms" (Go syntax, as Kubernetes durations)."""
    text = value.strip()
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{value!r} is not a duration (examples: 30s, 1m, 1m30s, 500ms)")
    return float(sum(Decimal(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)))


def _positive_duration(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("a duration must be a string such as 30s, 1m or 1m30s")
    if parse_duration(value) <= 0:
        raise ValueError(f"{value!r} must be longer than 0s")
    return value.strip()


Duration = Annotated[
    str,
    BeforeValidator(_positive_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
