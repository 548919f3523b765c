"""Side-by-side benchmark: our server vs. the hand-written pipeline server this project replaces.

Same model, same machine, everything on 127.0.0.1 in this one process tree: a generated DistilBERT-shaped
model (cached under .cache/bench/), a real ``redis-server`` on a free port, then each server in turn, loaded
by the real ``k6`` binary with bounded durations. Prints one JSON document (and writes it to --out). What
the scenarios, numbers and targets mean: bench/README.md.

    python -m bench.run                      # full-size model, fp32 and int8, 30 s per scenario
    python -m bench.run --smoke              # tiny model, fp32, a few seconds per scenario (CI)
    python -m bench.run --precision int8 --duration 20 --scenarios a,c --out /tmp/bench.json

Progress goes to stderr; stdout carries only the JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.capacity import SLOS, CapacityPlan, capacity_table, find_capacity, sla_point
from bench.common import CACHE_DIR, log
from bench.load import SCENARIOS, Scenario, run_k6
from bench.machine import Sampler, describe_vector_extensions, machine_info
from bench.models import ensure_model, run_agreement, run_ceiling
from bench.redis_server import RedisServer
from bench.servers import ServerSpec, started
from bench.targets import evaluate_targets, ratio


def bench_server(
    spec: ServerSpec,
    scenarios: list[Scenario],
    model: Path,
    redis: RedisServer,
    workdir: Path,
    duration: float,
    graceful_stop: float,
    nonce: str,
    server_cmd: list[str] | None = None,
    capacity: CapacityPlan | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    redis.flush()
    log(f"Starting {spec.label}")
    with started(spec, model, redis, workdir, server_cmd if spec.kind == "ours" else None) as server:
        log(f"{spec.label} ready after {server.start_to_ready_s:.2f} s")
        server.warm_up()
        info = server.model_info()
        results: dict[str, dict[str, Any]] = {}
        peak = 0
        for scenario in scenarios:
            redis.flush()  # no cache entries leak across scenarios or servers
            load_before = round(os.getloadavg()[0], 2)
            sampler = Sampler(server.proc.pid)
            sampler.start()
            run_id = f"{nonce}{scenario.key}{spec.label[:1]}{spec.precision[:1]}"
            try:
                result = run_k6(scenario, server.base_url, duration, run_id, workdir, graceful_stop)
            finally:
                sampler.stop()
            result["server_rss_peak_mb"] = round(sampler.peak_rss / 2**20, 1)
            result["server_cpu_percent"] = round(sampler.cpu_percent, 1)
            result["load_average_1m_before"] = load_before
            if server.proc.poll() is not None:
                raise RuntimeError(f"{spec.label} died during {scenario.name}; see {server.log_path}")
            peak = max(peak, sampler.peak_rss)
            results[scenario.name] = result
            log(
                f"{spec.label} {scenario.name}: {result['requests_per_s']} req/s,"
                f" {result['texts_per_s']} texts/s,"
                f" p50 {result['p50_ms']} p99 {result['p99_ms']} ms, errors {result['errors']},"
                f" RSS {result['server_rss_peak_mb']} MB, CPU {result['server_cpu_percent']}%"
            )
        open_loop: dict[str, Any] = {}
        if capacity is not None:
            run_id = f"{nonce}{spec.label[:1]}{spec.precision[:1]}"
            for slo in SLOS:
                redis.flush()
                found = find_capacity(
                    server.base_url,
                    slo,
                    workdir,
                    run_id,
                    duration=capacity.probe_seconds,
                    start=capacity.start,
                    max_probes=capacity.max_probes,
                )
                open_loop[slo.key] = found
                log(f"{spec.label} capacity {slo.description}: {found['capacity_rps']} req/s")
            redis.flush()
            open_loop["sla"] = sla_point(server.base_url, workdir, run_id, capacity.probe_seconds)
            if server.proc.poll() is not None:
                raise RuntimeError(f"{spec.label} died during the open-loop runs; see {server.log_path}")
    server_info: dict[str, Any] = {
        "kind": spec.kind,
        "precision": spec.precision,
        "start_to_ready_s": round(server.start_to_ready_s, 2),
        "rss_peak_under_load_mb": round(peak / 2**20, 1),
        "extra_env": spec.extra_env,
    }
    if server_cmd and spec.kind == "ours":
        server_info["command"] = server_cmd
    if info is not None:
        server_info["model_endpoint"] = info
    if open_loop:
        server_info["open_loop"] = open_loop
    return server_info, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, fp32 only, short scenarios (CI)")
    parser.add_argument(
        "--precision",
        choices=["none", "int8", "both"],
        default=None,
        help="our server's precision(s) (default: both; smoke: none)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per scenario (30; smoke 3)")
    parser.add_argument("--scenarios", default="a,b,c,d", help="comma list of scenario keys (a,b,c,d)")
    parser.add_argument("--servers", default="ours,pipeline", help="comma list: ours, pipeline")
    parser.add_argument("--model", default=None, help="use this model directory instead of generating one")
    parser.add_argument(
        "--ceiling-seconds", type=float, default=None, help="bare-model run length (10; smoke 1)"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for our server (repeatable), e.g. SENTIMENT_MAX_WAIT_MS=0",
    )
    parser.add_argument(
        "--server-cmd",
        default=None,
        help="command line for our server instead of sentiment-serve (e.g. to compare a patched build)",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare-model measurement")
    parser.add_argument(
        "--no-capacity",
        action="store_true",
        help="skip the open-loop capacity search (constant arrival rate)",
    )
    parser.add_argument(
        "--probe-seconds", type=float, default=None, help="length of one open-loop probe (15; smoke 2)"
    )
    parser.add_argument(
        "--no-agreement", action="store_true", help="skip the int8 vs fp32 label agreement measurement"
    )
    parser.add_argument("--out", default=None, help="also write the JSON document to this file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (server logs, k6 summaries)"
    )
    args = parser.parse_args(argv)

    precision = args.precision or ("none" if args.smoke else "both")
    precisions = ["none", "int8"] if precision == "both" else [precision]
    duration = args.duration if args.duration is not None else (3.0 if args.smoke else 30.0)
    ceiling_seconds = (
        args.ceiling_seconds if args.ceiling_seconds is not None else (1.0 if args.smoke else 10.0)
    )
    # In-flight requests may finish after the load stops (k6 gracefulStop): the pipeline server's slow bulk.
    graceful_stop = 30.0
    wanted = {k.strip() for k in args.scenarios.split(",") if k.strip()}
    scenarios = [s for s in SCENARIOS if s.key in wanted]
    if not scenarios:
        parser.error(f"--scenarios: none of {sorted(wanted)} is one of a,b,c,d")
    kinds = {k.strip() for k in args.servers.split(",") if k.strip()}
    if not kinds <= {"ours", "pipeline"} or not kinds:
        parser.error("--servers: a comma list of ours, pipeline")
    extra_env = dict(item.split("=", 1) for item in args.server_env)
    server_cmd = shlex.split(args.server_cmd) if args.server_cmd else None

    capacity = None
    if not args.no_capacity:
        probe_seconds = (
            args.probe_seconds if args.probe_seconds is not None else (2.0 if args.smoke else 15.0)
        )
        capacity = CapacityPlan(probe_seconds, start=10, max_probes=3 if args.smoke else 16)
    specs = [ServerSpec(f"ours-{p}", "ours", p, extra_env) for p in precisions if "ours" in kinds]
    if "pipeline" in kinds:
        specs.append(ServerSpec("pipeline", "pipeline", "none"))

    preset = "tiny" if args.smoke else "full"
    started_at = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "bench": {
            "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
            "started_at": started_at.isoformat(timespec="seconds"),
            "smoke": args.smoke,
            "duration_per_scenario_s": duration,
            "load_generator": "k6 (constant VUs, keep-alive, on the same machine)",
        },
        "machine": machine_info(),
    }
    log(describe_vector_extensions(doc["machine"]))
    model = ensure_model(preset, args.model)
    doc["model"] = {"preset": preset if not args.model else "custom", "path": str(model)}

    doc["ceiling"] = {}
    if "ours" in kinds and not args.no_ceiling:
        for p in precisions:
            log(f"Measuring the bare-model ceiling ({p}, batch 32, {ceiling_seconds:g} s)")
            doc["ceiling"][p] = run_ceiling(model, p, ceiling_seconds)
            log(f"ceiling {p}: {doc['ceiling'][p]['texts_per_s']} texts/s")

    if "ours" in kinds and "int8" in precisions and not args.no_agreement:
        trained = ensure_model("tiny", None, trained=True)
        log("Measuring int8 vs fp32 label agreement on held-out texts (trained tiny model)")
        doc["int8_agreement"] = run_agreement(trained, 2000)
        log(f"int8 agreement: {doc['int8_agreement']['agreement']}")

    nonce = secrets.token_hex(2)
    keep_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=CACHE_DIR if CACHE_DIR.exists() else None))
    redis = RedisServer(keep_dir)
    redis.start()
    doc["servers"] = {}
    per_server: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for spec in specs:
            info, results = bench_server(
                spec, scenarios, model, redis, keep_dir, duration, graceful_stop, nonce, server_cmd, capacity
            )
            doc["servers"][spec.label] = info
            per_server[spec.label] = results
    finally:
        redis.stop()
        if args.keep:
            log(f"Kept logs and k6 summaries in {keep_dir}")
        else:
            shutil.rmtree(keep_dir, ignore_errors=True)

    doc["scenarios"] = {}
    for scenario in scenarios:
        results = {label: res[scenario.name] for label, res in per_server.items()}
        entry: dict[str, Any] = {
            "key": scenario.key,
            "description": scenario.description,
            "vus": scenario.vus,
            "texts_per_request": scenario.texts_per_request,
            "results": results,
        }
        if "pipeline" in results:
            entry["ratio_vs_pipeline"] = {
                label: ratio(res, results["pipeline"])
                for label, res in results.items()
                if label != "pipeline"
            }
        doc["scenarios"][scenario.name] = entry
    doc["capacity"] = capacity_table(doc)
    doc["total_errors"] = sum(r["errors"] for s in doc["scenarios"].values() for r in s["results"].values())
    doc["targets"] = evaluate_targets(doc)
    for target in doc["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[target["met"]]
        log(f"{verdict} {target['target']}: {target['value']}")
    doc["bench"]["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    text = json.dumps(doc, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
