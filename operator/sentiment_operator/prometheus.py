"""The operator's Prometheus client: instant queries over the HTTP API (``GET /api/v1/query``), async.

A small aiohttp client (aiohttp comes with kopf) behind the :class:`analysis.MetricsSource` interface. Every
failure (unreachable, timed out, an HTTP error, an answer that is not a vector) becomes
:class:`analysis.MetricsUnavailable` naming the URL and the cause, which a rollout treats as no data.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from sentiment_operator.analysis import MetricsUnavailable

QUERY_PATH = "/api/v1/query"


class PrometheusClient:
    """Instant queries against one Prometheus (``url`` without a trailing slash); one session, reused."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query at the current time."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        where = f"{self.url}{QUERY_PATH}"
        try:
            async with self._session.get(where, params={"query": promql}) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise MetricsUnavailable(f"{where}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        try:
            answer = json.loads(text)
        except ValueError:
            raise MetricsUnavailable(f"{where}: HTTP {status}, not JSON: {text[:200]!r}") from None
        if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error") if isinstance(answer, dict) else None
            raise MetricsUnavailable(f"{where}: HTTP {status}: {error or text[:200]!r}")
        data = answer.get("data") or {}
        if data.get("resultType") != "vector":
            raise MetricsUnavailable(f"{where}: expected a vector, got {data.get('resultType')!r}")
        result: list[dict[str, Any]] = list(data.get("result") or [])
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
