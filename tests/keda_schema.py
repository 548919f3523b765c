"""KEDA objects validated against KEDA's own CRD schemas, as packaged on PyPI (cloudcoil-models-keda),
strictly: unknown fields and coerced values are refused too (tests/crd_models.py)."""

from __future__ import annotations

from typing import Any

import crd_models
from cloudcoil.models.keda import v1alpha1

MODELS: crd_models.Models = {
    ("keda.sh/v1alpha1", "ScaledObject"): v1alpha1.ScaledObject,
}


class KedaSchemaError(ValueError):
    """The object is not what KEDA's CRD schema accepts unchanged."""


def validate(obj: dict[str, Any]) -> None:
    """Raise KedaSchemaError unless ``obj`` is valid for its kind's KEDA schema and survives it intact."""
    crd_models.validate(MODELS, obj, KedaSchemaError, "KEDA")
