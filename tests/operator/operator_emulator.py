"""kmock's KubernetesEmulator, made a little more like a real API server, plus fault injection.

The emulator stores objects as plain JSON and merges patches. A real API server also assigns names from
``generateName`` (every kopf Event uses it), ``uid``, ``resourceVersion``, ``creationTimestamp`` and
``metadata.generation`` (bumped when the spec changes), and ignores status in main-resource writes and
everything but status in ``/status`` writes. ``ApiServer`` adds exactly that, and lets tests inject faults
before the emulator stores anything: HTTP errors, delays (client timeouts), hooks (a racing writer), blocked
list/watch requests and broken or expired watch streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import kmock
import kopf
import pytest
from kmock._internal import k8s as kmock_k8s
from kmock._internal import rendering
from sentiment_operator.handlers import OperatorConfig, register
from sentiment_operator.kube import Kube

# (group/version/plural, kind, namespaced, subresources)
CORE_RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("v1/namespaces", "Namespace", False, ()),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, ()),
    ("v1/events", "Event", True, ()),
    ("v1/secrets", "Secret", True, ()),
    ("v1/services", "Service", True, ("status",)),
    ("apps/v1/deployments", "Deployment", True, ("status", "scale")),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",)),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, ()),
    ("serving.sentiment.dev/v1alpha1/sentimentmodels", "SentimentModel", True, ("status",)),
)
ISTIO_RESOURCE = ("networking.istio.io/v1/virtualservices", "VirtualService", True, ("status",))
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}

_BREAK = "__BREAK_WATCH__"


@dataclass
class Fault:
    """Answer matching requests with an error and/or a delay, or run a hook first; ``times`` then disarm."""

    match: Callable[[rendering.Request], bool]
    times: int = 1
    status: int | None = None  # HTTP status to answer with (nothing is stored)
    delay: float = 0.0  # sleep before answering (or before storing, when status is None)
    hook: Callable[[rendering.Request], None] | None = None  # e.g. create a conflicting object
    hits: list[float] = field(default_factory=list)  # monotonic times of the affected requests


def matcher(
    method: str | None = None,
    plural: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
    watch: bool | None = None,
) -> Callable[[rendering.Request], bool]:
    """A request predicate. ``name`` also matches creations (the name is in the body, not the URL)."""

    def check(request: rendering.Request) -> bool:
        if method is not None and str(request.method.value).upper() != method.upper():
            return False
        if plural is not None and (request.resource is None or request.resource.plural != plural):
            return False
        if subresource is not None and request.subresource != subresource:
            return False
        if watch is not None and (request.params.get("watch") == "true") != watch:
            return False
        if name is not None:
            body_name = (
                (request.data or {}).get("metadata", {}).get("name")
                if isinstance(request.data, dict)
                else None
            )
            if (request.name or body_name) != name:
                return False
        return True

    return check


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    faults: list[Fault] = attrs.field(factory=list)
    blocked: set[str] = attrs.field(factory=set)  # plurals whose reads (list/watch/get) get 503
    _rv: Any = attrs.field(factory=lambda: itertools.count(1))

    def register(
        self, resources: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = CORE_RESOURCES
    ) -> None:
        for path, kind, namespaced, subresources in resources:
            self.resources[path] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=VERBS,
                subresources=set(subresources),
            )

    def install_istio(self) -> None:
        self.register((ISTIO_RESOURCE,))

    # --- fault injection ---------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    async def break_watches(self, plural: str, *, expired: bool = False, namespace: str = "default") -> None:
        """End every open watch stream of a resource (with a 410 Gone error event if ``expired``).

        The marker carries a namespace so that both cluster-wide and namespaced watches see it.
        """
        for resource, bus in list(self._buses.items()):
            if resource.plural == plural:
                marker = {
                    "type": _BREAK,
                    "expired": expired,
                    "object": {"metadata": {"namespace": namespace}},
                }
                await bus.put(marker)

    # --- realism ----------------------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            if request.resource.plural in self.blocked and request.action in (
                kmock.action.LIST,
                kmock.action.WATCH,
                kmock.action.FETCH,
            ):
                raise kmock_k8s.KubernetesError(status=503, reason="ServiceUnavailable", message="blocked")
            for fault in self.faults:
                if fault.times > 0 and fault.match(request):
                    fault.times -= 1
                    fault.hits.append(time.monotonic())
                    if fault.hook is not None:
                        fault.hook(request)
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.status is not None:
                        raise kmock_k8s.KubernetesError(
                            status=fault.status, reason="Injected", message=f"injected HTTP {fault.status}"
                        )
                    break
            if isinstance(request.data, dict):
                self._stamp(request)
        return await super()._handle(request)

    def _stamp(self, request: rendering.Request) -> None:
        data: dict[str, Any] = request.data
        assert request.resource is not None
        meta = data.setdefault("metadata", {})
        if request.action == kmock.action.CREATE:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:8]}"
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["resourceVersion"] = str(next(self._rv))
            if "spec" in data:
                meta["generation"] = 1
        elif request.action == kmock.action.UPDATE and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return  # the emulator answers 404
            live = self.objects[key].raw
            if request.subresource == "status":
                for extra in [k for k in data if k != "status"]:
                    del data[extra]
                meta = data.setdefault("metadata", {})
            elif "status" in data and self._has_status(request):
                del data["status"]
            if "spec" in data and request.subresource is None:
                merged = copy.deepcopy(live)
                merged_spec = _merge(merged.get("spec") or {}, data["spec"])
                if merged_spec != (live.get("spec") or {}):
                    meta["generation"] = int(live.get("metadata", {}).get("generation") or 1) + 1
            meta["resourceVersion"] = str(next(self._rv))

    def _has_status(self, request: rendering.Request) -> bool:
        assert request.resource is not None
        for resource in self.resources:
            if resource == request.resource:
                return "status" in self.resources[resource].subresources
        return False

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        async for event in super()._serve_watch(request):
            if isinstance(event, dict) and event.get("type") == _BREAK:
                if event.get("expired"):
                    yield {
                        "type": "ERROR",
                        "object": {
                            "apiVersion": "v1",
                            "kind": "Status",
                            "status": "Failure",
                            "code": 410,
                            "reason": "Expired",
                            "message": "too old resource version",
                        },
                    }
                return
            yield event

    # --- helpers for assertions -------------------------------------------------------------------------

    def live(self, path: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(path), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def live_all(self, path: str, namespace: str | None = None) -> list[dict[str, Any]]:
        res = kmock.resource(path)
        out = []
        for (resource, ns, _), obj in self.objects.items():
            if resource == res and (namespace is None or ns == namespace) and not obj.deleted:
                out.append(copy.deepcopy(obj.raw))
        return out

    def requests_log(self) -> list[rendering.Request]:
        return list(self._requests)

    def operator_permissions(self) -> set[tuple[str, str, str]]:
        """(group, resource[/subresource], verb) of every resource request of the operator (kopf + ours)."""
        used: set[tuple[str, str, str]] = set()
        for request in self._requests:
            agent = request.headers.get("User-Agent", "")
            if not agent.startswith(("sentiment-operator", "kopf")):
                continue
            if request.resource is None or not request.resource.plural:
                continue  # discovery (/api, /apis/GROUP/VERSION): non-resource URLs every user may read
            method = str(request.method.value).upper()
            if method == "GET":
                verb = "watch" if request.params.get("watch") == "true" else "get" if request.name else "list"
            else:
                verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}[method]
            resource = request.resource.plural
            if request.subresource:
                resource = f"{resource}/{request.subresource}"
            used.add((request.resource.group or "", resource, verb))
        return used


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(base.get(key), value)
    return out


def _fast_exit(settings: kopf.OperatorSettings) -> None:
    """Tests stop the operator often: don't keep idle per-object workers around for seconds."""
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 0.5
    settings.background.instant_exit_timeout = 0.1


# --- the harness used by the tests ----------------------------------------------------------------------

NAMESPACE = "default"
SM_PATH = "serving.sentiment.dev/v1alpha1/sentimentmodels"
SM_API = "/apis/serving.sentiment.dev/v1alpha1"


async def eventually(
    check: Callable[[], Any], *, within: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {last!r}")


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
        out = []
        for request in self.api.requests_log():
            if method is not None and str(request.method.value).upper() != method:
                continue
            if plural is not None and (request.resource is None or request.resource.plural != plural):
                continue
            if name is not None:
                body_name = (
                    (request.data or {}).get("metadata", {}).get("name")
                    if isinstance(request.data, dict)
                    else None
                )
                if (request.name or body_name) != name:
                    continue
            out.append(request)
        return out

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
