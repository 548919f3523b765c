"""Helpers for the fault-injection suite: the real ``sentiment-serve`` process, a bounded load driver,
Prometheus scraping, latency summaries and a delaying TCP proxy (a "slow Redis").

Everything binds to 127.0.0.1 only, and every wait here is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command() -> list[str]:
    """The installed ``sentiment-serve`` console script next to this interpreter (the real entry point)."""
    script = Path(sys.executable).with_name("sentiment-serve")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sentiment_inference"]


def clean_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus SENTIMENT_* (they must not change results), offline, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


class ServerProcess:
    """A ``sentiment-serve`` subprocess on 127.0.0.1:<port>; stderr/stdout go to ``log_path``."""

    def __init__(self, port: int, model_dir: Path | str, log_path: Path, env: Mapping[str, str]) -> None:
        self.port = port
        self.log_path = log_path
        self.base_url = f"http://{HOST}:{port}"
        settings = {
            "SENTIMENT_HOST": HOST,
            "SENTIMENT_PORT": str(port),
            "SENTIMENT_MODEL_PATH": str(model_dir),
            # One torch thread: the CI machine is shared, and a known capacity makes overload reproducible.
            "SENTIMENT_TORCH_THREADS": "1",
            "SENTIMENT_LOG_LEVEL": "info",
        }
        settings.update(env)
        self.env = settings
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            serve_command(),
            env=clean_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    async def wait_ready(self, time_limit: float = 120.0) -> None:
        """Poll GET /ready until 200 (bounded); fail with the server log if it exits or never gets ready."""
        deadline = time.monotonic() + time_limit
        last = "no answer"
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise AssertionError(
                        f"sentiment-serve exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                    )
                try:
                    response = await client.get("/ready")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text}"
                    if "model load failed" in response.text:
                        raise AssertionError(f"model load failed: {response.text}\n{self.log()[-3000:]}")
                except httpx.TransportError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise AssertionError(f"not ready after {time_limit}s (last: {last}):\n{self.log()[-3000:]}")

    def rss_bytes(self) -> int:
        """Resident set size of the server process from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps the process and closes the log."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


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
