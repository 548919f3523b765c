"""Helpers of the top tier: the embedded cluster driven with the real kubectl, its pods, its processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polling
from serving import processes_under

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"


def wait_until(check: Callable[[], Any], *, within: float = 180.0, interval: float = 0.2, what: str) -> Any:
    """``polling.wait_until`` with the patience of pods coming up on a busy machine (three minutes)."""
    return polling.wait_until(check, within=within, interval=interval, what=what)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class DevCluster:
    state_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [str(KUBECTL), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=240,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.kubectl("-n", namespace, "get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def address(self, service: str, namespace: str) -> str:
        return self.kubectl("-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}")

    def pods(self, namespace: str, deployment: str | None = None) -> list[dict[str, Any]]:
        path = self.state_dir / "pods.json"
        pods: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
        return [
            p
            for p in pods
            if p["namespace"] == namespace and (deployment is None or p["deployment"] == deployment)
        ]

    def log_tail(self) -> str:
        text = (self.state_dir.parent / "cluster.log").read_text(encoding="utf-8", errors="replace")
        return text[-3000:]


def metric(text: str, name: str, labels: dict[str, str]) -> float:
    """One sample of a Prometheus text exposition (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@contextlib.contextmanager
def running_cluster(base: Path, model_dir: Path, *options: str) -> Iterator[DevCluster]:
    """``python -m sentiment_devcluster up`` (with ``options``) in ``base``; stopped, and every pod process
    with it, on the way out."""
    state = base / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTIMENT_", "KUBE"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", KUBECONFIG=str(state / "kubeconfig"))
    log = (base / "cluster.log").open("wb")
    argv = [sys.executable, "-m", "sentiment_devcluster", "up", "--state-dir", str(state), *options]
    argv += ["--model-dir", str(model_dir)]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    cluster = DevCluster(state, process, env)
    try:
        wait_until(
            lambda: (state / "cluster.json").exists() or process.poll() is not None,
            within=120,
            what="the cluster",
        )
        assert process.poll() is None, cluster.log_tail()
        yield cluster
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
    assert process.returncode == 0, cluster.log_tail()
    # Every pod process stopped with the cluster.
    wait_until(
        lambda: not processes_under(state), within=20, what=f"no process left: {processes_under(state)}"
    )
