"""How Prometheus finds the server pods: a ServiceMonitor for the stable and the canary Service."""

from __future__ import annotations

from pydantic import Field

from .base import _Spec
from .quantities import Duration


class MonitoringSpec(_Spec):
    """Prometheus scraping of the server pods. The ServiceMonitor's relabelings give every series the labels
    that tell models, namespaces and the stable from the canary apart (``sentiment_model``, ``namespace``,
    ``track``); a rollout's analysis and the dashboard query by them."""

    service_monitor: bool = Field(
        True,
        description="Create a ServiceMonitor (monitoring.coreos.com/v1) for the stable and canary Services "
        "when the cluster serves that kind (the Prometheus operator).",
    )
    interval: Duration = Field("15s", description="Scrape interval of the server pods.")
    labels: dict[str, str] = Field(
        {},
        description="Extra labels on the ServiceMonitor, for a Prometheus that selects monitors by label "
        "(e.g. release: kube-prometheus-stack).",
    )
