"""Helpers for the fault-injection suite: a sized model, a bounded load driver, Prometheus scraping, latency
summaries and a delaying TCP proxy (a "slow Redis"). The server process itself is ``serving.ServerProcess``.

Everything binds to 127.0.0.1 only, and every wait here is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from serving import HOST


def write_sized_model(
    out: Path, tokenizer_from: Path, *, dim: int, n_layers: int, n_heads: int, hidden_dim: int, seed: int = 0
) -> Path:
    """A random-weight DistilBERT classifier of a chosen size, reusing a dev model's tokenizer files.

    The overload case needs a model whose cost per request dwarfs the HTTP/JSON overhead, so "3x capacity"
    is a modest request rate that a shared 2-core machine can really offer.
    """
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    config = DistilBertConfig(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
        max_position_embeddings=512,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    out.mkdir(parents=True, exist_ok=True)
    model = DistilBertForSequenceClassification(config)
    model.train(False)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tokenizer_from / name).is_file():
            shutil.copy(tokenizer_from / name, out / name)
    return out


# ------------------------------------------------------------------------------------------------ metrics


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0.0 when there is none)."""
    wanted = labels or {}
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += float(sample.value)
    return total


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


async def metric(client: httpx.AsyncClient, name: str, labels: Mapping[str, str] | None = None) -> float:
    return metric_value(await scrape(client), name, labels)


# ------------------------------------------------------------------------------------------------ load


@dataclass
class Outcome:
    """One request's fate as the client saw it."""

    started: float
    latency: float
    status: int | None = None  # None: no HTTP answer at all (transport error)
    error: str | None = None
    retry_after: str | None = None
    body: Any = None

    @property
    def ended(self) -> float:
        return self.started + self.latency


async def timed_post(
    client: httpx.AsyncClient, path: str, payload: Any, *, keep_body: bool = False
) -> Outcome:
    """POST JSON and record status, latency, Retry-After; transport failures are recorded, not raised."""
    started = time.monotonic()
    try:
        response = await client.post(path, json=payload)
    except httpx.HTTPError as exc:
        return Outcome(started, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    latency = time.monotonic() - started
    body = None
    if keep_body or response.status_code != 200:
        with contextlib.suppress(ValueError):
            body = response.json()
    return Outcome(started, latency, response.status_code, None, response.headers.get("retry-after"), body)


async def closed_loop(
    n_requests: int,
    concurrency: int,
    send: Callable[[int], Awaitable[Outcome]],
    *,
    time_limit: float,
    keep_going: Callable[[], bool] = lambda: True,
) -> list[Outcome]:
    """``concurrency`` workers send requests 0..n-1 back to back; bounded by count and by ``time_limit``."""
    outcomes: list[Outcome] = []
    counter = iter(range(n_requests))

    async def worker() -> None:
        for i in counter:
            if not keep_going():
                return
            outcomes.append(await send(i))

    async with asyncio.timeout(time_limit):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def open_loop(
    rate: float, n_requests: int, send: Callable[[int], Coroutine[Any, Any, Outcome]], *, time_limit: float
) -> list[Outcome]:
    """Start request i at t0 + i/rate whatever happened to the others (offered load), then await them all."""
    t0 = time.monotonic()
    tasks: list[asyncio.Task[Outcome]] = []
    async with asyncio.timeout(time_limit):
        for i in range(n_requests):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i)))
        return list(await asyncio.gather(*tasks))


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], time_limit: float, interval: float = 0.1
) -> float | None:
    """Seconds until ``predicate`` held (polled every ``interval``, at most ``time_limit``), else None."""
    start = time.monotonic()
    for _ in range(int(time_limit / interval) + 1):
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > time_limit:
            break
        await asyncio.sleep(interval)
    return None


def percentile(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    index = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
    return data[index]


@dataclass
class Summary:
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"n={self.count} [{statuses}] latency p50={self.p50_ms:.1f}ms p95={self.p95_ms:.1f}ms "
            f"max={self.max_ms:.1f}ms"
        )


def summarize(outcomes: Iterable[Outcome]) -> Summary:
    items = list(outcomes)
    latencies = [o.latency * 1000 for o in items]
    statuses: dict[str, int] = {}
    for o in items:
        key = str(o.status) if o.status is not None else "transport-error"
        statuses[key] = statuses.get(key, 0) + 1
    return Summary(
        count=len(items),
        p50_ms=percentile(latencies, 0.5),
        p95_ms=percentile(latencies, 0.95),
        max_ms=max(latencies, default=float("nan")),
        statuses=statuses,
    )


def report(case: str, injected: str, observed: str) -> None:
    """One line per case for the closing note (shown with ``pytest -s`` and in captured output)."""
    print(f"\n[reliability] {case}\n    injected: {injected}\n    observed: {observed}", flush=True)


# ------------------------------------------------------------------------------------------------ proxy


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delays every chunk by ``delay`` seconds (a slow network/Redis).

    Order is kept and throughput is not limited: each direction stamps chunks as they arrive and a writer
    forwards each one once its stamp + delay has passed. ``delay`` may be changed while running.
    """

    def __init__(self, upstream_port: int, delay: float, *, both_directions: bool = False) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.both_directions = both_directions
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.upstream_port), 5
            )
        except (OSError, TimeoutError):
            client_writer.close()
            return
        self._writers.update((client_writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(client_reader, up_writer, self.both_directions)),
            asyncio.create_task(self._pump(up_reader, client_writer, True)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_writer, up_writer):
                writer.close()
                self._writers.discard(writer)
            self._tasks.difference_update(pumps)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                stamp, chunk = await queue.get()
                if not chunk:
                    return
                if delayed:
                    wait = stamp + self.delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        forwarder = asyncio.create_task(forward())
        try:
            while True:
                chunk = await reader.read(65536)
                await queue.put((time.monotonic(), chunk))
                if not chunk:
                    break
            await forwarder
        except (OSError, ConnectionError):
            pass
        finally:
            forwarder.cancel()
