"""Istio objects validated against Istio's own CRD schemas, as packaged on PyPI (cloudcoil-models-istio:
pydantic models generated from Istio's CRDs, pinned in requirements/dev.txt). Imported by name: tests/ is on
sys.path through its conftest.

The models reject a wrong type and a missing required field, but like any pydantic model with the default
``extra="ignore"`` they drop an unknown field without a word, and in lax mode they coerce ``"90"`` to ``90``.
Either would hide a bug from us: the API server prunes fields a structural schema does not know, so a
misspelled route would silently not exist. ``validate`` closes both holes by also requiring the round trip
through the model (``model_dump(by_alias=True, exclude_unset=True)``) to give back the input unchanged, and
reports every path that was dropped or rewritten.
"""

from __future__ import annotations

from typing import Any

import pydantic
from cloudcoil.models.istio.networking import v1

MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("networking.istio.io/v1", "VirtualService"): v1.VirtualService,
    ("networking.istio.io/v1", "Gateway"): v1.Gateway,
}


class IstioSchemaError(ValueError):
    """The object is not what Istio's CRD schema accepts unchanged."""


def differences(sent: Any, kept: Any, path: str) -> list[str]:
    if isinstance(sent, dict) and isinstance(kept, dict):
        out = [f"{path}.{key}: unknown field (the schema drops it)" for key in sent if key not in kept]
        for key in sent.keys() & kept.keys():
            out += differences(sent[key], kept[key], f"{path}.{key}")
        return out
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        return [
            d
            for i, (a, b) in enumerate(zip(sent, kept, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    if sent != kept or type(sent) is not type(kept):
        return [f"{path}: {sent!r} is read as {kept!r}"]
    return []


def validate_with(
    models: dict[tuple[str, str], type[pydantic.BaseModel]], obj: dict[str, Any], error: type[ValueError]
) -> None:
    """Raise ``error`` unless ``obj`` is valid for its kind's model in ``models`` and survives it intact."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    model = models.get(key)
    if model is None:
        raise error(f"no schema for {key[0]} {key[1]} (known: {sorted(models)})")
    try:
        parsed = model.model_validate(obj)
    except pydantic.ValidationError as exc:
        raise error(str(exc)) from exc
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    problems = differences(obj, kept, key[1])
    if problems:
        raise error("; ".join(problems))


def validate(obj: dict[str, Any]) -> None:
    """Raise IstioSchemaError unless ``obj`` is valid for its kind's Istio schema and survives it intact."""
    validate_with(MODELS, obj, IstioSchemaError)
