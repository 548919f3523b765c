"""The inference server: its Deployment (init containers, environment, volumes, probes), Service,
HorizontalPodAutoscaler, PodDisruptionBudget and topology spread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..names import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_REDIS_AUTH_VERSION,
    ANNOTATION_REVISION,
    COMPONENT_INFERENCE,
    FETCH_MODEL_CONTAINER,
    REDIS_PASSWORD_KEY,
    SERVER_CONTAINER,
    WAIT_REDIS_CHECKS,
    WAIT_REDIS_CONTAINERS,
    labels,
    redis_auth_secret_name,
    redis_url,
    selector_labels,
)
from ..spec import ModelSpec, SentimentModelSpec
from .common import (
    APP_UID,
    MODEL_MOUNT,
    MODEL_VOLUME,
    PRESTOP_SLEEP_SECONDS,
    REDIS_AUTH_MOUNT,
    REDIS_AUTH_VOLUME,
    SECRET_FILE_MODE,
    SECRET_FILE_MODE_NO_FSGROUP,
    TERMINATION_GRACE_SECONDS,
    TMP_MOUNT,
    TMP_VOLUME,
    WAIT_REDIS_TIMEOUT_SECONDS,
    Manifest,
    config_hash,
    container_security_context,
    metadata,
    pod_security_context,
)
from .scaling import hpa_metrics


@dataclass(frozen=True)
class _Variant:
    """What differs between the stable and the canary Deployment."""

    obj_name: str
    component: str
    image: str
    model: ModelSpec
    replicas: int
    scaled_down: bool = False  # a rolled-back canary: zero replicas of ours, no HPA


def _model_path(model: ModelSpec) -> str:
    source = model.source
    if source.image is not None:
        return source.image.path
    return MODEL_MOUNT


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
    security = container_security_context(restricted)
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
        container["securityContext"] = container_security_context(restricted)
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
        "metadata": metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
        "spec": {
            "maxUnavailable": spec.disruption_budget.max_unavailable,
            "selector": {"matchLabels": selector_labels(name, COMPONENT_INFERENCE)},
        },
    }


def _pod_template(
    name: str, namespace: str, spec: SentimentModelSpec, variant: _Variant, redis_auth_version: str | None
) -> Manifest:
    """The server pod template of ``variant`` rendered from ``spec`` (no revision annotation yet)."""
    restricted = spec.pod_security == "restricted"
    container = _server_container(name, namespace, spec, variant)
    init_containers = _init_containers(name, namespace, spec, variant, restricted)
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.server.port),
        "prometheus.io/path": "/metrics",
        # Values that reach the pod only indirectly (Secrets) or that users want to see changing.
        ANNOTATION_CONFIG_HASH: config_hash({"env": container["env"], "image": variant.image}),
    }
    if redis_auth_version is not None and spec.cache.mode == "managed":
        annotations[ANNOTATION_REDIS_AUTH_VERSION] = redis_auth_version
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Service links would inject e.g. SENTIMENT_PORT=tcp://... for a Service named "sentiment".
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security_context(APP_UID, restricted),
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
    return {
        "metadata": {"labels": labels(name, variant.component), "annotations": annotations},
        "spec": pod_spec,
    }


def stable_variant(name: str, spec: SentimentModelSpec) -> _Variant:
    return _Variant(name, COMPONENT_INFERENCE, spec.image, spec.model, spec.replicas)


def template_revision(name: str, namespace: str, spec: SentimentModelSpec) -> str:
    """The revision of the server pod template ``spec`` renders: a digest of the stable Deployment's template,
    without the Redis password's version (a regenerated password rolls the pods but is no new release).
    A canary rollout starts when it changes; both Deployments carry it (``ANNOTATION_REVISION``)."""
    return config_hash(_pod_template(name, namespace, spec, stable_variant(name, spec), None))[:10]


def _inference_deployment(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    variant: _Variant,
    uid: str | None,
    redis_auth_version: str | None,
    *,
    template_spec: SentimentModelSpec | None = None,
) -> Manifest:
    """The Deployment of ``variant``; its pod template is rendered from ``template_spec`` (default: ``spec``;
    a canary rollout keeps the stable's template at the spec it last promoted), everything else from
    ``spec``."""
    source = template_spec or spec
    template = _pod_template(name, namespace, source, variant, redis_auth_version)
    template["metadata"]["annotations"][ANNOTATION_REVISION] = template_revision(name, namespace, source)
    deployment_spec: dict[str, Any] = {}
    if variant.scaled_down:
        deployment_spec["replicas"] = 0  # a canary after a rollback has no HPA: its zero is ours
    elif not spec.autoscaling.enabled:
        # With an HPA the replica count belongs to the HPA; setting it here would fight it on every apply.
        deployment_spec["replicas"] = variant.replicas
    deployment_spec.update(
        {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name, variant.component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": template,
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(variant.obj_name, namespace, name, variant.component, uid),
        "spec": deployment_spec,
    }


def _inference_service(
    name: str, namespace: str, spec: SentimentModelSpec, variant: _Variant, uid: str | None
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(variant.obj_name, namespace, name, variant.component, uid),
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
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": variant.obj_name},
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": hpa_metrics(spec),
    }
    if autoscaling.behavior is not None:
        hpa_spec["behavior"] = dict(autoscaling.behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(variant.obj_name, namespace, name, variant.component, uid),
        "spec": hpa_spec,
    }
