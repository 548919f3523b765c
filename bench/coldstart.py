"""Cold start: process start to the first 200 from ``/ready``, for the baked model in fp32 and int8, against
what the operator's startup probe allows.

A pod that KEDA scales from zero serves its first request only after this; the startup probe the operator
renders must let at least this much pass before the kubelet restarts the container. The server is started
``--runs`` times per precision exactly as ``bench.run`` starts it (``bench.servers``, the same measurement),
with a real redis-server, on the full-size DistilBERT-shaped benchmark model (tiny with ``--smoke``).

    python -m bench.coldstart                 # full-size model, fp32 and int8, 5 starts each
    python -m bench.coldstart --smoke --runs 1

Prints one JSON document (and writes it to --out); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from sentiment_operator.builders import build_children
from sentiment_operator.spec import parse_spec

from bench.common import log
from bench.models import ensure_model
from bench.redis_server import RedisServer
from bench.servers import ServerSpec, started

PRECISIONS = ("none", "int8")


def probe_budget() -> dict[str, Any]:
    """What the rendered startup and readiness probes allow before a pod is restarted, and how soon after
    becoming ready it is seen ready (from the operator's own builder, default spec)."""
    deployment = build_children("m", "ns", parse_spec("m", {})).deployment
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    startup, readiness = container["startupProbe"], container["readinessProbe"]
    return {
        "startup_probe": {k: startup[k] for k in ("periodSeconds", "timeoutSeconds", "failureThreshold")},
        "startup_allows_s": startup["periodSeconds"] * startup["failureThreshold"],
        "ready_seen_within_s": startup["periodSeconds"],
        "readiness_period_s": readiness["periodSeconds"],
    }


def measure(model: Path, runs: int, workdir: Path) -> dict[str, dict[str, Any]]:
    """Start-to-ready seconds of ``runs`` starts per precision (min, median, max and every run)."""
    results: dict[str, dict[str, Any]] = {}
    redis = RedisServer(workdir)
    redis.start()
    try:
        for precision in PRECISIONS:
            spec = ServerSpec(f"ours-{precision}", "ours", precision)
            seconds = []
            for run in range(runs):
                redis.flush()
                with started(spec, model, redis, workdir, None) as server:
                    seconds.append(round(server.start_to_ready_s, 2))
                log(f"{spec.label} start {run + 1}/{runs}: ready after {seconds[-1]:.2f} s")
            results[precision] = {
                "runs_s": seconds,
                "min_s": min(seconds),
                "median_s": round(statistics.median(seconds), 2),
                "max_s": max(seconds),
            }
    finally:
        redis.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per precision (default 5)")
    parser.add_argument("--smoke", action="store_true", help="tiny model (CI)")
    parser.add_argument("--model", default=None, help="a model directory instead of the generated one")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON document here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    preset = "tiny" if args.smoke else "full"
    model = ensure_model(preset, args.model)
    budget = probe_budget()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        measured = measure(model, args.runs, Path(tmp))
    worst = max(result["max_s"] for result in measured.values())
    document = {
        "model": {"preset": preset if not args.model else "custom", "path": str(model)},
        "start_to_ready": measured,
        "probes": budget,
        # The slowest start against the startup probe's whole budget (how much of it a cold start uses).
        "startup_budget_used": round(worst / budget["startup_allows_s"], 4),
    }
    text = json.dumps(document, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
