"""The prediction cache: keys, LRU, and the real Redis path (hits, TTL, one MGET, failures are misses)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from sentiment_fakes import FakeBackend
from sentiment_inference.cache import LocalCache, RedisCache, apply_password, cache_key, decode_scores
from sentiment_inference.metrics import Metrics
from sentiment_inference.settings import Settings

RunningAppFactory = Callable[..., AbstractAsyncContextManager[Any]]


def test_cache_key_covers_fingerprint_max_length_and_text() -> None:
    digest = hashlib.sha256("héllo".encode()).hexdigest()
    assert cache_key("abc123", 512, "héllo") == f"sentiment:v1:abc123:512:{digest}"
    assert cache_key("abc123", 256, "héllo") != cache_key("abc123", 512, "héllo")
    assert cache_key("other", 512, "héllo") != cache_key("abc123", 512, "héllo")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[0.25,0.75]", [0.25, 0.75]),
        (b"[1,0]", [1.0, 0.0]),
        (b"[0.5]", None),  # wrong label count
        (b'["a","b"]', None),
        (b"[true,false]", None),
        (b"not json", None),
        (None, None),
    ],
)
def test_decode_scores_never_returns_a_wrong_shape(raw: bytes | None, expected: list[float] | None) -> None:
    assert decode_scores(raw, 2) == expected


@pytest.mark.parametrize(
    ("url", "password", "expected"),
    [
        ("redis://h:6379/0", None, "redis://h:6379/0"),
        ("redis://h:6379/0", "p@ss:w/rd", "redis://:p%40ss%3Aw%2Frd@h:6379/0"),
        ("redis://:old@h:6379/1", "new", "redis://:new@h:6379/1"),
        ("rediss://user:old@h/0", "new", "rediss://user:new@h/0"),
        ("unix:///run/redis.sock?db=2&password=old", "new", "unix:///run/redis.sock?db=2&password=new"),
    ],
)
def test_password_overrides_the_urls(url: str, password: str | None, expected: str) -> None:
    assert apply_password(url, password) == expected


async def test_local_cache_is_an_lru() -> None:
    metrics = Metrics()
    cache = LocalCache(2, metrics)
    await cache.set_many([("a", [0.1, 0.9]), ("b", [0.2, 0.8])])
    assert await cache.get_many(["a"], 2) == [[0.1, 0.9]]  # "a" becomes most recent
    await cache.set_many([("c", [0.3, 0.7])])  # evicts "b"
    assert await cache.get_many(["a", "b", "c"], 2) == [[0.1, 0.9], None, [0.3, 0.7]]
    assert metrics.cache_hits.labels("local")._value.get() == 3
    assert metrics.cache_misses.labels("local")._value.get() == 1
    disabled = LocalCache(0, metrics)
    await disabled.set_many([("a", [0.1, 0.9])])
    assert await disabled.get_many(["a"], 2) == [None]


async def test_redis_cache_roundtrip_ttl_and_one_mget(redis_server: Any) -> None:
    settings = Settings(redis_url=redis_server.url, cache_ttl_seconds=120)
    metrics = Metrics()
    cache = RedisCache(settings, metrics)
    sync = redis_server.client()
    try:
        keys = [cache_key("fp", 512, t) for t in ("x", "y", "z")]
        assert await cache.get_many(keys, 2) == [None, None, None]
        sync.config_resetstat()
        await cache.set_many([(keys[0], [0.25, 0.75]), (keys[2], [0.5, 0.5])])
        assert await cache.get_many(keys, 2) == [[0.25, 0.75], None, [0.5, 0.5]]
        stats = sync.info("commandstats")
        assert stats["cmdstat_mget"]["calls"] == 1
        assert stats["cmdstat_set"]["calls"] == 2
        assert 0 < sync.ttl(keys[0]) <= 120
        assert sync.get(keys[0]) == b"[0.25,0.75]"
        assert metrics.cache_hits.labels("redis")._value.get() == 2
        assert metrics.cache_misses.labels("redis")._value.get() == 4
    finally:
        await cache.close()
        sync.close()


async def test_redis_down_is_a_counted_miss_and_recovers(redis_server: Any) -> None:
    settings = Settings(redis_url=redis_server.url, cache_timeout_ms=50)
    metrics = Metrics()
    cache = RedisCache(settings, metrics)
    key = cache_key("fp", 512, "t")
    try:
        await cache.set_many([(key, [0.5, 0.5])])
        redis_server.kill()
        started = time.monotonic()
        assert await cache.get_many([key], 2) == [None]
        await cache.set_many([(key, [0.5, 0.5])])  # paused: no second error, no exception
        assert time.monotonic() - started < 1.0
        assert metrics.cache_errors.labels("redis", "get")._value.get() == 1
        redis_server.start()
        await asyncio.sleep(0.3)  # past the first pause
        await cache.set_many([(key, [0.4, 0.6])])
        assert await cache.get_many([key], 2) == [[0.4, 0.6]]
    finally:
        await cache.close()


async def test_app_cache_hit_on_repeat_visible_in_metrics_and_redis(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], redis_server: Any
) -> None:
    settings = make_settings(redis_url=redis_server.url, cache_ttl_seconds=600)
    sync = redis_server.client()
    async with running_app(settings) as ra:
        assert (await ra.client.get("/ready")).json()["cache"] == "redis"
        body = {"text": ["the cache works", "twice", "the cache works"]}
        first = await ra.client.post("/predict", json=body)
        assert await ra.metric("sentiment_cache_misses_total", {"backend": "redis"}) == 2
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "redis"}) == 0
        batches = await ra.metric("sentiment_batch_size_count")
        second = await ra.client.post("/predict", json=body)
        assert second.content == first.content
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "redis"}) == 2
        assert await ra.metric("sentiment_batch_size_count") == batches  # the model was not asked again
        fingerprint = ra.state.predictor.info.fingerprint
        keys = sorted(k.decode() for k in sync.scan_iter("sentiment:v1:*"))
        assert keys == sorted(cache_key(fingerprint, 512, t) for t in ("the cache works", "twice"))
        assert all(0 < sync.ttl(k) <= 600 for k in keys)
    sync.close()


async def test_new_fingerprint_never_reads_old_entries(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], redis_server: Any
) -> None:
    settings = make_settings(redis_url=redis_server.url)
    old = FakeBackend(fingerprint="old-model", scores={"same text": [0.9, 0.1]})
    async with running_app(settings, backend=old) as ra:
        await ra.client.post("/predict", json={"text": "same text"})
        await ra.client.post("/predict", json={"text": "same text"})
        assert old.texts_seen() == ["same text"]
    new = FakeBackend(fingerprint="new-model", scores={"same text": [0.2, 0.8]})
    async with running_app(settings, backend=new) as ra:
        response = await ra.client.post("/predict", json={"text": "same text"})
        assert response.json()["predictions"][0][0] == {"label": "POSITIVE", "score": 0.8}
        assert new.texts_seen() == ["same text"]
        assert await ra.metric("sentiment_cache_misses_total", {"backend": "redis"}) == 1


async def test_redis_killed_or_frozen_mid_test_still_answers_200(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], redis_server: Any
) -> None:
    settings = make_settings(redis_url=redis_server.url, cache_timeout_ms=50)
    backend = FakeBackend(scores={"a": [0.3, 0.7]})
    async with running_app(settings, backend=backend) as ra:
        assert (await ra.client.post("/predict", json={"text": "a"})).status_code == 200
        redis_server.kill()
        for text in ("a", "b", "c"):
            response = await ra.client.post("/predict", json={"text": text})
            assert response.status_code == 200
        assert response.json()["predictions"][0][0]["score"] == 0.5
        assert await ra.metric("sentiment_cache_errors_total", {"backend": "redis", "operation": "get"}) >= 1

        redis_server.start()  # same port, empty
        await asyncio.sleep(0.6)  # let the cache pause after the failures expire
        await ra.client.post("/predict", json={"text": "d"})
        await ra.client.post("/predict", json={"text": "d"})
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "redis"}) >= 1  # reconnected

        # A frozen Redis (accepts connections, never answers) costs at most the short timeouts.
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = await ra.client.post("/predict", json={"text": "e"})
            assert response.status_code == 200
            assert time.monotonic() - started < 2.0
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)


async def test_password_from_settings_overrides_the_url(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], redis_factory: Any
) -> None:
    server = redis_factory(password="s3cret-pw")
    url = f"redis://:wrong@127.0.0.1:{server.port}/0"
    settings = make_settings(redis_url=url, redis_password="s3cret-pw")
    async with running_app(settings, backend=FakeBackend()) as ra:
        await ra.client.post("/predict", json={"text": "auth"})
        await ra.client.post("/predict", json={"text": "auth"})
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "redis"}) == 1
        assert await ra.metric("sentiment_cache_errors_total", {"backend": "redis", "operation": "get"}) == 0
        assert "s3cret-pw" not in repr(settings)


async def test_connections_dropped_while_idle_reconnect_without_a_miss(
    running_app: RunningAppFactory, make_settings: Callable[..., Settings], redis_server: Any
) -> None:
    """A pooled connection Redis dropped while idle is re-dialed: no 500, not even a cache miss."""
    settings = make_settings(redis_url=redis_server.url)
    sync = redis_server.client()
    async with running_app(settings, backend=FakeBackend()) as ra:
        await ra.client.post("/predict", json={"text": "idle"})
        killed = sync.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1  # the app's pooled connection(s) are gone, as after an idle timeout
        response = await ra.client.post("/predict", json={"text": "idle"})
        assert response.status_code == 200
        assert await ra.metric("sentiment_cache_hits_total", {"backend": "redis"}) == 1
        assert await ra.metric("sentiment_cache_errors_total", {"backend": "redis", "operation": "get"}) == 0
    sync.close()
