"""The embedded cluster's gateway stand-in: the routes in the API (Istio's VirtualServices and Gateway API's
HTTPRoutes) carried out by a small HTTP proxy on one loopback address, so the routes the operator writes
really route (in the demo and the tests).

A request is matched against the HTTPRoutes first (``sentiment_devcluster.httproutes``: Gateway API's match
precedence, URLRewrite, weighted backendRefs, RequestMirror), then against the VirtualServices, as one data
plane serving both APIs would (Istio does). For VirtualServices, the first ``http`` route of any
VirtualService whose ``match`` fits the path (``exact``, ``prefix`` or ``regex`` URI) is taken; its
``rewrite.uri`` replaces the matched part; a destination is picked by the route's weights, and
``mirrorPercentage`` of the requests are copied to ``mirror`` with ``-shadow`` appended to the host (as
Istio's Envoy does), their answers discarded. Destinations are Services (``name.namespace.svc...``, or an
HTTPRoute's backendRefs), reached through their cluster IP (the Service proxy). Each request picks its
destination at random with the route's weights, and is mirrored with the mirror's probability, as Envoy does
(a round robin would hand one destination every k-th request, which a repeating client turns into a biased
sample).

What only Istio does: gateways and hosts are not checked (every VirtualService is served here), no retries,
timeouts, TLS, header matches, fault injection or telemetry of its own. What only a Gateway API
implementation does: see ``sentiment_devcluster.httproutes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.web

from sentiment_devcluster import httproutes

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SHADOW_SUFFIX = "-shadow"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


def _matches(match: Mapping[str, Any], path: str) -> str | None:
    """The part of ``path`` a URI match matched (for the rewrite), or None."""
    uri = match.get("uri") or {}
    if "exact" in uri:
        return path if path == uri["exact"] else None
    if "prefix" in uri:
        return uri["prefix"] if path.startswith(uri["prefix"]) else None
    if "regex" in uri:
        return path if re.fullmatch(uri["regex"], path) else None
    return ""  # a match without a URI condition matches every path


def route_for(virtual_services: Sequence[Mapping[str, Any]], path: str) -> tuple[JSON, str] | None:
    """The first http route matching ``path`` (VirtualServices by namespace/name) and the rewritten path."""
    ordered = sorted(virtual_services, key=lambda v: (v["metadata"]["namespace"], v["metadata"]["name"]))
    for service in ordered:
        for route in (service.get("spec") or {}).get("http") or []:
            for match in route.get("match") or [{}]:
                matched = _matches(match, path)
                if matched is None:
                    continue
                rewrite = (route.get("rewrite") or {}).get("uri")
                if rewrite is not None:
                    path = rewrite + path[len(matched) :] if matched else rewrite
                namespaced = {**route, "_namespace": service["metadata"]["namespace"]}
                return namespaced, path
    return None


@dataclass(frozen=True)
class Plan:
    """Where one request goes: ``upstream`` (host:port) with ``path`` and ``host``, plus the mirrored copies
    (upstream, host); or, with ``status``, an answer of the gateway's own."""

    upstream: str = ""
    path: str = ""
    host: str = ""
    copies: tuple[tuple[str, str], ...] = ()
    status: int = 0
    text: str = ""


