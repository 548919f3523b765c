"""Fixtures for the deploy/images/examples tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import BIN, LiveServer, offline_env


@pytest.fixture(scope="session")
def deploy_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained DistilBERT sentiment model written by the real `sentiment-devmodel` command."""
    out = tmp_path_factory.mktemp("deploy-model") / "tiny"
    proc = subprocess.run(
        [str(BIN / "sentiment-devmodel"), "--out", str(out), "--preset", "tiny"],
        capture_output=True,
        text=True,
        timeout=180,
        env=offline_env(),
        check=False,
    )
    assert proc.returncode == 0, f"sentiment-devmodel failed:\n{proc.stderr}"
    return out


@pytest.fixture(scope="session")
def deploy_server(deploy_tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`sentiment-serve` with the tiny model at prefix /project, as the k6 script targets by default."""
    server = LiveServer(deploy_tiny_model, "/project", tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
