"""Per-text prediction cache: Redis (shared by replicas) or an in-process LRU.

A cache can never fail a request: every Redis error or timeout is logged, counted and treated as a miss.
Keys cover the model fingerprint and the max length, so a new model or setting never serves stale scores.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from sentiment_inference.metrics import Metrics
from sentiment_inference.settings import Settings

log = logging.getLogger(__name__)

Scores = list[float]

# After a failure Redis is skipped for a while (doubling up to this cap), so an unreachable cache costs
# nothing per request instead of one timeout per request; the first call after the pause reconnects.
_PAUSE_START = 0.25
_PAUSE_MAX = 5.0


def cache_key(fingerprint: str, max_length: int, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sentiment:v1:{fingerprint}:{max_length}:{digest}"


def encode_scores(scores: Scores) -> bytes:
    return orjson.dumps(scores)


def decode_scores(raw: bytes | str | None, n_labels: int) -> Scores | None:
    """Parse a cached value; anything unexpected is a miss rather than a wrong answer."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if (
        isinstance(value, list)
        and len(value) == n_labels
        and all(isinstance(v, float | int) and not isinstance(v, bool) for v in value)
    ):
        return [float(v) for v in value]
    return None


class Cache(Protocol):
    """Batch get/set of per-text scores; implementations never raise for backend failures."""

    name: str

    async def get_many(self, keys: Sequence[str], n_labels: int) -> list[Scores | None]: ...

    async def set_many(self, items: Sequence[tuple[str, Scores]]) -> None: ...

    async def close(self) -> None: ...


class LocalCache:
    """In-process LRU used when no Redis is configured (size 0 disables it)."""

    name = "local"

    def __init__(self, size: int, metrics: Metrics) -> None:
        self._size = size
        self._data: OrderedDict[str, Scores] = OrderedDict()
        self._metrics = metrics

    async def get_many(self, keys: Sequence[str], n_labels: int) -> list[Scores | None]:
        out: list[Scores | None] = []
        for key in keys:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            out.append(hit)
        _count(self._metrics, self.name, out)
        return out

    async def set_many(self, items: Sequence[tuple[str, Scores]]) -> None:
        if self._size <= 0:
            return
        for key, scores in items:
            self._data[key] = scores
            self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


def apply_password(url: str, password: str | None) -> str:
    """The URL with ``password`` in place of its own (in redis-py URL options beat keyword args)."""
    if not password:
        return url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
        query.append(("password", password))
        # urlunsplit would drop the empty authority and turn unix:///path into unix:/path
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    user = quote(unquote(parts.username), safe="") if parts.username else ""
    netloc = f"{user}:{quote(password, safe='')}@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def redis_client(
    url: str, password: str | None, timeout_s: float, health_check_interval: int
) -> aioredis.Redis:
    """A redis.asyncio client with short timeouts and one quick retry; ``password`` overrides the URL's."""
    return aioredis.Redis.from_url(
        apply_password(url, password),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=health_check_interval,
        retry=Retry(ExponentialBackoff(cap=0.02, base=0.002), retries=1),
        retry_on_timeout=True,
        socket_keepalive=True,
        max_connections=64,
    )


def redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisCache:
    """Shared cache in Redis: one MGET per request, misses written back with one pipelined SET EX."""

    name = "redis"

    def __init__(self, settings: Settings, metrics: Metrics, client: aioredis.Redis | None = None) -> None:
        assert settings.redis_url is not None
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        self._client = client or redis_client(
            settings.redis_url,
            password,
            settings.cache_timeout_ms / 1000,
            settings.cache_health_check_interval,
        )
        self._ttl = settings.cache_ttl_seconds
        self._metrics = metrics
        self._where = redacted(settings.redis_url)
        self._paused_until = 0.0
        self._pause = _PAUSE_START
        self._failing = False

    def _available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._metrics.cache_errors.labels(self.name, operation).inc()
        self._paused_until = time.monotonic() + self._pause
        log.warning(
            "Redis %s at %s failed (%s: %s); treating as a cache miss and pausing the cache for %.2fs",
            operation,
            self._where,
            type(exc).__name__,
            exc,
            self._pause,
        )
        self._pause = min(self._pause * 2, _PAUSE_MAX)
        self._failing = True

    def _succeeded(self) -> None:
        if self._failing:
            log.info("Redis at %s is reachable again", self._where)
        self._failing = False
        self._pause = _PAUSE_START

    async def get_many(self, keys: Sequence[str], n_labels: int) -> list[Scores | None]:
        misses: list[Scores | None] = [None] * len(keys)
        if not keys:
            return misses
        if not self._available():
            _count(self._metrics, self.name, misses)
            return misses
        try:
            raw = await self._client.mget(list(keys))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            _count(self._metrics, self.name, misses)
            return misses
        self._succeeded()
        out = [decode_scores(value, n_labels) for value in raw]
        _count(self._metrics, self.name, out)
        return out

    async def set_many(self, items: Sequence[tuple[str, Scores]]) -> None:
        if not items or not self._available():
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, scores in items:
                    pipe.set(key, encode_scores(scores), ex=self._ttl)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)
            return
        self._succeeded()

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


def _count(metrics: Metrics, backend: str, results: Sequence[Scores | None]) -> None:
    hits = sum(1 for r in results if r is not None)
    if hits:
        metrics.cache_hits.labels(backend).inc(hits)
    if len(results) - hits:
        metrics.cache_misses.labels(backend).inc(len(results) - hits)


def make_cache(settings: Settings, metrics: Metrics) -> Cache:
    if settings.redis_url:
        return RedisCache(settings, metrics)
    return LocalCache(settings.local_cache_size, metrics)
