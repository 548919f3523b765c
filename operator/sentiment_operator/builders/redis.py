"""The managed Redis: its generated Secret, Deployment and Service."""

from __future__ import annotations

from ..names import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_REDIS_AUTH_VERSION,
    COMPONENT_CACHE,
    REDIS_CONFIG_KEY,
    REDIS_PASSWORD_KEY,
    REDIS_PORT,
    labels,
    redis_auth_secret_name,
    redis_name,
    selector_labels,
)
from ..spec import SentimentModelSpec
from .common import (
    REDIS_AUTH_VOLUME,
    REDIS_CONFIG_MOUNT,
    REDIS_UID,
    SECRET_FILE_MODE,
    Manifest,
    config_hash,
    container_security_context,
    metadata,
    pod_security_context,
)


def redis_auth_data(password: str) -> dict[str, str]:
    """The managed Redis Secret's keys for a generated password: the password and Redis's own config file."""
    return {REDIS_PASSWORD_KEY: password, REDIS_CONFIG_KEY: f"requirepass {password}\n"}


def redis_auth_secret(
    name: str, namespace: str, spec: SentimentModelSpec, uid: str | None
) -> Manifest | None:
    """The managed Redis password Secret, or None without a managed Redis. The reconciler ensures it first:
    its uid goes into the pod templates (``build_children``'s ``redis_auth_version``)."""
    return _redis_secret(name, namespace, uid) if spec.cache.mode == "managed" else None


def _redis_secret(name: str, namespace: str, uid: str | None) -> Manifest:
    """The Secret WITHOUT data: the reconciler adds a generated password once, on create; never logged."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(redis_auth_secret_name(name), namespace, name, COMPONENT_CACHE, uid),
        "type": "Opaque",
    }


def _redis_deployment(
    name: str, namespace: str, spec: SentimentModelSpec, uid: str | None, redis_auth_version: str | None
) -> Manifest:
    managed = spec.cache.managed
    assert managed is not None
    # The password reaches Redis in its config file and redis-cli through REDISCLI_AUTH set inside the probe's
    # shell: never in the pod spec's env or on a command line.
    ping = [
        "sh",
        "-c",
        f'REDISCLI_AUTH="$(cat {REDIS_CONFIG_MOUNT}/{REDIS_PASSWORD_KEY})" '
        f"redis-cli -p {REDIS_PORT} ping | grep -q PONG",
    ]
    container = {
        "name": "redis",
        "image": managed.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server", f"{REDIS_CONFIG_MOUNT}/{REDIS_CONFIG_KEY}"],
        "args": [
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            managed.max_memory,
            "--maxmemory-policy",
            "allkeys-lru",
        ],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "resources": managed.resources.to_k8s(),
        "readinessProbe": {
            "exec": {"command": ping},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "exec": {"command": ping},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": container_security_context(True),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": REDIS_AUTH_VOLUME, "mountPath": REDIS_CONFIG_MOUNT, "readOnly": True},
        ],
    }
    annotations: dict[str, str] = {ANNOTATION_CONFIG_HASH: config_hash(container)}
    if redis_auth_version is not None:
        annotations[ANNOTATION_REDIS_AUTH_VERSION] = redis_auth_version
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(redis_name(name), namespace, name, COMPONENT_CACHE, uid),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name, COMPONENT_CACHE)},
            # A cache without persistence: no point in running two side by side.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels(name, COMPONENT_CACHE), "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": pod_security_context(REDIS_UID, True),
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "emptyDir": {"sizeLimit": "64Mi"}},
                        {
                            "name": REDIS_AUTH_VOLUME,
                            "secret": {
                                "secretName": redis_auth_secret_name(name),
                                "defaultMode": SECRET_FILE_MODE,
                            },
                        },
                    ],
                },
            },
        },
    }


def _redis_service(name: str, namespace: str, uid: str | None) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(redis_name(name), namespace, name, COMPONENT_CACHE, uid),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name, COMPONENT_CACHE),
            "ports": [
                {
                    "name": "redis",
                    "port": REDIS_PORT,
                    "targetPort": "redis",
                    "protocol": "TCP",
                    "appProtocol": "redis",
                }
            ],
        },
    }
