"""The API server as kubectl sees it (sentiment_devcluster.kubeapi): server-side printing of the CRD's printer
columns, discovery, and the real kubectl against it."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from sentiment_devcluster.cluster import kubeconfig
from sentiment_devcluster.kubeapi import ClusterApiServer, human_age, jsonpath

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"

MODEL = {
    "status": {
        "conditions": [{"type": "Available", "status": "False"}, {"type": "Ready", "status": "True"}],
        "replicasSummary": "2/2",
    },
    "spec": {"model": {"id": "m"}},
}


def test_jsonpath_of_printer_columns() -> None:
    assert jsonpath(MODEL, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(MODEL, ".status.replicasSummary") == ["2/2"]
    assert jsonpath(MODEL, ".status.conditions[0].type") == ["Available"]
    assert jsonpath(MODEL, ".status.gatewayPath") == []


def test_human_age_like_kubectl() -> None:
    now = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.UTC)

    def ago(seconds: int) -> str:
        then = now - datetime.timedelta(seconds=seconds)
        return human_age(then.strftime("%Y-%m-%dT%H:%M:%SZ"), now)

    assert [ago(5), ago(150), ago(180), ago(900), ago(4 * 3600), ago(3 * 86400)] == [
        "5s",
        "2m30s",
        "3m",
        "15m",
        "4h",
        "3d",
    ]


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[tuple[ClusterApiServer, dict[str, str]]]:
    async with ClusterApiServer.for_project() as api, kmock.Server(api) as server:
        api.register()
        api.objects["v1/namespaces", None, "default"] = {"metadata": {"name": "default"}}
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig(str(server.url).rstrip("/")), encoding="utf-8")
        yield api, {**os.environ, "KUBECONFIG": str(config)}


async def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_kubectl_applies_gets_with_printer_columns_patches_and_deletes(
    kubectl: tuple[ClusterApiServer, dict[str, str]],
) -> None:
    api, env = kubectl
    code, out, err = await run(env, "apply", "-f", str(ROOT / "examples" / "minimal.yaml"), "-n", "default")
    assert code == 0, err
    name = next(o["metadata"]["name"] for o in api.live_all("serving.sentiment.dev/v1alpha1/sentimentmodels"))
    # The operator's status, as the status subresource would hold it.
    patch = {"status": {"replicasSummary": "1/1", "conditions": [{"type": "Ready", "status": "True"}]}}
    code, out, err = await run(
        env, "patch", "sm", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )
    assert code == 0, err
    code, out, err = await run(env, "get", "sentimentmodels")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "REPLICAS", "MODEL", "PATH", "ROLLOUT", "AGE"]
    assert row.split()[:3] == [name, "True", "1/1"]
    assert "warning" not in err.lower()  # no ambiguous short name
    code, out, err = await run(env, "get", "sm", name, "-o", "wide")
    assert code == 0, err
    assert "PRECISION" in out.splitlines()[0]
    code, out, err = await run(env, "wait", f"sm/{name}", "--for=condition=Ready", "--timeout=20s")
    assert code == 0, err
    code, out, err = await run(env, "delete", "sm", "--all", "--wait", "--timeout=20s")
    assert code == 0, err
    assert api.live_all("serving.sentiment.dev/v1alpha1/sentimentmodels") == []


async def test_kubectl_rejects_an_invalid_spec_with_the_crd_schema(
    kubectl: tuple[ClusterApiServer, dict[str, str]],
) -> None:
    _, env = kubectl
    bad = {
        "apiVersion": "serving.sentiment.dev/v1alpha1",
        "kind": "SentimentModel",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
    }
    code, _, err = await run(env, "apply", "-f", "-", stdin=json.dumps(bad))
    assert code != 0
    assert "minReplicas" in err or "maxReplicas" in err, err


async def test_services_get_loopback_cluster_ips_that_stay(
    kubectl: tuple[ClusterApiServer, dict[str, str]],
) -> None:
    api, env = kubectl
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    code, _, err = await run(env, "apply", "-f", "-", stdin=json.dumps(service))
    assert code == 0, err
    first = api.live("v1/services", "default", "web")
    assert first is not None
    assert first["spec"]["clusterIP"].startswith("127.20.")
    service["spec"]["ports"] = [{"port": 8080}]
    code, _, err = await run(env, "apply", "-f", "-", stdin=json.dumps(service))
    assert code == 0, err
    second = api.live("v1/services", "default", "web")
    assert second is not None
    assert second["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    code, out, err = await run(env, "get", "svc", "web")
    assert code == 0, err
    assert first["spec"]["clusterIP"] in out
