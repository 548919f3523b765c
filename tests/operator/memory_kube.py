"""The fast middle tier: the operator's real ``Kube`` (every line of kube.py runs) over an in-memory API
instead of HTTP, with the same write semantics as the test API server (``apiserver.store.admit``:
server-side apply, patches, dropping and defaulting, CRD pruning, the status rules). A reconcile takes
milliseconds, so the reconciler's behaviours can be pinned down in many small tests; the emulator tests keep
the real HTTP, kopf and watch streams."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client
from sentiment_devcluster.apiserver import selectors
from sentiment_devcluster.apiserver.schema import TypeInfo
from sentiment_devcluster.apiserver.server import project_crd_schemas
from sentiment_devcluster.apiserver.store import ApiError, admit, write_for
from sentiment_operator import kube

# group/version -> {plural: (kind, namespaced, has status subresource)}
SERVED: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "v1": {
        "services": ("Service", True, True),
        "secrets": ("Secret", True, False),
        "events": ("Event", True, False),
        "namespaces": ("Namespace", False, True),
    },
    "apps/v1": {"deployments": ("Deployment", True, True)},
    "autoscaling/v2": {"horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, True)},
    "policy/v1": {"poddisruptionbudgets": ("PodDisruptionBudget", True, True)},
    "networking.k8s.io/v1": {"networkpolicies": ("NetworkPolicy", True, False)},
    "serving.sentiment.dev/v1alpha1": {"sentimentmodels": ("SentimentModel", True, True)},
}
CRD_SCHEMAS = project_crd_schemas()  # read once: parsing the CRD per write would cost 0.1 s a reconcile
ISTIO = {"networking.istio.io/v1": {"virtualservices": ("VirtualService", True, True)}}
GATEWAY_API = {"gateway.networking.k8s.io/v1": {"httproutes": ("HTTPRoute", True, True)}}

Key = tuple[str, str, str | None, str]  # group/version, plural, namespace, name


UNSERVED = "404 page not found\n"  # kube-apiserver's plain-text answer to a path it does not serve


@dataclass
class Call:
    method: str
    path: str
    body: Any
    status: int


@dataclass
class MemoryApi:
    """Objects in a dict, admitted like the test API server admits them; every call recorded."""

    served: dict[str, dict[str, tuple[str, bool, bool]]] = field(
        default_factory=lambda: copy.deepcopy(SERVED)
    )
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # Answer a (method, path) with this HTTP status instead (e.g. a 403 of a denied apply).
    refuse: Callable[[str, str], int | None] = lambda method, path: None
    _rv: Any = field(default_factory=lambda: itertools.count(1))

    def install_istio(self) -> None:
        self.served.update(copy.deepcopy(ISTIO))

    def install_gateway_api(self, version: str = "v1") -> None:
        """Serve HTTPRoute (as ``v1beta1`` alone: Gateway API before 1.0)."""
        ((group_version, resources),) = GATEWAY_API.items()
        self.served[group_version.replace("/v1", f"/{version}")] = copy.deepcopy(resources)

    def uninstall(self, group: str) -> None:
        """Stop serving an API group, its objects deleted with it (as deleting its CRDs does)."""
        for group_version in [gv for gv in self.served if gv.rpartition("/")[0] == group]:
            del self.served[group_version]
        for key in [k for k in self.objects if k[0].rpartition("/")[0] == group]:
            del self.objects[key]

    def writes(self) -> list[Call]:
        """The calls that changed something (a no-op apply is not a write)."""
        return [c for c in self.calls if c.method != "GET" and c.status in (200, 201) and c.body != "no-op"]

    def live(
        self, group_version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        obj = self.objects.get((group_version, plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    # --- the API ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any, query: Sequence[tuple[str, str]], ctype: str) -> Any:
        params = dict(query)
        parts = path.strip("/").split("/")
        group_version = "/".join(parts[1:2] if parts[0] == "api" else parts[1:3])
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if group_version not in self.served:
            raise ApiError(404, "", UNSERVED)
        if not rest:  # discovery of a group/version
            return {"resources": [{"name": plural} for plural in self.served[group_version]]}
        namespace = None
        if rest[0] == "namespaces" and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        plural, name, subresource = rest[0], rest[1] if len(rest) > 1 else None, "/".join(rest[2:])
        if plural not in self.served[group_version]:
            raise ApiError(404, "", UNSERVED)
        kind, _, has_status = self.served[group_version][plural]
        if (status := self.refuse(method, path)) is not None:
            raise ApiError(status, "Forbidden" if status == 403 else "Injected", f"{method} {path} refused")
        if method == "GET" and name is None:
            check = selectors.selector(params, kind)
            items = [
                copy.deepcopy(obj)
                for (gv, pl, ns, _), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
                if (gv, pl) == (group_version, plural) and (namespace is None or ns == namespace)
            ]
            return {"items": [item for item in items if check is None or check(item)]}
        if method == "GET":
            obj = self.objects.get((group_version, plural, namespace, name or ""))
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            return copy.deepcopy(obj)
        if method == "DELETE":
            assert name is not None
            if self.objects.pop((group_version, plural, namespace, name), None) is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            return {"kind": "Status", "status": "Success"}
        schema = CRD_SCHEMAS.get(f"{group_version}/{plural}")
        group = group_version.rpartition("/")[0]
        info = TypeInfo.of(kind, group, has_status=has_status, crd_schema=schema)
        write = write_for(
            method,
            body,
            namespace=namespace,
            name=name,
            subresource=subresource,
            content_type=ctype,
            params=params,
            user_agent="sentiment-operator",
        )
        key = (group_version, plural, namespace, str(write.name))
        new, changed = admit(
            info,
            self.objects.get(key),
            write,
            next_resource_version=lambda: str(next(self._rv)),
            crd_schema=schema,
        )
        if changed:
            self.objects[(group_version, plural, namespace, new["metadata"]["name"])] = new
        return copy.deepcopy(new), changed


class MemoryKube(kube.Kube):
    """``Kube`` with its transport replaced by a :class:`MemoryApi` (no sockets, no threads)."""

    def __init__(self, api: MemoryApi) -> None:
        super().__init__(kubernetes.client.Configuration(host="http://memory.invalid"))
        self.api = api

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        decoded = json.loads(body) if isinstance(body, str) else copy.deepcopy(body)
        try:
            answer = self.api.handle(method, path, decoded, list(query or []), content_type)
        except ApiError as error:
            self.api.calls.append(Call(method, path, decoded, error.status))
            raw = (
                json.dumps({"kind": "Status", "reason": error.reason, "message": error.message}).encode()
                if error.reason
                else error.message.encode()  # an unserved path: plain text, as kube-apiserver answers it
            )
            raise kube._classify(method, path, error.status, raw) from None
        if isinstance(answer, tuple):
            answer, changed = answer
            self.api.calls.append(Call(method, path, decoded if changed else "no-op", 200))
        else:
            self.api.calls.append(Call(method, path, decoded, 200))
        return answer
