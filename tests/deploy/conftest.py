"""Fixtures for the deploy/images/examples tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def offline_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: never reach a model hub."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


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