class Gateway:
    """The proxy: ``virtual_services()`` and ``http_routes()`` list the routes, ``service_address(namespace,
    name)`` gives a Service's cluster IP (None: no such Service)."""

    def __init__(
        self,
        virtual_services: Callable[[], list[JSON]],
        service_address: Callable[[str, str], str | None],
        *,
        http_routes: Callable[[], list[JSON]] = list,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 30.0,
    ) -> None:
        self.virtual_services = virtual_services
        self.http_routes = http_routes
        self.service_address = service_address
        self.host = host
        self.port = port
        self.timeout = timeout
        self._random = random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._runner: aiohttp.web.AppRunner | None = None
        self._mirrors: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def copies_in_flight(self) -> int:
        """Mirrored copies sent and not answered yet."""
        return len(self._mirrors)

    def _upstream(self, destination: Mapping[str, Any], namespace: str) -> str | None:
        host = str(destination["host"])
        parts = host.split(".")
        name, service_namespace = parts[0], parts[1] if len(parts) > 1 else namespace
        address = self.service_address(service_namespace, name)
        if address is None:
            return None
        return f"{address}:{(destination.get('port') or {}).get('number', 80)}"

    def _backend(self, backend: httproutes.Backend, namespace: str) -> str | None:
        """A resolving backendRef's host:port (None: it does not resolve)."""
        address = self.service_address(backend.namespace, backend.name)
        if backend.port is None or backend.problem(namespace, lambda *_: address is not None) is not None:
            return None
        return f"{address}:{backend.port}"

    def _plan_http_route(self, request: aiohttp.web.Request) -> Plan | None:
        matched = httproutes.select(
            self.http_routes(),
            httproutes.Request(
                request.method,
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                {k: request.query.getone(k) for k in request.query},
            ),
        )
        if matched is None:
            return None
        namespace, host = matched.namespace, matched.hostname or request.host
        copies = []
        for mirror, percent in httproutes.mirrors(matched.rule, namespace):
            target = self._backend(mirror, namespace)
            if target is not None and self._random.random() * 100.0 < percent:
                copies.append((target, host))  # the Host unchanged, as Envoy Gateway sends a copy
        chosen = httproutes.pick(httproutes.backends(matched.rule, namespace), self._random.random())
        # The API: a request that falls to an invalid backend, or to none, gets 500 (and no copy is sent).
        if chosen is None:
            return Plan(status=500, text="the rule has no backend with a weight\n")
        upstream = self._backend(chosen, namespace)
        if upstream is None:
            return Plan(status=500, text=f"backendRef {chosen.name} does not resolve\n")
        return Plan(upstream, matched.path, host, tuple(copies))

    def _plan_virtual_service(self, request: aiohttp.web.Request) -> Plan | None:
        found = route_for(self.virtual_services(), request.path)
        if found is None:
            return None
        route, path = found
        namespace = route["_namespace"]
        destinations = route.get("route") or []
        if not destinations:
            return Plan(status=503, text="the route has no destination\n")
        weights = [int(d.get("weight", 100 if len(destinations) == 1 else 0)) for d in destinations]
        chosen = self._random.choices(destinations, weights=weights)[0]["destination"]
        copies = []
        mirror = route.get("mirror")
        percent = float((route.get("mirrorPercentage") or {}).get("value", 100.0))
        if mirror is not None and self._random.random() * 100.0 < percent:
            target = self._upstream(mirror, namespace)
            if target is not None:
                copies.append((target, _shadow_host(request.host)))
        upstream = self._upstream(chosen, namespace)
        if upstream is None:
            return Plan(path=path, copies=tuple(copies), status=503, text=f"no Service {chosen['host']}\n")
        return Plan(upstream, path, request.host, tuple(copies))

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        plan = self._plan_http_route(request) or self._plan_virtual_service(request)
        if plan is None:
            return aiohttp.web.Response(
                status=404, text=f"no HTTPRoute or VirtualService routes {request.path}\n"
            )
        body = await request.read()
        query = f"?{request.query_string}" if request.query_string else ""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        for target, host in plan.copies:
            task = asyncio.create_task(
                self._send(request.method, target, plan.path + query, headers, body, host)
            )
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)
        if plan.status:
            return aiohttp.web.Response(status=plan.status, text=plan.text)
        try:
            status, answer_headers, answer = await self._forward(
                request.method, plan.upstream, plan.path + query, headers, body, plan.host
            )
        except (aiohttp.ClientError, OSError):
            return aiohttp.web.Response(status=503, text="no healthy upstream\n")
        except TimeoutError:
            return aiohttp.web.Response(status=504, text="upstream request timeout\n")
        return aiohttp.web.Response(status=status, body=answer, headers=answer_headers)

    async def _forward(
        self, method: str, upstream: str, path: str, headers: Mapping[str, str], body: bytes, host: str
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            return await self._exchange(method, f"http://{upstream}{path}", {**headers, "Host": host}, body)
        except aiohttp.ServerDisconnectedError:
            # A kept-alive connection the upstream closed as the request went out (a pod that began to
            # stop closes its idle connections): sent once more on a new connection, which the Service
            # proxy gives to a Ready pod (a mesh's proxy, watching its pooled connections, rarely sends on
            # a closed one).
            return await self._exchange(method, f"http://{upstream}{path}", {**headers, "Host": host}, body)

    async def _exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        async with self._session.request(method, url, headers=headers, data=body) as response:
            answer = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            return response.status, kept, answer

    async def _send(
        self, method: str, upstream: str, path: str, headers: Mapping[str, str], body: bytes, host: str
    ) -> None:
        """A mirrored copy: fire and forget, its answer discarded."""
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await self._forward(method, upstream, path, headers, body, host)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        app = aiohttp.web.Application(client_max_size=16 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])
        log.info("Gateway %s routes the HTTPRoutes and VirtualServices", self.url)

    async def close(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def _shadow_host(host: str) -> str:
    """``host:port`` -> ``host-shadow:port``, as Envoy marks a mirrored request."""
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        return f"{name}{SHADOW_SUFFIX}:{port}"
    return host + SHADOW_SUFFIX
