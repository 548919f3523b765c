"""``sentiment-wait-redis --check dns|ping [--timeout SECONDS]``: wait until Redis is usable.

Reads the server's Redis settings (SENTIMENT_REDIS_URL/PASSWORD or their ``_FILE`` variants). ``dns``
waits until the URL's host resolves; ``ping`` until an authenticated PING succeeds. Logs every attempt, backs
off up to 5 s between attempts, exits 0 on success and 1 when --timeout passes (default: wait forever) or
nothing is configured.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis
from pydantic import ValidationError

from sentiment_inference.cache import apply_password, redacted
from sentiment_inference.settings import Settings

log = logging.getLogger("sentiment_inference.wait_redis")

_BACKOFF_START = 0.25
_BACKOFF_MAX = 5.0


def check_dns(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not os.path.exists(parts.path):
            raise OSError(f"socket {parts.path} does not exist")
        return
    if not parts.hostname:
        raise ValueError(f"no host in {redacted(url)}")
    socket.getaddrinfo(parts.hostname, parts.port or 6379, type=socket.SOCK_STREAM)


def check_ping(url: str, password: str | None, attempt_timeout: float) -> None:
    client = redis.Redis.from_url(
        apply_password(url, password),
        socket_timeout=attempt_timeout,
        socket_connect_timeout=attempt_timeout,
    )
    try:
        if not client.ping():
            raise ConnectionError("PING did not return PONG")
    finally:
        client.close()


def wait(check: Callable[[], None], what: str, timeout: float | None, sleep: Callable[[float], None]) -> bool:
    """Retry ``check`` with bounded exponential backoff; True once it passes, False after ``timeout``."""
    started = time.monotonic()
    delay = _BACKOFF_START
    attempt = 0
    while True:
        attempt += 1
        try:
            check()
        except Exception as exc:
            elapsed = time.monotonic() - started
            log.warning(
                "Attempt %d: %s failed after %.1fs: %s: %s", attempt, what, elapsed, type(exc).__name__, exc
            )
            if timeout is not None and elapsed + delay > timeout:
                log.error("Gave up waiting for %s after %.1fs (--timeout %s)", what, elapsed, timeout)
                return False
            sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            continue
        log.info("Attempt %d: %s succeeded after %.1fs", attempt, what, time.monotonic() - started)
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sentiment-wait-redis",
        description="Wait until the Redis in SENTIMENT_REDIS_URL resolves (dns) or answers PING (ping).",
    )
    parser.add_argument("--check", choices=["dns", "ping"], required=True, help="what to wait for")
    parser.add_argument("--timeout", type=float, default=None, help="give up after SECONDS (default: never)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        settings = Settings()
    except ValidationError as exc:
        log.error("Invalid settings: %s", exc)
        return 1
    url = settings.redis_url
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    if not url:
        log.error("SENTIMENT_REDIS_URL is not set; nothing to wait for")
        return 1
    where = redacted(url)
    if args.check == "dns":
        ok = wait(lambda: check_dns(url), f"resolving {where}", args.timeout, time.sleep)
    else:
        attempt_timeout = 2.0 if args.timeout is None else max(0.1, min(2.0, args.timeout))
        ok = wait(
            lambda: check_ping(url, password, attempt_timeout), f"PING {where}", args.timeout, time.sleep
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
