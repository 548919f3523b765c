"""The real ``sentiment-serve`` process on 127.0.0.1, for every suite that needs one.

Imported by name (``from serving import ServerProcess``): tests/ is on sys.path because tests/conftest.py is
imported from there. Everything binds to 127.0.0.1 only, and every wait here is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from signal import SIGTERM

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def offline_env(**extra: str) -> dict[str, str]:
    """The caller's environment for a subprocess that must never reach a model hub, plus ``extra``."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def serve_command() -> list[str]:
    """The installed ``sentiment-serve`` console script next to this interpreter (the real entry point)."""
    script = Path(sys.executable).with_name("sentiment-serve")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sentiment_inference"]


class ServerProcess:
    """A ``sentiment-serve`` subprocess on 127.0.0.1:<port>; stdout and stderr go to ``log_path``.

    Host, port, model and prefix are passed as flags. The environment is the caller's minus SENTIMENT_*
    (they must not change results), offline, with one torch thread unless ``torch_threads`` is None (CI
    machines are small and shared, and a known capacity makes overload reproducible), plus ``env``.
    ``.env`` holds the SENTIMENT_* settings the server runs with, the flags included.
    """

    def __init__(
        self,
        model_dir: Path | str,
        log_path: Path,
        *,
        prefix: str = "",
        env: Mapping[str, str] | None = None,
        torch_threads: int | None = 1,
    ) -> None:
        self.port = free_port()
        self.prefix = prefix.rstrip("/")
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        flags = {
            "SENTIMENT_HOST": HOST,
            "SENTIMENT_PORT": str(self.port),
            "SENTIMENT_MODEL_PATH": str(model_dir),
            "SENTIMENT_API_PREFIX": prefix,
        }
        overrides = {} if torch_threads is None else {"SENTIMENT_TORCH_THREADS": str(torch_threads)}
        overrides.update(env or {})
        self.env = {**flags, **overrides}
        inherited = offline_env(PYTHONUNBUFFERED="1")
        full_env = {k: v for k, v in inherited.items() if not k.startswith("SENTIMENT_")}
        full_env.update(overrides)
        command = [
            *serve_command(),
            f"--host={HOST}",
            f"--port={self.port}",
            f"--model-path={model_dir}",
            f"--prefix={prefix}",
        ]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.prefix}{path}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def logs(self) -> str:
        """The end of the log (for failure messages)."""
        return self.log()[-4000:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def _ready(self, response: httpx.Response | None) -> bool:
        """True on 200; fail with the log when the process exited or the model load failed."""
        if not self.alive():
            raise AssertionError(f"sentiment-serve exited with {self.process.returncode}:\n{self.logs()}")
        if response is not None and "model load failed" in response.text:
            raise AssertionError(f"model load failed: {response.text}\n{self.logs()}")
        return response is not None and response.status_code == 200

    def _not_ready(self, timeout: float, last: str) -> AssertionError:
        return AssertionError(f"sentiment-serve not ready after {timeout}s (last: {last}):\n{self.logs()}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll GET /ready until 200 (bounded); fail with the server log if it exits or never gets ready."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                try:
                    response: httpx.Response | None = client.get(self.url("/ready"))
                except httpx.TransportError as exc:
                    response, last = None, repr(exc)
                if self._ready(response):
                    return
                if response is not None:
                    last = f"{response.status_code} {response.text}"
                time.sleep(0.1)
        raise self._not_ready(timeout, last)

    async def wait_ready_async(self, time_limit: float = 120.0) -> None:
        """``wait_ready`` without blocking the event loop (which may run load or a proxy meanwhile)."""
        deadline = time.monotonic() + time_limit
        last = "no answer"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                try:
                    response: httpx.Response | None = await client.get(self.url("/ready"))
                except httpx.TransportError as exc:
                    response, last = None, repr(exc)
                if self._ready(response):
                    return
                if response is not None:
                    last = f"{response.status_code} {response.text}"
                await asyncio.sleep(0.1)
        raise self._not_ready(time_limit, last)

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
        """The exit code, or None when the process is still running after ``timeout``."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, then SIGKILL after ``timeout``; always reaps the process. Returns the exit code."""
        self.signal(sig)
        if self.wait_exit(timeout) is None:
            self.process.kill()
            self.process.wait(timeout=10)
        return self.process.returncode


def processes_under(directory: Path) -> list[int]:
    """Processes whose working directory is inside ``directory`` (every pod's containers are)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(directory)):
                found.append(int(entry.name))
    return found
