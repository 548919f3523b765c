"""The node agent: a Deployment controller and a kubelet for one machine, in the spirit of kwok, except that
the containers really run, as local processes.

Every ``poll`` seconds it reads Deployments, Services, Secrets and ConfigMaps from the API (level-triggered:
each pass compares the pods it runs with what every Deployment wants) and:

- rolls each Deployment as its strategy says: ``Recreate`` stops every old pod before a new one starts;
  ``RollingUpdate`` starts new pods up to ``replicas + maxSurge`` and stops an old pod only while at least
  ``replicas - maxUnavailable`` pods stay ready, so with ``maxUnavailable: 0`` a new pod is ready before an
  old one stops; scale-down stops not-ready pods first; a deleted Deployment's pods all stop;
- runs a pod like the kubelet: a loopback address of its own (127.10.x.y), its volumes as local directories
  (emptyDir, Secret, ConfigMap, projected, a PersistentVolumeClaim as a directory per claim, and the image's
  own model directory as the generated model), the init containers in order until each exits 0, then every
  container with its command and args, its environment (``podenv``), and its startup, readiness and liveness
  probes (httpGet, tcpSocket, exec); a container that exits or fails its liveness probe is restarted with
  exponential backoff and counted; stopping a pod takes it out of the Service endpoints first, then runs its
  preStop hook, sends SIGTERM, and SIGKILL after ``terminationGracePeriodSeconds``;
- reports each Deployment's status (``replicas``, ``updatedReplicas``, ``readyReplicas``,
  ``availableReplicas``, ``unavailableReplicas``, ``observedGeneration`` and the ``Available``,
  ``Progressing`` and ``ReplicaFailure`` conditions) through the status subresource.

Only the images it knows run (``Images``): the project's inference image (the console scripts of this
checkout's virtualenv, with its ENTRYPOINT and ENV) and Redis (the local ``redis-server``). A pod of any
other image is never started and its Deployment says why (``ReplicaFailure``, reason ``ImageNotRunnable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import hashlib
import ipaddress
import itertools
import json
import logging
import os
import secrets as random_secrets
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sentiment_devcluster import podenv
from sentiment_devcluster.podenv import ConfigError, HostMap, PathMap, PodFacts, loopback_block

log = logging.getLogger("sentiment_devcluster.nodeagent")

MODEL_DIR_IN_IMAGE = "/opt/sentiment/model"


def die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the agent's process dies, even by SIGKILL (no orphaned pods)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- images -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """What a container image means on this machine: its ENTRYPOINT, ENV, WORKDIR, PATH and directories."""

    name: str
    entrypoint: tuple[str, ...]
    path: tuple[str, ...]  # PATH entries, first wins
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/"
    directories: Mapping[str, str] = field(default_factory=dict)  # container path -> local path


@dataclass
class Images:
    """The two images the agent can run; ``resolve`` returns None for any other (not runnable)."""

    venv_bin: Path
    model_dir: Path
    shim_dir: Path

    def resolve(self, image: str) -> Image | None:
        repository = image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image or ":" in image else image
        last = repository.rsplit("/", 1)[-1]
        if repository.endswith("sentiment-operator/inference") or last == "sentiment-inference":
            return Image(
                name="inference",
                entrypoint=("sentiment-serve",),
                path=(str(self.venv_bin),),
                # Dockerfile.inference's ENV (HOME and HF_HOME are mapped like any path under /tmp).
                env={
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONUNBUFFERED": "1",
                    "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1",
                    "HF_HUB_DISABLE_TELEMETRY": "1",
                    "HOME": "/tmp",
                    "HF_HOME": "/tmp/huggingface",
                    "SENTIMENT_MODEL_PATH": MODEL_DIR_IN_IMAGE,
                },
                workdir="/tmp",
                directories={MODEL_DIR_IN_IMAGE: str(self.model_dir)},
            )
        if last == "redis":
            return Image(
                name="redis",
                entrypoint=("redis-server",),
                path=(str(self.shim_dir), "/usr/local/bin", "/usr/bin", "/bin"),
                workdir="/data",
            )
        return None

    def write_shims(self) -> None:
        """``redis-server`` and ``redis-cli`` as the Redis image has them, with the pod's address for its
        loopback: the server listens on the pod's own 127.x address, the CLI talks to it by default."""
        self.shim_dir.mkdir(parents=True, exist_ok=True)
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        scripts = {
            "redis-server": f'#!/bin/sh\nexec {server} "$@" --bind "$DEVCLUSTER_POD_IP"\n',
            "redis-cli": f'#!/bin/sh\nexec {cli} -h "$DEVCLUSTER_POD_IP" "$@"\n',
        }
        for name, text in scripts.items():
            path = self.shim_dir / name
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755)


