"""examples/k6/load.js with the real k6 binary, briefly, against a local `sentiment-serve` on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from deploy_support import ROOT
from prometheus_client.parser import text_string_to_metric_families
from serving import ServerProcess

K6 = Path(sys.executable).parent / "k6"
SCRIPT = ROOT / "examples" / "k6" / "load.js"


def _cache_counts(server: ServerProcess) -> tuple[float, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    hits = misses = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sentiment_cache_hits_total":
                hits += sample.value
            elif sample.name == "sentiment_cache_misses_total":
                misses += sample.value
    return hits, misses


def run_k6(
    server: ServerProcess, tmp_path: Path, *extra_env: str, timeout: float = 90
) -> tuple[int, dict[str, Any]]:
    summary = tmp_path / "summary.json"
    env_args: list[str] = []
    for item in (
        f"BASE_URL={server.base_url}",
        f"PREFIX={server.prefix}",
        "VUS=4",
        "RAMP_UP=1s",
        "SUSTAIN=3s",
        "RAMP_DOWN=1s",
        *extra_env,
    ):
        env_args += ["-e", item]
    proc = subprocess.run(
        [str(K6), "run", "--quiet", "--no-color", "--summary-export", str(summary), *env_args, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=tmp_path,
    )
    assert summary.exists(), f"k6 wrote no summary (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.returncode, json.loads(summary.read_text(encoding="utf-8"))


def test_load_script_passes_against_a_local_server(deploy_server: ServerProcess, tmp_path: Path) -> None:
    hits_before, misses_before = _cache_counts(deploy_server)

    code, summary = run_k6(deploy_server, tmp_path)

    metrics = summary["metrics"]
    assert code == 0, f"k6 exited {code}: thresholds crossed: {json.dumps(metrics, indent=1)[:3000]}"
    requests = metrics["http_reqs"]["count"]
    assert requests >= 20, f"only {requests} requests in a 5 s run"
    # http_req_failed is a Rate of failed requests: value 0 and no request counted as failed.
    assert metrics["http_req_failed"]["value"] == 0
    assert metrics["http_req_failed"]["passes"] == 0
    assert metrics["http_req_failed"]["thresholds"] == {"rate==0": False}  # False = not crossed
    assert metrics["http_req_duration"]["thresholds"] == {"p(99)<2000": False}
    assert metrics["http_req_duration"]["p(99)"] < 2000
    assert metrics["checks"]["fails"] == 0
    assert metrics["checks"]["passes"] == 3 * (requests - 1)  # three checks per request; one GET /ready
    # 95% of the texts repeat: the server saw it as cache hits.
    assert 0.85 <= metrics["repeated_texts"]["value"] <= 1.0
    hits, misses = _cache_counts(deploy_server)
    new_hits, new_misses = hits - hits_before, misses - misses_before
    assert new_hits + new_misses >= requests - 1
    assert new_hits / (new_hits + new_misses) >= 0.85


def test_load_script_fails_when_the_threshold_is_crossed(
    deploy_server: ServerProcess, tmp_path: Path
) -> None:
    # The same run with an impossible p99 budget must fail: the thresholds really gate the exit code.
    code, summary = run_k6(deploy_server, tmp_path, "P99_MS=0", "SUSTAIN=1s")
    assert code == 99, "k6 exits 99 when a threshold is crossed"
    assert summary["metrics"]["http_req_duration"]["thresholds"] == {"p(99)<0": True}
    assert summary["metrics"]["http_req_failed"]["value"] == 0


def test_load_script_fails_fast_when_the_server_is_missing(tmp_path: Path) -> None:
    from serving import free_port

    port = free_port()
    proc = subprocess.run(
        [str(K6), "run", "--quiet", "--no-color", "-e", f"BASE_URL=http://127.0.0.1:{port}", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert f"http://127.0.0.1:{port}/project/ready answered 0" in proc.stdout + proc.stderr
