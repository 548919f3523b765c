"""The operator test harness: the real operator in its own thread against the test API server
(``sentiment_devcluster.apiserver.server.ApiServer``), and a ``Cluster`` of kubectl-like helpers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import kopf
import pytest
from polling import eventually as eventually  # re-exported: the operator tests import it from here
from sentiment_devcluster.apiserver.server import ApiServer, matcher
from sentiment_operator.handlers import OperatorConfig, register
from sentiment_operator.kube import Kube


def _fast_exit(settings: kopf.OperatorSettings) -> None:
    """Tests stop the operator often: don't keep idle per-object workers around for seconds."""
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 0.5
    settings.background.instant_exit_timeout = 0.1


# --- the harness used by the tests ----------------------------------------------------------------------

NAMESPACE = "default"
SM_PATH = "serving.sentiment.dev/v1alpha1/sentimentmodels"
SM_API = "/apis/serving.sentiment.dev/v1alpha1"


@dataclass
class OperatorHandle:
    """The real operator running in its own thread and event loop, as in a separate process.

    Own loop: kopf treats every task of its loop that it did not start as "hung" at exit (it would wait for
    and cancel the test's own tasks); and the API server must keep serving while the operator blocks.
    """

    def __init__(self, registry: kopf.OperatorRegistry) -> None:
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._registry = registry
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        coro = kopf.operator(
            registry=self._registry,
            clusterwide=True,
            standalone=True,
            stop_flag=self.stop_flag,
            ready_flag=self.ready_flag,
        )
        self._task = self._loop.create_task(coro)
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def wait_ready(self) -> None:
        if not await asyncio.to_thread(self.ready_flag.wait, 15):
            raise AssertionError("the operator did not become ready within 15s")

    async def stop(self, *, crash: bool = False) -> None:
        """Stop gracefully, or (``crash``) cancel everything at once, like a killed process."""
        if not self._thread.is_alive():
            return
        if crash and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        else:
            self.stop_flag.set()
        await asyncio.to_thread(self._thread.join, 20)
        # kopf waits for a threading.Event stop-flag in an executor thread: release it after a crash too.
        self.stop_flag.set()
        assert not self._thread.is_alive(), "the operator did not stop within 20s"


@dataclass
class Cluster:
    """The emulated API server plus helpers that act like kubectl."""

    api: ApiServer
    url: str
    operators: list[OperatorHandle] = field(default_factory=list)

    async def http(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        """One request as a separate client would make it (a fresh connection, bounded in time)."""
        headers = {"Content-Type": content_type, "User-Agent": "test-client"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, f"{self.url}{path}", json=body, headers=headers) as resp,
        ):
            payload = await resp.json(content_type=None)
            assert resp.status < 300, f"{method} {path} -> {resp.status}: {payload}"
            return payload

    async def create_model(
        self, name: str, spec: dict[str, Any], namespace: str = NAMESPACE
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "serving.sentiment.dev/v1alpha1",
            "kind": "SentimentModel",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        result: dict[str, Any] = await self.http(
            "POST", f"{SM_API}/namespaces/{namespace}/sentimentmodels", body
        )
        return result

    async def patch_model(self, name: str, patch: dict[str, Any], namespace: str = NAMESPACE) -> None:
        await self.http(
            "PATCH",
            f"{SM_API}/namespaces/{namespace}/sentimentmodels/{name}",
            patch,
            content_type="application/merge-patch+json",
        )

    async def set_deployment_status(
        self, name: str, *, ready: int, replicas: int | None = None, namespace: str = NAMESPACE
    ) -> None:
        """Play the Deployment controller: report ``ready`` ready/available/updated replicas."""
        replicas = ready if replicas is None else replicas
        status = {
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": replicas,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready else "False",
                    "reason": "MinimumReplicasAvailable",
                }
            ],
        }
        await self.http(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )

    async def delete(self, path: str, namespace: str, name: str) -> None:
        group_version, _, plural = path.rpartition("/")
        prefix = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        await self.http("DELETE", f"{prefix}/namespaces/{namespace}/{plural}/{name}")

    def model(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        return self.api.live(SM_PATH, namespace, name)

    def condition(self, name: str, ctype: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        model = self.model(name, namespace) or {}
        for cond in (model.get("status") or {}).get("conditions") or []:
            if cond.get("type") == ctype:
                return dict(cond)
        return None

    def events(self, *, reason: str | None = None, type: str | None = None) -> list[dict[str, Any]]:
        events = self.api.live_all("v1/events")
        return [
            e
            for e in events
            if (reason is None or e.get("reason") == reason) and (type is None or e.get("type") == type)
        ]

    def requests(
        self, *, method: str | None = None, plural: str | None = None, name: str | None = None
    ) -> list[Any]:
        check = matcher(method=method, plural=plural, name=name)
        return [request for request in self.api.requests_log() if check(request)]

    def created_once(self, path: str, name: str, namespace: str = NAMESPACE) -> bool:
        """The object exists and was never deleted and re-created (its history has no deletion marker)."""
        key = (kmock.resource(path), namespace, name)
        if key not in self.api.objects:
            return False
        history = list(self.api.objects[key].history)
        return bool(history) and all(version is not None for version in history)

    def redis_password(self, name: str, namespace: str = NAMESPACE) -> str | None:
        secret = self.api.live("v1/secrets", namespace, f"{name}-redis-auth")
        if secret is None:
            return None
        return base64.b64decode(secret["data"]["password"]).decode()

    async def start_operator(self, **overrides: Any) -> OperatorHandle:
        """Run the real operator (kopf + our handlers) in this event loop against the emulator."""
        options: dict[str, Any] = {
            "kube_factory": lambda: Kube.for_server(self.url, timeout=2.0),
            "timer_interval": 3600.0,
            "timer_initial_delay": 3600.0,
            "retry_base": 0.5,
            "retry_max": 4.0,
            "child_debounce": 0.05,
            "watch_server_timeout": 60.0,
            "request_timeout": 10.0,
            "reporting_instance": "test",
            "settings_hook": _fast_exit,
        }
        options.update(overrides)
        registry = kopf.OperatorRegistry()
        register(registry, OperatorConfig(**options))
        handle = OperatorHandle(registry)
        self.operators.append(handle)
        await handle.wait_ready()
        return handle


def assert_no_secret_leak(cluster: Cluster, name: str, logs: pytest.LogCaptureFixture) -> None:
    """The generated Redis password appears in the Secret only: not in status, Events or any log line."""
    password = cluster.redis_password(name)
    assert password, "the Redis auth Secret should exist with a password"
    encoded = base64.b64encode(password.encode()).decode()
    model = cluster.model(name) or {}
    for needle in (password, encoded):
        assert needle not in repr(model.get("status")), "password leaked into status"
        assert needle not in repr(model.get("metadata")), "password leaked into metadata"
        assert all(needle not in repr(e) for e in cluster.events()), "password leaked into an Event"
        assert needle not in logs.text, "password leaked into the logs"
    for path in ("apps/v1/deployments", "v1/services"):
        for obj in cluster.api.live_all(path):
            assert password not in repr(obj), f"password inlined into {obj['metadata']['name']}"
