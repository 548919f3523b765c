"""``sentiment-serve``: run the server with uvicorn (one worker; uvloop/httptools when installed).

Flags override the ``SENTIMENT_*`` environment; OMP_WAIT_POLICY defaults to PASSIVE (set it to override).
On SIGTERM readiness turns 503 first (predictions still served); after ``SENTIMENT_SHUTDOWN_DELAY_SECONDS``
uvicorn stops accepting connections and in-flight requests get ``SENTIMENT_GRACEFUL_SHUTDOWN_SECONDS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from sentiment_inference.app import create_app
from sentiment_inference.settings import Settings
from sentiment_inference.state import ServerState

log = logging.getLogger("sentiment_inference")


class GracefulServer(uvicorn.Server):
    """uvicorn.Server that fails readiness on the first signal and optionally delays the actual stop."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None], delay: float) -> None:
        super().__init__(config)
        self._on_signal = on_signal
        self._delay = delay
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_signal()
        if self._delay > 0 and self._exit_at is None and not self.should_exit:
            log.info("Received signal %d: not ready now, stopping in %.1fs", sig, self._delay)
            self._exit_at = time.monotonic() + self._delay
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sentiment-serve",
        description="Serve the sentiment model over HTTP. Every setting also reads SENTIMENT_* env vars; "
        "these flags override them.",
    )
    parser.add_argument("--host", help="bind address (SENTIMENT_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (SENTIMENT_PORT, default 8000)")
    parser.add_argument("--model-path", help="model directory (SENTIMENT_MODEL_PATH)")
    parser.add_argument("--prefix", help='API path prefix, e.g. "/project" (SENTIMENT_API_PREFIX)')
    parser.add_argument("--model-id", help="model id shown by /model (SENTIMENT_MODEL_ID)")
    parser.add_argument("--quantization", choices=["none", "int8"], help="SENTIMENT_QUANTIZATION")
    parser.add_argument("--log-level", help="SENTIMENT_LOG_LEVEL")
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "model_path": args.model_path,
        "api_prefix": args.prefix,
        "model_id": args.model_id,
        "quantization": args.quantization,
        "log_level": args.log_level,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    # Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On shared or CPU-limited
    # machines spinning threads starve each other (measured: 4.7 -> 34.8 req/s with 2 threads on a busy host).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as exc:
        print(f"sentiment-serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    app = create_app(settings)
    state: ServerState = app.state.sentiment
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=settings.access_log,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        server_header=False,
        # Beyond this many connections and in-flight requests uvicorn answers 503 at once.
        limit_concurrency=settings.max_connections,
    )
    server = GracefulServer(config, state.begin_shutdown, settings.shutdown_delay_seconds)
    log.info(
        "Serving model %s from %s on %s:%d (prefix %r)",
        settings.model_id,
        settings.model_path,
        settings.host,
        settings.port,
        settings.api_prefix or "/",
    )
    server.run()
    return 0
