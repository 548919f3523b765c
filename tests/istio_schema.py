"""Istio objects validated against Istio's own CRD schemas, as packaged on PyPI (cloudcoil-models-istio),
strictly: unknown fields and coerced values are refused too (tests/crd_models.py)."""

from __future__ import annotations

from typing import Any

import crd_models
from cloudcoil.models.istio.networking import v1

MODELS: crd_models.Models = {
    ("networking.istio.io/v1", "VirtualService"): v1.VirtualService,
    ("networking.istio.io/v1", "Gateway"): v1.Gateway,
}


class IstioSchemaError(ValueError):
    """The object is not what Istio's CRD schema accepts unchanged."""


def validate(obj: dict[str, Any]) -> None:
    """Raise IstioSchemaError unless ``obj`` is valid for its kind's Istio schema and survives it intact."""
    crd_models.validate(MODELS, obj, IstioSchemaError, "Istio")
