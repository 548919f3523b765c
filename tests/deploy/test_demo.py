"""examples/demo.sh (`make demo`) end to end: the real operator on the embedded cluster, offline, bounded,
and it leaves no process behind, also when it fails."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from deploy_support import ROOT
from serving import offline_env, processes_under

SCRIPT = ROOT / "examples" / "demo.sh"
EXAMPLE_TEXTS = ["I love you!", "I hate you!", "I am a k8s Cluster!"]


def run_demo(demo_dir: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    # Any attempt to reach the network through HTTP(S) would hit a closed local port and fail.
    environment = offline_env(
        DEMO_DIR=str(demo_dir),
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.0/8,localhost",
        no_proxy="127.0.0.0/8,localhost",
        **env,
    )
    environment.pop("KUBECONFIG", None)
    return subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=timeout, env=environment, check=False
    )


def assert_nothing_left(output: str, demo_dir: Path) -> None:
    match = re.search(r"cluster pid (\d+)", output)
    assert match, output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(int(match.group(1)), 0)
    # Every pod's processes run in a directory of the cluster's state: none may be left.
    left = processes_under(demo_dir.resolve())
    assert not left, f"processes left behind: {left}"


@pytest.mark.timeout(900)  # the demo runs two canary rollouts (about three minutes on an idle machine)
def test_demo_runs_the_operator_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    proc = run_demo(demo_dir, timeout=840)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    out = proc.stdout

    # The commands a user types, in order.
    commands = [
        "$ kubectl apply -f examples/project.yaml -f examples/lab.yaml",
        "$ kubectl -n sentiment get sentimentmodels",
        "$ curl -s -X POST http://127.",
        "$ kubectl -n sentiment patch sentimentmodel project --type merge",
        "$ kubectl -n sentiment rollout status deployment/project",
        "$ kubectl apply -f examples/rollout-demo.yaml",
        "$ kubectl -n sentiment patch sm reviews --type merge",
        "$ kubectl -n sentiment delete sentimentmodel project lab broken reviews",
    ]
    positions = [out.index(command) for command in commands]
    assert positions == sorted(positions)

    # kubectl get sentimentmodels: both Ready, project 1/1 and lab 2/2.
    table = out[out.index("$ kubectl -n sentiment get sentimentmodels") :]
    assert re.search(r"^lab\s+True\s+2/2\s", table, re.MULTILINE)
    assert re.search(r"^project\s+True\s+1/1\s", table, re.MULTILINE)

    # The example request answered at /project and at /lab through their Services.
    answers = [json.loads(line) for line in out.splitlines() if line.startswith('{"predictions"')]
    assert len(answers) == 2
    for answer in answers:
        predictions = answer["predictions"]
        assert len(predictions) == len(EXAMPLE_TEXTS)
        best = [max(scores, key=lambda s: s["score"])["label"] for scores in predictions]
        assert best[:2] == ["POSITIVE", "NEGATIVE"]
    assert "/project/predict" in out
    assert "/lab/predict" in out

    # The repeat came from the managed Redis.
    hits = re.search(r'^sentiment_cache_hits_total\{backend="redis"\} (\d+)', out, re.MULTILINE)
    assert hits, out[-3000:]
    assert float(hits.group(1)) >= len(EXAMPLE_TEXTS)

    # The patch rolled out: the server now reports int8.
    assert 'deployment "project" successfully rolled out' in out
    assert "precision: int8" in out

    # The invalid model is InvalidSpec, with the field named.
    assert re.search(r"^broken\s+False\s.*InvalidSpec", out, re.MULTILINE)
    assert "spec.resources.requests.cpu" in out

    # Progressive delivery: the first new version went through the mirrored and both weighted steps and was
    # promoted; the second (trained with swapped labels) was rolled back on the label check.
    rollout = out[out.index("$ kubectl apply -f examples/rollout-demo.yaml") :]
    for shown in ("Progressing 1/3 mirror 100%", "Progressing 2/3 canary 25%", "Progressing 3/3 canary 50%"):
        assert shown in rollout, rollout[-4000:]
    assert re.search(r"^reviews\s+True\s+1/1\s.*\sStable\s", rollout, re.MULTILINE)
    assert " promoted: the stable Deployment runs it" in rollout
    assert re.search(r"^reviews\s+True\s+1/1\s.*\sRolledBack\s", rollout, re.MULTILINE)
    assert "AnalysisFailed: analysis failed 2/2: labelShift" in rollout
    assert re.search(r"rollouts_total promoted 1", rollout)
    assert re.search(r"rollouts_total rolled_back 1", rollout)

    # Deleted: nothing left in the namespace, no pod, no process.
    assert "No resources found in sentiment namespace." in output
    assert "the node agent runs no pod any more" in out
    assert "demo finished" in out
    assert_nothing_left(output, demo_dir)


def test_demo_fails_clearly_and_cleans_up_when_the_servers_cannot_start(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    broken = demo_dir / "model"
    broken.mkdir(parents=True)
    (broken / "MODEL_ID").write_text("broken\n", encoding="utf-8")
    (broken / "config.json").write_text("{not json", encoding="utf-8")

    proc = run_demo(demo_dir, timeout=300, READY_TIMEOUT="20")

    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]
    assert "demo: the SentimentModels did not become Ready" in output
    assert_nothing_left(output, demo_dir)


def test_ctrl_c_stops_the_demo_and_every_process_it_started(tmp_path: Path) -> None:
    """Ctrl-C in a terminal: SIGINT to the demo's whole foreground process group, while pods are running."""
    demo_dir = tmp_path / "demo"
    environment = offline_env(DEMO_DIR=str(demo_dir))
    environment.pop("KUBECONFIG", None)
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("condition met" in line for line in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    reader.join(timeout=30)
    assert_nothing_left("".join(lines), demo_dir)
