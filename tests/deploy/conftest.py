"""Fixtures for the deploy/images/examples tests (tiny_model_dir comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import ServerProcess


@pytest.fixture(scope="session")
def deploy_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`sentiment-serve` with the tiny model at prefix /project, as the k6 script targets by default."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {"SENTIMENT_SHUTDOWN_DELAY_SECONDS": "0"}
    server = ServerProcess(tiny_model_dir, log_path, prefix="/project", env=env, torch_threads=None)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
