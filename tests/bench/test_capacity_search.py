"""The open-loop capacity search, pure: a fake server that holds every rate up to a true capacity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import capacity


def fake_server(true_capacity: int, calls: list[int]) -> Any:
    def probe(
        base_url: str, rate: int, slo: capacity.Slo, duration: float, run_id: str, workdir: Path
    ) -> dict:
        calls.append(rate)
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
    assert len(calls) <= 12


def test_the_search_stops_after_its_probe_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[int] = []
    monkeypatch.setattr(capacity, "probe", fake_server(10**9, calls))
    found = capacity.find_capacity(
        "http://127.0.0.1:1", capacity.SLOS[0], tmp_path, "t", duration=1, max_probes=3
    )
    assert calls == [10, 20, 40]
    assert found["capacity_rps"] == 40
    assert found["first_failed_rps"] is None
