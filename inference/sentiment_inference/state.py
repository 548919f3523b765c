"""Per-app server state: settings, the serving core, metrics and the server's phase (no module globals)."""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import time
from dataclasses import dataclass, field

from sentiment_inference.backend import ModelLoadError
from sentiment_inference.metrics import Metrics
from sentiment_inference.predictor import Predictor
from sentiment_inference.settings import Settings

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    """Where the server is in its life; readiness and serving both follow from it."""

    STARTING = "starting"
    LOADING = "loading"
    WARMING_UP = "warming up"
    READY = "ready"
    FAILED = "failed"  # the model could not be loaded: never ready, the reason stays in readiness
    DRAINING = "draining"  # shutting down with the model loaded: not ready, predictions still served
    STOPPING = "stopping"  # shutting down before the model was usable
    STOPPED = "stopped"  # the lifespan ended

    @property
    def ready(self) -> bool:
        return self is Phase.READY

    @property
    def serving(self) -> bool:
        return self in (Phase.READY, Phase.DRAINING)

    @property
    def shutting_down(self) -> bool:
        return self in (Phase.DRAINING, Phase.STOPPING, Phase.STOPPED)


@dataclass
class ServerState:
    settings: Settings
    predictor: Predictor
    metrics: Metrics
    phase: Phase = Phase.STARTING
    load_error: str | None = None  # why the model could not be loaded (phase FAILED, or shutting down after)
    load_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        """Readiness: the model is usable and the server is not shutting down."""
        return self.phase.ready

    @property
    def serving(self) -> bool:
        """The model is loaded and warmed up; stays True while a shutdown drains."""
        return self.phase.serving

    @property
    def reason(self) -> str:
        """What readiness reports: why the server is (not) ready."""
        if self.phase is Phase.LOADING:
            return f"loading model from {self.settings.model_path}"
        if self.phase is Phase.FAILED:
            return f"model load failed: {self.load_error}"
        if self.phase.shutting_down:
            return "shutting down"
        return str(self.phase.value)

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        self.metrics.ready.set(1 if phase.ready else 0)

    def begin_shutdown(self) -> None:
        """First step of a graceful stop: readiness fails so load balancers stop sending new requests.

        Predictions keep being served: requests still routed here during endpoint removal must succeed.
        """
        if self.phase.shutting_down:  # called on the signal and again by the lifespan exit
            return
        log.info("Shutting down: readiness now reports 503, in-flight requests may finish")
        self.enter(Phase.DRAINING if self.phase.serving else Phase.STOPPING)

    def stopped(self) -> None:
        self.enter(Phase.STOPPED)
        gc.unfreeze()  # what load_model froze can be collected again (a process may build another app)

    async def load_model(self) -> None:
        """Load and warm up on the model thread while /health already answers; errors stay in readiness."""
        try:
            self._advance(Phase.LOADING)
            started = time.perf_counter()
            await self.predictor.load()
            self._advance(Phase.WARMING_UP)
            await self.predictor.warm_up()
            # What loading created (torch, the compiled model, the app) lives as long as the server: out of
            # the collector's sight, a full collection under load no longer walks those ~200k objects
            # (110-130 ms of CPU holding the GIL, every request stopped; 3 ms after the freeze).
            gc.freeze()
            info = self.predictor.info
            self.metrics.model_info.labels(info.model_id, info.precision, info.fingerprint).set(1)
            if self.phase.shutting_down:
                # Loaded during a drain: in-flight requests still get answers, readiness stays off.
                if self.phase is Phase.STOPPING:
                    self.enter(Phase.DRAINING)
                return
            self.enter(Phase.READY)
            log.info(
                "Ready: model %s loaded and warmed up in %.1fs", info.model_id, time.perf_counter() - started
            )
        except ModelLoadError as exc:
            self._failed(exc.reason)
            log.error("Model load failed, readiness stays 503: %s", exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            log.exception("Model load or warm-up failed, readiness stays 503")

    def _advance(self, phase: Phase) -> None:
        """Move on while starting up; a shutdown that began meanwhile keeps its phase."""
        if not self.phase.shutting_down:
            self.enter(phase)

    def _failed(self, error: str) -> None:
        self.load_error = error
        self._advance(Phase.FAILED)
