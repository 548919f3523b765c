"""Fixtures for the fault-injection suite: real ``sentiment-serve`` processes on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_support import ServerProcess, free_port


@pytest.fixture
def serve(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ServerProcess]]:
    """``serve(model_dir=None, **SENTIMENT_env)`` starts the real server (tiny model by default).

    Every process started is stopped (SIGTERM, then SIGKILL) at teardown.
    """
    started: list[ServerProcess] = []

    def start(model_dir: Path | str | None = None, **env: str) -> ServerProcess:
        logs = tmp_path_factory.mktemp("serve")
        server = ServerProcess(free_port(), model_dir or tiny_model_dir, logs / "server.log", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
