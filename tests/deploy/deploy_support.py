"""Helpers shared by the deploy/images/examples tests (imported by name; tests/deploy is on sys.path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def offline_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: never reach a model hub."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A real `sentiment-serve` process on 127.0.0.1 (in-process cache)."""

    def __init__(self, model_dir: Path, prefix: str, log_path: Path) -> None:
        self.port = free_port()
        self.prefix = prefix
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = offline_env(SENTIMENT_SHUTDOWN_DELAY_SECONDS="0")
        env.pop("SENTIMENT_REDIS_URL", None)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(BIN / "sentiment-serve"),
                "--host=127.0.0.1",
                f"--port={self.port}",
                f"--model-path={model_dir}",
                f"--prefix={prefix}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.prefix}{path}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sentiment-serve exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.url("/ready"), timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"sentiment-serve not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
