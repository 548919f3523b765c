"""The cold-start measurement (bench/coldstart.py) end to end on the tiny model: real server starts in fp32
and int8 with a real redis-server, and the probe budget read from the operator's own builder. Not a gate on
the numbers (they depend on the machine); bench/README.md reports the full-size ones."""

from __future__ import annotations

import json
from pathlib import Path

from bench_cli import run_bench

from bench.coldstart import probe_budget


def test_probe_budget_is_the_rendered_startup_probe() -> None:
    budget = probe_budget()
    probe = budget["startup_probe"]
    assert budget["startup_allows_s"] == probe["periodSeconds"] * probe["failureThreshold"]
    assert budget["startup_allows_s"] >= 60, "a model load needs minutes on a cold node, not seconds"


def test_coldstart_smoke_measures_both_precisions(tmp_path: Path) -> None:
    out = tmp_path / "coldstart.json"
    proc = run_bench("coldstart", "--smoke", "--runs", "1", "--out", str(out), timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == document
    assert set(document["start_to_ready"]) == {"none", "int8"}
    for result in document["start_to_ready"].values():
        assert len(result["runs_s"]) == 1
        assert 0 < result["min_s"] <= result["median_s"] <= result["max_s"] < 180
    worst = max(r["max_s"] for r in document["start_to_ready"].values())
    assert document["startup_budget_used"] == round(worst / document["probes"]["startup_allows_s"], 4)
