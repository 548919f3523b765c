"""Case 5: SIGTERM while requests are in flight.

Readiness must turn 503 first (so a load balancer stops sending), requests already accepted must all finish
with 200, no client may see a reset, and the process must exit 0 within the grace period.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from reliability_support import (
    Outcome,
    closed_loop,
    eventually,
    metric,
    report,
    summarize,
    timed_post,
)
from serving import ServerProcess

SHUTDOWN_DELAY = 0.5
GRACE = 20.0
HEAVY_TEXTS = 14  # per request; 16 requests
_WORDS = ("plot", "acting", "great", "dull", "score", "story", "moving", "weak", "scene", "ending")


@dataclass
class Probe:
    at: float
    status: int | None
    error: str | None = None
    body: str = ""


def heavy_texts(i: int) -> list[str]:
    """HEAVY_TEXTS unique ~60-word texts: the in-flight requests keep the medium model busy for seconds."""
    return [
        f"heavy {i}.{k} " + " ".join(_WORDS[(i + j * (k + 1)) % 10] for j in range(60))
        for k in range(HEAVY_TEXTS)
    ]


async def poll_readiness(base_url: str, probes: list[Probe], time_limit: float) -> None:
    """GET /ready every 25 ms until the listener is gone (3 transport errors in a row) or the time limit."""
    failures = 0
    deadline = time.monotonic() + time_limit
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while failures < 3 and time.monotonic() < deadline:
            at = time.monotonic()
            try:
                response = await client.get("/ready")
                probes.append(Probe(at, response.status_code, body=response.text))
                failures = 0
            except httpx.TransportError as exc:
                probes.append(Probe(at, None, error=type(exc).__name__))
                failures += 1
            await asyncio.sleep(0.025)


async def test_sigterm_under_load(serve: Callable[..., ServerProcess], medium_model_dir: Path) -> None:
    # The medium model keeps the in-flight work (224 texts, 2-10 s) going well past the shutdown delay, so the
    # graceful drain after the listener closes is exercised, not only the delay.
    server = serve(
        medium_model_dir,
        SENTIMENT_SHUTDOWN_DELAY_SECONDS=str(SHUTDOWN_DELAY),
        SENTIMENT_GRACEFUL_SHUTDOWN_SECONDS=str(GRACE),
        SENTIMENT_LOCAL_CACHE_SIZE="0",
    )
    await server.wait_ready_async()
    probes: list[Probe] = []
    poller = asyncio.create_task(poll_readiness(server.base_url, probes, time_limit=60))

    def lb_says_ready() -> bool:
        """A load balancer's view: keep routing while the last readiness probe was 200."""
        return bool(probes) and probes[-1].status == 200

    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client:
        assert await eventually(lb_says_ready, time_limit=10) is not None

        async def steady_send(i: int) -> Outcome:
            return await timed_post(client, "/predict", {"text": [f"steady request {i} was fine"]})

        steady = asyncio.create_task(
            closed_loop(5000, 2, steady_send, time_limit=60, keep_going=lb_says_ready)
        )
        heavy = [
            asyncio.create_task(timed_post(client, "/predict", {"text": heavy_texts(i)}, keep_body=True))
            for i in range(16)
        ]
        queued = await eventually(lambda: _queue_at_least(client, 32), time_limit=20, interval=0.05)
        assert queued is not None, "the heavy requests never reached the model queue"
        sigterm_at = time.monotonic()
        server.signal(signal.SIGTERM)

        heavy_out = await asyncio.wait_for(asyncio.gather(*heavy), GRACE + 10)
        steady_out = await steady
        await asyncio.wait_for(poller, 70)
    exit_code = await asyncio.to_thread(server.wait_exit, GRACE + 10)
    exited_after = time.monotonic() - sigterm_at

    in_flight = [o for o in heavy_out if o.ended > sigterm_at]
    first_503 = next((p for p in probes if p.at >= sigterm_at and p.status == 503), None)
    first_gone = next((p for p in probes if p.status is None), None)
    after_503 = [p for p in probes if first_503 and p.at > first_503.at and p.status is not None]
    done_after_close = [o for o in in_flight if first_gone and o.ended > first_gone.at]

    assert exit_code == 0, f"exit code {exit_code}:\n{server.log()[-2000:]}"
    assert exited_after < GRACE + 5
    # Every request the server accepted finished with a full answer; nobody saw a reset or refused connection.
    errors = [o for o in heavy_out + steady_out if o.status != 200]
    assert not errors, f"{len(errors)} requests failed, e.g. {errors[:3]}"
    assert all(len(o.body["predictions"]) == HEAVY_TEXTS for o in heavy_out)
    assert in_flight, "no request was in flight at SIGTERM"
    # Readiness failed first: right after the signal, before the listener closed and before the work was done.
    assert first_503 is not None, f"readiness never reported 503 after SIGTERM: {probes[-5:]}"
    assert "shutting down" in first_503.body
    assert first_503.at - sigterm_at < SHUTDOWN_DELAY
    assert first_gone is None or first_gone.at > first_503.at
    assert all(p.status == 503 for p in after_503), "readiness flipped back after SIGTERM"
    assert first_503.at < max(o.ended for o in in_flight)
    assert done_after_close, "no in-flight request outlived the listener: the drain was not exercised"
    assert "Shutting down" in server.log()

    report(
        "case 5: SIGTERM under load",
        f"SIGTERM with {len(in_flight)} heavy requests (14 x 60-word texts, medium model) in flight and 2 "
        f"closed-loop clients; SENTIMENT_SHUTDOWN_DELAY_SECONDS={SHUTDOWN_DELAY}, "
        f"SENTIMENT_GRACEFUL_SHUTDOWN_SECONDS={GRACE}",
        f"/ready 503 'shutting down' {(first_503.at - sigterm_at) * 1000:.0f}ms after the signal, "
        f"listener closed {((first_gone.at if first_gone else sigterm_at) - sigterm_at):.2f}s after it; "
        f"in-flight: {summarize(in_flight)}, {len(done_after_close)} finished after the listener closed; "
        f"steady clients {summarize(steady_out)} (stopped when readiness failed); 0 resets; exit code 0 "
        f"after {exited_after:.2f}s",
    )


async def _queue_at_least(client: httpx.AsyncClient, texts: int) -> bool:
    return await metric(client, "sentiment_queue_depth") >= texts
