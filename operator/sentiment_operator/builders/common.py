"""What every builder shares: metadata and ownerReferences, security contexts, mount paths and uids."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..names import (
    API_VERSION,
    DEFAULT_CLUSTER_DOMAIN,
    KIND,
    labels,
    service_host,
)
from ..podsecurity import RESTRICTED_CONTAINER_CONTEXT, restricted_pod_context
from ..spec import SentimentModelSpec

Manifest = dict[str, Any]

# Where Redis credentials are mounted as files (kept out of env vars and command lines, which /proc shows).
REDIS_AUTH_VOLUME = "redis-auth"
REDIS_AUTH_MOUNT = "/var/run/secrets/sentiment/redis"
REDIS_CONFIG_MOUNT = "/etc/redis"
SECRET_FILE_MODE = 0o440  # owner and the pod's fsGroup may read (restricted pods always set an fsGroup)
SECRET_FILE_MODE_NO_FSGROUP = 0o444  # a baseline pod has no fsGroup: the files stay root-owned
APP_UID = 10001
REDIS_UID = 10002  # above 10000, clear of host users and of the server's uid
MODEL_MOUNT = "/model"
TMP_MOUNT = "/tmp"
MODEL_VOLUME = "model"
TMP_VOLUME = "tmp"
TERMINATION_GRACE_SECONDS = 30
PRESTOP_SLEEP_SECONDS = 5
WAIT_REDIS_TIMEOUT_SECONDS = 300


def inference_url(
    name: str, namespace: str, spec: SentimentModelSpec, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> str:
    """The in-cluster URL of the model's API (status.url)."""
    prefix = spec.path_prefix(name)
    host = service_host(name, namespace, cluster_domain)
    return f"http://{host}:{spec.server.port}{'' if prefix == '/' else prefix}"


def gateway_path(name: str, spec: SentimentModelSpec) -> str | None:
    """The path prefix on the gateways (status.gatewayPath once routed), or None when routing is off."""
    return spec.gateway_prefix(name) if spec.routing.enabled else None


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(obj_name: str, namespace: str, owner: str, component: str, uid: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": obj_name, "namespace": namespace, "labels": labels(owner, component)}
    if uid is not None:
        meta["ownerReferences"] = [owner_reference(owner, uid)]
    return meta


def deep_copy(obj: Manifest) -> Manifest:
    copied: Manifest = json.loads(json.dumps(obj))
    return copied


def config_hash(payload: Any) -> str:
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


# --- security contexts -----------------------------------------------------------------------------------


def pod_security_context(uid: int, restricted: bool) -> dict[str, Any]:
    if not restricted:
        return {"seccompProfile": {"type": "RuntimeDefault"}}
    return restricted_pod_context(uid)


def container_security_context(restricted: bool) -> dict[str, Any]:
    return json.loads(json.dumps(RESTRICTED_CONTAINER_CONTEXT)) if restricted else {}
