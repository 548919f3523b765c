"""A throw-away ``redis-server`` on a free 127.0.0.1 port, for the benchmark and the tests alike.

No persistence, its own working directory, bounded waits; it can be killed (like a crashed Redis pod) and
started again on the same port. ``with RedisServer(dir) as redis:`` starts it and stops it on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sentiment_devcluster.localserver import LocalServer

from bench.common import free_port


def redis_server_binary() -> str | None:
    """``redis-server`` next to this interpreter first (a venv may ship one), then on PATH."""
    beside = Path(sys.executable).with_name("redis-server")
    return str(beside) if beside.exists() else shutil.which("redis-server")


class RedisServer(LocalServer):
    """A real redis-server process on 127.0.0.1 (``.url``, ``.client()``, ``.kill()``, ``.start()``)."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (make install apt-installs it)")
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait (at most ``timeout`` seconds) until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        log_path = self.workdir / "redis.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log_path.read_text()[-2000:]}")
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout}s")

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> Any:
        """A synchronous redis-py client with a short timeout."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2)

    def flush(self) -> None:
        """Remove every key (between benchmark scenarios, so no cache entry leaks across)."""
        with contextlib.closing(self.client()) as client:
            client.flushall()

    def dbsize(self) -> int:
        with contextlib.closing(self.client()) as client:
            return int(client.dbsize())
