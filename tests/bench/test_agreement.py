"""The bench's int8 vs fp32 agreement measurement (`python -m bench.agreement`) on a trained model."""

from __future__ import annotations

import json
from pathlib import Path

from bench_cli import run_bench


def test_agreement_is_measured_on_both_held_out_sets(trained_model_dir: Path) -> None:
    proc = run_bench("agreement", "--model", str(trained_model_dir), "--count", "200", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["runtime"] == "packed"
    assert set(result["sets"]) == {"synthetic_held_out", "load_test_sentences"}
    synthetic = result["sets"]["synthetic_held_out"]
    assert synthetic["texts"] == 200
    # A trained model: confident and right on sentences like its training data, and int8 keeps its labels.
    assert synthetic["accuracy_none"] >= 0.9
    assert synthetic["fp32_mean_confidence"] >= 0.8
    assert synthetic["agreement"] >= 0.99
    assert result["agreement"] == min(s["agreement"] for s in result["sets"].values())
    assert 0.9 <= result["agreement"] <= 1.0