# --- processes ----------------------------------------------------------------------------------------------


@dataclass
class Launch:
    """Everything needed to start one container process."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path


async def start_process(launch: Launch) -> asyncio.subprocess.Process:
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with launch.log_path.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *launch.argv,
            env=launch.env,
            cwd=launch.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach its children too
            preexec_fn=die_with_parent,
        )


def signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def stop_process(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
    if process.returncode is None:
        signal_group(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=max(grace, 0.1))
        except TimeoutError:
            signal_group(process, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=10)
    signal_group(process, signal.SIGKILL)  # anything the container left behind in its group


# --- pods ---------------------------------------------------------------------------------------------------


def _port_number(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ConfigError(f"container {container.get('name')}: no port named {port!r}")


@dataclass
class ContainerState:
    name: str
    restarts: int = 0
    pid: int | None = None
    running: bool = False
    started: bool = False  # startup probe passed (or none)
    ready: bool = False
    reason: str = "Waiting"
    last_exit: int | None = None


class Pod:
    """One pod of a Deployment, run locally."""

    def __init__(self, agent: NodeAgent, deployment: dict[str, Any], template_hash: str, ip: str) -> None:
        meta = deployment["metadata"]
        self.agent = agent
        self.owner_uid: str = meta.get("uid", "")
        self.started_at = _now()
        self.published = False  # a Pod object in the API (kubectl get pods) stands for it
        self.reported: dict[str, Any] | None = None
        self.namespace: str = meta["namespace"]
        self.deployment: str = meta["name"]
        self.template: dict[str, Any] = json.loads(json.dumps(deployment["spec"]["template"]))
        self.template_hash = template_hash
        self.name = f"{self.deployment}-{template_hash[:10]}-{random_secrets.token_hex(3)[:5]}"
        self.ip = ip
        self.uid = random_secrets.token_hex(16)
        self.labels: dict[str, str] = dict((self.template.get("metadata") or {}).get("labels") or {})
        self.spec: dict[str, Any] = self.template.get("spec") or {}
        self.dir = agent.state_dir / "pods" / self.namespace / self.name
        self.phase = "Pending"
        self.reason = ""
        self.terminating = False
        self.stopped = asyncio.Event()
        self.created = time.monotonic()
        self.ready_since: float | None = None
        names = [c["name"] for c in (self.spec.get("initContainers") or []) + self.spec["containers"]]
        self.containers: dict[str, ContainerState] = {n: ContainerState(n) for n in names}
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    # --- what the controller and the proxy read ---

    @property
    def ready(self) -> bool:
        main = [self.containers[c["name"]] for c in self.spec["containers"]]
        return not self.terminating and self.phase == "Running" and all(c.ready for c in main)

    def port(self, target: Any) -> int | None:
        found = self.container_port(target)
        return None if found is None else found[1]

    def container_port(self, target: Any) -> tuple[str, int] | None:
        """(container name, port number) of a Service's ``targetPort`` (a name or a number) in this pod."""
        for container in self.spec["containers"]:
            with contextlib.suppress(ConfigError):
                return str(container["name"]), _port_number(target, container)
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "deployment": self.deployment,
            "templateHash": self.template_hash,
            "ip": self.ip,
            "phase": "Terminating" if self.terminating else self.phase,
            "reason": self.reason,
            "ready": self.ready,
            "containers": [vars(c).copy() for c in self.containers.values()],
        }

    def manifest(self) -> dict[str, Any]:
        """The Pod object the ReplicaSet controller would have created (owned by the Deployment here)."""
        owner = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": self.deployment,
            "uid": self.owner_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        annotations = dict((self.template.get("metadata") or {}).get("annotations") or {})
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {**self.labels, "pod-template-hash": self.template_hash[:10]},
                "annotations": annotations,
                "ownerReferences": [owner],
            },
            "spec": {**self.spec, "nodeName": "devcluster"},
        }

    def pod_status(self) -> dict[str, Any]:
        """The Pod's status as the kubelet reports it."""

        def container(spec: dict[str, Any]) -> dict[str, Any]:
            state = self.containers[spec["name"]]
            if state.running:
                current: dict[str, Any] = {"running": {}}
            elif state.reason == "Completed":
                current = {"terminated": {"exitCode": 0, "reason": "Completed"}}
            else:
                current = {"waiting": {"reason": state.reason}}
            return {
                "name": spec["name"],
                "image": spec.get("image", ""),
                "ready": state.ready,
                "started": state.started,
                "restartCount": state.restarts,
                "state": current,
            }

        ready = self.ready
        initialized = self.phase in ("Running", "Stopped")
        conditions = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True" if initialized else "False"},
            {"type": "ContainersReady", "status": "True" if ready else "False"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ]
        status: dict[str, Any] = {
            "phase": {"Init": "Pending", "Stopped": "Succeeded"}.get(self.phase, self.phase),
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": "127.0.0.1",
            "startTime": self.started_at,
            "conditions": conditions,
            "initContainerStatuses": [container(c) for c in self.spec.get("initContainers") or []],
            "containerStatuses": [container(c) for c in self.spec["containers"]],
        }
        if self.terminating:
            status["reason"] = "Terminating"
        elif self.reason:
            status["reason"], status["message"] = self.reason.split(":", 1)[0], self.reason
        return status

    # --- the pod's life ---

    async def _run(self) -> None:
        try:
            await self._prepare()
            for container in self.spec.get("initContainers") or []:
                self.phase = "Init"
                await self._run_to_completion(container)
            self.phase = "Running"
            await asyncio.gather(*(self._supervise(c) for c in self.spec["containers"]))
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug here must not take the agent down; the pod reports it
            log.exception("pod %s/%s failed", self.namespace, self.name)
            self.phase, self.reason = "Failed", f"{type(exc).__name__}: {exc}"

    async def _prepare(self) -> None:
        """Volumes as local directories; retried while a Secret or ConfigMap they need is missing."""
        while True:
            try:
                self._paths = self._volumes()
                return
            except ConfigError as exc:
                self.reason = f"CreateContainerConfigError: {exc}"
                await asyncio.sleep(self.agent.poll)

    def _volumes(self) -> dict[str, Path]:
        volumes: dict[str, Path] = {}
        for volume in self.spec.get("volumes") or []:
            name = volume["name"]
            local = self.dir / "volumes" / name
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                local = self.agent.state_dir / "claims" / self.namespace / claim
                local.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                local.mkdir(parents=True, exist_ok=True)
            elif "secret" in volume or "configMap" in volume or "projected" in volume:
                self._write_files(volume, local)
            else:
                raise ConfigError(
                    f"volume {name}: only emptyDir, secret, configMap, projected and PVC run here"
                )
            volumes[name] = local
        return volumes

    def _write_files(self, volume: dict[str, Any], local: Path) -> None:
        sources: list[tuple[str, dict[str, Any]]] = []
        if "secret" in volume:
            sources.append(("secret", {**volume["secret"], "name": volume["secret"].get("secretName")}))
        if "configMap" in volume:
            sources.append(("configMap", volume["configMap"]))
        projected = volume.get("projected") or {}
        for source in projected.get("sources") or []:
            sources += [
                (kind, {"defaultMode": projected.get("defaultMode", 0o644), **source[kind]})
                for kind in ("secret", "configMap")
                if kind in source
            ]
        local.mkdir(parents=True, exist_ok=True)
        for kind, ref in sources:
            objects = self.agent.secrets if kind == "secret" else self.agent.configmaps
            obj = objects.get((self.namespace, ref.get("name", "")))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref.get("name")}" not found')
            data = podenv.secret_data(obj) if kind == "secret" else podenv.configmap_data(obj)
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    raise ConfigError(f'key "{item["key"]}" not in {kind} "{ref.get("name")}"')
                target = local / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data[item["key"]])
                target.chmod(
                    int(item.get("mode", ref.get("defaultMode", volume.get("defaultMode", 0o644)))) & 0o777
                )

    def _launch(self, container: dict[str, Any], argv_override: list[str] | None = None) -> Launch:
        """The command line, environment and directory of a container, everything mapped to this machine."""
        image = self.agent.images.resolve(container.get("image", ""))
        if image is None:
            raise ConfigError(f"image {container.get('image')!r} is not runnable here")
        facts = PodFacts(self.name, self.namespace, self.ip, self.uid, self.labels)
        env = dict(image.env)
        env.update(podenv.container_env(container, facts, self.agent.secrets, self.agent.configmaps))
        paths = PathMap()
        for container_path, directory in image.directories.items():
            paths.add(container_path, directory)
        container_dir = self.dir / "containers" / container["name"]
        for mount in container.get("volumeMounts") or []:
            local = self._paths[mount["name"]]
            if mount.get("subPath"):
                local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            paths.add(mount["mountPath"], str(local))
        hosts = HostMap.for_pod(self.ip, self.namespace, self.agent.service_addresses)
        if argv_override is not None:
            argv = argv_override
        else:
            command = container.get("command") or list(image.entrypoint)
            args = (
                container.get("args") if container.get("args") is not None or container.get("command") else []
            )
            argv = [podenv.expand(str(a), env) for a in [*command, *(args or [])]]
        argv = [hosts.rewrite(paths.rewrite(a)) for a in argv]
        env = {k: hosts.rewrite(paths.rewrite(v)) for k, v in env.items()}
        env["PATH"] = os.pathsep.join(image.path)
        env["DEVCLUSTER_POD_IP"] = self.ip
        env.setdefault("HOSTNAME", self.name)
        # Paths outside every volume are the image's own filesystem: a scratch directory per container.
        rootfs = container_dir / "rootfs"
        env["TMPDIR"] = paths.local("/tmp") or str(rootfs / "tmp")
        for name in ("HOME", "HF_HOME"):
            if env.get(name, "").startswith("/") and not env[name].startswith(str(self.agent.state_dir)):
                env[name] = str(rootfs) + env[name]
        workdir_in_image = container.get("workingDir") or image.workdir
        workdir = paths.local(workdir_in_image) or str(rootfs) + workdir_in_image
        for directory in (env["TMPDIR"], env.get("HOME", ""), env.get("HF_HOME", ""), workdir):
            if directory:
                Path(directory).mkdir(parents=True, exist_ok=True)
        if argv and "/" not in argv[0]:
            found = shutil.which(argv[0], path=env["PATH"])
            if found is None:
                raise ConfigError(f"{argv[0]!r} not found in the {image.name} image (PATH={env['PATH']})")
            argv[0] = found
        return Launch(argv, env, workdir, self.dir / "logs" / f"{container['name']}.log")

    async def _start(self, container: dict[str, Any]) -> asyncio.subprocess.Process:
        state = self.containers[container["name"]]
        while True:
            try:
                launch = self._launch(container)
                break
            except ConfigError as exc:
                state.reason = self.reason = f"CreateContainerConfigError: {exc}"
                await asyncio.sleep(self.agent.poll)
        process = await start_process(launch)
        self._processes[container["name"]] = process
        state.pid, state.running, state.reason = process.pid, True, "Running"
        self.reason = ""
        log.info(
            "Started container %s of pod %s/%s (pid %s)",
            container["name"],
            self.namespace,
            self.name,
            process.pid,
        )
        return process

    async def _backoff(self, state: ContainerState) -> None:
        delay = min(self.agent.backoff_base * 2 ** max(state.restarts - 1, 0), self.agent.backoff_max)
        state.reason = "CrashLoopBackOff"
        await asyncio.sleep(delay)

    async def _run_to_completion(self, container: dict[str, Any]) -> None:
        state = self.containers[container["name"]]
        while True:
            process = await self._start(container)
            code = await process.wait()
            state.running, state.last_exit, state.pid = False, code, None
            if code == 0:
                state.reason = "Completed"
                return
            state.restarts += 1
            log.warning(
                "Init container %s of %s/%s exited %s", container["name"], self.namespace, self.name, code
            )
            await self._backoff(state)

    async def _supervise(self, container: dict[str, Any]) -> None:
        state = self.containers[container["name"]]
        while True:
            process = await self._start(container)
            probes = asyncio.create_task(self._probe(container, state, process))
            try:
                code = await process.wait()
            finally:  # also when the pod stops: no probe outlives its container
                probes.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probes
            state.running = state.started = state.ready = False
            state.last_exit, state.pid = code, None
            if self.terminating:
                return
            state.restarts += 1
            log.warning(
                "Container %s of pod %s/%s exited %s; restart %d",
                container["name"],
                self.namespace,
                self.name,
                code,
                state.restarts,
            )
            await self._backoff(state)

    # --- probes ---

    async def _check(self, probe: dict[str, Any], container: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = _port_number(get.get("port"), container)
                host = get.get("host") or self.ip
                url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{port}{get.get('path', '/')}"
                client_timeout = aiohttp.ClientTimeout(total=timeout)
                async with (
                    aiohttp.ClientSession(timeout=client_timeout) as session,
                    session.get(url) as response,
                ):
                    return 200 <= response.status < 400
            if "tcpSocket" in probe:
                port = _port_number(probe["tcpSocket"].get("port"), container)
                _, writer = await asyncio.wait_for(asyncio.open_connection(self.ip, port), timeout)
                writer.close()
                return True
            if "exec" in probe:
                launch = self._launch(container, argv_override=list(probe["exec"].get("command") or []))
                launch.log_path = self.dir / "logs" / f"{container['name']}.probe.log"
                process = await start_process(launch)
                try:
                    return await asyncio.wait_for(process.wait(), timeout) == 0
                except TimeoutError:
                    await stop_process(process, 0.1)
                    return False
        except (OSError, TimeoutError, aiohttp.ClientError, ConfigError):
            return False
        return False

    async def _probe(
        self, container: dict[str, Any], state: ContainerState, process: asyncio.subprocess.Process
    ) -> None:
        startup = container.get("startupProbe")
        if startup is not None and not await self._until(startup, container, want=True):
            log.warning(
                "Startup probe of %s/%s %s failed: killing it", self.namespace, self.name, container["name"]
            )
            await stop_process(process, float(self.spec.get("terminationGracePeriodSeconds", 30)))
            return
        state.started = True
        tasks = [asyncio.create_task(self._readiness(container, state))]
        if container.get("livenessProbe"):
            tasks.append(asyncio.create_task(self._liveness(container, process)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _until(self, probe: dict[str, Any], container: dict[str, Any], *, want: bool) -> bool:
        """Probe every period until ``successThreshold`` successes (True) or ``failureThreshold`` failures."""
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            if await self._check(probe, container):
                successes, failures = successes + 1, 0
                if successes >= int(probe.get("successThreshold", 1)):
                    return True
            else:
                successes, failures = 0, failures + 1
                if failures >= int(probe.get("failureThreshold", 3)):
                    return False
            await asyncio.sleep(float(probe.get("periodSeconds", 10)))

    async def _readiness(self, container: dict[str, Any], state: ContainerState) -> None:
        probe = container.get("readinessProbe")
        if probe is None:
            state.ready = True
            return
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            if await self._check(probe, container):
                successes, failures = successes + 1, 0
                if successes >= int(probe.get("successThreshold", 1)):
                    state.ready = True
            else:
                successes, failures = 0, failures + 1
                if failures >= int(probe.get("failureThreshold", 3)):
                    state.ready = False
            await asyncio.sleep(float(probe.get("periodSeconds", 10)))

    async def _liveness(self, container: dict[str, Any], process: asyncio.subprocess.Process) -> None:
        probe = container["livenessProbe"]
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        failures = 0
        while True:
            failures = 0 if await self._check(probe, container) else failures + 1
            if failures >= int(probe.get("failureThreshold", 3)):
                log.warning(
                    "Liveness probe of %s/%s %s failed: restarting it",
                    self.namespace,
                    self.name,
                    container["name"],
                )
                await stop_process(process, float(self.spec.get("terminationGracePeriodSeconds", 30)))
                return
            await asyncio.sleep(float(probe.get("periodSeconds", 10)))

    # --- stopping ---

    async def stop(self, *, grace: float | None = None) -> None:
        """Out of the endpoints at once, then preStop, SIGTERM, and SIGKILL after the grace period."""
        if self.terminating:
            await self.stopped.wait()
            return
        self.terminating = True
        period = float(self.spec.get("terminationGracePeriodSeconds", 30)) if grace is None else grace
        deadline = time.monotonic() + period
        if grace is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pre_stop(), timeout=period)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await asyncio.gather(
            *(stop_process(p, deadline - time.monotonic()) for p in self._processes.values())
        )
        for state in self.containers.values():
            state.running = state.ready = False
            state.pid = None
        self.phase = "Stopped"
        self.stopped.set()
        log.info("Stopped pod %s/%s", self.namespace, self.name)

    async def _pre_stop(self) -> None:
        for container in self.spec["containers"]:
            hook = (container.get("lifecycle") or {}).get("preStop")
            if not hook or container["name"] not in self._processes:
                continue
            if "sleep" in hook:
                await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
            elif "exec" in hook or "httpGet" in hook:
                await self._check({**hook, "timeoutSeconds": 30}, container)


# --- the Deployment controller ------------------------------------------------------------------------------


def template_hash(deployment: dict[str, Any]) -> str:
    text = json.dumps(deployment["spec"].get("template") or {}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _scaled(value: Any, replicas: int, *, round_up: bool) -> int:
    text = str(value)
    if text.endswith("%"):
        exact = int(text[:-1]) * replicas / 100
        return int(-(-exact // 1)) if round_up else int(exact)
    return int(text)


def rolling_bounds(deployment: dict[str, Any], replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as the Deployment controller resolves them (surge rounds up)."""
    rolling = ((deployment["spec"].get("strategy") or {}).get("rollingUpdate")) or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeAgent:
    api_url: str
    state_dir: Path
    images: Images
    poll: float = 0.5
    backoff_base: float = 1.0
    backoff_max: float = 20.0
    on_service: Callable[[str, str, str, list[int]], None] | None = None  # ns, name, address, ports
    after_sync: Callable[[], Awaitable[None]] | None = None  # e.g. the proxy following the Services
    pods: list[Pod] = field(default_factory=list)
    terminating: list[Pod] = field(default_factory=list)  # stopping: out of the endpoints, still running
    _published: dict[tuple[str, str], Pod] = field(default_factory=dict)  # pods with a Pod object
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    service_addresses: dict[tuple[str, str], str] = field(default_factory=dict)
    # Pod IPs: consecutive loopback addresses from a random /24 of 127.10.0.0/16 (see podenv.loopback_block).
    _ips: Any = field(
        default_factory=lambda: (
            str(ipaddress.ip_address(loopback_block("127.10")) + i) for i in itertools.count()
        )
    )
    _session: aiohttp.ClientSession | None = None
    _stopping: set[asyncio.Task[None]] = field(default_factory=set)

    # --- API access ---

    async def _get(self, path: str) -> list[dict[str, Any]]:
        assert self._session is not None
        async with self._session.get(self.api_url + path) as response:
            response.raise_for_status()
            items: list[dict[str, Any]] = (await response.json())["items"]
            return items

    async def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        assert self._session is not None
        url = f"{self.api_url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self._session.patch(url, data=json.dumps({"status": status}), headers=headers) as response:
            if response.status >= 400 and response.status != 404:
                log.warning(
                    "status of %s/%s: HTTP %s %s", namespace, name, response.status, await response.text()
                )

    # --- the loop ---

    async def run(self, stop: asyncio.Event) -> None:
        self.images.write_shims()
        timeout = aiohttp.ClientTimeout(total=10)
        headers = {"User-Agent": "devcluster-node-agent"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as self._session:
            while not stop.is_set():
                try:
                    await self.sync()
                    if self.after_sync is not None:
                        await self.after_sync()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("node agent: the API server did not answer: %s", exc)
                except Exception:  # one bad pass must not stop the node; the next one retries
                    log.exception("node agent pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.poll)

    async def sync(self) -> None:
        deployments = await self._get("/apis/apps/v1/deployments")
        self.secrets = {_key(o): o for o in await self._get("/api/v1/secrets")}
        self.configmaps = {_key(o): o for o in await self._get("/api/v1/configmaps")}
        self.services = {_key(o): o for o in await self._get("/api/v1/services")}
        for key, service in self.services.items():
            address = (service.get("spec") or {}).get("clusterIP")
            if address and self.service_addresses.get(key) != address:
                self.service_addresses[key] = address
                if self.on_service is not None:
                    ports = [int(p["port"]) for p in service["spec"].get("ports") or []]
                    self.on_service(key[0], key[1], address, ports)
        for key in set(self.service_addresses) - set(self.services):
            del self.service_addresses[key]
        wanted = {_key(d): d for d in deployments if not (d["metadata"].get("deletionTimestamp"))}
        for pod in list(self.pods):
            if (pod.namespace, pod.deployment) not in wanted:
                self._retire(pod)
        for key, deployment in wanted.items():
            await self._reconcile(key, deployment)
        self._write_snapshot()
        await self._publish()

    async def _publish(self) -> None:
        """Pod objects for the pods that run (created, status kept current, deleted once stopped)."""
        assert self._session is not None
        running = {(p.namespace, p.name): p for p in self.pods + self.terminating}
        for (namespace, name), pod in running.items():
            base = f"{self.api_url}/api/v1/namespaces/{namespace}/pods"
            if (namespace, name) not in self._published:
                self._published[namespace, name] = pod
                async with self._session.post(base, json=pod.manifest()) as response:
                    pod.published = response.status < 300
                    if not pod.published:
                        log.warning("Pod %s/%s not admitted: %s", namespace, name, await response.text())
            status = pod.pod_status()
            if pod.published and status != pod.reported:
                headers = {"Content-Type": "application/merge-patch+json"}
                body = json.dumps({"status": status})
                url = f"{base}/{name}/status"
                async with self._session.patch(url, data=body, headers=headers) as response:
                    if response.status < 300:
                        pod.reported = status
                    elif response.status == 404:  # deleted by someone else: the kubelet would recreate it
                        log.warning("Pod object %s/%s was deleted; it is created again", namespace, name)
                        del self._published[namespace, name]
                        pod.published, pod.reported = False, None
        for namespace, name in set(self._published) - set(running):
            if self._published.pop((namespace, name)).published:
                url = f"{self.api_url}/api/v1/namespaces/{namespace}/pods/{name}"
                async with self._session.delete(url) as response:
                    await response.read()  # 404: collected with its Deployment already

    def _retire(self, pod: Pod, grace: float | None = None) -> None:
        if pod in self.pods:
            self.pods.remove(pod)
        task = asyncio.create_task(pod.stop(grace=grace))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        self.terminating.append(pod)
        task.add_done_callback(lambda _: self.terminating.remove(pod) if pod in self.terminating else None)

    def _unrunnable(self, deployment: dict[str, Any]) -> list[str]:
        spec = (deployment["spec"].get("template") or {}).get("spec") or {}
        return [
            c.get("image", "")
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
            if self.images.resolve(c.get("image", "")) is None
        ]

    async def _reconcile(self, key: tuple[str, str], deployment: dict[str, Any]) -> None:
        spec = deployment["spec"]
        replicas = int(spec.get("replicas", 1))
        current = template_hash(deployment)
        mine = [p for p in self.pods if (p.namespace, p.deployment) == key]
        new = [p for p in mine if p.template_hash == current]
        old = [p for p in mine if p.template_hash != current]
        unrunnable = self._unrunnable(deployment)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        terminating_here = [p for p in self.terminating if (p.namespace, p.deployment) == key]

        if not unrunnable:
            if recreate:
                for pod in old:
                    self._retire(pod)
                if not old and not terminating_here:
                    for _ in range(replicas - len(new)):
                        self.pods.append(Pod(self, deployment, current, next(self._ips)))
            else:
                surge, unavailable = rolling_bounds(deployment, replicas)
                while len(new) < replicas and len(new) + len(old) < replicas + surge:
                    pod = Pod(self, deployment, current, next(self._ips))
                    self.pods.append(pod)
                    new.append(pod)
                # Old pods go: not-ready ones at once, ready ones while enough stay ready.
                for pod in [p for p in old if not p.ready]:
                    self._retire(pod)
                    old.remove(pod)
                ready = sum(p.ready for p in new + old)
                for pod in list(old):
                    if ready - 1 >= replicas - unavailable and len(new) + len(old) > replicas - unavailable:
                        self._retire(pod)
                        old.remove(pod)
                        ready -= 1
        # Scale down: surplus pods of the current template, not-ready and newest first.
        surplus = len(new) - replicas
        if surplus > 0:
            for pod in sorted(new, key=lambda p: (p.ready, -p.created))[:surplus]:
                self._retire(pod)
                new.remove(pod)
        await self._report(key, deployment, new, old, unrunnable)

    async def _report(
        self,
        key: tuple[str, str],
        deployment: dict[str, Any],
        new: list[Pod],
        old: list[Pod],
        unrunnable: list[str],
    ) -> None:
        replicas = int(deployment["spec"].get("replicas", 1))
        pods = new + old
        ready = sum(p.ready for p in pods)
        _, unavailable = (
            (0, 0)
            if (deployment["spec"].get("strategy") or {}).get("type") == "Recreate"
            else rolling_bounds(deployment, replicas)
        )
        available_ok = ready >= replicas - unavailable
        complete = len(new) == replicas and not old and sum(p.ready for p in new) == replicas
        conditions = [
            {
                "type": "Available",
                "status": "True" if available_ok else "False",
                "reason": "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available_ok
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{key[1]}-{template_hash(deployment)[:10]}" '
                + ("has successfully progressed." if complete else "is progressing."),
            },
        ]
        if unrunnable:
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "ImageNotRunnable",
                    "message": f"the devcluster node agent runs only the inference image and Redis; "
                    f"{', '.join(sorted(set(unrunnable)))} cannot run here",
                }
            )
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(new),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(len(pods) - ready, replicas - ready, 0),
            "conditions": conditions,
        }
        live = deployment.get("status") or {}
        previous = {c.get("type"): c for c in live.get("conditions") or []}
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        same_conditions = all(
            {k: previous.get(c["type"], {}).get(k) for k in ("status", "reason", "message")}
            == {k: c[k] for k in ("status", "reason", "message")}
            for c in conditions
        ) and set(previous) == {c["type"] for c in conditions}
        if all(live.get(k) == v for k, v in comparable.items()) and same_conditions:
            return
        now = _now()
        for condition in conditions:
            before = previous.get(condition["type"], {})
            condition["lastUpdateTime"] = now
            condition["lastTransitionTime"] = (
                before.get("lastTransitionTime", now) if before.get("status") == condition["status"] else now
            )
        if "ReplicaFailure" in previous and not unrunnable:
            status["conditions"] = conditions  # a merge patch replaces the list: the failure goes
        await self._patch_status(key[0], key[1], status)

    # --- for the proxy, the tests and the user ---

    def endpoints(self, namespace: str, name: str, port: dict[str, Any]) -> list[tuple[str, int]]:
        """Ready, non-terminating pods selected by the Service, with the port its ``targetPort`` names."""
        return [(pod.ip, number) for pod, _, number in self.pod_endpoints(namespace, name, port)]

    def pod_endpoints(self, namespace: str, name: str, port: Mapping[str, Any]) -> list[tuple[Pod, str, int]]:
        """(pod, container, port) of each ready, non-terminating pod the Service selects: its endpoints."""
        service = self.services.get((namespace, name))
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            return []
        out = []
        for pod in list(self.pods):  # called from the proxy thread: a copy, not the list being changed
            if (
                pod.namespace == namespace
                and pod.ready
                and all(pod.labels.get(k) == v for k, v in selector.items())
            ):
                target = pod.container_port(port.get("targetPort", port.get("port")))
                if target is not None:
                    out.append((pod, *target))
        return out

    def _write_snapshot(self) -> None:
        data = [p.snapshot() for p in self.pods + self.terminating]
        path = self.state_dir / "pods.json"
        text = json.dumps(data, indent=1, sort_keys=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every pod (the node goes away): SIGTERM, SIGKILL after ``grace``; no preStop."""
        for pod in list(self.pods):
            self._retire(pod, grace=grace)
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=grace + 15)
        self._write_snapshot()


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def default_images(state_dir: Path, model_dir: Path) -> Images:
    return Images(
        venv_bin=Path(sys.executable).parent, model_dir=model_dir, shim_dir=state_dir / "images" / "bin"
    )
