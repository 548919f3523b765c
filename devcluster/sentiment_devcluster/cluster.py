"""The embedded cluster: the API server, the node agent, the Service proxy, the gateway stand-in and the real
operator process; with ``--prometheus``, Prometheus as a cluster add-on.

``python -m sentiment_devcluster up --state-dir DIR --model-dir MODEL`` starts all of it on 127.0.0.0/8,
writes ``DIR/kubeconfig`` (and ``DIR/cluster.json`` once the operator is ready: the API server's, the
gateway's and Prometheus' URLs), prints each Service's address as it appears, and runs until SIGINT or
SIGTERM; then it stops the operator, every pod and the proxies, and exits.

The API server serves Istio's VirtualService, and with ``--serve gateway-api`` Gateway API's HTTPRoute too;
the gateway (``sentiment_devcluster.gateway``) carries both out on one loopback port, and reports on the
HTTPRoutes as their Gateway API controller would (``sentiment_devcluster.httproutes``). ``--prometheus`` also
serves the Prometheus operator's kinds and runs a real Prometheus configured from the ServiceMonitors
(``sentiment_devcluster.monitoring``), scraping the operator's own metrics too; the operator is started with
``--prometheus-url`` pointing at it.

Every process it starts is in a process group of its own and dies with it (Linux
``PR_SET_PDEATHSIG``), so even a SIGKILL of the cluster leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kmock

from sentiment_devcluster.apiserver.server import GATEWAY_API_RESOURCE, ISTIO_RESOURCE
from sentiment_devcluster.gateway import Gateway
from sentiment_devcluster.httproutes import HTTPRouteController
from sentiment_devcluster.kubeapi import ClusterApiServer
from sentiment_devcluster.monitoring import PROMETHEUS_RULES, SERVICE_MONITORS, Endpoint, MonitoringAddon
from sentiment_devcluster.nodeagent import Launch, NodeAgent, default_images, start_process, stop_process
from sentiment_devcluster.prometheus import Job, Prometheus
from sentiment_devcluster.proxy import ProxyThread

log = logging.getLogger("sentiment_devcluster")

NAMESPACES = ("default", "kube-system", "kube-public")
# Custom resources the cluster can serve on request (``up --serve NAME``). KEDA's ScaledObjects are stored and
# admitted (KEDA's webhook rule included), but no KEDA controller acts on them; Gateway API's HTTPRoutes are
# carried out by the gateway stand-in, which writes their status as their controller. (Istio's VirtualService
# is always served: the gateway stand-in carries it out.)
GATEWAY_API = "gateway-api"
SERVABLE: dict[str, Callable[[ClusterApiServer], None]] = {
    "keda": lambda api: api.install_keda(),
    GATEWAY_API: lambda api: api.install_gateway_api(),
}


def kubeconfig(url: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: devcluster\n  cluster:\n    server: {url}\n"
        "users:\n- name: devcluster\n  user: {}\n"
        "contexts:\n- name: devcluster\n  context:\n    cluster: devcluster\n    user: devcluster\n"
        "    namespace: default\n"
        "current-context: devcluster\n"
    )


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    state_dir: Path
    model_dir: Path
    port: int = 0
    operator: bool = True
    operator_args: tuple[str, ...] = ()
    poll: float = 0.5
    announce: bool = True
    # Custom resource kinds served besides the built-in ones (``SERVABLE``).
    serve: tuple[str, ...] = ()
    prometheus: bool = False  # run Prometheus as an add-on (and serve the Prometheus operator's kinds)
    gateway_port: int = 0
    api: ClusterApiServer = field(init=False)
    url: str = ""
    agent: NodeAgent = field(init=False)
    proxy: ProxyThread = field(init=False)
    gateway: Gateway = field(init=False)
    monitoring: Prometheus | None = None
    _operator: asyncio.subprocess.Process | None = None
    _operator_metrics: int = 0

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    def _say(self, text: str) -> None:
        if self.announce:
            print(f"[devcluster] {text}", flush=True)

    def _on_service(self, namespace: str, name: str, address: str, ports: list[int]) -> None:
        where = ", ".join(f"{address}:{p}" for p in ports)
        self._say(f"Service {namespace}/{name} ({name}.{namespace}.svc.cluster.local) -> {where}")

    async def run(self, stop: asyncio.Event) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cluster.json").unlink(missing_ok=True)
        self.api = ClusterApiServer.for_project()
        async with self.api, kmock.Server(self.api, port=self.port or None) as server:
            self.api.register()
            self.api.install_istio()
            if self.prometheus:
                self.api.install_prometheus_operator()
            for extra in self.serve:
                SERVABLE[extra](self.api)
            for namespace in NAMESPACES:
                meta = {"name": namespace, "labels": {"kubernetes.io/metadata.name": namespace}}
                self.api.objects["v1/namespaces", None, namespace] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {**meta, "uid": namespace, "creationTimestamp": _now()},
                }
            self.url = str(server.url).rstrip("/")
            self.kubeconfig_path.write_text(kubeconfig(self.url), encoding="utf-8")
            self._say(f"API server {self.url}; export KUBECONFIG={self.kubeconfig_path}")
            self.agent = NodeAgent(
                self.url,
                self.state_dir,
                default_images(self.state_dir, self.model_dir),
                poll=self.poll,
                on_service=self._on_service,
            )
            self.proxy = ProxyThread(self.agent.endpoints)
            self.agent.after_sync = lambda: self.proxy.sync(self.agent.services)
            agent_stop = asyncio.Event()
            # The node agent, and Gateway API's controller where HTTPRoutes are served: stopped by agent_stop.
            controllers = [asyncio.create_task(self.agent.run(agent_stop))]
            self.gateway = Gateway(
                lambda: self.api.live_all(ISTIO_RESOURCE[0]),
                lambda namespace, name: self.agent.service_addresses.get((namespace, name)),
                http_routes=lambda: self.api.live_all(GATEWAY_API_RESOURCE[0]),
                port=self.gateway_port,
            )
            await self.gateway.start()
            routes = "the VirtualServices" + (" and HTTPRoutes" if GATEWAY_API in self.serve else "")
            self._say(f"Gateway {self.gateway.url} routes {routes} (weights and mirrors too)")
            if GATEWAY_API in self.serve:
                controller = HTTPRouteController(self.url, interval=self.poll)
                controllers.append(asyncio.create_task(controller.run(agent_stop)))
            addon: asyncio.Task[None] | None = None
            try:
                if self.prometheus:
                    addon = await self._start_prometheus(agent_stop)
                if self.operator:
                    await self._start_operator()
                info = {
                    "url": self.url,
                    "kubeconfig": str(self.kubeconfig_path),
                    "pid": os.getpid(),
                    "gateway": self.gateway.url,
                    "prometheus": self.monitoring.url if self.monitoring is not None else None,
                    "operatorMetrics": f"http://127.0.0.1:{self._operator_metrics}/metrics"
                    if self._operator_metrics
                    else None,
                }
                (self.state_dir / "cluster.json").write_text(json.dumps(info), encoding="utf-8")
                bin_dir = Path(sys.executable).parent
                self._say(
                    "ready. In another shell:\n"
                    f"  export KUBECONFIG={self.kubeconfig_path} PATH={bin_dir}:$PATH\n"
                    "  kubectl create namespace sentiment --dry-run=client -o yaml | kubectl apply -f -\n"
                    "  kubectl apply -f examples/project.yaml && kubectl -n sentiment get sentimentmodels\n"
                    "  (each Service's address is printed below when it appears; pod logs: "
                    f"{self.state_dir}/pods/)"
                )
                await self._watch(stop)
            finally:
                self._say("stopping")
                await self._stop_operator()
                agent_stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    for task in controllers:
                        await task
                    if addon is not None:
                        await addon
                await self.agent.shutdown()
                await self.proxy.close()
                await self.gateway.close()
                if self.monitoring is not None:
                    self.monitoring.stop()
                (self.state_dir / "cluster.json").unlink(missing_ok=True)
                self._say("stopped")

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._operator is not None and self._operator.returncode is not None:
                self._say(
                    f"the operator exited ({self._operator.returncode}); see {self.state_dir}/operator.log"
                )
                self._operator = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    def _endpoints(self, namespace: str, name: str, port: Any) -> list[Endpoint]:
        return [
            Endpoint(pod.name, pod.ip, number, container)
            for pod, container, number in self.agent.pod_endpoints(namespace, name, port)
        ]

    async def _start_prometheus(self, stop: asyncio.Event) -> asyncio.Task[None]:
        """Prometheus on a loopback port: jobs from the ServiceMonitors, and the operator's own metrics."""
        self._operator_metrics = free_port()
        self.monitoring = Prometheus(
            self.state_dir / "prometheus", scrape_interval=1.0, evaluation_interval=1.0
        )
        operator_job = Job("sentiment-operator", scrape_interval=1.0)
        operator_target = [{"targets": [f"127.0.0.1:{self._operator_metrics}"], "labels": {}}]
        addon = MonitoringAddon(
            self.monitoring,
            lambda: self.api.live_all(SERVICE_MONITORS),
            lambda: list(self.agent.services.values()),
            self._endpoints,
            extra=[(operator_job, operator_target)],
            rules=lambda: self.api.live_all(PROMETHEUS_RULES),
        )
        addon.sync()
        await asyncio.to_thread(self.monitoring.start)
        self._say(f"Prometheus {self.monitoring.url} scrapes what the ServiceMonitors select")
        return asyncio.create_task(addon.run(stop))

    async def _start_operator(self) -> None:
        """The real operator, ``sentiment-operator run`` on this cluster's kubeconfig, as its own process."""
        liveness = free_port()
        binary = Path(sys.executable).parent / "sentiment-operator"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "SENTIMENT_"))}
        env["KUBECONFIG"] = str(self.kubeconfig_path)
        argv = [
            str(binary),
            "run",
            "--all-namespaces",
            "--standalone",
            "--liveness",
            f"http://127.0.0.1:{liveness}/healthz",
            *self.operator_args,
        ]
        if self.monitoring is not None:
            argv += ["--prometheus-url", self.monitoring.url]
            argv += ["--metrics-port", str(self._operator_metrics), "--metrics-address", "127.0.0.1"]
        launch = Launch(argv, env, str(self.state_dir), self.state_dir / "operator.log")
        self._operator = await start_process(launch)
        self._say(f"operator started (pid {self._operator.pid}; log {launch.log_path})")
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self._operator.returncode is not None:
                    raise RuntimeError(f"the operator exited early; see {launch.log_path}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"http://127.0.0.1:{liveness}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the operator was not live within 60s; see {launch.log_path}")

    async def _stop_operator(self) -> None:
        if self._operator is not None:
            await stop_process(self._operator, 15)
            self._operator = None


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sentiment_devcluster", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster and run until SIGINT/SIGTERM")
    up.add_argument("--state-dir", type=Path, default=Path(".cache/devcluster"))
    up.add_argument("--model-dir", type=Path, required=True, help="the model standing in for the image's own")
    up.add_argument("--port", type=int, default=0, help="API server port on 127.0.0.1 (default: any free)")
    up.add_argument("--no-operator", action="store_true", help="do not start sentiment-operator")
    up.add_argument(
        "--operator-arg", action="append", default=[], help="extra sentiment-operator run argument"
    )
    up.add_argument("--poll", type=float, default=0.5, help="seconds between node agent passes")
    up.add_argument(
        "--serve",
        action="append",
        default=[],
        choices=sorted(SERVABLE),
        help="also serve these custom resources: keda (ScaledObjects stored and admitted; no KEDA controller "
        "acts on them), gateway-api (HTTPRoutes, carried out by the gateway, which reports their status)",
    )
    up.add_argument(
        "--prometheus",
        action="store_true",
        help="run Prometheus as an add-on, configured from the ServiceMonitors (rollouts analyse with it)",
    )
    up.add_argument("--gateway-port", type=int, default=0, help="the gateway's port on 127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[devcluster] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    cluster = Cluster(
        state_dir=args.state_dir.resolve(),
        model_dir=args.model_dir.resolve(),
        port=args.port,
        operator=not args.no_operator,
        operator_args=tuple(args.operator_arg),
        poll=args.poll,
        serve=tuple(args.serve),
        prometheus=args.prometheus,
        gateway_port=args.gateway_port,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await cluster.run(stop)

    try:
        asyncio.run(run())
    except RuntimeError as exc:
        print(f"[devcluster] {exc}", file=sys.stderr)
        return 1
    return 0
