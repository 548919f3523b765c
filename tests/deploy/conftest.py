"""Fixtures for the deploy/images/examples tests (tiny_model_dir comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import LiveServer


@pytest.fixture(scope="session")
def deploy_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`sentiment-serve` with the tiny model at prefix /project, as the k6 script targets by default."""
    server = LiveServer(tiny_model_dir, "/project", tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
