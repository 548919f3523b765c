"""The test API server: kmock's KubernetesEmulator taught what kube-apiserver does, plus fault injection.

kmock stores plain JSON and merges every patch like RFC 7386. ``ApiServer`` admits each write as the API
server does instead (``apiserver.store``: create, PUT with resourceVersion preconditions, merge, JSON and
strategic merge patches, server-side apply with managedFields, the status subresource rules, generation,
omitempty dropping and defaulting, CRD pruning, defaults and CEL rules; a write that changes nothing is not
written), filters list and watch by label and field selectors, never loses a change between a watch's
snapshot and its stream, and deletes dependents whose owners are gone (background garbage collection).

Tests inject faults before anything is stored: HTTP errors, delays (client timeouts), hooks (a racing writer),
blocked list/watch requests and broken or expired watch streams.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import k8s as kmock_k8s
from kmock._internal import parsing, rendering

from sentiment_devcluster.apiserver import keda, podsecurity, rbac, selectors
from sentiment_devcluster.apiserver.schema import TypeInfo
from sentiment_devcluster.apiserver.store import ApiError, admit, write_for

_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock's URL parser, fixed for the Namespace resource itself.

    kmock reads every ``/api/v1/namespaces/...`` as a namespace prefix: ``/api/v1/namespaces`` (list or
    create Namespaces) raises, and ``/api/v1/namespaces/NAME`` becomes "no resource in namespace NAME".
    """
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"]:
        rest = parts[3:]
        if len(rest) <= 1 or rest[1:] in (["status"], ["finalize"]):
            return parsing.ParsedPath(
                "", "v1", "namespaces", None, rest[0] if rest else None, "/".join(rest[1:]) or None
            )
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path

# (group/version/plural, kind, namespaced, subresources)
CORE_RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("v1/namespaces", "Namespace", False, ()),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, ()),
    ("v1/events", "Event", True, ()),
    ("v1/secrets", "Secret", True, ()),
    ("v1/services", "Service", True, ("status",)),
    ("apps/v1/deployments", "Deployment", True, ("status", "scale")),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",)),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True, ("status",)),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, ()),
    ("serving.sentiment.dev/v1alpha1/sentimentmodels", "SentimentModel", True, ("status",)),
)
# Installed as CRDs (tests choose whether a cluster serves them): Istio's VirtualService, KEDA's ScaledObject,
# Gateway API's HTTPRoute (whose status its gateway controllers write through the status subresource) and the
# Prometheus operator's kinds.
ISTIO_RESOURCE = ("networking.istio.io/v1/virtualservices", "VirtualService", True, ("status",))
GATEWAY_API_RESOURCE = ("gateway.networking.k8s.io/v1/httproutes", "HTTPRoute", True, ("status",))
KEDA_RESOURCE = ("keda.sh/v1alpha1/scaledobjects", "ScaledObject", True, ("status",))
HPA_PATH = "autoscaling/v2/horizontalpodautoscalers"
# The Prometheus operator's CRDs that the operator writes (a ServiceMonitor per model) or ships (a rule).
PROMETHEUS_OPERATOR_RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("monitoring.coreos.com/v1/servicemonitors", "ServiceMonitor", True, ()),
    ("monitoring.coreos.com/v1/prometheusrules", "PrometheusRule", True, ()),
)
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


