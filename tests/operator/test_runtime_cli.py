"""`sentiment-operator run` as a real process: kubeconfig login, liveness endpoint, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
from operator_emulator import NAMESPACE, Cluster, eventually
from serving import free_port

NAME = "demo"


async def _liveness(url: str) -> int | None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url) as r,
        ):
            return r.status
    except aiohttp.ClientError:
        return None


async def test_run_command_against_the_emulator(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "emulator", "user": "tester"}}],
                "current-context": "ctx",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(kubeconfig)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sentiment_operator",
            "run",
            "--all-namespaces",
            "--standalone",
            "--liveness",
            liveness,
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await eventually(
            lambda: any(
                r.headers.get("User-Agent", "").startswith("kopf") for r in cluster.api.requests_log()
            ),
            within=60,
            what="the operator to connect",
        )
        created = await cluster.create_model(NAME, {"cache": {"enabled": False}})
        deployment = await eventually(
            lambda: cluster.api.live("apps/v1/deployments", NAMESPACE, NAME), within=30, what="the Deployment"
        )
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        assert all(
            r.headers.get("Authorization") == "Bearer test-token"
            for r in cluster.api.requests_log()
            if r.headers.get("User-Agent", "").startswith(("kopf", "sentiment-operator"))
        )
        status = None
        for _ in range(50):
            status = await _liveness(liveness)
            if status == 200:
                break
            await asyncio.sleep(0.2)
        assert status == 200, f"liveness endpoint answered {status}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert f"Created Deployment {NAMESPACE}/{NAME}" in output
    assert "Traceback" not in output, output[-3000:]
