"""Prometheus operator objects (the ServiceMonitor the operator renders, the example PrometheusRule)
validated against the Prometheus operator's own CRD schemas, as packaged on PyPI
(cloudcoil-models-prometheus-operator: pydantic models generated from its CRDs, pinned in
requirements/dev.txt).
Imported by name: tests/ is on sys.path through its conftest.

As for Istio and KEDA (tests/crd_models.py): an unknown field, a wrong type and a value the model would have
to coerce are refused, since the API server would prune or reject them.
"""

from __future__ import annotations

from typing import Any

import crd_models
from cloudcoil.models.prometheus_operator import v1

MODELS: crd_models.Models = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): v1.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): v1.PrometheusRule,
}


class MonitoringSchemaError(ValueError):
    """The object is not what the Prometheus operator's CRD schema accepts unchanged."""


def validate(obj: dict[str, Any]) -> None:
    """Raise MonitoringSchemaError unless ``obj`` is valid for its kind's schema and survives it intact."""
    crd_models.validate(MODELS, obj, MonitoringSchemaError, "Prometheus operator")
