"""Pure functions that turn a validated SentimentModel spec into the desired child objects (plain dicts).

No I/O and no Kubernetes client here: the same functions serve ``sentiment-operator run`` and ``render``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Final

from .names import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_REDIS_AUTH_VERSION,
    API_VERSION,
    APP_INFERENCE,
    COMPONENT_CACHE,
    COMPONENT_CANARY,
    COMPONENT_INFERENCE,
    DEFAULT_CLUSTER_DOMAIN,
    FETCH_MODEL_CONTAINER,
    KIND,
    LABEL_INSTANCE,
    LABEL_NAME,
    REDIS_CONFIG_KEY,
    REDIS_PASSWORD_KEY,
    REDIS_PORT,
    SERVER_CONTAINER,
    WAIT_REDIS_CHECKS,
    WAIT_REDIS_CONTAINERS,
    canary_name,
    labels,
    redis_auth_secret_name,
    redis_name,
    redis_url,
    selector_labels,
    service_host,
)
from .podsecurity import RESTRICTED_CONTAINER_CONTEXT, restricted_pod_context
from .spec import ModelSpec, SentimentModelSpec

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
    """The path prefix on the Istio gateway (status.gatewayPath), or None when routing is off."""
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


def _metadata(obj_name: str, namespace: str, owner: str, component: str, uid: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": obj_name, "namespace": namespace, "labels": labels(owner, component)}
    if uid is not None:
        meta["ownerReferences"] = [owner_reference(owner, uid)]
    return meta


def _deep_copy(obj: Manifest) -> Manifest:
    copied: Manifest = json.loads(json.dumps(obj))
    return copied


def _config_hash(payload: Any) -> str:
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


# --- security contexts -----------------------------------------------------------------------------------


def _pod_security_context(uid: int, restricted: bool) -> dict[str, Any]:
    if not restricted:
        return {"seccompProfile": {"type": "RuntimeDefault"}}
    return restricted_pod_context(uid)


def _container_security_context(restricted: bool) -> dict[str, Any]:
    return json.loads(json.dumps(RESTRICTED_CONTAINER_CONTEXT)) if restricted else {}


# --- the inference Deployment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Variant:
    """What differs between the stable and the canary Deployment."""

    obj_name: str
    component: str
    image: str
    model: ModelSpec
    replicas: int


def _model_path(model: ModelSpec) -> str:
    source = model.source
    if source.image is not None:
        return source.image.path
    return MODEL_MOUNT


def redis_auth_data(password: str) -> dict[str, str]:
    """The managed Redis Secret's keys for a generated password: the password and Redis's own config file."""
    return {REDIS_PASSWORD_KEY: password, REDIS_CONFIG_KEY: f"requirepass {password}\n"}


def _redis_secret_files(name: str, spec: SentimentModelSpec) -> list[tuple[str, str, str]]:
    """(Secret, key, file name) of each Redis credential the server reads from a file."""
    cache = spec.cache
    if cache.mode == "managed":
        return [(redis_auth_secret_name(name), REDIS_PASSWORD_KEY, "password")]
    if cache.mode == "external" and cache.external is not None:
        url = cache.external.url_secret_ref
        files = [(url.name, url.key, "url")]
        ref = cache.external.password_secret_ref
        if ref is not None:
            files.append((ref.name, ref.key, "password"))
        return files
    return []


def _redis_env(name: str, namespace: str, spec: SentimentModelSpec) -> list[dict[str, Any]]:
    """The server's and the wait-redis init containers' Redis settings; credentials are mounted files."""
    env: list[dict[str, Any]] = []
    if spec.cache.mode == "managed":
        env.append({"name": "SENTIMENT_REDIS_URL", "value": redis_url(name, namespace)})
    for _, _, file in _redis_secret_files(name, spec):
        env.append({"name": f"SENTIMENT_REDIS_{file.upper()}_FILE", "value": f"{REDIS_AUTH_MOUNT}/{file}"})
    return env


def _redis_auth_mounts(name: str, spec: SentimentModelSpec) -> list[dict[str, Any]]:
    if not _redis_secret_files(name, spec):
        return []
    return [{"name": REDIS_AUTH_VOLUME, "mountPath": REDIS_AUTH_MOUNT, "readOnly": True}]


def _redis_auth_volumes(name: str, spec: SentimentModelSpec) -> list[dict[str, Any]]:
    files = _redis_secret_files(name, spec)
    if not files:
        return []
    sources = [
        {"secret": {"name": secret, "items": [{"key": key, "path": file}]}} for secret, key, file in files
    ]
    mode = SECRET_FILE_MODE if spec.pod_security == "restricted" else SECRET_FILE_MODE_NO_FSGROUP
    return [{"name": REDIS_AUTH_VOLUME, "projected": {"defaultMode": mode, "sources": sources}}]


def server_env(name: str, namespace: str, spec: SentimentModelSpec, model: ModelSpec) -> list[dict[str, Any]]:
    """The server container's environment: the SENTIMENT_* settings, then the user's extra variables."""
    server = spec.server
    prefix = spec.path_prefix(name)
    plain = {
        "SENTIMENT_MODEL_PATH": _model_path(model),
        "SENTIMENT_MODEL_ID": model.id,
        "SENTIMENT_API_PREFIX": "" if prefix == "/" else prefix,
        "SENTIMENT_HOST": "0.0.0.0",
        "SENTIMENT_PORT": server.port,
        "SENTIMENT_MAX_LENGTH": model.max_sequence_length,
        "SENTIMENT_QUANTIZATION": model.precision,
        "SENTIMENT_TORCH_THREADS": server.torch_threads,
        "SENTIMENT_MODEL_WORKERS": server.model_workers,
        "SENTIMENT_MAX_BATCH_SIZE": server.batching.max_batch_size,
        # Always explicit, so the pod does not depend on the image's default.
        "SENTIMENT_MAX_BATCH_TOKENS": spec.effective_max_batch_tokens(model),
        "SENTIMENT_MAX_WAIT_MS": server.batching.max_wait_ms,
        "SENTIMENT_MAX_QUEUE": server.batching.max_queue,
        "SENTIMENT_MAX_TEXTS_PER_REQUEST": server.limits.max_texts_per_request,
        "SENTIMENT_MAX_TEXT_CHARS": server.limits.max_text_chars,
        "SENTIMENT_MAX_BODY_BYTES": server.limits.max_body_bytes,
        "SENTIMENT_CACHE_TTL_SECONDS": spec.cache.ttl_seconds,
        "SENTIMENT_LOG_LEVEL": server.log_level,
    }
    env: list[dict[str, Any]] = [{"name": key, "value": str(value)} for key, value in plain.items()]
    env += _redis_env(name, namespace, spec)
    env += [dict(item) for item in spec.env]
    return env


def _http_probe(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _endpoint(prefix: str, path: str) -> str:
    return path if prefix == "/" else f"{prefix}{path}"


def _small_resources() -> dict[str, Any]:
    return {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def _init_containers(
    name: str, namespace: str, spec: SentimentModelSpec, variant: _Variant, restricted: bool
) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = []
    security = _container_security_context(restricted)
    download = variant.model.source.download
    if download is not None:
        containers.append(
            {
                "name": FETCH_MODEL_CONTAINER,
                "image": variant.image,
                "imagePullPolicy": spec.image_pull_policy,
                "command": ["sentiment-fetch-model"],
                "args": [
                    "--model-id",
                    variant.model.id,
                    "--revision",
                    download.revision,
                    "--out",
                    MODEL_MOUNT,
                ],
                # The image is offline for the server; only this container may reach the hub, and its
                # download cache must sit on a writable volume (the root filesystem is read-only).
                "env": [
                    {"name": "HF_HUB_OFFLINE", "value": "0"},
                    {"name": "TRANSFORMERS_OFFLINE", "value": "0"},
                    {"name": "HF_HOME", "value": f"{TMP_MOUNT}/hf"},
                ],
                "resources": spec.resources.to_k8s(),
                **({"securityContext": security} if security else {}),
                "volumeMounts": [
                    {"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT},
                    {"name": TMP_VOLUME, "mountPath": TMP_MOUNT},
                ],
            }
        )
    if spec.cache.mode != "disabled":
        for check, container_name in zip(WAIT_REDIS_CHECKS, WAIT_REDIS_CONTAINERS, strict=True):
            containers.append(
                {
                    "name": container_name,
                    "image": variant.image,
                    "imagePullPolicy": spec.image_pull_policy,
                    "command": ["sentiment-wait-redis"],
                    "args": ["--check", check, "--timeout", str(WAIT_REDIS_TIMEOUT_SECONDS)],
                    "env": _redis_env(name, namespace, spec),
                    "resources": _small_resources(),
                    **({"securityContext": security} if security else {}),
                    "volumeMounts": [
                        {"name": TMP_VOLUME, "mountPath": TMP_MOUNT},
                        *_redis_auth_mounts(name, spec),
                    ],
                }
            )
    for user in spec.init_containers:
        container = dict(user)
        # The user's own securityContext wins; the restricted defaults fill what it leaves out.
        merged = {**security, **(user.get("securityContext") or {})}
        if merged:
            container["securityContext"] = merged
        containers.append(container)
    return containers


def _server_container(
    name: str, namespace: str, spec: SentimentModelSpec, variant: _Variant
) -> dict[str, Any]:
    restricted = spec.pod_security == "restricted"
    prefix = spec.path_prefix(name)
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": TMP_MOUNT}]
    source = variant.model.source
    if source.pvc is not None:
        mount: dict[str, Any] = {
            "name": MODEL_VOLUME,
            "mountPath": MODEL_MOUNT,
            "readOnly": source.pvc.read_only,
        }
        if source.pvc.sub_path:
            mount["subPath"] = source.pvc.sub_path
        mounts.append(mount)
    elif source.download is not None:
        mounts.append({"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": variant.image,
        "imagePullPolicy": spec.image_pull_policy,
        "ports": [{"name": "http", "containerPort": spec.server.port, "protocol": "TCP"}],
        "env": server_env(name, namespace, spec, variant.model),
        "resources": spec.resources.to_k8s(),
        # Model loading and warm-up can take minutes on a cold node: up to 6 minutes before liveness applies.
        "startupProbe": _http_probe(_endpoint(prefix, "/ready"), period=5, timeout=3, failures=72),
        "readinessProbe": _http_probe(_endpoint(prefix, "/ready"), period=5, timeout=3, failures=2),
        "livenessProbe": _http_probe(_endpoint(prefix, "/health"), period=10, timeout=5, failures=3),
        # Keep serving while endpoints/gateways drop the pod; the server then drains on SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "volumeMounts": [*mounts, *_redis_auth_mounts(name, spec)],
    }
    if restricted:
        container["securityContext"] = _container_security_context(restricted)
    return container


def _volumes(name: str, spec: SentimentModelSpec, variant: _Variant) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    source = variant.model.source
    if source.pvc is not None:
        volumes.append(
            {
                "name": MODEL_VOLUME,
                "persistentVolumeClaim": {
                    "claimName": source.pvc.claim_name,
                    "readOnly": source.pvc.read_only,
                },
            }
        )
    elif source.download is not None:
        volumes.append({"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": "4Gi"}})
    return volumes + _redis_auth_volumes(name, spec)


# Spread over nodes first, then zones; ScheduleAnyway: a small cluster still schedules every replica.
TOPOLOGY_KEYS: Final = ("kubernetes.io/hostname", "topology.kubernetes.io/zone")


def _topology_spread(spec: SentimentModelSpec, selector: dict[str, str]) -> list[dict[str, Any]]:
    """The server pods' TopologySpreadConstraints: the spec's own, else across nodes and zones."""
    if spec.topology_spread is None:
        return [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(selector)},
            }
            for key in TOPOLOGY_KEYS
        ]
    return [
        {**constraint, "labelSelector": constraint.get("labelSelector") or {"matchLabels": dict(selector)}}
        for constraint in spec.topology_spread
    ]


def _disruption_budget(
    name: str, namespace: str, spec: SentimentModelSpec, uid: str | None
) -> Manifest | None:
    """A PodDisruptionBudget for the stable server pods when more than one is wanted (with one pod, a budget
    would block every node drain)."""
    wanted = spec.autoscaling.min_replicas if spec.autoscaling.enabled else spec.replicas
    if not spec.disruption_budget.enabled or wanted <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
        "spec": {
            "maxUnavailable": spec.disruption_budget.max_unavailable,
            "selector": {"matchLabels": selector_labels(name, COMPONENT_INFERENCE)},
        },
    }


def _inference_deployment(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    variant: _Variant,
    uid: str | None,
    redis_auth_version: str | None,
) -> Manifest:
    restricted = spec.pod_security == "restricted"
    container = _server_container(name, namespace, spec, variant)
    init_containers = _init_containers(name, namespace, spec, variant, restricted)
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.server.port),
        "prometheus.io/path": "/metrics",
        # Values that reach the pod only indirectly (Secrets) or that users want to see changing.
        ANNOTATION_CONFIG_HASH: _config_hash({"env": container["env"], "image": variant.image}),
    }
    if redis_auth_version is not None and spec.cache.mode == "managed":
        annotations[ANNOTATION_REDIS_AUTH_VERSION] = redis_auth_version
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Service links would inject e.g. SENTIMENT_PORT=tcp://... for a Service named "sentiment".
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": _pod_security_context(APP_UID, restricted),
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = _volumes(name, spec, variant)
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    spread = _topology_spread(spec, selector_labels(name, variant.component))
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    deployment_spec: dict[str, Any] = {}
    if not spec.autoscaling.enabled:
        # With an HPA the replica count belongs to the HPA; setting it here would fight it on every apply.
        deployment_spec["replicas"] = variant.replicas
    deployment_spec.update(
        {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name, variant.component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(name, variant.component), "annotations": annotations},
                "spec": pod_spec,
            },
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(variant.obj_name, namespace, name, variant.component, uid),
        "spec": deployment_spec,
    }


def _inference_service(
    name: str, namespace: str, spec: SentimentModelSpec, variant: _Variant, uid: str | None
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(variant.obj_name, namespace, name, variant.component, uid),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name, variant.component),
            "ports": [
                {
                    "name": "http",
                    "port": spec.server.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def _hpa(name: str, namespace: str, spec: SentimentModelSpec, variant: _Variant, uid: str | None) -> Manifest:
    autoscaling = spec.autoscaling
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                },
            },
        }
    ]
    if autoscaling.target_memory_utilization_percentage is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "memory",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": autoscaling.target_memory_utilization_percentage,
                    },
                },
            }
        )
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": variant.obj_name},
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": metrics,
    }
    if autoscaling.behavior is not None:
        hpa_spec["behavior"] = dict(autoscaling.behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(variant.obj_name, namespace, name, variant.component, uid),
        "spec": hpa_spec,
    }


# --- managed Redis ---------------------------------------------------------------------------------------


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
        "metadata": _metadata(redis_auth_secret_name(name), namespace, name, COMPONENT_CACHE, uid),
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
        "securityContext": _container_security_context(True),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": REDIS_AUTH_VOLUME, "mountPath": REDIS_CONFIG_MOUNT, "readOnly": True},
        ],
    }
    annotations: dict[str, str] = {ANNOTATION_CONFIG_HASH: _config_hash(container)}
    if redis_auth_version is not None:
        annotations[ANNOTATION_REDIS_AUTH_VERSION] = redis_auth_version
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(redis_name(name), namespace, name, COMPONENT_CACHE, uid),
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
                    "securityContext": _pod_security_context(REDIS_UID, True),
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
        "metadata": _metadata(redis_name(name), namespace, name, COMPONENT_CACHE, uid),
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


# --- routing and network policies ------------------------------------------------------------------------


def _virtual_service(
    name: str, namespace: str, spec: SentimentModelSpec, uid: str | None, cluster_domain: str
) -> Manifest:
    routing = spec.routing
    server_prefix = spec.path_prefix(name)
    gateway_prefix = spec.gateway_prefix(name)
    canary_weight = routing.canary.weight if routing.canary is not None else 0
    destinations: list[dict[str, Any]] = []
    for target, weight in ((name, 100 - canary_weight), (canary_name(name), canary_weight)):
        if weight > 0:
            destinations.append(
                {
                    "destination": {
                        "host": service_host(target, namespace, cluster_domain),
                        "port": {"number": spec.server.port},
                    }
                }
            )
            if routing.canary is not None and canary_weight not in (0, 100):
                destinations[-1]["weight"] = weight

    # "/project" must not also match "/projects": match the exact path and the prefix with a slash.
    pairs: list[tuple[dict[str, str], str | None]]
    if gateway_prefix == server_prefix == "/":
        pairs = [({"prefix": "/"}, None)]
    elif gateway_prefix == server_prefix:
        pairs = [({"exact": gateway_prefix}, None), ({"prefix": f"{gateway_prefix}/"}, None)]
    elif gateway_prefix == "/":
        # Everything the gateway sends goes under the server's prefix: "/predict" -> "/<prefix>/predict".
        pairs = [({"prefix": "/"}, f"{server_prefix}/")]
    else:
        target_prefix = "" if server_prefix == "/" else server_prefix
        pairs = [
            ({"exact": gateway_prefix}, target_prefix or "/"),
            ({"prefix": f"{gateway_prefix}/"}, f"{target_prefix}/"),
        ]
    http: list[dict[str, Any]] = []
    if all(rewrite is None for _, rewrite in pairs):
        http.append({"name": name, "match": [{"uri": uri} for uri, _ in pairs], "route": destinations})
    else:
        for index, (uri, rewrite) in enumerate(pairs):
            http.append(
                {
                    "name": f"{name}-{index}",
                    "match": [{"uri": uri}],
                    "rewrite": {"uri": rewrite},
                    "route": destinations,
                }
            )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
        "spec": {"hosts": list(routing.hosts), "gateways": list(routing.gateways), "http": http},
    }


def _inference_pods(name: str) -> dict[str, str]:
    """Matches the stable and the canary server pods of one model."""
    return {LABEL_NAME: APP_INFERENCE, LABEL_INSTANCE: name}


def _server_network_policy(name: str, namespace: str, spec: SentimentModelSpec, uid: str | None) -> Manifest:
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": _inference_pods(name)}}]
    namespaces = sorted({peer.namespace for peer in spec.network_policy.allow_from})
    if namespaces:
        peers.append(
            {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
                    ]
                }
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
        "spec": {
            "podSelector": {"matchLabels": _inference_pods(name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": spec.server.port}]}],
        },
    }


def _redis_network_policy(name: str, namespace: str, uid: str | None) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(redis_name(name), namespace, name, COMPONENT_CACHE, uid),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(name, COMPONENT_CACHE)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": _inference_pods(name)}}],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
        },
    }


# --- the bundle ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Children:
    """Every object one SentimentModel wants, as plain dicts; None/empty for disabled features."""

    deployment: Manifest
    service: Manifest
    canary_deployment: Manifest | None = None
    canary_service: Manifest | None = None
    redis_auth_secret: Manifest | None = None
    redis_deployment: Manifest | None = None
    redis_service: Manifest | None = None
    hpa: Manifest | None = None
    canary_hpa: Manifest | None = None
    disruption_budget: Manifest | None = None
    virtual_service: Manifest | None = None
    network_policies: tuple[Manifest, ...] = ()

    def __post_init__(self) -> None:
        # Builders reuse small dicts (probes, secret refs); give every object its own copy so a caller that
        # mutates one object (or a YAML dumper that tracks identity) never sees another change.
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                object.__setattr__(self, field.name, tuple(_deep_copy(item) for item in value))
            elif value is not None:
                object.__setattr__(self, field.name, _deep_copy(value))

    def objects(self) -> list[Manifest]:
        """All desired objects in apply order: isolation first, Redis before its clients, routing last."""
        ordered: list[Manifest | None] = [
            *self.network_policies,
            self.redis_auth_secret,
            self.redis_service,
            self.redis_deployment,
            self.service,
            self.deployment,
            self.disruption_budget,
            self.canary_service,
            self.canary_deployment,
            self.hpa,
            self.canary_hpa,
            self.virtual_service,
        ]
        return [obj for obj in ordered if obj is not None]

    def keys(self) -> set[tuple[str, str, str]]:
        """(apiVersion, kind, name) of every desired object; anything else with our labels is stale."""
        return {(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in self.objects()}


def build_children(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    *,
    uid: str | None = None,
    redis_auth_version: str | None = None,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> Children:
    """Build every desired child of SentimentModel ``namespace/name``.

    ``uid`` adds controller ownerReferences; ``redis_auth_version`` (e.g. the auth Secret's uid) goes into the
    pod templates that use the managed Redis password, so a regenerated Secret rolls those pods;
    ``cluster_domain`` is the cluster's DNS domain, used in fully qualified Service hosts.
    """
    stable = _Variant(name, COMPONENT_INFERENCE, spec.image, spec.model, spec.replicas)
    canary: _Variant | None = None
    if spec.routing.enabled and spec.routing.canary is not None:
        weight = spec.routing.canary.weight
        canary = _Variant(
            canary_name(name),
            COMPONENT_CANARY,
            spec.routing.canary.image or spec.image,
            spec.routing.canary.model or spec.model,
            max(1, math.ceil(spec.replicas * weight / 100)) if spec.replicas > 0 else 0,
        )

    managed = spec.cache.mode == "managed"
    policies: list[Manifest] = []
    if spec.network_policy.enabled:
        if managed:
            policies.append(_redis_network_policy(name, namespace, uid))
        policies.append(_server_network_policy(name, namespace, spec, uid))

    return Children(
        deployment=_inference_deployment(name, namespace, spec, stable, uid, redis_auth_version),
        service=_inference_service(name, namespace, spec, stable, uid),
        canary_deployment=(
            _inference_deployment(name, namespace, spec, canary, uid, redis_auth_version) if canary else None
        ),
        canary_service=_inference_service(name, namespace, spec, canary, uid) if canary else None,
        redis_auth_secret=redis_auth_secret(name, namespace, spec, uid),
        redis_deployment=_redis_deployment(name, namespace, spec, uid, redis_auth_version)
        if managed
        else None,
        redis_service=_redis_service(name, namespace, uid) if managed else None,
        hpa=_hpa(name, namespace, spec, stable, uid) if spec.autoscaling.enabled else None,
        canary_hpa=_hpa(name, namespace, spec, canary, uid) if canary and spec.autoscaling.enabled else None,
        disruption_budget=_disruption_budget(name, namespace, spec, uid),
        virtual_service=(
            _virtual_service(name, namespace, spec, uid, cluster_domain) if spec.routing.enabled else None
        ),
        network_policies=tuple(policies),
    )
