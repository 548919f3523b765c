"""Cases 1-3: the real server against a real redis-server that drops idle connections, dies, or turns slow.

In every case the client must only ever see 200s with predictions; the cache is an optimisation that may
disappear and must come back on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from reliability_support import (
    DelayProxy,
    Outcome,
    closed_loop,
    eventually,
    metric,
    metric_value,
    report,
    scrape,
    summarize,
    timed_post,
)
from serving import ServerProcess

REDIS = {"backend": "redis"}
_WORDS = ("great", "awful", "fine", "boring", "moving", "clumsy", "tender", "loud")


def sentences(tag: str, n: int) -> list[str]:
    return [
        f"{tag} {i}: the film was {_WORDS[i % len(_WORDS)]} and the cast {_WORDS[(i * 3) % 8]}"
        for i in range(n)
    ]


def server_connections(redis_client: Any) -> int:
    """Clients connected to Redis other than the one asking."""
    me = redis_client.client_id()
    return sum(1 for c in redis_client.client_list() if int(c["id"]) != me)


async def counters(client: httpx.AsyncClient) -> dict[str, float]:
    text = await scrape(client)
    return {
        "hits": metric_value(text, "sentiment_cache_hits_total", REDIS),
        "misses": metric_value(text, "sentiment_cache_misses_total", REDIS),
        "errors": metric_value(text, "sentiment_cache_errors_total", REDIS),
    }


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def assert_all_ok(outcomes: list[Outcome], what: str) -> None:
    bad = [o for o in outcomes if o.status != 200]
    assert not bad, f"{what}: {len(bad)} of {len(outcomes)} not 200, e.g. {bad[:3]}"


async def test_redis_drops_idle_connections(serve: Callable[..., ServerProcess], redis_server: Any) -> None:
    """Case 1: Redis `timeout 2` closes the server's pooled connections while idle; then a burst."""
    admin = redis_server.client()
    admin.config_set("timeout", 2)
    server = serve(SENTIMENT_REDIS_URL=redis_server.url)
    await server.wait_ready_async()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
        warm = sentences("idle", 16)
        # Concurrent single-text requests open several pooled Redis connections, all of which will go stale.
        filled = await asyncio.gather(*(timed_post(client, "/predict", {"text": [t]}) for t in warm))
        assert_all_ok(list(filled), "warm-up")
        assert len(admin.keys("sentiment:v1:*")) == len(warm)
        pooled = server_connections(admin)
        assert pooled >= 1

        results: dict[str, Any] = {"pooled": pooled}
        for round_no in (1, 2):
            # Idle well past the timeout; Redis's cron closes idle clients. Bounded wait until all are gone.
            await asyncio.sleep(3.0)
            dropped = await eventually(lambda: server_connections(redis_server.client()) == 0, 10, 0.25)
            assert dropped is not None, "Redis did not drop the idle connections"

            before = await counters(client)
            if round_no == 1:
                first = await timed_post(client, "/predict", {"text": warm[:4]})
                after_first = await counters(client)
                assert first.status == 200, first
                d = delta(after_first, before)
                # The cache works again on the very first request after the idle drop.
                assert d["hits"] == 4, d
                assert d["errors"] == 0, d
                results["first"] = f"{first.latency * 1000:.1f}ms, cache {d}"
                before = after_first
            # A burst: 64 concurrent requests, half with cached texts, half new ones.
            new = sentences(f"burst{round_no}", 32)
            payloads = [{"text": [warm[i % len(warm)]]} for i in range(32)] + [{"text": [t]} for t in new]
            burst = list(await asyncio.gather(*(timed_post(client, "/predict", p) for p in payloads)))
            d = delta(await counters(client), before)
            assert_all_ok(burst, f"burst after idle, round {round_no}")
            assert d["hits"] == 32, d
            assert d["errors"] == 0, d
            results[f"burst{round_no}"] = f"{summarize(burst)}, cache {d}"
    report(
        "case 1: Redis drops idle connections",
        f"redis `timeout 2`, {pooled} pooled server connections dropped after >3s idle (verified with "
        "CLIENT LIST), twice; then a single request and a 64-request concurrent burst",
        "; ".join(f"{k}: {v}" for k, v in results.items()),
    )


