"""The load: the four k6 scenarios and one bounded ``k6 run`` of a scenario against a server.

Every scenario is closed-loop (each virtual user sends its next request as soon as its previous answer came
back) with a constant number of users for a fixed duration; k6's own end-of-test summary is the measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, tool

K6_DIR = BENCH_DIR / "k6"


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    description: str
    script: str
    vus: int
    texts_per_request: int
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = [
    Scenario("a", "uncached_10vu", "uncached single-text requests, 10 VUs", "uncached.js", 10, 1),
    Scenario("b", "uncached_32vu", "uncached single-text requests, 32 VUs", "uncached.js", 32, 1),
    Scenario(
        "c",
        "repeated_95pct_10vu",
        "95% of requests repeat one of 10 popular texts, 10 VUs",
        "repeated.js",
        10,
        1,
        {"CACHE_RATE": "0.95", "POOL": "10"},
    ),
    Scenario(
        "d", "bulk32_4vu", "uncached bulk requests of 32 texts, 4 VUs", "bulk.js", 4, 32, {"BATCH": "32"}
    ),
]


def metric_values(metrics: dict[str, Any], name: str) -> dict[str, float]:
    values: dict[str, float] = metrics.get(name, {}).get("values", {})
    return values


def run_k6(
    scenario: Scenario, base_url: str, duration: float, run_id: str, workdir: Path, graceful_stop: float
) -> dict[str, Any]:
    summary_file = workdir / f"k6-{run_id}.json"
    env = {
        **os.environ,
        "K6_NO_USAGE_REPORT": "true",
    }
    cmd = [
        tool("k6"),
        "run",
        "--quiet",
        "--no-color",
        "-e",
        f"BASE_URL={base_url}",
        "-e",
        f"VUS={scenario.vus}",
        "-e",
        f"DURATION={duration:g}s",
        "-e",
        f"GRACEFUL_STOP={graceful_stop:g}s",
        "-e",
        f"RUN_ID={run_id}",
        "-e",
        f"SUMMARY_FILE={summary_file}",
    ]
    for key, value in scenario.env.items():
        cmd += ["-e", f"{key}={value}"]
    cmd.append(str(K6_DIR / scenario.script))
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration + graceful_stop + 120, check=False
    )
    if not summary_file.exists():
        raise RuntimeError(f"k6 wrote no summary (exit {proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(summary_file.read_text())
    metrics = data["metrics"]
    test_s = data["state"]["testRunDurationMs"] / 1000
    reqs = metric_values(metrics, "http_reqs").get("count", 0)
    texts = metric_values(metrics, "bench_texts").get("count", 0)
    errors = int(metric_values(metrics, "bench_errors").get("count", 0))
    latency = metric_values(metrics, "http_req_duration")
    return {
        "requests": int(reqs),
        "requests_per_s": round(reqs / test_s, 2) if test_s else 0.0,
        "texts_per_s": round(texts / test_s, 2) if test_s else 0.0,
        "p50_ms": round(latency.get("med", 0.0), 2),
        "p95_ms": round(latency.get("p(95)", 0.0), 2),
        "p99_ms": round(latency.get("p(99)", 0.0), 2),
        "max_ms": round(latency.get("max", 0.0), 2),
        "errors": errors,
        "k6_exit_code": proc.returncode,
        "test_seconds": round(test_s, 2),
    }
