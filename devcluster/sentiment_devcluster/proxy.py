"""Service proxy, as kube-proxy does it for a ClusterIP Service: one listener per Service port on the
Service's cluster IP (a loopback address, so no root is needed), each new connection forwarded to one of
the Service's Ready endpoints, round robin.

The endpoints are read at connection time from the node agent: a pod that is not Ready, or that is
terminating, is never chosen, so a pod leaves the Service before its preStop hook and SIGTERM (as kube-proxy
with EndpointSlices' ``ready``/``terminating`` conditions does). An open connection stays with its pod, as
conntrack keeps it there. With no Ready endpoint the connection is closed at once (kube-proxy rejects it).

``ProxyThread`` runs the proxy on an event loop of its own thread, as kube-proxy is a process of its own: a
busy API server or a long node agent pass in the cluster's loop never delays a connection (the server's
Redis client gives up after 50 ms by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("sentiment_devcluster.proxy")

Endpoints = Callable[[str, str, dict[str, Any]], list[tuple[str, int]]]  # ns, service, port -> (ip, port)s


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


@dataclass
class ServiceProxy:
    endpoints: Endpoints
    _listeners: dict[tuple[str, str, str, int], asyncio.Server] = field(default_factory=dict)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    async def sync(self, services: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Listen on every (cluster IP, port) of the Services; stop listening for the ones gone."""
        wanted: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        for (namespace, name), service in services.items():
            spec = service.get("spec") or {}
            address = spec.get("clusterIP")
            if not address or address == "None" or not str(address).startswith("127."):
                continue
            for port in spec.get("ports") or []:
                wanted[namespace, name, address, int(port["port"])] = port
        for key in set(self._listeners) - set(wanted):
            self._listeners.pop(key).close()
        for key, port in wanted.items():
            if key not in self._listeners:
                namespace, name, address, number = key
                try:
                    self._listeners[key] = await asyncio.start_server(
                        self._handler(namespace, name, port), address, number, reuse_address=True
                    )
                except OSError as exc:
                    log.warning(
                        "Service %s/%s: cannot listen on %s:%s: %s", namespace, name, address, number, exc
                    )

    def _handler(
        self, namespace: str, name: str, port: dict[str, Any]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._connections.add(task)
            try:
                await self._forward(namespace, name, port, reader, writer)
            finally:
                if task is not None:
                    self._connections.discard(task)

        return handle

    async def _forward(
        self,
        namespace: str,
        name: str,
        port: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            ready = self.endpoints(namespace, name, port)
            if not ready:
                return
            ip, target = ready[next(self._turn) % len(ready)]
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(ip, target), timeout=5
                )
            except (OSError, TimeoutError):
                return
            try:
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            finally:
                upstream_writer.close()
        finally:
            writer.close()

    async def close(self) -> None:
        for server in self._listeners.values():
            server.close()
        for task in list(self._connections):
            task.cancel()
        for server in self._listeners.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)
        self._listeners.clear()


class ProxyThread:
    """A ``ServiceProxy`` on a thread and event loop of its own; ``sync`` and ``close`` await it."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._loop = asyncio.new_event_loop()
        self.proxy = ServiceProxy(endpoints)
        self._thread = threading.Thread(target=self._loop.run_forever, name="service-proxy", daemon=True)
        self._thread.start()

    async def sync(self, services: dict[tuple[str, str], dict[str, Any]]) -> None:
        snapshot = dict(services)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.proxy.sync(snapshot), self._loop))

    async def close(self) -> None:
        if not self._thread.is_alive():
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()
