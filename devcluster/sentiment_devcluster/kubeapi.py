"""The API server of the embedded cluster: the test API server plus what ``kubectl`` needs from a real one.

- server-side printing: ``kubectl get`` asks for a ``meta.k8s.io/v1`` Table; the SentimentModel's columns come
  from its CRD's ``additionalPrinterColumns`` (JSONPath), Deployments and Services get kubectl's usual
  columns,
  everything else NAME and AGE, as kube-apiserver's default table convertor does;
- an OpenAPI v3 index whose operations declare ``fieldValidation``, so kubectl validates server-side (the
  schemas themselves are checked by the API server: CRD schema and CEL, as before);
- ``415 Unsupported Media Type`` for protobuf and CBOR bodies, so kubectl falls back to JSON;
- discovery short names and categories (``kubectl get sm``), ConfigMaps, and Service cluster IPs allocated in
  127.0.0.0/8 so that the proxy (``sentiment_devcluster.proxy``) can listen on them without root.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import k8s as kmock_k8s
from kmock._internal import rendering

from sentiment_devcluster.apiserver.server import CORE_RESOURCES, ApiServer, project_crd_schemas
from sentiment_devcluster.podenv import loopback_block

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "sentimentmodel.yaml"

EXTRA_RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("v1/configmaps", "ConfigMap", True, ()),
    ("v1/pods", "Pod", True, ("status",)),
)
# Categories and short names as kube-apiserver's discovery announces them.
SHORT_NAMES = {
    "namespaces": {"ns"},
    "services": {"svc"},
    "deployments": {"deploy"},
    "horizontalpodautoscalers": {"hpa"},
    "poddisruptionbudgets": {"pdb"},
    "networkpolicies": {"netpol"},
    "configmaps": {"cm"},
    "pods": {"po"},
    "events": {"ev"},
    "customresourcedefinitions": {"crd", "crds"},
}
ALL_CATEGORY = {"pods", "services", "deployments", "horizontalpodautoscalers"}


def service_addresses(first: str | None = None) -> Iterator[str]:
    """Cluster IPs for Services: consecutive loopback addresses (all of 127.0.0.0/8 is loopback on Linux)
    from a random /24 of 127.20.0.0/16 unless ``first`` is given."""
    start = ipaddress.ip_address(first or loopback_block("127.20"))
    return (str(start + i) for i in itertools.count())


# --- a small JSONPath, enough for additionalPrinterColumns --------------------------------------------------

_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]|\[(\d+)\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate ``.a.b``, ``[N]`` and ``[?(@.k=="v")]`` steps (the forms printer columns use)."""
    nodes = [obj]
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        pos = match.end()
        field, key, value, index = match.groups()
        out: list[Any] = []
        for node in nodes:
            if field is not None and isinstance(node, dict) and field in node:
                out.append(node[field])
            elif key is not None and isinstance(node, list):
                for item in node:
                    found = jsonpath(item, "." + key)
                    if found and str(found[0]) == value:
                        out.append(item)
            elif index is not None and isinstance(node, list) and int(index) < len(node):
                out.append(node[int(index)])
        nodes = out
    return nodes


def human_age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's ``HumanDuration``: 45s, 3m, 2m30s below 10 min, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _cell(values: list[Any], kind: str, now: datetime.datetime | None) -> Any:
    if not values:
        return "" if kind != "date" else "<unknown>"  # as the CRD table convertor prints a missing field
    value = values[0]
    if kind == "date":
        return human_age(str(value), now)
    if isinstance(value, dict | list):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value if isinstance(value, int | float | bool) and kind != "string" else str(value)


Column = tuple[str, str, int, Any]  # name, type, priority, getter(obj, now) -> cell


def _deployment_columns() -> list[Column]:
    def ready(obj: dict[str, Any], _: Any) -> str:
        status = obj.get("status") or {}
        return f"{status.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 0)}"

    def count(field: str) -> Any:
        return lambda obj, _: (obj.get("status") or {}).get(field, 0)

    return [
        ("Ready", "string", 0, ready),
        ("Up-to-date", "integer", 0, count("updatedReplicas")),
        ("Available", "integer", 0, count("availableReplicas")),
    ]


