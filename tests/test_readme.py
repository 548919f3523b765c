"""README.md tells the truth: generated reference tables are current, and the hand-written parts name
every endpoint, status field and condition the code has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import readme_sync
import yaml
from sentiment_operator import status

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TEXT_SUFFIXES = {".py", ".md", ".sh", ".js", ".json", ".yaml", ".yml", ".toml", ".txt", ".in", ""}


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


# Words a reader of the project cannot resolve: our own tracker's issue numbers and the documents the project
# grew from. (Upstream references such as ``kserve/kserve#3085`` name their repository and stay allowed.)
UNRESOLVABLE = re.compile(
    r"(?<![\w/])issues? ?#?\d+\b|\bthe seeds?\b|\bseed(?:s'|'s| teams| SLA| dashboards?)\b", re.I
)


SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples below are on purpose


def unresolvable_references(text: str) -> list[str]:
    return [match.group(0) for match in UNRESOLVABLE.finditer(text)]


def test_no_file_points_at_our_tracker_or_the_documents_the_project_grew_from() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for relative in tracked.stdout.split():
        path = ROOT / relative
        skip = relative.startswith("requirements/") or relative == SELF
        if skip or path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        found += [f"{relative}: {hit}" for hit in unresolvable_references(path.read_text(errors="replace"))]
    assert not found, "say what the thing is instead:\n" + "\n".join(found)


def test_the_reference_check_catches_each_form() -> None:
    for text in (
        "as issue 3 asked",
        "see issue #12",
        "issues 10 and 11",
        "the seeds' request",
        "the seed SLA",
    ):
        assert unresolvable_references(text), text
    for text in ("kserve/kserve#3085", "a random seed 0", "seed=0", "tissue 3"):
        assert not unresolvable_references(text), text
