"""What a container sees, computed as the kubelet computes it: its environment, its files, its host names.

Pure functions (no processes, no API calls), so they are tested on their own:

- ``container_env``: ``env`` in order with ``$(VAR)`` references, ``valueFrom`` (``secretKeyRef``,
  ``configMapKeyRef``, ``fieldRef``, ``resourceFieldRef``) and ``envFrom``; a missing non-optional
  reference is a ``ConfigError`` (the kubelet's CreateContainerConfigError);
- ``expand``: ``$(VAR)`` in command and args (``$$`` escapes);
- ``PathMap``: container paths (volume mounts, the image's own directories) to local directories;
- ``HostMap``: Service names and the pod's own loopback names to loopback addresses. Host names are
  rewritten where they appear as hosts: the host of a URL (``redis://project-redis.sentiment.svc:6379/0``),
  a whole value (``project-redis``, ``project-redis:6379``), and anywhere for the unambiguous
  ``<name>.<ns>.svc[.cluster.local]``.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sentiment_operator.spec import parse_quantity


class ConfigError(Exception):
    """The container cannot be configured yet (a referenced Secret, ConfigMap or key is missing)."""


@dataclass(frozen=True)
class PodFacts:
    """What ``fieldRef`` may read."""

    name: str
    namespace: str
    ip: str
    uid: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_name: str = "devcluster"
    service_account: str = "default"


Lookup = Mapping[tuple[str, str], dict[str, Any]]  # (namespace, name) -> object


def secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def configmap_data(configmap: dict[str, Any]) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (configmap.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return out


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, undefined stay, ``$$`` is ``$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REF.sub(one, text)


def _field_ref(path: str, pod: PodFacts) -> str:
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "status.podIP": pod.ip,
        "status.hostIP": "127.0.0.1",
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        source = pod.labels if match.group(1) == "labels" else pod.annotations
        return source.get(match.group(2), "")
    raise ConfigError(f"fieldRef {path!r} is not supported")


def _resource_ref(ref: dict[str, Any], container: dict[str, Any]) -> str:
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if value is None:
        return "0"
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    amount = parse_quantity(str(value)) / divisor
    # The kubelet rounds up to an integer of the divisor.
    return str(math.ceil(amount))


def _key_ref(kind: str, ref: dict[str, Any], namespace: str, objects: Lookup, what: str) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    obj = objects.get((namespace, name))
    data = None if obj is None else (secret_data(obj) if kind == "Secret" else configmap_data(obj))
    if data is None or key not in data:
        if optional:
            return None
        missing = (
            f'{kind.lower()} "{name}" not found' if data is None else f'key "{key}" not in {kind} "{name}"'
        )
        raise ConfigError(f"{what}: {missing}")
    return data[key].decode()


def container_env(
    container: dict[str, Any], pod: PodFacts, secrets: Lookup, configmaps: Lookup
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom first, then env in order)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key not in source:
                continue
            ref = source[key]
            objects = secrets if kind == "Secret" else configmaps
            obj = objects.get((pod.namespace, ref.get("name", "")))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'envFrom: {kind.lower()} "{ref.get("name")}" not found')
            data = secret_data(obj) if kind == "Secret" else configmap_data(obj)
            env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref("Secret", source["secretKeyRef"], pod.namespace, secrets, f"env {name}")
        elif "configMapKeyRef" in source:
            value = _key_ref("ConfigMap", source["configMapKeyRef"], pod.namespace, configmaps, f"env {name}")
        elif "fieldRef" in source:
            value = _field_ref(source["fieldRef"].get("fieldPath", ""), pod)
        elif "resourceFieldRef" in source:
            value = _resource_ref(source["resourceFieldRef"], container)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


# --- paths ---------------------------------------------------------------------------------------------


@dataclass
class PathMap:
    """Container paths -> local paths, longest prefix first (a mount inside a mount wins)."""

    mounts: dict[str, str] = field(default_factory=dict)

    def add(self, container_path: str, local_path: str) -> None:
        self.mounts[container_path.rstrip("/") or "/"] = local_path

    def local(self, path: str) -> str | None:
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "/"):
                return self.mounts[prefix] + path[len(prefix) :]
        return None

    def rewrite(self, text: str) -> str:
        """Every container path inside ``text`` (an arg, an env value, a shell line) made local."""
        if not self.mounts:
            return text
        prefixes = sorted(self.mounts, key=len, reverse=True)
        pattern = re.compile(
            r"(?<![\w./-])(" + "|".join(re.escape(p) for p in prefixes) + r")(?=$|[/\s:;,'\"=)])"
        )
        return pattern.sub(lambda m: self.mounts[m.group(1)], text)


# --- host names ----------------------------------------------------------------------------------------

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "0.0.0.0", "::", "[::]")
_URL_HOST = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/\s?#]*@)?)(?P<host>[A-Za-z0-9._-]+)")
_WHOLE = re.compile(r"^(?P<host>[A-Za-z0-9._-]+)(?P<port>:\d+)?$")
_FQDN = re.compile(r"(?<![\w.-])(?P<host>[a-z0-9-]+\.[a-z0-9-]+\.svc(?:\.cluster\.local)?)(?![\w-])")


@dataclass
class HostMap:
    """Names -> loopback addresses for one pod: its namespace's Services (short names too), every Service's
    qualified names, and the pod's own loopback names (``localhost``, ``0.0.0.0``) -> the pod's address."""

    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_pod(cls, pod_ip: str, namespace: str, services: Mapping[tuple[str, str], str]) -> HostMap:
        names = dict.fromkeys(LOOPBACK_NAMES, pod_ip)
        for (ns, name), address in services.items():
            for qualified in (f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                names[qualified] = address
            if ns == namespace:
                names[name] = address
        return cls(names)

    def rewrite(self, text: str) -> str:
        def url(match: re.Match[str]) -> str:
            host = match.group("host")
            return match.group("pre") + self.names.get(host, host)

        out = _URL_HOST.sub(url, text)
        whole = _WHOLE.match(out)
        if whole and whole.group("host") in self.names:
            return self.names[whole.group("host")] + (whole.group("port") or "")
        return _FQDN.sub(lambda m: self.names.get(m.group("host"), m.group("host")), out)


def loopback_block(prefix: str) -> str:
    """The first address of a /24 in ``prefix`` (e.g. "127.20") picked at random, so that clusters running
    side by side on one machine (a `make cluster` and a test run) do not take each other's addresses."""
    return f"{prefix}.{secrets.randbelow(256)}.1"
