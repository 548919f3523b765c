"""Scraping: the ServiceMonitor (Prometheus operator) of a model's stable and canary Services.

Its relabelings are the one place that turns the Services' labels into the series labels every query relies
on: ``sentiment_model`` (the SentimentModel) and ``track`` (stable or canary); the Prometheus operator adds
``namespace``, ``service`` and ``pod`` itself. The test and demo Prometheus are configured from this same
object (``sentiment_devcluster.monitoring``), never from a hand-written list.
"""

from __future__ import annotations

import re

from ..names import (
    APP_INFERENCE,
    COMPONENT_CANARY,
    COMPONENT_INFERENCE,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    SERIES_LABEL_MODEL,
    SERIES_LABEL_TRACK,
    TRACK_CANARY,
    TRACK_STABLE,
)
from ..spec import SentimentModelSpec, parse_duration
from .common import Manifest, metadata

SERVICE_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
SCRAPE_TIMEOUT_SECONDS = 10  # at most; never longer than the interval


def service_label_meta(label: str) -> str:
    """The discovery meta label of a Service label, as Prometheus' Kubernetes discovery names it."""
    return "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _timeout(interval: str) -> str:
    seconds = min(parse_duration(interval), SCRAPE_TIMEOUT_SECONDS)
    return f"{seconds:g}s" if seconds >= 1 else f"{round(seconds * 1000)}ms"


def _service_monitor(name: str, namespace: str, spec: SentimentModelSpec, uid: str | None) -> Manifest:
    monitoring = spec.monitoring
    meta = metadata(name, namespace, name, COMPONENT_INFERENCE, uid)
    meta["labels"] = {**monitoring.labels, **meta["labels"]}
    component = service_label_meta(LABEL_COMPONENT)
    relabelings = [
        {"sourceLabels": [service_label_meta(LABEL_INSTANCE)], "targetLabel": SERIES_LABEL_MODEL},
        *(
            {
                "sourceLabels": [component],
                "regex": value,
                "targetLabel": SERIES_LABEL_TRACK,
                "replacement": track,
                "action": "replace",
            }
            for value, track in ((COMPONENT_INFERENCE, TRACK_STABLE), (COMPONENT_CANARY, TRACK_CANARY))
        ),
    ]
    return {
        "apiVersion": SERVICE_MONITOR_API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            # The stable and the canary Service of this model (never Redis's), in its own namespace.
            "selector": {
                "matchLabels": {LABEL_NAME: APP_INFERENCE, LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGED_BY}
            },
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": monitoring.interval,
                    "scrapeTimeout": _timeout(monitoring.interval),
                    "relabelings": relabelings,
                }
            ],
        },
    }
