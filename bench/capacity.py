"""Open-loop capacity: the highest constant arrival rate a server holds within a p99 SLO.

Closed-loop scenarios tie latency to throughput (each user waits for its answer), so they answer "how fast
under saturation", not the question users size clusters by: how many requests per second does one pod take
at p99 <= X with no errors? Here requests arrive at a fixed rate (k6 ``constant-arrival-rate``) whatever the
answers take. A rate *holds* when p99 is within the SLO, no request failed and no arrival was dropped.

The search is bounded: the rate doubles from ``start`` until a rate fails (or ``ceiling`` is reached), then
bisects between the last rate that held and the first that failed until they are within ``resolution``
(a fraction of the rate held) or ``max_probes`` runs were made. Each probe is one k6 run of ``duration``.
A rate fails only when a second probe of it fails too: on a shared machine a burst of other work fails a
probe (its p99 is the third-worst of a few hundred requests) that the server holds on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import tool
from bench.load import K6_DIR, metric_values


@dataclass(frozen=True)
class Slo:
    """A workload and the latency it must be served within."""

    key: str
    description: str
    p99_ms: float
    cache_rate: float = 0.0  # share of requests repeating one of a few popular texts


SLOS = (
    Slo("uncached", "uncached single texts, p99 <= 100 ms", 100.0),
    Slo("cached95", "95 % repeated single texts, p99 <= 50 ms", 50.0, cache_rate=0.95),
)
# The SLA the hand-written stacks were built for: 10 requests/s of single texts with p99 < 2 s.
SLA_RATE = 10
SLA_P99_MS = 2000.0


def probe(
    base_url: str, rate: int, slo: Slo, duration: float, run_id: str, workdir: Path, max_vus: int = 400
) -> dict[str, Any]:
    """One open-loop run at ``rate`` arrivals/s; whether it held the SLO, with p50/p99/errors/dropped."""
    summary_file = workdir / f"k6-open-{run_id}.json"
    cmd = [
        tool("k6"),
        "run",
        "--quiet",
        "--no-color",
        *("-e", f"BASE_URL={base_url}"),
        *("-e", f"RATE={rate}"),
        *("-e", f"DURATION={duration:g}s"),
        *("-e", f"MAX_VUS={max_vus}"),
        *("-e", f"CACHE_RATE={slo.cache_rate}"),
        *("-e", f"RUN_ID={run_id}"),
        *("-e", f"SUMMARY_FILE={summary_file}"),
        str(K6_DIR / "open_loop.js"),
    ]
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    load_before = round(os.getloadavg()[0], 2)  # other work on the machine moves latency: say how much
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 90, check=False)
    if not summary_file.exists():
        raise RuntimeError(f"k6 wrote no summary (exit {proc.returncode}): {proc.stderr[-2000:]}")
    metrics = json.loads(summary_file.read_text())["metrics"]
    latency = metric_values(metrics, "http_req_duration")
    result = {
        "rate": rate,
        "requests": int(metric_values(metrics, "http_reqs").get("count", 0)),
        "p50_ms": round(latency.get("med", 0.0), 2),
        "p99_ms": round(latency.get("p(99)", 0.0), 2),
        "errors": int(metric_values(metrics, "bench_errors").get("count", 0)),
        "dropped": int(metric_values(metrics, "dropped_iterations").get("count", 0)),
        "load_average_1m_before": load_before,
    }
    result["held"] = bool(
        result["requests"]
        and result["p99_ms"] <= slo.p99_ms
        and not result["errors"]
        and not result["dropped"]
    )
    return result


def find_capacity(
    base_url: str,
    slo: Slo,
    workdir: Path,
    run_id: str,
    *,
    duration: float,
    start: int = 10,
    ceiling: int = 3200,
    resolution: float = 0.1,
    max_probes: int = 16,
) -> dict[str, Any]:
    """The highest rate that held ``slo`` (0 if even ``start`` failed) and every probe made to find it."""
    probes: list[dict[str, Any]] = []

    def run(rate: int) -> bool:
        for attempt in (1, 2):  # a failed probe is repeated once (new texts), if the budget allows
            result = probe(base_url, rate, slo, duration, f"{run_id}{slo.key[0]}{rate}-{attempt}", workdir)
            result["attempt"] = attempt
            probes.append(result)
            if result["held"]:
                return True
            if len(probes) >= max_probes:
                break
        return False

    held, failed = 0, None
    rate = start
    while len(probes) < max_probes and rate <= ceiling:
        if not run(rate):
            failed = rate
            break
        held, rate = rate, rate * 2
    while failed is not None and len(probes) < max_probes and failed - held > max(1, held * resolution):
        middle = (held + failed) // 2
        if run(middle):
            held = middle
        else:
            failed = middle
    return {
        "slo": slo.description,
        "capacity_rps": held,
        "first_failed_rps": failed,
        "resolution": f"within {resolution:.0%} of the rate held, or {max_probes} probes; "
        "a rate fails when two probes of it fail",
        "probe_seconds": duration,
        "probes": probes,
    }


def sla_point(base_url: str, workdir: Path, run_id: str, duration: float) -> dict[str, Any]:
    """p50/p99 at the SLA load (10 uncached single texts/s) and whether p99 < 2 s held."""
    sla = Slo("sla", f"{SLA_RATE} req/s uncached, p99 < {SLA_P99_MS:g} ms", SLA_P99_MS)
    return probe(base_url, SLA_RATE, sla, duration, f"{run_id}sla", workdir)


@dataclass(frozen=True)
class CapacityPlan:
    """How the open-loop search runs: probe length, first rate, and at most how many probes per SLO."""

    probe_seconds: float
    start: int = 10
    max_probes: int = 16


def capacity_table(doc: dict[str, Any]) -> dict[str, Any]:
    """Per SLO: each server's capacity, its ratio to the pipeline server's, and (uncached) the fraction of the
    bare-model ceiling (texts/s at batch 32 in the server's worker layout) it reaches; plus the SLA point."""
    table: dict[str, Any] = {}
    servers = {label: info["open_loop"] for label, info in doc["servers"].items() if "open_loop" in info}
    for slo in SLOS:
        rows: dict[str, Any] = {}
        base = servers.get("pipeline", {}).get(slo.key, {}).get("capacity_rps")
        for label, open_loop in servers.items():
            capacity = open_loop[slo.key]["capacity_rps"]
            row: dict[str, Any] = {"capacity_rps": capacity}
            loads = [
                p["load_average_1m_before"]
                for p in open_loop[slo.key]["probes"]
                if "load_average_1m_before" in p
            ]
            if loads:
                row["load_average_1m"] = [min(loads), max(loads)]  # over this search's probes
            if label != "pipeline" and "pipeline" in servers:
                # None when the pipeline server held no probed rate (below where the search starts): no finite
                # ratio says how far ahead.
                row["ratio_vs_pipeline"] = round(capacity / base, 2) if base else None
            precision = doc["servers"][label].get("precision", "none")
            ceiling = doc.get("ceiling", {}).get(precision) if label != "pipeline" else None
            if slo.cache_rate == 0 and ceiling and ceiling.get("texts_per_s"):
                row["fraction_of_ceiling"] = round(capacity / ceiling["texts_per_s"], 2)
            rows[label] = row
        table[slo.key] = {"slo": slo.description, "servers": rows}
    table["sla"] = {
        "slo": f"{SLA_RATE} req/s uncached, p99 < {SLA_P99_MS:g} ms",
        "servers": {label: open_loop["sla"] for label, open_loop in servers.items()},
    }
    return table
