"""The top tier: the embedded cluster (``python -m sentiment_devcluster up``: the API server, the node agent,
the Service proxy) running the real operator process, which configures the real inference server and a real
redis-server; driven with the real kubectl, as a user would. One cluster per module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import DevCluster, wait_until
from serving import processes_under


def _devcluster(base: Path, model_dir: Path, *extra: str) -> Iterator[DevCluster]:
    """``python -m sentiment_devcluster up`` (with ``extra`` arguments) until the generator is closed;
    then every process it started must be gone."""
    state = base / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTIMENT_", "KUBE"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", KUBECONFIG=str(state / "kubeconfig"))
    log = (base / "cluster.log").open("wb")
    argv = [sys.executable, "-m", "sentiment_devcluster", "up", "--state-dir", str(state)]
    argv += ["--model-dir", str(model_dir), *extra]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    cluster = DevCluster(state, process, env)
    try:
        wait_until(
            lambda: (state / "cluster.json").exists() or process.poll() is not None,
            within=90,
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


@pytest.fixture(scope="module")
def devcluster(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> Iterator[DevCluster]:
    yield from _devcluster(tmp_path_factory.mktemp("devcluster"), trained_model_dir)


@pytest.fixture(scope="module")
def devcluster_with_keda(
    tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path
) -> Iterator[DevCluster]:
    """The cluster serving KEDA's ScaledObject and Istio's VirtualService (no controller for either)."""
    yield from _devcluster(
        tmp_path_factory.mktemp("devcluster-keda"), trained_model_dir, "--serve", "keda", "--serve", "istio"
    )
