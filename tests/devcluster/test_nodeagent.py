"""The node agent and the Service proxy (sentiment_devcluster) with real redis-server pods, no operator:
what a kubelet and a Deployment controller would do with the Deployments, Secrets and Services in the API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import polling
import pytest
import redis
from sentiment_devcluster.cluster import Cluster
from sentiment_devcluster.nodeagent import rolling_bounds

NS = "default"
APPS = f"/apis/apps/v1/namespaces/{NS}/deployments"
CORE = f"/api/v1/namespaces/{NS}"


@dataclass
class Running:
    cluster: Cluster
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None, patch: bool = False) -> Any:
        headers = {"Content-Type": "application/merge-patch+json" if patch else "application/json"}
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.cluster.url + path, data=data, headers=headers) as resp:
            payload = await resp.json(content_type=None)
            assert resp.status < 300, (method, path, resp.status, payload)
            return payload

    def pods(self, deployment: str) -> list[dict[str, Any]]:
        return [
            p for p in self.cluster.agent.pods + self.cluster.agent.terminating if p.deployment == deployment
        ]

    def pids(self, deployment: str) -> list[int]:
        return [c.pid for p in self.pods(deployment) for c in p.containers.values() if c.pid]

    async def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = (await self.call("GET", f"{APPS}/{name}")).get("status") or {}
        return status


def eventually(check: Callable[[], Any], *, within: float = 60.0, what: str = "condition") -> Any:
    """``polling.eventually`` with the patience of processes starting (a minute)."""
    return polling.eventually(check, within=within, interval=0.1, what=what)


@pytest.fixture
async def running(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[Running]:
    cluster = Cluster(
        state_dir=tmp_path / "cluster", model_dir=tiny_model_dir, operator=False, announce=False, poll=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(cluster.run(stop))
    await eventually(lambda: (tmp_path / "cluster" / "cluster.json").exists(), within=30, what="the cluster")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Running(cluster, session)
    pids = [
        c.pid for p in cluster.agent.pods + cluster.agent.terminating for c in p.containers.values() if c.pid
    ]
    stop.set()
    await asyncio.wait_for(task, timeout=60)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


PASSWORD = "generated-9f2c"


def redis_deployment(
    name: str, replicas: int = 1, image: str = "redis:7.4-alpine", **extra: Any
) -> dict[str, Any]:
    """Redis configured by a Secret volume (redis.conf) and env, probed with redis-cli as its image has it."""
    labels = {"app": name}
    container = {
        "name": "redis",
        "image": image,
        "command": ["redis-server"],
        "args": ["/etc/redis/redis.conf", "--port", "6379", "--dir", "/data"],
        "env": [
            {"name": "REDISCLI_AUTH", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}}
        ],
        "ports": [{"name": "redis", "containerPort": 6379}],
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", "redis-cli -p 6379 ping | grep -q PONG"]},
            "periodSeconds": 1,
        },
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/redis"}, {"name": "data", "mountPath": "/data"}],
        **extra,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "conf",
                            "secret": {
                                "secretName": "auth",
                                "items": [{"key": "conf", "path": "redis.conf"}],
                            },
                        },
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    }


async def setup_redis(api: Running, name: str = "cache", **kwargs: Any) -> None:
    conf = f"requirepass {PASSWORD}\nmaxmemory 16mb\n"
    data = {"password": PASSWORD, "conf": conf}
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    with contextlib.suppress(AssertionError):
        await api.call(
            "POST",
            f"{CORE}/secrets",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "auth"}, "data": encoded},
        )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 6379, "targetPort": "redis"}]},
    }
    await api.call("POST", f"{CORE}/services", service)
    await api.call("POST", APPS, redis_deployment(name, **kwargs))


async def ready(api: Running, name: str, count: int) -> dict[str, Any] | None:
    status = await api.status(name)
    ok = status.get("readyReplicas") == count and status.get("updatedReplicas") == count
    return status if ok and status.get("replicas") == count else None


async def test_a_deployment_runs_as_local_processes_and_its_service_reaches_it(running: Running) -> None:
    await setup_redis(running)
    status = await eventually(lambda: ready(running, "cache", 1), what="1 ready replica")
    available = {c["type"]: c for c in status["conditions"]}["Available"]
    assert (available["status"], available["reason"]) == ("True", "MinimumReplicasAvailable")
    service = await running.call("GET", f"{CORE}/services/cache")
    address = service["spec"]["clusterIP"]
    assert address.startswith("127.")
    # The Secret volume's redis.conf is in force: a password is required, the generated one works.
    # (Blocking clients run in a thread: the proxy serves from this test's event loop.)
    client = redis.Redis(host=address, port=6379, password=PASSWORD, socket_timeout=5)
    assert await asyncio.to_thread(client.ping)
    await asyncio.to_thread(client.set, "k", "v")
    with pytest.raises(redis.AuthenticationError):
        await asyncio.to_thread(redis.Redis(host=address, port=6379, password="wrong", socket_timeout=5).ping)
    (pod,) = running.pods("cache")
    assert pod.ip.startswith("127.10.")
    assert pod.ip != address
    # The process is the real redis-server, listening on the pod's own address.
    (pid,) = running.pids("cache")
    cmdline = await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_bytes)
    assert b"redis-server" in cmdline
    direct = redis.Redis(host=pod.ip, port=6379, password=PASSWORD, socket_timeout=5)
    assert await asyncio.to_thread(direct.get, "k") == b"v"

    # The pod is in the API as the ReplicaSet controller and the kubelet would have it (kubectl get pods).
    async def published() -> Any:
        items = (await running.call("GET", f"{CORE}/pods"))["items"]
        ready = [i for i in items if {"type": "Ready", "status": "True"} in i["status"]["conditions"]]
        return ready

    (obj,) = await eventually(published, what="a Ready Pod object")
    assert obj["metadata"]["name"] == pod.name
    assert obj["status"]["podIP"] == pod.ip
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert obj["status"]["containerStatuses"][0]["restartCount"] == 0


async def test_scale_up_and_down_and_delete_stop_the_processes(running: Running) -> None:
    await setup_redis(running)
    await eventually(lambda: ready(running, "cache", 1), what="1 ready replica")
    await running.call("PATCH", f"{APPS}/cache", {"spec": {"replicas": 2}}, patch=True)
    await eventually(lambda: ready(running, "cache", 2), what="2 ready replicas")
    first = running.pids("cache")
    assert len(first) == 2
    await running.call("PATCH", f"{APPS}/cache", {"spec": {"replicas": 0}}, patch=True)
    await eventually(lambda: not running.pods("cache"), what="no pod")
    for pid in first:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    status = await eventually(lambda: ready(running, "cache", 0), what="0 replicas reported")
    assert status["availableReplicas"] == 0
    await running.call("PATCH", f"{APPS}/cache", {"spec": {"replicas": 1}}, patch=True)
    await eventually(lambda: ready(running, "cache", 1), what="1 ready replica again")
    pids = running.pids("cache")
    await running.call("DELETE", f"{APPS}/cache")
    await eventually(lambda: not running.pods("cache"), what="the pods of a deleted Deployment stop")

    async def no_pod_object() -> bool:
        return not (await running.call("GET", f"{CORE}/pods"))["items"]

    await eventually(no_pod_object, what="no Pod object left")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_changed_template_rolls_new_pod_ready_before_the_old_one_stops(running: Running) -> None:
    await setup_redis(running)
    await eventually(lambda: ready(running, "cache", 1), what="1 ready replica")
    (old,) = running.pods("cache")
    seen_ready: list[int] = []

    async def watch_ready() -> None:
        while True:
            seen_ready.append(sum(p.ready for p in running.pods("cache")))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_ready())
    patch = {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    await running.call("PATCH", f"{APPS}/cache", patch, patch=True)
    await eventually(lambda: old not in running.pods("cache") and ready(running, "cache", 1), what="rolled")
    watcher.cancel()
    (new,) = running.pods("cache")
    assert new.template_hash != old.template_hash
    assert min(seen_ready) >= 1, "maxUnavailable 0: a ready pod at every moment of the rollout"


async def test_a_crashed_container_restarts_and_status_shows_it(running: Running) -> None:
    await setup_redis(running)
    await eventually(lambda: ready(running, "cache", 1), what="1 ready replica")
    (pid,) = running.pids("cache")
    os.kill(pid, 9)
    status = await eventually(
        lambda: (s := running.cluster.agent.pods[0].containers["redis"]).restarts == 1 and s.ready and s,
        what="a restart",
    )
    assert status.pid != pid
    assert status.last_exit is not None
    await eventually(lambda: ready(running, "cache", 1), what="ready again")


async def test_an_unknown_image_is_reported_not_runnable(running: Running) -> None:
    await setup_redis(running, name="web", image="nginx:1.27")
    status = await eventually(lambda: _condition(running, "web", "ReplicaFailure"), what="ReplicaFailure")
    assert status["reason"] == "ImageNotRunnable"
    assert "nginx:1.27" in status["message"]
    assert not running.pods("web")


async def _condition(api: Running, name: str, ctype: str) -> dict[str, Any] | None:
    for condition in (await api.status(name)).get("conditions") or []:
        if condition["type"] == ctype:
            return dict(condition)
    return None


async def test_a_not_ready_pod_gets_no_traffic(running: Running) -> None:
    never = {"exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 1}
    await setup_redis(running, readinessProbe=never)
    (pod,) = await eventually(
        lambda: [p for p in running.pods("cache") if p.phase == "Running"], what="running"
    )
    address = (await running.call("GET", f"{CORE}/services/cache"))["spec"]["clusterIP"]
    assert await asyncio.to_thread(
        redis.Redis(host=pod.ip, port=6379, password=PASSWORD, socket_timeout=5).ping
    )
    with pytest.raises(redis.ConnectionError):
        await asyncio.to_thread(
            redis.Redis(host=address, port=6379, password=PASSWORD, socket_timeout=5).ping
        )
    status = await running.status("cache")
    assert status.get("readyReplicas") == 0


@pytest.mark.parametrize(
    ("strategy", "replicas", "bounds"),
    [
        ({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, 2, (1, 0)),
        ({}, 4, (1, 1)),  # 25 % of 4, surge rounds up, unavailable down
        ({}, 1, (1, 0)),
        ({"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "50%"}}, 3, (2, 1)),
    ],
)
def test_rolling_bounds_as_the_deployment_controller_rounds_them(
    strategy: dict[str, Any], replicas: int, bounds: tuple[int, int]
) -> None:
    deployment = {"spec": {"strategy": {"type": "RollingUpdate", **strategy}}}
    assert rolling_bounds(deployment, replicas) == bounds
