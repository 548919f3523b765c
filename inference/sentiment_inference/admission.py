"""Admission: a request's uncached texts enter the model queue only while it has room (TEI's semaphore).

Refusing at once with Overloaded (HTTP 429 + Retry-After) keeps latency bounded instead of growing a queue.
The decision is taken before tokenization, so a refused request costs no tokenizer time; a reservation covers
the texts from that decision until the batcher counts them as queued, so requests tokenizing side by side
cannot together overshoot the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sentiment_inference.errors import Overloaded
from sentiment_inference.metrics import Metrics


class Admission:
    """At most ``limit`` texts queued (``queued()``) or reserved by requests still tokenizing."""

    def __init__(self, limit: int, metrics: Metrics, queued: Callable[[], int]) -> None:
        self._limit = limit
        self._metrics = metrics
        self._queued = queued
        self._reserved = 0

    @property
    def reserved(self) -> int:
        return self._reserved

    @contextmanager
    def admit(self, count: int) -> Iterator[None]:
        """Reserve room for ``count`` texts for the ``with`` block (hand them to the queue inside it).

        Raises Overloaded, counting it, when the queue cannot take them all.
        """
        total = self._queued() + self._reserved + count
        if total > self._limit:
            self._metrics.overloaded.inc()
            raise Overloaded(
                f"server overloaded: {total - count} texts queued, this request adds {count}, "
                f"the limit is SENTIMENT_MAX_QUEUE={self._limit}; retry later",
                limit=self._limit,
                value=total,
            )
        self._reserved += count
        try:
            yield
        finally:
            self._reserved -= count
