"""Fixtures for the fault-injection suite: real ``sentiment-serve`` processes on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_support import write_sized_model
from serving import ServerProcess


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
        server = ServerProcess(model_dir or tiny_model_dir, logs / "server.log", env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def medium_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-layer, 512-wide random DistilBERT (~34M parameters): well over 50 ms per heavy request on one
    thread even on an AVX-512 CPU (the 4-layer, 256-wide one finished within the clients' patience there)."""
    out = tmp_path_factory.mktemp("models") / "medium"
    return write_sized_model(out, tiny_model_dir, dim=512, n_layers=6, n_heads=8, hidden_dim=2048)