def _service_columns() -> list[Column]:
    def ports(obj: dict[str, Any], _: Any) -> str:
        found = [
            f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in (obj.get("spec") or {}).get("ports") or []
        ]
        return ",".join(found) or "<none>"

    return [
        ("Type", "string", 0, lambda obj, _: (obj.get("spec") or {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda obj, _: (obj.get("spec") or {}).get("clusterIP", "<none>")),
        ("External-IP", "string", 0, lambda obj, _: "<none>"),
        ("Port(s)", "string", 0, ports),
    ]


def _pod_columns() -> list[Column]:
    def statuses(obj: dict[str, Any]) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("containerStatuses") or [])

    def ready(obj: dict[str, Any], _: Any) -> str:
        containers = (obj.get("spec") or {}).get("containers") or []
        return f"{sum(bool(c.get('ready')) for c in statuses(obj))}/{len(containers)}"

    def phase(obj: dict[str, Any], _: Any) -> str:
        status = obj.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + statuses(obj):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] not in ("Waiting", "PodInitializing"):
                return str(waiting["reason"])
        return str(status.get("reason") or status.get("phase") or "Pending")

    return [
        ("Ready", "string", 0, ready),
        ("Status", "string", 0, phase),
        ("Restarts", "integer", 0, lambda obj, _: sum(c.get("restartCount", 0) for c in statuses(obj))),
        ("IP", "string", 1, lambda obj, _: (obj.get("status") or {}).get("podIP", "<none>")),
        ("Node", "string", 1, lambda obj, _: (obj.get("spec") or {}).get("nodeName", "<none>")),
    ]


