"""Shared fixtures: locally generated models, a real redis-server, and in-process apps.

- ``tiny_model_dir`` / ``trained_model_dir`` (session): DistilBERT dev models written by
  ``sentiment_inference.devmodel`` (real bert-base-uncased WordPiece vocabulary, no downloads).
- ``make_settings``: ``Settings`` for a test server (tiny model, no Redis, env ignored) with overrides.
- ``running_app``: async context manager factory -> RunningApp (app + httpx client over ASGITransport,
  lifespan started, by default waits until /ready is 200).
- ``redis_server``: a real ``redis-server`` on a free 127.0.0.1 port (no persistence, own temp dir) that a
  test can kill and restart; ``redis_factory`` starts more (e.g. with a password). The process helper is
  ``bench/redis_server.py``, which the benchmark uses too.
- ``serve_process``: factory that starts the real ``sentiment-serve`` console script on a free 127.0.0.1
  port (tiny model by default) -> ``serving.ServerProcess`` (``.base_url``, ``.stop()``, ``.log()``); killed
  at teardown. ``serving`` (tests/serving.py) also has ``free_port()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sentiment_inference.app import create_app
from sentiment_inference.backend import Backend
from sentiment_inference.cache import Cache
from sentiment_inference.devmodel import write_devmodel
from sentiment_inference.settings import Settings
from sentiment_inference.state import ServerState
from serving import ServerProcess

from bench.redis_server import RedisServer, redis_server_binary

# ---------------------------------------------------------------------------------------------- models


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight DistilBERT (2 layers, dim 32) with the real WordPiece tokenizer."""
    return write_devmodel(tmp_path_factory.mktemp("models") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model briefly trained on synthetic sentences: confident, meaningful NEGATIVE/POSITIVE."""
    return write_devmodel(tmp_path_factory.mktemp("models") / "tiny-trained", "tiny", trained=True, seed=0)


# ---------------------------------------------------------------------------------------------- apps


@pytest.fixture
def make_settings(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings for a test server: the tiny model, in-process cache, overrides as keyword arguments.

    SENTIMENT_* variables of the calling environment are removed so they cannot change test results.
    """
    for name in list(os.environ):
        if name.startswith("SENTIMENT_"):
            monkeypatch.delenv(name)

    def make(**overrides: Any) -> Settings:
        # One model worker: tests that hold "the model" busy with a gated fake need one batch at a time
        # (multi-worker batching has its own tests; the real-process tests run the default).
        values: dict[str, Any] = {"model_path": str(tiny_model_dir), "max_wait_ms": 0, "model_workers": 1}
        values.update(overrides)
        return Settings(**values)

    return make


@dataclass
class RunningApp:
    app: Any
    client: httpx.AsyncClient
    settings: Settings

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.sentiment
        return state

    @property
    def prefix(self) -> str:
        return self.settings.api_prefix

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            response = await self.client.get(f"{self.prefix}/ready")
            if response.status_code == 200:
                return
            if self.state.load_error:
                raise AssertionError(f"model load failed: {self.state.load_error}")
            await asyncio.sleep(0.02)
        raise AssertionError(f"app not ready after {within}s: {self.state.reason}")

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample from GET /metrics (0.0 when the series does not exist yet)."""
        text = (await self.client.get("/metrics")).text
        return metric_value(text, name, labels)


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Parse one sample out of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = labels or {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
def running_app(
    make_settings: Callable[..., Settings],
) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningApp]]:
    """``async with running_app(settings=None, backend=None, cache=None, wait_ready=True) as ra:``."""

    @contextlib.asynccontextmanager
    async def start(
        settings: Settings | None = None,
        *,
        backend: Backend | None = None,
        cache: Cache | None = None,
        wait_ready: bool = True,
    ) -> AsyncIterator[RunningApp]:
        settings = settings or make_settings()
        app = create_app(settings, backend=backend, cache=cache)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                running = RunningApp(app=app, client=client, settings=settings)
                if wait_ready:
                    await running.wait_ready()
                yield running

    return start


# ---------------------------------------------------------------------------------------------- redis


@pytest.fixture
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def start(password: str | None = None) -> RedisServer:
        if redis_server_binary() is None:
            pytest.fail("redis-server is not installed (make install apt-installs it)")
        server = RedisServer(tmp_path_factory.mktemp("redis"), password=password)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A fresh real redis-server for this test (``.url``, ``.client()``, ``.kill()``, ``.start()``)."""
    return redis_factory()


# ---------------------------------------------------------------------------------------------- real server


@pytest.fixture
def serve_process(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServerProcess]]:
    """``serve_process(model_path=None, prefix="", env=None, wait_ready=True)`` starts sentiment-serve.

    The environment is the test's minus SENTIMENT_* plus ``env``; torch uses one thread unless ``env`` says
    otherwise (CI machines are small and shared).
    """
    started: list[ServerProcess] = []

    def start(
        *,
        model_path: Path | str | None = None,
        prefix: str = "",
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> ServerProcess:
        log_path = tmp_path_factory.mktemp("serve") / "serve.log"
        server = ServerProcess(model_path or tiny_model_dir, log_path, prefix=prefix, env=env)
        started.append(server)
        if wait_ready:
            server.wait_ready(timeout=180.0)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL, timeout=10)
