"""Custom resources checked against their project's CRD schema as packaged on PyPI (cloudcoil-models-*:
pydantic models generated from the CRDs, pinned in requirements/dev.txt). Imported by name: tests/ is on
sys.path through its conftest.

The models reject a wrong type and a missing required field, but like any pydantic model with the default
``extra="ignore"`` they drop an unknown field without a word, and in lax mode they coerce ``"90"`` to ``90``.
Either would hide a bug from us: the API server prunes fields a structural schema does not know, so a
misspelled field would silently not exist. :func:`problems` closes both holes by also requiring the round
trip through the model (``model_dump(by_alias=True, exclude_unset=True)``) to give back the input unchanged,
and reports every path that was dropped or rewritten.
"""

from __future__ import annotations

from typing import Any

import pydantic


def _differences(sent: Any, kept: Any, path: str) -> list[str]:
    if isinstance(sent, dict) and isinstance(kept, dict):
        out = [f"{path}.{key}: unknown field (the schema drops it)" for key in sent if key not in kept]
        for key in sent.keys() & kept.keys():
            out += _differences(sent[key], kept[key], f"{path}.{key}")
        return out
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        return [
            d
            for i, (a, b) in enumerate(zip(sent, kept, strict=True))
            for d in _differences(a, b, f"{path}[{i}]")
        ]
    if sent != kept or type(sent) is not type(kept):
        return [f"{path}: {sent!r} is read as {kept!r}"]
    return []


Models = dict[tuple[str, str], type[pydantic.BaseModel]]  # (apiVersion, kind) -> the CRD's model


def validate(models: Models, obj: dict[str, Any], error: type[ValueError], project: str) -> None:
    """Raise ``error`` unless ``obj`` is valid for its kind's schema among ``models`` (``project``'s CRDs)
    and survives it intact."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    model = models.get(key)
    if model is None:
        raise error(f"no {project} schema for {key[0]} {key[1]} (known: {sorted(models)})")
    found = problems(model, obj)
    if found:
        raise error("; ".join(found))


def problems(model: type[pydantic.BaseModel], obj: dict[str, Any]) -> list[str]:
    """Why ``obj`` is not what ``model``'s schema accepts unchanged (empty: it is). A validation error is
    one problem with pydantic's whole message."""
    try:
        parsed = model.model_validate(obj)
    except pydantic.ValidationError as exc:
        return [str(exc)]
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return _differences(obj, kept, str(obj.get("kind", "object")))
