"""Every name the operator gives: child objects, labels, annotations, containers, Secret keys, hosts.

One module, so that the builders, the apply layer, the child watches, pruning and status agree; a test fails
on any of these literals written elsewhere in the package. Pure: imports nothing of the package.
"""

from __future__ import annotations

from typing import Final

# The custom resource (the CRD's identity; kopf's annotations and finalizer live under the group).
GROUP: Final = "serving.sentiment.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "SentimentModel"
PLURAL: Final = "sentimentmodels"

# Who writes the children: the field manager of every server-side apply and the managed-by label's value.
MANAGED_BY: Final = "sentiment-operator"
FIELD_MANAGER: Final = MANAGED_BY
PART_OF: Final = "sentiment-model"
APP_INFERENCE: Final = "sentiment-inference"
APP_REDIS: Final = "redis"

COMPONENT_INFERENCE: Final = "inference"
COMPONENT_CANARY: Final = "canary"
COMPONENT_CACHE: Final = "cache"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
# Set by the API server on every Namespace (NetworkPolicy peers select namespaces by it).
LABEL_NAMESPACE_NAME: Final = "kubernetes.io/metadata.name"

ANNOTATION_CONFIG_HASH: Final = f"{GROUP}/config-hash"
ANNOTATION_REDIS_AUTH_VERSION: Final = f"{GROUP}/redis-auth-version"
# KEDA: labels of a ScaledObject that KEDA must not copy onto the HPA it creates for it.
ANNOTATION_KEDA_HPA_EXCLUDED_LABELS: Final = "scaledobject.keda.sh/hpa-excluded-labels"
# The pod template's revision (a digest of the template the spec renders): what a rollout compares.
ANNOTATION_REVISION: Final = f"{GROUP}/revision"
# On a SentimentModel: a command for its rollout (pause, resume, abort, promote); removed once carried out.
ANNOTATION_ROLLOUT_ACTION: Final = f"{GROUP}/rollout-action"

# Labels every scraped server series gets from the ServiceMonitor's relabelings (the analysis, the dashboard
# and the alerts select by them; the Prometheus operator adds ``namespace``, ``service`` and ``pod``).
SERIES_LABEL_MODEL: Final = "sentiment_model"
SERIES_LABEL_TRACK: Final = "track"
TRACK_STABLE: Final = "stable"
TRACK_CANARY: Final = "canary"

# Server-side label selector of the child watches and of pruning's lists: ours, naming their SentimentModel.
CHILD_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}"

# Containers of the server pod.
SERVER_CONTAINER: Final = "server"
FETCH_MODEL_CONTAINER: Final = "fetch-model"
WAIT_REDIS_CHECKS: Final = ("dns", "ping")
WAIT_REDIS_CONTAINERS: Final = tuple(f"wait-redis-{check}" for check in WAIT_REDIS_CHECKS)
RESERVED_INIT_CONTAINERS: Final = frozenset({FETCH_MODEL_CONTAINER, *WAIT_REDIS_CONTAINERS})

# The managed Redis: its port, and the keys of its generated Secret.
REDIS_PORT: Final = 6379
REDIS_PASSWORD_KEY: Final = "password"
REDIS_CONFIG_KEY: Final = "redis.conf"  # Redis reads its password from this file, never from argv or env

# The cluster's DNS domain (kubelet --cluster-domain); the operator's --cluster-domain overrides it.
DEFAULT_CLUSTER_DOMAIN: Final = "cluster.local"


def canary_name(name: str) -> str:
    return f"{name}-canary"


def redis_name(name: str) -> str:
    return f"{name}-redis"


def redis_auth_secret_name(name: str) -> str:
    return f"{name}-redis-auth"


def service_host(name: str, namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """Fully qualified in-cluster DNS name of a Service."""
    return f"{name}.{namespace}.svc.{cluster_domain}"


def redis_url(name: str, namespace: str) -> str:
    """The managed Redis URL (no credentials: the password comes from the Secret separately)."""
    return f"redis://{redis_name(name)}.{namespace}.svc:{REDIS_PORT}/0"


def instance_selector(name: str) -> dict[str, str]:
    """Labels carried by every child of one SentimentModel (use as the label selector when pruning)."""
    return {LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGED_BY}


def selector_labels(name: str, component: str) -> dict[str, str]:
    """Immutable pod selector of a Deployment (never add labels here: selectors cannot change)."""
    app = APP_REDIS if component == COMPONENT_CACHE else APP_INFERENCE
    return {LABEL_NAME: app, LABEL_INSTANCE: name, LABEL_COMPONENT: component}


def labels(name: str, component: str) -> dict[str, str]:
    return {**selector_labels(name, component), LABEL_MANAGED_BY: MANAGED_BY, LABEL_PART_OF: PART_OF}
