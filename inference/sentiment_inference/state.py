"""Per-app server state: settings, backend, batcher, cache, metrics and readiness (no module globals)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sentiment_inference.backend import Backend, ModelLoadError
from sentiment_inference.batching import Batcher
from sentiment_inference.cache import Cache
from sentiment_inference.metrics import Metrics
from sentiment_inference.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    settings: Settings
    backend: Backend
    metrics: Metrics
    batcher: Batcher
    cache: Cache
    ready: bool = False  # readiness: model usable and not shutting down
    serving: bool = False  # model loaded and warmed up; stays True while a shutdown drains
    reason: str = "starting"
    load_error: str | None = None
    load_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def set_ready(self, ready: bool, reason: str) -> None:
        self.ready = ready
        self.reason = reason
        self.metrics.ready.set(1 if ready else 0)

    def begin_shutdown(self) -> None:
        """First step of a graceful stop: readiness fails so load balancers stop sending new requests.

        Predictions keep being served: requests still routed here during endpoint removal must succeed.
        """
        if self.reason != "shutting down":  # called on the signal and again by the lifespan exit
            log.info("Shutting down: readiness now reports 503, in-flight requests may finish")
        self.set_ready(False, "shutting down")

    async def load_model(self) -> None:
        """Load and warm up on the model thread while /health already answers; errors stay in readiness."""
        s = self.settings
        try:
            self.set_ready(False, f"loading model from {s.model_path}")
            started = time.perf_counter()
            await self.batcher.run_in_worker(self.backend.load)
            self.set_ready(False, "warming up")
            await self.batcher.run_in_worker(self.backend.warmup)
            info = self.backend.info
            self.metrics.model_info.labels(info.model_id, info.precision, info.fingerprint).set(1)
            self.serving = True
            if self.reason == "shutting down":
                return
            self.set_ready(True, "ready")
            log.info(
                "Ready: model %s loaded and warmed up in %.1fs", info.model_id, time.perf_counter() - started
            )
        except ModelLoadError as exc:
            self.load_error = exc.reason
            self.set_ready(False, f"model load failed: {exc.reason}")
            log.error("Model load failed, readiness stays 503: %s", exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            self.set_ready(False, f"model load failed: {self.load_error}")
            log.exception("Model load or warm-up failed, readiness stays 503")
