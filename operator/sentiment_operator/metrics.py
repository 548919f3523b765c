"""The operator's own metrics (``sentiment-operator run --metrics-port``): reconciles, API calls, analyses,
rollouts by outcome, and each SentimentModel's readiness and traffic split, for the dashboard and the alerts.

One registry per operator instance (the tests run several in one process), filled by the reconciler and the
API client; no module-level state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from sentiment_operator.names import SERIES_LABEL_MODEL, SERIES_LABEL_TRACK, TRACK_CANARY, TRACK_STABLE

METRIC_NAMES: Final = (
    "sentiment_operator_reconciles_total",
    "sentiment_operator_api_requests_total",
    "sentiment_operator_analyses_total",
    "sentiment_operator_rollouts_total",
    "sentiment_operator_model_ready",
    "sentiment_operator_rollout_weight",
)
MIRROR_TRACK: Final = "mirror"  # the rollout_weight series of the share copied to the canary
# How a rollout can end (rollout.Outcome): every model's rollout counters exist from its first reconcile at
# 0, so an increase() (the rollback alert) counts their first event too.
ROLLOUT_OUTCOMES: Final = ("promoted", "rolled_back", "aborted", "cancelled")


class OperatorMetrics:
    """Every metric of one operator instance, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        model = ("namespace", SERIES_LABEL_MODEL)
        self.reconciles = Counter(
            "sentiment_operator_reconciles",
            "Reconciles of SentimentModels, by result (ok, invalid: the spec cannot be served, error: an API "
            "error, retried)",
            ["result"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "sentiment_operator_api_requests",
            "Kubernetes API requests of the reconciler, by method and HTTP status (0: no answer)",
            ["method", "code"],
            registry=self.registry,
        )
        self.analyses = Counter(
            "sentiment_operator_analyses",
            "Rollout step analyses, by verdict (Passed, Failed, NoData)",
            [*model, "verdict"],
            registry=self.registry,
        )
        self.rollouts = Counter(
            "sentiment_operator_rollouts",
            "Canary rollouts that ended, by outcome (promoted, rolled_back, aborted, cancelled)",
            [*model, "outcome"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "sentiment_operator_model_ready",
            "1 while the SentimentModel's Ready condition is True, else 0",
            list(model),
            registry=self.registry,
        )
        self.rollout_weight = Gauge(
            "sentiment_operator_rollout_weight",
            "Percent of the routed requests per track (stable, canary; mirror: copied to the canary)",
            [*model, SERIES_LABEL_TRACK],
            registry=self.registry,
        )

    def model(self, namespace: str, name: str, *, ready: bool, weights: Mapping[str, int]) -> None:
        """A SentimentModel's readiness and traffic split after a reconcile."""
        for outcome in ROLLOUT_OUTCOMES:
            self.rollouts.labels(namespace, name, outcome)
        self.ready.labels(namespace, name).set(1 if ready else 0)
        for track, weight in weights.items():
            self.rollout_weight.labels(namespace, name, track).set(weight)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted SentimentModel's gauges (counters keep their history)."""
        with contextlib.suppress(KeyError):
            self.ready.remove(namespace, name)
        for track in (TRACK_STABLE, TRACK_CANARY, MIRROR_TRACK):
            with contextlib.suppress(KeyError):
                self.rollout_weight.remove(namespace, name, track)
