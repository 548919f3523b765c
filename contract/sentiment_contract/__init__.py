"""What the operator and the inference server must agree on, declared once.

The two packages never import each other (an import-linter contract); both import this one, which imports
neither. It holds the server settings the operator renders into a pod: each one's environment variable,
default and bounds, the rule that derives the batch token budget, and the names of the gauges the operator's
load-based autoscaling queries. The server's ``Settings`` and the operator's spec take their defaults and
bounds from here; the spec may only narrow a bound (``narrowed`` refuses to widen one), so a spec the API
server accepts never renders a value the server refuses at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ENV_PREFIX: Final = "SENTIMENT_"


@dataclass(frozen=True)
class ServerSetting:
    """One server setting: ``SENTIMENT_<NAME>``, its default and its inclusive bounds (None: unbounded)."""

    name: str
    default: int | float | None
    ge: int | float | None = None
    le: int | float | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def narrowed(
        self, *, ge: int | float | None = None, le: int | float | None = None
    ) -> tuple[int | float | None, int | float | None]:
        """(ge, le): these bounds, or narrower ones; a wider bound raises ValueError at import time."""
        low = self.ge if ge is None else ge
        high = self.le if le is None else le
        if self.ge is not None and (low is None or low < self.ge):
            raise ValueError(f"{self.env}: a lower bound of {low} is below the server's {self.ge}")
        if self.le is not None and (high is None or high > self.le):
            raise ValueError(f"{self.env}: an upper bound of {high} is above the server's {self.le}")
        return low, high


PORT: Final = ServerSetting("port", 8000, 1, 65535)
MAX_LENGTH: Final = ServerSetting("max_length", 512, 4, 8192)
TORCH_THREADS: Final = ServerSetting("torch_threads", 0, 0, 256)
MODEL_WORKERS: Final = ServerSetting("model_workers", 0, 0, 64)
MAX_BATCH_SIZE: Final = ServerSetting("max_batch_size", 32, 1, 1024)
MAX_BATCH_TOKENS: Final = ServerSetting("max_batch_tokens", None, 16)
MAX_WAIT_MS: Final = ServerSetting("max_wait_ms", 2, 0, 1000)
MAX_QUEUE: Final = ServerSetting("max_queue", 512, 1)
MAX_TEXTS_PER_REQUEST: Final = ServerSetting("max_texts_per_request", 64, 1)
MAX_TEXT_CHARS: Final = ServerSetting("max_text_chars", 5000, 1)
# Below 64 bytes not even a one-text request fits.
MAX_BODY_BYTES: Final = ServerSetting("max_body_bytes", 1_048_576, 64)
CACHE_TTL_SECONDS: Final = ServerSetting("cache_ttl_seconds", 3600, 1)

SERVER_SETTINGS: Final = (
    PORT,
    MAX_LENGTH,
    TORCH_THREADS,
    MODEL_WORKERS,
    MAX_BATCH_SIZE,
    MAX_BATCH_TOKENS,
    MAX_WAIT_MS,
    MAX_QUEUE,
    MAX_TEXTS_PER_REQUEST,
    MAX_TEXT_CHARS,
    MAX_BODY_BYTES,
    CACHE_TTL_SECONDS,
)

# Padded-token budget per forward pass when SENTIMENT_MAX_BATCH_TOKENS is unset (raised to the maximum
# sequence length so one full-length text fits). Smaller batches stay in the CPU caches: on a 2-vCPU AVX2
# machine 512 gave +40-55 % texts/s at saturation and a lower peak RSS than 8192.
DEFAULT_BATCH_TOKENS: Final = 512


def batch_token_budget(max_batch_tokens: int | None, max_length: int) -> int:
    """SENTIMENT_MAX_BATCH_TOKENS, or max(DEFAULT_BATCH_TOKENS, the maximum sequence length) when unset."""
    if max_batch_tokens is not None:
        return max_batch_tokens
    return max(DEFAULT_BATCH_TOKENS, max_length)


# Per-pod gauges the server exports and the operator's load-based autoscaling queries (KEDA's Prometheus
# trigger, or an HPA Pods metric served by prometheus-adapter): renaming one on either side breaks scaling.
QUEUE_DEPTH_METRIC: Final = "sentiment_queue_depth"  # texts waiting for, or inside, the model
IN_FLIGHT_METRIC: Final = "sentiment_requests_in_flight"  # predict requests received and not yet answered
# --- the series a rollout's analysis reads from the server's /metrics ---------------------------------------


@dataclass(frozen=True)
class Series:
    """A series the server exposes (its exposition name) and the labels the operator's queries rely on."""

    name: str
    labels: tuple[str, ...]


# Predict requests answered, by route (the path, e.g. "/project/predict") and HTTP status.
REQUESTS: Final = Series("sentiment_requests_total", ("route", "status"))
# Their latency (a histogram: the ``_bucket`` series carry ``le`` as well).
REQUEST_SECONDS: Final = Series("sentiment_request_duration_seconds_bucket", ("route", "le"))
# Texts answered, by their top label.
PREDICTIONS: Final = Series("sentiment_predictions_total", ("label",))
ANALYSED_SERIES: Final = (REQUESTS, REQUEST_SECONDS, PREDICTIONS)

# The routes whose requests are predictions (any prefix): a PromQL regex over ``route``.
PREDICT_ROUTE_REGEX: Final = ".*/(bulk-)?predict"
# Statuses a rollout counts as errors: server errors, and 408 (the request did not arrive in time).
ERROR_STATUS_REGEX: Final = "5..|408"