@attrs.define(kw_only=True)
class ClusterApiServer(ApiServer):
    """``ApiServer`` as the embedded cluster serves it to kubectl, the operator and the node agent."""

    printer_columns: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)  # plural -> CRD columns
    request_history: int | None = 1000  # the cluster runs for hours; nothing looks back at its requests
    _service_ips: Iterator[str] = attrs.field(factory=service_addresses)

    @classmethod
    def for_project(cls) -> ClusterApiServer:
        crd = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
        server = cls(crd_schemas=project_crd_schemas())
        plural = crd["spec"]["names"]["plural"]
        server.printer_columns[plural] = crd["spec"]["versions"][0].get("additionalPrinterColumns") or []
        SHORT_NAMES[plural] = set(crd["spec"]["names"].get("shortNames") or [])
        return server

    def register(
        self, resources: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = CORE_RESOURCES
    ) -> None:
        super().register(resources + EXTRA_RESOURCES)
        for path, info in self._served():
            plural = str(path.plural)
            info.shortnames = set(SHORT_NAMES.get(plural, set()))
            if plural in ALL_CATEGORY:
                info.categories = {"all"}
            elif plural == "sentimentmodels":
                info.categories = {"sentiment"}

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """kmock's APIResourceList, with the core group's ``groupVersion`` ("v1", not "/v1") and no short
        names or categories on subresources (else kubectl warns that ``sm`` could mean a subresource)."""
        payload = await super()._serve_version(request)
        if isinstance(payload, dict):
            payload["groupVersion"] = str(payload.get("groupVersion", "")).lstrip("/")
            for entry in payload.get("resources") or []:
                if "/" in entry.get("name", ""):
                    entry["shortNames"] = []
                    entry["categories"] = []
        return payload

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return aiohttp.web.json_response(self._openapi_v3(path))
        content_type = (request.headers.get("Content-Type") or "").lower()
        if "protobuf" in content_type or "cbor" in content_type:
            raise kmock_k8s.KubernetesError(
                status=415,
                reason="UnsupportedMediaType",
                message=f"{content_type} is not supported; use JSON",
            )
        if request.params.get("watch") in ("true", "1") and request._raw_request is not None:
            raw = request._raw_request
            original = raw._prepare_hook

            async def json_stream(response: aiohttp.web.StreamResponse) -> None:
                # kmock streams as application/octet-stream; client-go decodes only a JSON watch stream.
                if response.content_type == "application/octet-stream":
                    response.content_type = "application/json"
                await original(response)

            raw._prepare_hook = json_stream  # type: ignore[method-assign]
        accept = request.headers.get("Accept") or ""
        table = "as=Table" in accept and request.params.get("watch") != "true"
        readable = request.resource is not None and bool(request.resource.plural)
        if table and readable and request.action in (kmock.action.LIST, kmock.action.FETCH):
            return aiohttp.web.json_response(await self._table(request))
        return await super()._handle(request)

    # --- OpenAPI: just enough for kubectl to pick server-side field validation ------------------------

    def _group_versions(self) -> list[str]:
        found = {
            f"api/{r.version}" if not r.group else f"apis/{r.group}/{r.version}" for r, _ in self._served()
        }
        return sorted(found)

    def _openapi_v3(self, path: str) -> dict[str, Any]:
        if path.rstrip("/") == "/openapi/v3":
            return {
                "paths": {
                    gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=1"} for gv in self._group_versions()
                }
            }
        group_version = path.removeprefix("/openapi/v3/")
        parameter = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        paths: dict[str, Any] = {}
        for resource, info in self._served():
            gv = (
                f"api/{resource.version}"
                if not resource.group
                else f"apis/{resource.group}/{resource.version}"
            )
            if gv != group_version:
                continue
            scope = "namespaces/{namespace}/" if info.namespaced else ""
            gvk = {"group": resource.group or "", "version": resource.version, "kind": info.kind}
            operation = {
                "parameters": [parameter],
                "responses": {},
                "x-kubernetes-group-version-kind": gvk,
            }
            item = f"/{gv}/{scope}{resource.plural}/{{name}}"
            paths[f"/{gv}/{scope}{resource.plural}"] = {"post": operation}
            paths[item] = {"put": operation, "patch": operation}
        return {
            "openapi": "3.0.0",
            "info": {"title": "sentiment devcluster", "version": "v1"},
            "paths": paths,
        }

    # --- server-side printing -------------------------------------------------------------------------

    def _columns(self, plural: str) -> list[Column]:
        if plural in self.printer_columns:
            columns: list[Column] = []
            for column in self.printer_columns[plural]:
                if column["name"] == "Age":
                    continue  # added last, as for every kind

                def get(obj: dict[str, Any], now: Any, c: dict[str, Any] = column) -> Any:
                    return _cell(jsonpath(obj, c["jsonPath"]), c.get("type", "string"), now)

                columns.append((column["name"], column.get("type", "string"), column.get("priority", 0), get))
            return columns
        if plural == "deployments":
            return _deployment_columns()
        if plural == "services":
            return _service_columns()
        if plural == "pods":
            return _pod_columns()
        return []

    async def _table(self, request: rendering.Request) -> dict[str, Any]:
        assert request.resource is not None
        items: list[dict[str, Any]]
        if request.action == kmock.action.LIST:
            items = cast(dict[str, Any], await self._serve_list(request))["items"]
        else:
            items = [cast(dict[str, Any], await self._serve_fetch(request))]
        items.sort(key=lambda o: ((o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"]))
        columns = self._columns(str(request.resource.plural))
        now = datetime.datetime.now(datetime.UTC)
        definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
        definitions += [
            {"name": name, "type": kind, "format": "", "description": "", "priority": priority}
            for name, kind, priority, _ in columns
        ]
        definitions.append({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0})
        rows = []
        for obj in items:
            meta = obj.get("metadata") or {}
            cells = [meta.get("name")] + [get(obj, now) for _, _, _, get in columns]
            cells.append(human_age(meta.get("creationTimestamp"), now))
            partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
            rows.append({"cells": cells, "object": partial})
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._last_rv)},
            "columnDefinitions": definitions,
            "rows": rows,
        }

    # --- Service addresses in 127.0.0.0/8 -------------------------------------------------------------

    def _admission(
        self, request: rendering.Request, new: dict[str, Any], live: dict[str, Any] | None
    ) -> list[str]:
        if (
            new.get("kind") == "Service"
            and (new.get("spec") or {}).get("type", "ClusterIP") != "ExternalName"
        ):
            spec = new["spec"]
            kept = ((live or {}).get("spec") or {}).get("clusterIP")
            if not str(spec.get("clusterIP", "")).startswith("127."):
                address = kept if kept and kept.startswith("127.") else next(self._service_ips)
                spec["clusterIP"] = address
                spec["clusterIPs"] = [address]
        return super()._admission(request, new, live)
