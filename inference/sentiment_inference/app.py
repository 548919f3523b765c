"""The app factory: ``create_app(settings)`` builds a fresh FastAPI app with its own state and metrics.

The lifespan starts the serving core, loads and warms the model on a model worker thread in the background (so
/health answers during a slow load and /ready says why it is not ready yet), and closes everything on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentiment_inference import __version__
from sentiment_inference.api import PREDICT_ROUTE_NAMES, build_router
from sentiment_inference.backend import Backend, TorchBackend
from sentiment_inference.batching import BatchLimits
from sentiment_inference.cache import Cache, make_cache
from sentiment_inference.errors import install_error_handlers
from sentiment_inference.metrics import Metrics
from sentiment_inference.predictor import Predictor
from sentiment_inference.settings import Settings
from sentiment_inference.state import Phase, ServerState

log = logging.getLogger(__name__)


class MetricsMiddleware:
    """Counts every HTTP request by route, method and status, observes its latency, and keeps the gauge of
    predict requests in flight (from the first byte of the request to the last of the answer).

    ``routes`` are the app's own paths, each its own label; any other path is counted as "other".
    ``load_routes`` are the predict paths: only they are load (probes and scrapes are not).
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, routes: frozenset[str], load_routes: frozenset[str]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.load_routes = load_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else "other"
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        load = path in self.load_routes
        if load:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            if load:
                self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


def batch_limits(settings: Settings) -> BatchLimits:
    return BatchLimits(
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.effective_max_batch_tokens,
        max_wait_ms=settings.max_wait_ms,
        workers=settings.effective_model_workers,
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.sentiment
    state.predictor.start()
    state.enter(Phase.LOADING)
    state.load_task = asyncio.create_task(state.load_model(), name="sentiment-load-model")
    try:
        yield
    finally:
        state.begin_shutdown()
        if not state.load_task.done():
            state.load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.load_task
        state.stopped()
        await state.predictor.stop()
        log.info("Stopped")


def create_app(
    settings: Settings | None = None,
    *,
    backend: Backend | None = None,
    cache: Cache | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """A fresh app; ``backend``/``cache`` default to the real ones built from ``settings``."""
    settings = settings or Settings()
    metrics = metrics or Metrics()
    backend = backend or TorchBackend(settings)
    predictor = Predictor(
        backend,
        cache or make_cache(settings, metrics),
        metrics,
        batch_limits(settings),
        max_queue=settings.max_queue,
    )
    state = ServerState(settings=settings, predictor=predictor, metrics=metrics)
    metrics.ready.set(0)
    app = FastAPI(
        title="Sentiment inference",
        version=__version__,
        description="DistilBERT sentiment classification with micro-batching and a prediction cache.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.sentiment = state
    router = build_router(settings.api_prefix)
    app.include_router(router)
    install_error_handlers(app, settings.retry_after_seconds)
    # FastAPI's own routes (/docs, /openapi.json) and ours: the metrics label each by its path.
    routes = frozenset(r.path for r in (*app.routes, *router.routes) if isinstance(r, Route))
    load_routes = frozenset(
        r.path for r in router.routes if isinstance(r, Route) and r.name in PREDICT_ROUTE_NAMES
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes, load_routes=load_routes)
    return app
