"""A local server process (Redis, Prometheus) that tests, benchmarks and the embedded cluster start and stop.

Subclasses start ``self.process``; this base stops it politely (SIGTERM, then SIGKILL after a bound), kills it
like a crashed pod, and works as a context manager. Every wait is bounded.
"""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Self


class LocalServer:
    """A server process started by ``start()`` and stopped by ``stop()`` (or leaving a ``with`` block)."""

    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM; SIGKILL if it has not exited after ``grace`` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, like a crashed or evicted pod."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
