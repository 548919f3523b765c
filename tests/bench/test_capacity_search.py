"""The open-loop capacity search, pure: a fake server that holds every rate up to a true capacity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import capacity


def fake_server(true_capacity: int, calls: list[int], run_ids: list[str] | None = None) -> Any:
    def probe(
        base_url: str, rate: int, slo: capacity.Slo, duration: float, run_id: str, workdir: Path
    ) -> dict:
        calls.append(rate)
        if run_ids is not None:
            run_ids.append(run_id)
        return {"rate": rate, "held": rate <= true_capacity, "p99_ms": 1.0, "errors": 0, "dropped": 0}

    return probe


@pytest.mark.parametrize("true_capacity", [0, 9, 10, 37, 100, 333, 1000])
def test_the_search_finds_the_capacity_within_its_resolution(
    true_capacity: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(capacity, "probe", fake_server(true_capacity, calls))
    found = capacity.find_capacity("http://127.0.0.1:1", capacity.SLOS[0], tmp_path, "t", duration=1)
    held = found["capacity_rps"]
    assert held <= true_capacity
    # Below the first rate the search bisects down from it, too.
    assert true_capacity - held <= max(1, held * 0.1), found
    assert len(calls) <= 16
    # Every rate that failed was probed twice, each time with new texts (a repeat would be cached).
    failed = [rate for rate in calls if rate > true_capacity]
    assert all(failed.count(rate) == 2 for rate in failed), calls


def test_a_rate_fails_only_when_its_second_probe_fails_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []
    run_ids: list[str] = []
    steady = fake_server(100, calls, run_ids)
    disturbed = {20}  # one probe of 20 req/s fails (a burst of other work on the machine) ...

    def probe(
        base_url: str, rate: int, slo: capacity.Slo, duration: float, run_id: str, workdir: Path
    ) -> dict:
        result: dict = steady(base_url, rate, slo, duration, run_id, workdir)
        if rate in disturbed:
            disturbed.discard(rate)
            result["held"] = False
        return result

    monkeypatch.setattr(capacity, "probe", probe)
    found = capacity.find_capacity("http://127.0.0.1:1", capacity.SLOS[0], tmp_path, "t", duration=1)
    # ... and the search goes on as if it had not: 20 held on its second probe.
    assert calls[:4] == [10, 20, 20, 40]
    assert [p["attempt"] for p in found["probes"][:4]] == [1, 1, 2, 1]
    assert len(set(run_ids)) == len(run_ids)  # every probe sends texts no other probe sent
    assert found["capacity_rps"] >= 91


def test_the_search_stops_after_its_probe_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[int] = []
    monkeypatch.setattr(capacity, "probe", fake_server(10**9, calls))
    found = capacity.find_capacity(
        "http://127.0.0.1:1", capacity.SLOS[0], tmp_path, "t", duration=1, max_probes=3
    )
    assert calls == [10, 20, 40]
    assert found["capacity_rps"] == 40
    assert found["first_failed_rps"] is None


def _open_loop(capacity_rps: int, loads: list[float]) -> dict[str, Any]:
    probes = [{"rate": 10, "held": True, "load_average_1m_before": load} for load in loads]
    return {"capacity_rps": capacity_rps, "probes": probes}


def test_the_table_gives_ratios_fraction_of_the_ceiling_and_the_load_during_the_search() -> None:
    def server(precision: str, uncached: int, cached: int) -> dict[str, Any]:
        return {
            "precision": precision,
            "open_loop": {
                "uncached": _open_loop(uncached, [1.5, 2.5]),
                "cached95": _open_loop(cached, [3.0]),
                "sla": {"rate": 10, "p50_ms": 9.0, "p99_ms": 20.0, "errors": 0, "dropped": 0},
            },
        }

    doc = {
        "servers": {"ours-int8": server("int8", 150, 400), "pipeline": server("none", 20, 40)},
        "ceiling": {"int8": {"texts_per_s": 200.0}},
    }
    table = capacity.capacity_table(doc)
    ours = table["uncached"]["servers"]["ours-int8"]
    assert ours == {
        "capacity_rps": 150,
        "load_average_1m": [1.5, 2.5],
        "ratio_vs_pipeline": 7.5,
        "fraction_of_ceiling": 0.75,
    }
    assert table["cached95"]["servers"]["ours-int8"]["ratio_vs_pipeline"] == 10.0
    assert "fraction_of_ceiling" not in table["cached95"]["servers"]["ours-int8"]  # the ceiling is uncached
    assert "ratio_vs_pipeline" not in table["uncached"]["servers"]["pipeline"]
    assert table["sla"]["servers"]["pipeline"]["p99_ms"] == 20.0


def test_a_pipeline_server_that_held_no_rate_gives_no_ratio_and_the_target_says_why() -> None:
    from bench.targets import capacity_targets

    def server(precision: str, uncached: int) -> dict[str, Any]:
        return {
            "precision": precision,
            "open_loop": {
                "uncached": _open_loop(uncached, [2.0]),
                "cached95": _open_loop(uncached, [2.0]),
                "sla": {"rate": 10, "p50_ms": 9.0, "p99_ms": 20.0, "errors": 0, "dropped": 0},
            },
        }

    for ours, met in ((35, True), (0, False)):
        doc = {"servers": {"ours-int8": server("int8", ours), "pipeline": server("none", 0)}, "ceiling": {}}
        table = capacity.capacity_table(doc)
        assert table["uncached"]["servers"]["ours-int8"]["ratio_vs_pipeline"] is None
        targets = {t["target"]: t for t in capacity_targets(table)}
        ratio = targets["capacity uncached ours-int8 ratio_vs_pipeline >= 8"]
        assert ratio["met"] is met
        assert ratio["note"] == f"the pipeline server held no rate; ours held {ours} req/s"
