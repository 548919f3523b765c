"""Layering: only handlers.py and runner.py know kopf; reconciler, status and storage work without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

KOPF_FREE = [
    "sentiment_operator.status",
    "sentiment_operator.kube",
    "sentiment_operator.reconciler",
    "sentiment_operator.rbac",
    "sentiment_operator.builders",
    "sentiment_operator.spec",
]


@pytest.mark.parametrize("module", KOPF_FREE)
def test_module_imports_without_kopf(module: str) -> None:
    # Importing kopf is made impossible in a fresh interpreter; the module must still import.
    code = f"import sys; sys.modules['kopf'] = None; import {module}; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_the_check_itself_detects_a_kopf_import() -> None:
    code = "import sys; sys.modules['kopf'] = None; import sentiment_operator.handlers"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "kopf" in result.stderr
