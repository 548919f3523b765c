"""The two servers under test, each started as its own process on a free loopback port and stopped after.

``ours`` is ``sentiment-serve`` (or ``--server-cmd``); ``pipeline`` is ``bench/pipeline_server.py``, the
hand-written transformers-pipeline server this project replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, free_port, tool
from bench.redis_server import RedisServer


@dataclass
class ServerSpec:
    label: str
    kind: str  # "ours" | "pipeline"
    precision: str
    extra_env: dict[str, str] = field(default_factory=dict)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, payload: object, timeout: float = 60.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class RunningServer:
    def __init__(
        self, spec: ServerSpec, model: Path, redis: RedisServer, logdir: Path, server_cmd: list[str] | None
    ) -> None:
        self.spec = spec
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = logdir / f"{spec.label}.log"
        env = dict(os.environ)
        if spec.kind == "ours":
            env.update(
                {
                    "SENTIMENT_MODEL_PATH": str(model),
                    "SENTIMENT_HOST": "127.0.0.1",
                    "SENTIMENT_PORT": str(self.port),
                    "SENTIMENT_REDIS_URL": redis.url,
                    "SENTIMENT_QUANTIZATION": spec.precision,
                    "SENTIMENT_API_PREFIX": "",
                }
            )
            env.update(spec.extra_env)
            cmd = server_cmd or [tool("sentiment-serve")]
            self.ready_url = f"{self.base_url}/ready"
        else:
            cmd = [
                sys.executable,
                "-m",
                "bench.pipeline_server",
                "--model",
                str(model),
                "--port",
                str(self.port),
                "--redis-url",
                redis.url,
            ]
            env.update(spec.extra_env)
            # It has no readiness route; /health answers once the model is loaded (it loads before binding).
            self.ready_url = f"{self.base_url}/health"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.start_to_ready_s = self._wait_ready(timeout=180)

    def _wait_ready(self, timeout: float) -> float:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.label} exited with {self.proc.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(OSError):
                if http_get(self.ready_url, timeout=1)[0] == 200:
                    return time.monotonic() - self.started
            time.sleep(0.02)
        raise RuntimeError(f"{self.spec.label} not ready after {timeout:.0f} s; see {self.log_path}")

    def warm_up(self) -> None:
        """A few untimed requests so lazy one-off costs do not land in the first scenario."""
        for i in range(3):
            for path, texts in (
                ("/predict", [f"warm up {i}"]),
                ("/bulk-predict", [f"warm {i} {j}" for j in range(32)]),
            ):
                status, body = http_post_json(self.base_url + path, {"text": texts})
                if status != 200:
                    raise RuntimeError(f"{self.spec.label} warm-up {path} answered {status}: {body[:200]!r}")

    def model_info(self) -> dict[str, Any] | None:
        if self.spec.kind != "ours":
            return None
        with contextlib.suppress(Exception):
            status, body = http_get(self.base_url + "/model")
            if status == 200:
                info: dict[str, Any] = json.loads(body)
                return info
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def started(
    spec: ServerSpec, model: Path, redis: RedisServer, logdir: Path, server_cmd: list[str] | None
) -> Iterator[RunningServer]:
    server = RunningServer(spec, model, redis, logdir, server_cmd)
    try:
        yield server
    finally:
        server.stop()
