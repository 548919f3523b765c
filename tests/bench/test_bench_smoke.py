"""CI smoke run of the benchmark: the real harness end to end (tiny model, k6, redis-server, both servers).

It checks the JSON document's shape and that no request failed; it is deliberately not a gate on numbers
(those depend on the machine and its load; the performance targets are reported by ``make bench``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from bench_cli import run_bench

SCENARIOS = ("uncached_10vu", "uncached_32vu", "repeated_95pct_10vu", "bulk32_4vu")
SERVERS = ("ours-none", "pipeline")
RESULT_KEYS = {"requests", "requests_per_s", "texts_per_s", "p50_ms", "p95_ms", "p99_ms", "errors"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = run_bench("run", "--smoke", "--duration", "3", "--out", str(out), timeout=280)
    assert proc.returncode == 0, f"bench.run --smoke failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    document: dict[str, Any] = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == document, "--out must hold the same document as stdout"
    return document


def test_every_scenario_has_both_servers_with_numbers(smoke: dict[str, Any]) -> None:
    assert set(smoke["scenarios"]) == set(SCENARIOS)
    for name, scenario in smoke["scenarios"].items():
        assert set(scenario["results"]) == set(SERVERS), name
        for server, result in scenario["results"].items():
            assert set(result) >= RESULT_KEYS, (name, server)
            assert result["requests"] > 0, (name, server)
            assert result["texts_per_s"] > 0, (name, server)
            assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"], (name, server, result)
        assert set(scenario["ratio_vs_pipeline"]) == {"ours-none"}
        assert scenario["ratio_vs_pipeline"]["ours-none"] > 0
    bulk = smoke["scenarios"]["bulk32_4vu"]["results"]["ours-none"]
    assert bulk["texts_per_s"] == pytest.approx(32 * bulk["requests_per_s"], rel=0.05)


def test_no_request_failed(smoke: dict[str, Any]) -> None:
    errors = {
        (name, server): result["errors"]
        for name, scenario in smoke["scenarios"].items()
        for server, result in scenario["results"].items()
    }
    assert smoke["total_errors"] == 0, errors
    assert all(count == 0 for count in errors.values()), errors


def test_server_facts_ceiling_and_targets_are_reported(smoke: dict[str, Any]) -> None:
    for label in SERVERS:
        server = smoke["servers"][label]
        assert server["start_to_ready_s"] > 0
        assert server["rss_peak_under_load_mb"] > 50  # a Python process with torch loaded, really sampled
    assert smoke["servers"]["ours-none"]["model_endpoint"]["precision"] == "none"
    ceiling = smoke["ceiling"]["none"]
    assert ceiling["batch_size"] == 32
    assert ceiling["texts_per_s"] > 0
    # The bare model runs with the server's own worker layout: one worker per CPU here, one thread each.
    assert ceiling["workers"] * ceiling["torch_threads"] <= max(2, smoke["machine"]["nproc"])
    assert smoke["servers"]["ours-none"]["model_endpoint"]["runtime"] == "packed"
    assert smoke["machine"]["nproc"] >= 1
    assert smoke["machine"]["cpu_model"]
    assert "AVX-512 VNNI" in smoke["machine"]["cpu_vector_extensions"]
    assert smoke["machine"]["torch_cpu_capability"]
    targets = {t["target"]: t for t in smoke["targets"]}
    assert "(a) throughput ours-none/pipeline >= 3.5" in targets
    # Every target is judged where it has a value; only a value the run could not measure leaves it open.
    assert all((t["met"] is None) == (t["value"] is None) for t in targets.values()), targets


def test_open_loop_capacity_is_searched_for_both_servers(smoke: dict[str, Any]) -> None:
    capacity = smoke["capacity"]
    assert set(capacity) == {"uncached", "cached95", "sla"}
    for key in ("uncached", "cached95"):
        assert set(capacity[key]["servers"]) == set(SERVERS), capacity[key]
    # A ratio where the pipeline server held a rate; None where it held none (e.g. on a busy machine).
    pipeline = capacity["uncached"]["servers"]["pipeline"]["capacity_rps"]
    ratio = capacity["uncached"]["servers"]["ours-none"]["ratio_vs_pipeline"]
    assert (ratio is None) == (pipeline == 0), capacity["uncached"]
    for label in SERVERS:
        open_loop = smoke["servers"][label]["open_loop"]
        for key in ("uncached", "cached95"):
            found = open_loop[key]
            assert 1 <= len(found["probes"]) <= 3
            held = [p["rate"] for p in found["probes"] if p["held"]]
            assert found["capacity_rps"] == max(held, default=0)
            for probe in found["probes"]:
                if probe["held"]:
                    assert probe["errors"] == probe["dropped"] == 0
        assert open_loop["sla"]["rate"] == 10
        assert open_loop["sla"]["requests"] > 0
    assert any(t["target"].startswith("SLA 10 req/s") for t in smoke["targets"])
