"""Prometheus metrics, one CollectorRegistry per app (so every test app starts from zero).

Exposed at GET /metrics:

- ``sentiment_requests_total{route,method,status}``: HTTP requests answered.
- ``sentiment_request_duration_seconds{route}``: HTTP request latency (histogram).
- ``sentiment_texts_total``: texts predicted (cached or computed).
- ``sentiment_predictions_total{label}``: texts answered, by their top label (cached or computed; the label
  shares of a canary and its stable version are compared during a rollout).
- ``sentiment_mirrored_requests_total``: predict requests that were mirrored copies (answers discarded by the
  proxy; their predictions are not written to the cache).
- ``sentiment_cache_hits_total{backend}`` / ``sentiment_cache_misses_total{backend}``: per-text cache lookups.
- ``sentiment_cache_errors_total{backend,operation}``: cache failures (each also counts as a miss).
- ``sentiment_batch_size``: texts per model batch (histogram).
- ``sentiment_batch_tokens``: padded tokens per model batch (histogram).
- ``sentiment_queue_depth``: texts waiting for or inside the model worker.
- ``sentiment_requests_in_flight``: predict requests received and not answered yet.
- ``sentiment_model_seconds``: forward-pass time per batch (histogram).
- ``sentiment_overloaded_total``: requests refused with 429 because the queue was full.
- ``sentiment_dropped_texts_total``: queued texts dropped because their client went away.
- ``sentiment_ready``: 1 once the model is loaded and warmed up, else 0.
- ``sentiment_model_info{model_id,precision,fingerprint}``: constant 1, labels describe the loaded model.
"""

from __future__ import annotations

import sentiment_contract as C
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the exposition size and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

METRIC_NAMES = (
    "sentiment_requests_total",
    "sentiment_request_duration_seconds",
    "sentiment_texts_total",
    "sentiment_predictions_total",
    "sentiment_mirrored_requests_total",
    "sentiment_cache_hits_total",
    "sentiment_cache_misses_total",
    "sentiment_cache_errors_total",
    "sentiment_batch_size",
    "sentiment_batch_tokens",
    C.QUEUE_DEPTH_METRIC,
    C.IN_FLIGHT_METRIC,
    "sentiment_model_seconds",
    "sentiment_overloaded_total",
    "sentiment_dropped_texts_total",
    "sentiment_ready",
    "sentiment_model_info",
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class Metrics:
    """Every metric of one app instance, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sentiment_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "sentiment_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.texts = Counter("sentiment_texts", "Texts predicted (cached or computed)", registry=r)
        self.predictions = Counter(
            "sentiment_predictions",
            "Texts answered, by top label (cached or computed)",
            ["label"],
            registry=r,
        )
        self.mirrored = Counter(
            "sentiment_mirrored_requests",
            "Predict requests that were mirrored copies (not written to the cache)",
            registry=r,
        )
        self.cache_hits = Counter("sentiment_cache_hits", "Per-text cache hits", ["backend"], registry=r)
        self.cache_misses = Counter(
            "sentiment_cache_misses", "Per-text cache misses", ["backend"], registry=r
        )
        self.cache_errors = Counter(
            "sentiment_cache_errors",
            "Cache failures (treated as misses)",
            ["backend", "operation"],
            registry=r,
        )
        self.batch_size = Histogram(
            "sentiment_batch_size", "Texts per model batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "sentiment_batch_tokens", "Padded tokens per model batch", buckets=_TOKEN_BUCKETS, registry=r
        )
        # The two load signals the operator can autoscale on (their names are shared with it).
        self.queue_depth = Gauge(C.QUEUE_DEPTH_METRIC, "Texts waiting for or inside the model", registry=r)
        self.in_flight = Gauge(
            C.IN_FLIGHT_METRIC, "Predict requests received and not answered yet", registry=r
        )
        self.model_seconds = Histogram(
            "sentiment_model_seconds", "Forward-pass time per batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.overloaded = Counter(
            "sentiment_overloaded", "Requests refused because the queue was full", registry=r
        )
        self.dropped = Counter(
            "sentiment_dropped_texts", "Queued texts dropped because their client went away", registry=r
        )
        self.ready = Gauge("sentiment_ready", "1 once the model is loaded and warmed up", registry=r)
        self.model_info = Gauge(
            "sentiment_model_info",
            "Loaded model (constant 1)",
            ["model_id", "precision", "fingerprint"],
            registry=r,
        )