def project_crd_schemas() -> dict[str, dict[str, Any]]:
    """group/version/plural -> openAPIV3Schema of the project's own CRD (crds/sentimentmodel.yaml)."""
    crd = yaml.safe_load((Path(__file__).resolve().parents[3] / "crds" / "sentimentmodel.yaml").read_text())
    spec = crd["spec"]
    return {
        f"{spec['group']}/{version['name']}/{spec['names']['plural']}": version["schema"]["openAPIV3Schema"]
        for version in crd["spec"]["versions"]
    }


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    faults: list[Fault] = attrs.field(factory=list)
    blocked: set[str] = attrs.field(factory=set)  # plurals whose reads (list/watch/get) get 503
    _rv: Any = attrs.field(factory=lambda: itertools.count(1))
    _last_rv: int = 0
    # group/version/plural -> the CRD's openAPIV3Schema (pruning, defaults, CEL, list types)
    crd_schemas: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    # False: store custom resources without checking their schema and CEL rules (a CRD that predates them).
    validate_custom_resources: bool = True
    # RBAC for the operator's requests (by User-Agent); None: everyone may do anything, as before.
    authorizer: rbac.Authorizer | None = None
    rbac_user_agents: tuple[str, ...] = ("sentiment-operator", "kopf")
    denied: list[rbac.Attributes] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)  # Warning headers sent (Pod Security for workloads)
    # How many of the last requests kmock keeps (None: all, for tests that look back at them). kmock matches
    # each new request against its handlers by walking the whole log, so an API server that runs for long
    # (the embedded cluster) slows down as it grows; bounded, each request costs the same.
    request_history: int | None = None

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

    def install_istio(self, version: str = "v1") -> None:
        """Serve Istio's VirtualService (``v1beta1`` alone, as Istio before 1.22 does)."""
        self._install(ISTIO_RESOURCE, version)

    def install_gateway_api(self, version: str = "v1") -> None:
        """Serve Gateway API's HTTPRoute (``v1beta1`` alone, as Gateway API before 1.0 does)."""
        self._install(GATEWAY_API_RESOURCE, version)

    def _install(self, resource: tuple[str, str, bool, tuple[str, ...]], version: str) -> None:
        path, kind, namespaced, subresources = resource
        group, _, plural = path.split("/")
        self.register(((f"{group}/{version}/{plural}", kind, namespaced, subresources),))

    async def uninstall(self, group: str) -> None:
        """Stop serving an API group, as deleting its CRDs does: its custom resources are deleted with them
        (a DELETED event each), discovery no longer lists it, and its paths answer 404.

        https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
        #delete-a-customresourcedefinition
        """
        objects: Any = self._objects
        async with self._lock:
            for key, obj in list(objects.items()):
                if key[0].group == group:
                    if not obj.deleted:
                        await self._buses[key[0]].put({"type": "DELETED", "object": copy.deepcopy(obj.raw)})
                    del objects[key]
            for resource, _ in self._served():
                if resource.group == group:
                    del self.resources[resource]

    def install_keda(self) -> None:
        """Serve KEDA's ScaledObject, with KEDA's admission webhook rule (``apiserver.keda``); no KEDA
        controller runs: nothing creates its HPA or reports its status unless a test does."""
        self.register((KEDA_RESOURCE,))

    def serve_custom_metrics(self, *metrics: str, version: str = "v1beta1") -> None:
        """Serve ``pods/<metric>`` in the custom metrics API's discovery, as a metrics adapter
        (prometheus-adapter) does for the metrics its rules expose."""
        self.register(
            tuple((f"custom.metrics.k8s.io/{version}/pods/{m}", "MetricValueList", True, ()) for m in metrics)
        )

    def install_prometheus_operator(self) -> None:
        """Serve the Prometheus operator's ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1)."""
        self.register(PROMETHEUS_OPERATOR_RESOURCES)

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

    # --- realism: writes as kube-apiserver admits them (the rule modules of this package) --------------

    def next_resource_version(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _served(self) -> list[tuple[kmock.resource, kmock.ResourceInfo]]:
        """The registered resources (kmock's views are typed loosely)."""
        return [
            (cast(kmock.resource, resource), cast(kmock.ResourceInfo, info))
            for resource, info in self.resources.items()
        ]

    def _forget_old_requests(self) -> None:
        """Keep the last ``request_history`` requests in kmock's log (the one being handled included) and in
        each handler's own list."""
        keep = self.request_history
        if keep is None or len(self._requests) <= keep:
            return
        del self._requests[:-keep]
        for payload in self._payloads:
            del payload._requests[:-keep]

    def type_info(self, resource: Any) -> TypeInfo:
        for known, info in self._served():
            if known == resource:
                path = f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/")
                return TypeInfo.of(
                    str(info.kind),
                    resource.group or "",
                    has_status="status" in info.subresources,
                    crd_schema=self.crd_schemas.get(path),
                )
        raise kmock_k8s.KubernetesResourceNotFoundError()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self._forget_old_requests()
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
            method = str(request.method.value).upper()
            if not request.resource.plural:
                return await super()._handle(request)  # discovery
            self._authorize(request)  # authorization comes first, whether or not the resource is served
            if not any(known == request.resource for known in self.resources):
                # kube-apiserver answers a path of an unserved resource like any unknown URL: plain text, no
                # Status (a missing object of a served resource is a NotFound Status, below).
                return aiohttp.web.Response(status=404, text="404 page not found\n")
            if (method == "POST" and request.name is None) or (method in ("PATCH", "PUT") and request.name):
                try:
                    return await self._write(request, method)
                except ApiError as exc:
                    raise kmock_k8s.KubernetesError(
                        status=exc.status, reason=exc.reason, message=exc.message
                    ) from exc
            if request.action in (kmock.action.LIST, kmock.action.WATCH):
                try:
                    selectors.selector(request.params, self.type_info(request.resource).kind)
                except selectors.BadSelector as exc:
                    raise kmock_k8s.KubernetesError(
                        status=400, reason="BadRequest", message=str(exc)
                    ) from exc
        try:
            response = await super()._handle(request)
        except kmock_k8s.KubernetesObjectNotFoundError:
            resource = request.resource
            assert resource is not None
            what = f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)
            raise kmock_k8s.KubernetesError(
                status=404, reason="NotFound", message=f'{what} "{request.name}" not found'
            ) from None
        if request.action == kmock.action.DELETE:
            await self._collect_garbage()
        return response

    async def _write(self, request: rendering.Request, method: str) -> aiohttp.web.StreamResponse:
        assert request.resource is not None
        info = self.type_info(request.resource)
        headers = {k.lower(): v for k, v in request.headers.items()}
        body: Any = request.data if request.data is not None else request.text
        if request.data is None and method != "PATCH":
            raise ApiError(400, "BadRequest", "the request body is not JSON")
        write = write_for(
            method,
            body,
            namespace=request.namespace,
            name=request.name,
            subresource=request.subresource or "",
            content_type=headers.get("content-type", "application/json"),
            params=request.params,
            user_agent=headers.get("user-agent", ""),
        )
        name = write.name
        path = f"{request.resource.group}/{request.resource.version}/{request.resource.plural}".lstrip("/")
        objects: Any = self._objects  # kmock's ObjectsArray, keyed (resource, namespace, name)
        async with self._lock:
            key = (request.resource, request.namespace, name)
            stored = objects[key] if key in objects and name else None
            live = copy.deepcopy(stored.raw) if stored is not None and not stored.deleted else None
            if live is None and method == "PATCH":
                self._authorize(request, verb="create")  # an apply that creates also needs create
            new, changed = admit(
                info,
                live,
                write,
                next_resource_version=self.next_resource_version,
                crd_schema=self.crd_schemas.get(path),
                validate=self.validate_custom_resources,
            )
            if write.verb == "create" and not name:
                key = (request.resource, request.namespace, new["metadata"]["name"])
            warnings = self._admission(request, new, live) if changed else []
            if request.params.get("dryRun"):
                changed = False
            gone = False
            if changed:
                meta = new["metadata"]
                gone = bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
                if key in objects:
                    objects[key].create(new)
                else:
                    objects[key] = new
                kind = "ADDED" if live is None else "MODIFIED"
                await self._buses[request.resource].put({"type": kind, "object": copy.deepcopy(new)})
                if gone:
                    objects[key].delete()
                    await self._buses[request.resource].put({"type": "DELETED", "object": copy.deepcopy(new)})
        if changed and (gone or (new.get("metadata") or {}).get("ownerReferences")):
            # The last finalizer went: the object is deleted now, and so are its dependents (it may own some).
            # Or a dependent was written whose owners may already be gone (a controller's apply racing the
            # owner's deletion): the collector deletes it, as kube-controller-manager's would.
            await self._collect_garbage()
        status = 201 if live is None and changed else 200
        response = aiohttp.web.json_response(new, status=status)
        for warning in warnings:
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    # --- authorization and admission ----------------------------------------------------------------------

    def _subject_to_rbac(self, request: rendering.Request) -> bool:
        agent = request.headers.get("User-Agent", "")
        return self.authorizer is not None and agent.startswith(self.rbac_user_agents)

    def _authorize(self, request: rendering.Request, verb: str | None = None) -> None:
        """RBAC for the operator's requests (when an authorizer is set): 403 as the API server words it."""
        if not self._subject_to_rbac(request):
            return
        assert self.authorizer is not None
        assert request.resource is not None
        method = str(request.method.value).upper()
        name = request.name or ""
        attrs = rbac.Attributes(
            verb=verb or rbac.verb_of(method, named=bool(name), watch=request.params.get("watch") == "true"),
            group=request.resource.group or "",
            resource=request.resource.plural or "",
            subresource=request.subresource or "",
            name=name,
            namespace=request.namespace or "",
        )
        if not self.authorizer.allowed(attrs):
            self.denied.append(attrs)
            raise kmock_k8s.KubernetesError(
                status=403, reason="Forbidden", message=self.authorizer.forbidden_message(attrs)
            )

    def _admission(
        self, request: rendering.Request, new: dict[str, Any], live: dict[str, Any] | None
    ) -> list[str]:
        """OwnerReferencesPermissionEnforcement (with RBAC on) and Pod Security admission; the warnings."""
        assert request.resource is not None
        meta = new.get("metadata") or {}
        what = f"{request.resource.plural}{'.' + request.resource.group if request.resource.group else ''}"
        if self._subject_to_rbac(request):
            assert self.authorizer is not None
            plural_of = {
                (str(resource.group or ""), str(info.kind)): str(resource.plural)
                for resource, info in self._served()
            }
            problems = rbac.owner_reference_violations(self.authorizer, new, live, plural_of)
            if problems:
                self.denied += [attrs for attrs, _ in problems]
                raise ApiError(
                    403, "Forbidden", f'{what} "{meta.get("name")}" is forbidden: {problems[0][1]}'
                )
        if request.resource.group == keda.GROUP and new.get("kind") == "ScaledObject":
            hpas = [
                obj
                for obj in self.live_all(HPA_PATH, str(meta.get("namespace")))
                if not (obj.get("metadata") or {}).get("deletionTimestamp")
            ]
            denied = keda.denial(new, hpas)
            if denied is not None:
                raise ApiError(403, "Forbidden", keda.message(denied))
        spec = podsecurity.pod_spec_of(new)
        namespace = self._namespace_labels(meta.get("namespace"))
        if spec is None or not namespace:
            return []
        warnings = []
        enforce = namespace.get("pod-security.kubernetes.io/enforce", "privileged")
        found = podsecurity.violations(enforce, spec)
        if found and new.get("kind") == "Pod":
            raise ApiError(
                403,
                "Forbidden",
                f'{what} "{meta.get("name")}" is forbidden: ' + podsecurity.message(enforce, found),
            )
        if found:
            warnings.append(podsecurity.message(enforce, found, would=True))
        warn = namespace.get("pod-security.kubernetes.io/warn")
        if warn and warn != enforce and (found_warn := podsecurity.violations(warn, spec)):
            warnings.append(podsecurity.message(warn, found_warn, would=True))
        self.warnings += warnings
        return warnings

    def _namespace_labels(self, namespace: str | None) -> dict[str, str]:
        objects: Any = self._objects
        key = (kmock.resource("v1/namespaces"), None, namespace)
        if not namespace or key not in objects or objects[key].deleted:
            return {}
        labels: dict[str, str] = (objects[key].raw.get("metadata") or {}).get("labels") or {}
        return labels

    async def _collect_garbage(self) -> None:
        """Background cascading deletion: a dependent whose every owner is gone is deleted (owners first).

        https://kubernetes.io/docs/concepts/architecture/garbage-collection/#cascading-deletion
        """
        while True:
            async with self._lock:
                uids = {
                    (obj.raw.get("metadata") or {}).get("uid")
                    for obj in self._objects.values()
                    if not obj.deleted
                }
                orphans = [
                    (key, obj)
                    for key, obj in self._objects.items()
                    if not obj.deleted
                    and (refs := (obj.raw.get("metadata") or {}).get("ownerReferences"))
                    and all(ref.get("uid") not in uids for ref in refs)
                    and not (obj.raw.get("metadata") or {}).get("deletionTimestamp")
                ]
                for key, obj in orphans:
                    raw = copy.deepcopy(obj.raw)
                    if raw["metadata"].get("finalizers"):
                        raw["metadata"]["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        )
                        obj.create(raw)
                        await self._buses[key[0]].put({"type": "MODIFIED", "object": raw})
                    else:
                        obj.delete()
                        await self._buses[key[0]].put({"type": "DELETED", "object": raw})
            if not orphans:
                return

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_list(request)
        assert request.resource is not None
        if isinstance(payload, dict):
            # The collection's resourceVersion, from which a watch continues (kmock answers "...").
            payload["metadata"] = {"resourceVersion": str(self._last_rv)}
            # As kube-apiserver answers (client-go's informers, e.g. kubectl wait and rollout, require it).
            resource = request.resource
            payload["kind"] = f"{self.type_info(resource).kind}List"
            payload["apiVersion"] = (
                f"{resource.group}/{resource.version}" if resource.group else resource.version
            )
        check = selectors.selector(request.params, self.type_info(request.resource).kind)
        if check is not None and isinstance(payload, dict):
            payload["items"] = [item for item in payload["items"] if check(item)]
        return payload

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """The current objects as ADDED, then every change, filtered by namespace, name and selectors.

        kmock's own watch takes its snapshot, yields it, and only then subscribes to the change bus: a write
        in between is never streamed (kopf then patches a stale object forever). Here the bus position is
        marked under the store's lock together with the snapshot, so no change is lost, as on a real API
        server. Like kmock (and unlike kube-apiserver), a watch from a resourceVersion replays the current
        objects changed since that version as ADDED instead of the changes themselves (a deletion in between
        is not streamed); without one (or "0"), every current object, as the API server does.
        """
        assert request.resource is not None
        check = selectors.selector(request.params, self.type_info(request.resource).kind)

        def wanted(obj: dict[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return check is None or check(obj)

        yield b""  # the headers go out now: the stream is open even while nothing happens
        bus = self._buses[request.resource]
        async with self._lock:
            mark = await bus.mark()
            snapshot = [
                copy.deepcopy(obj.raw)
                for (resource, _, _), obj in self._objects.items()
                if resource == request.resource and not obj.deleted
            ]
        since = request.params.get("resourceVersion", "")
        since_rv = int(since) if since.isdigit() else 0
        for obj in snapshot:
            if wanted(obj) and int((obj.get("metadata") or {}).get("resourceVersion") or 0) > since_rv:
                yield {"type": "ADDED", "object": obj}
        if request.params.get("sendInitialEvents") == "true":
            # Streaming lists (KEP-3157, kubectl 1.32+): a bookmark marks the end of the initial events.
            resource = request.resource
            api_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
            yield {
                "type": "BOOKMARK",
                "object": {
                    "kind": self.type_info(resource).kind,
                    "apiVersion": api_version,
                    "metadata": {
                        "resourceVersion": str(self._last_rv),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                },
            }
        async for event in bus.stream(since=mark):
            if isinstance(event, dict) and event.get("type") == _BREAK:
                meta = (event.get("object") or {}).get("metadata") or {}
                if request.namespace is not None and meta.get("namespace") != request.namespace:
                    continue
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
            if isinstance(event, dict) and wanted(event.get("object") or {}):
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
