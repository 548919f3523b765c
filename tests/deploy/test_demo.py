"""examples/demo.sh (`make demo`) end to end: offline, bounded, and it leaves no server behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import ROOT
from serving import free_port, offline_env

SCRIPT = ROOT / "examples" / "demo.sh"
SEED_TEXTS = ["I love you!", "I hate you!", "I am a k8s Cluster!"]


def run_demo(demo_dir: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    # Any attempt to reach the network through HTTP(S) would hit a closed local port and fail.
    environment = offline_env(
        DEMO_DIR=str(demo_dir),
        DEMO_PORT=str(free_port()),
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        **env,
    )
    return subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=timeout, env=environment, check=False
    )


def assert_stopped(output: str) -> None:
    match = re.search(r"server pid (\d+)", output)
    assert match, output
    with pytest.raises(ProcessLookupError):
        os.kill(int(match.group(1)), 0)


def test_demo_renders_serves_answers_and_stops(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    proc = run_demo(demo_dir, timeout=280)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    # 1. every example SentimentModel rendered into manifests
    examples = sorted(ROOT.glob("examples/*.yaml"))
    assert f"from {len(examples)} SentimentModels" in proc.stdout
    rendered = [o for o in yaml.safe_load_all((demo_dir / "rendered.yaml").read_text(encoding="utf-8")) if o]
    deployments = {o["metadata"]["name"] for o in rendered if o["kind"] == "Deployment"}
    assert {"project", "lab"} <= deployments

    # 2. a model generated locally, 3.+4. served and asked the seeds' question
    assert (demo_dir / "model" / "MODEL_ID").is_file()
    answer_line = next(line for line in proc.stdout.splitlines() if line.startswith('{"predictions"'))
    predictions = json.loads(answer_line)["predictions"]
    assert len(predictions) == len(SEED_TEXTS)
    best = []
    for scores in predictions:
        assert {s["label"] for s in scores} == {"POSITIVE", "NEGATIVE"}
        assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-3)
        best.append(max(scores, key=lambda s: s["score"])["label"])
    # The trained dev model gets the two obvious ones right.
    assert best[:2] == ["POSITIVE", "NEGATIVE"]
    for text in SEED_TEXTS:
        assert repr(text) in proc.stdout

    # 5. the server is gone
    assert_stopped(output)
    assert "demo finished" in proc.stdout


def test_demo_fails_clearly_and_cleans_up_when_the_server_cannot_start(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    broken = demo_dir / "model"
    broken.mkdir(parents=True)
    (broken / "MODEL_ID").write_text("broken\n", encoding="utf-8")
    (broken / "config.json").write_text("{not json", encoding="utf-8")

    proc = run_demo(demo_dir, timeout=120, READY_TIMEOUT="20")

    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]
    assert re.search(
        r"demo: (sentiment-serve exited before becoming ready|.*/ready not 200 after 20s)", output
    )
    assert_stopped(output)
