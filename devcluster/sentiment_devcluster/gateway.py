"""The embedded cluster's gateway stand-in: the VirtualServices in the API, carried out by a small HTTP proxy
on a loopback address, so the routes the operator writes really route (in the demo and the tests).

For each request, the first ``http`` route of any VirtualService whose ``match`` fits the path (``exact``,
``prefix`` or ``regex`` URI) is taken; its ``rewrite.uri`` replaces the matched part; a destination is picked
by the route's weights, and ``mirrorPercentage`` of the requests are copied to ``mirror`` with ``-shadow``
appended to the host (as Envoy does), their answers discarded. Destinations are Services
(``name.namespace.svc...``), reached through their cluster IP (the Service proxy). Each request picks its
destination at random with the route's weights, and is mirrored with the mirror's probability, as Envoy
does (a round robin would hand one destination every k-th request, which a repeating client turns into a
biased sample).

What only Istio does: gateways and hosts are not checked (every VirtualService is served here), no retries,
timeouts, TLS, header matches, fault injection or telemetry of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import aiohttp.web

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


class Gateway:
    """The proxy: ``virtual_services()`` lists the routes, ``service_address(namespace, name)`` gives a
    Service's cluster IP (None: no such Service)."""

    def __init__(
        self,
        virtual_services: Callable[[], list[JSON]],
        service_address: Callable[[str, str], str | None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 30.0,
    ) -> None:
        self.virtual_services = virtual_services
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

    def _upstream(self, destination: Mapping[str, Any], namespace: str) -> str | None:
        host = str(destination["host"])
        parts = host.split(".")
        name, service_namespace = parts[0], parts[1] if len(parts) > 1 else namespace
        address = self.service_address(service_namespace, name)
        if address is None:
            return None
        return f"{address}:{(destination.get('port') or {}).get('number', 80)}"

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        found = route_for(self.virtual_services(), request.path)
        if found is None:
            return aiohttp.web.Response(status=404, text=f"no VirtualService routes {request.path}\n")
        route, path = found
        namespace = route["_namespace"]
        destinations = route.get("route") or []
        if not destinations:
            return aiohttp.web.Response(status=503, text="the route has no destination\n")
        weights = [int(d.get("weight", 100 if len(destinations) == 1 else 0)) for d in destinations]
        chosen = self._random.choices(destinations, weights=weights)[0]["destination"]
        body = await request.read()
        query = f"?{request.query_string}" if request.query_string else ""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        mirror = route.get("mirror")
        percent = float((route.get("mirrorPercentage") or {}).get("value", 100.0))
        if mirror is not None and self._random.random() * 100.0 < percent:
            target = self._upstream(mirror, namespace)
            if target is not None:
                shadow = _shadow_host(request.host)
                task = asyncio.create_task(
                    self._send(request.method, target, path + query, headers, body, shadow)
                )
                self._mirrors.add(task)
                task.add_done_callback(self._mirrors.discard)
        upstream = self._upstream(chosen, namespace)
        if upstream is None:
            return aiohttp.web.Response(status=503, text=f"no Service {chosen['host']}\n")
        try:
            status, answer_headers, answer = await self._forward(
                request.method, upstream, path + query, headers, body, request.host
            )
        except (aiohttp.ClientError, OSError):
            return aiohttp.web.Response(status=503, text="no healthy upstream\n")
        except TimeoutError:
            return aiohttp.web.Response(status=504, text="upstream request timeout\n")
        return aiohttp.web.Response(status=status, body=answer, headers=answer_headers)

    async def _forward(
        self, method: str, upstream: str, path: str, headers: Mapping[str, str], body: bytes, host: str
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        async with self._session.request(
            method, f"http://{upstream}{path}", headers={**headers, "Host": host}, data=body
        ) as response:
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
        log.info("Gateway %s routes the VirtualServices", self.url)

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