async def test_redis_killed_under_load_then_restarted(
    serve: Callable[..., ServerProcess], redis_server: Any
) -> None:
    """Case 2: SIGKILL redis-server during a steady load, restart it on the same port 2.5 s later."""
    server = serve(SENTIMENT_REDIS_URL=redis_server.url)
    await server.wait_ready_async()
    hot = sentences("hot", 12)
    reference: dict[str, list[dict[str, Any]]] = {}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        for text in hot:  # fill the cache and remember the model's answer per text
            out = await timed_post(client, "/predict", {"text": [text]}, keep_body=True)
            assert out.status == 200
            reference[text] = out.body["predictions"][0]
        before = await counters(client)

        stop = asyncio.Event()
        wrong: list[int] = []

        async def send(i: int) -> Outcome:
            text = hot[i % len(hot)]
            out = await timed_post(
                client, "/predict", {"text": [text, f"unique load text {i}"]}, keep_body=True
            )
            # Every answer is the model's (from the cache or not), never a wrong or missing one.
            if out.status == 200 and (
                len(out.body["predictions"]) != 2 or not _close(out.body["predictions"][0], reference[text])
            ):
                wrong.append(i)
            return out

        load = asyncio.create_task(
            closed_loop(3000, 4, send, time_limit=90, keep_going=lambda: not stop.is_set())
        )
        await asyncio.sleep(1.5)
        killed_at = time.monotonic()
        redis_server.kill()
        await asyncio.sleep(2.5)
        await asyncio.to_thread(redis_server.start)
        restarted_at = time.monotonic()

        # Caching resumes by itself: a probe text is answered from Redis again (bounded wait).
        recovered_after = None
        probe_no = 0
        while time.monotonic() < restarted_at + 20:
            probe = f"probe after restart {probe_no}"
            probe_no += 1
            await timed_post(client, "/predict", {"text": [probe]})
            hits_before = await metric(client, "sentiment_cache_hits_total", REDIS)
            again = await timed_post(client, "/predict", {"text": [probe]})
            assert again.status == 200
            if await metric(client, "sentiment_cache_hits_total", REDIS) > hits_before:
                recovered_after = time.monotonic() - restarted_at
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # some load with the cache back
        stop.set()
        outcomes = await load
        d = delta(await counters(client), before)

    assert recovered_after is not None, "caching did not resume within 20s of the Redis restart"
    assert_all_ok(outcomes, "load across the Redis outage")
    during = [o for o in outcomes if killed_at <= o.started < restarted_at]
    assert len(during) >= 10, f"only {len(during)} requests during the outage"
    assert not wrong, f"{len(wrong)} answers differ from the model's"
    assert d["errors"] > 0, "the outage should be visible in sentiment_cache_errors_total"
    assert len(redis_server.client().keys("sentiment:v1:*")) > 0, "nothing written to the restarted Redis"
    report(
        "case 2: Redis killed under load, restarted on the same port",
        "4 closed-loop clients (1 cached + 1 new text per request); redis-server SIGKILLed after 1.5s, "
        "restarted on the same port 2.5s later",
        f"{summarize(outcomes)}; {len(during)} requests during the outage, all 200 from the model; "
        f"cache {d}; caching resumed {recovered_after:.2f}s after the restart",
    )


def _close(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return [x["label"] for x in a] == [x["label"] for x in b] and all(
        abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("delay", [2.0])
async def test_redis_slow(serve: Callable[..., ServerProcess], redis_server: Any, delay: float) -> None:
    """Case 3: every Redis reply delayed by ``delay`` s through a TCP proxy; cache timeout 100 ms."""
    timeout_ms = 100
    async with DelayProxy(redis_server.port, delay=0.0) as proxy:
        server = serve(SENTIMENT_REDIS_URL=proxy.url, SENTIMENT_CACHE_TIMEOUT_MS=str(timeout_ms))
        await server.wait_ready_async()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            known = sentences("slow", 10)
            baseline = [await timed_post(client, "/predict", {"text": [t]}, keep_body=True) for t in known]
            assert_all_ok(baseline, "baseline through the proxy")
            reference = {t: o.body["predictions"][0] for t, o in zip(known, baseline, strict=True)}
            base = summarize(baseline)
            before = await counters(client)

            proxy.delay = delay
            sequential = [
                await timed_post(client, "/predict", {"text": [known[i % 10], f"slow new {i}"]})
                for i in range(20)
            ]

            async def send(i: int) -> Outcome:
                return await timed_post(client, "/predict", {"text": [known[i % 10], f"slow conc {i}"]})

            concurrent = await closed_loop(40, 5, send, time_limit=60)
            d = delta(await counters(client), before)
            slow = sequential + concurrent

            # Redis is fast again: hits come back (bounded wait) and cached answers equal the model's.
            proxy.delay = 0.0
            recovered_after = None
            start = time.monotonic()
            while time.monotonic() < start + 20:
                hits_before = await metric(client, "sentiment_cache_hits_total", REDIS)
                out = await timed_post(client, "/predict", {"text": [known[0]]}, keep_body=True)
                assert out.status == 200
                if await metric(client, "sentiment_cache_hits_total", REDIS) > hits_before:
                    recovered_after = time.monotonic() - start
                    break
                await asyncio.sleep(0.25)
            cached = await timed_post(client, "/predict", {"text": known}, keep_body=True)

    assert_all_ok(slow, "requests while Redis is slow")
    # Budget: the worst a request can spend on the cache is a timed-out MGET and a timed-out pipelined SET,
    # each retried once (4 x timeout + 2 backoffs of <= 20 ms), on top of the normal latency, plus a generous
    # margin for a shared CI machine; still well under one delayed Redis round trip.
    budget = 4 * timeout_ms / 1000 + 0.04 + base.p50_ms / 1000 + 0.5
    assert budget < delay
    s = summarize(slow)
    over = [o.latency for o in slow if o.latency > budget]
    assert not over, f"{len(over)} requests over the {budget * 1000:.0f}ms budget: {sorted(over)[-3:]}"
    assert d["errors"] > 0, d
    assert recovered_after is not None, "cache hits did not come back after Redis became fast again"
    assert cached.status == 200
    for text, got in zip(known, cached.body["predictions"], strict=True):
        assert _close(got, reference[text]), (text, got, reference[text])
    report(
        "case 3: Redis slow",
        f"delaying TCP proxy in front of redis-server, {delay * 1000:.0f}ms per reply chunk; "
        f"SENTIMENT_CACHE_TIMEOUT_MS={timeout_ms}; 20 sequential + 40 requests from 5 clients",
        f"baseline (proxy delay 0) {base}; slow phase {s}; budget {budget * 1000:.0f}ms, 0 over; "
        f"cache {d}; hits back {recovered_after:.2f}s after the delay was removed, cached answers == model's",
    )
