"""README.md tells the truth: generated reference tables are current, and the hand-written parts name
every endpoint, status field and condition the code has."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import readme_sync
import yaml
from sentiment_operator import status

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("block", sorted(readme_sync.BLOCKS))
def test_generated_block_is_current(block: str) -> None:
    assert readme_sync.current(README, block) == readme_sync.BLOCKS[block]().strip(), (
        f"README.md's '{block}' table is stale: run `make docs`"
    )


def test_every_endpoint_is_documented() -> None:
    routes = (
        "/predict",
        "/bulk-predict",
        "/health",
        "/ready",
        "/model",
        "/metrics",
        "/docs",
        "/openapi.json",
    )
    for route in routes:
        assert f"{route}`" in README, route
    assert "/openapi.json`" in README


def test_every_status_field_and_condition_is_documented() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "sentimentmodel.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    fields = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions", "readyReplicas", "url"} <= set(fields)
    for field in fields:
        assert f"`status.{field}`" in README, field
    for condition in status.CONDITION_TYPES:
        assert f"`{condition}`" in README, condition
    for column in version["additionalPrinterColumns"]:
        assert f"| {column['name']} |" in README, column["name"]


def test_the_two_setup_commands_are_the_ones_ci_runs() -> None:
    assert "make demo" in README
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    help_run = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    targets = help_run.stdout
    for target in ("install", "lint", "test", "demo", "bench", "docs"):
        assert target in targets, target
