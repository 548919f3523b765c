"""Golden files: every example in examples/ rendered exactly as `sentiment-operator render` prints it.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/operator/test_golden.py` and review the
diff; see tests/operator/golden/README.md.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from builders_support import EXAMPLES, GOLDEN, example_files
from sentiment_operator.cli import dump, render_documents

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def rendered(example: Path) -> str:
    stream = io.StringIO()
    dump(render_documents([str(example)]), stream)
    return stream.getvalue()


@pytest.mark.parametrize("example", example_files(), ids=lambda p: p.name)
def test_render_matches_golden(example: Path) -> None:
    golden = GOLDEN / example.name
    output = rendered(example)
    if UPDATE:
        golden.write_text(output)
    assert golden.exists(), f"no golden file for {example.name}; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert output == golden.read_text(), f"{example.name} renders differently; review, then UPDATE_GOLDEN=1"


def test_examples_exist() -> None:
    names = {p.name for p in example_files()}
    assert {"minimal.yaml", "project.yaml", "lab.yaml", "canary.yaml", "external-redis.yaml"} <= names


def test_no_stale_golden_files() -> None:
    stale = {p.name for p in GOLDEN.glob("*.yaml")} - {p.name for p in EXAMPLES.glob("*.yaml")}
    assert not stale, f"golden files without an example: {sorted(stale)}"
