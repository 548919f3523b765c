"""The kinds the operator reads and writes, and the one registry of the children it manages.

The apply layer's REST paths (``kube``), the child watches (``handlers``), pruning (``reconciler``) and the
ClusterRole (``rbac``) all derive from :data:`CHILD_KINDS`: adding a kind here is what makes it watched,
pruned and permitted. Pure: no kopf, no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from sentiment_operator.names import API_VERSION, KIND, PLURAL, redis_auth_secret_name


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def collection_path(self, namespace: str | None) -> str:
        if self.namespaced and namespace is not None:
            return f"{self.group_version_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.group_version_path}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str | None = None) -> str:
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"


# Every child is read, applied and deleted; a watched one is also listed (pruning) and watched.
_WATCHED_VERBS: Final = ("get", "list", "watch", "create", "patch", "delete")
_BY_NAME_VERBS: Final = ("get", "create", "delete")


@dataclass(frozen=True)
class ChildKind:
    """A kind of child object and how the operator treats it.

    ``watched``: its changes (deleted, hand-edited, readiness) reconcile the owner, and pruning finds stale
    ones by listing with the instance selector. Not watched (Secrets): found by its deterministic names only
    (``named``: owner name -> child name), since listing or watching Secrets would expose every Secret in the
    namespace. ``older_versions``: apiVersions that older clusters serve the same kind under, newest first.
    ``optional``: a kind a cluster serves only with an add-on's CRDs (KEDA, the Prometheus operator, Istio,
    Gateway API): applied and pruned only where discovery finds it served.
    """

    kind: Kind
    watched: bool = True
    named: tuple[Callable[[str], str], ...] = ()
    older_versions: tuple[str, ...] = ()
    optional: bool = False

    @property
    def verbs(self) -> tuple[str, ...]:
        return _WATCHED_VERBS if self.watched else _BY_NAME_VERBS

    @property
    def versions(self) -> tuple[Kind, ...]:
        """This kind under every apiVersion it may be served as, newest first."""
        kind = self.kind
        return (kind, *(Kind(v, kind.kind, kind.plural, kind.namespaced) for v in self.older_versions))


NETWORK_POLICY: Final = Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
SECRET: Final = Kind("v1", "Secret", "secrets")
SERVICE: Final = Kind("v1", "Service", "services")
DEPLOYMENT: Final = Kind("apps/v1", "Deployment", "deployments")
POD_DISRUPTION_BUDGET: Final = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
HORIZONTAL_POD_AUTOSCALER: Final = Kind(
    "autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"
)
# The builders render v1 (Istio >= 1.22); Istio before 1.22 serves the same schema as v1beta1 only.
VIRTUAL_SERVICE: Final = Kind("networking.istio.io/v1", "VirtualService", "virtualservices")
# Gateway API: the builders render HTTPRoute v1 (Gateway API >= 1.0); before 1.0 it was served as v1beta1
# only, with the same fields. A Gateway is only referenced (the HTTPRoute's parentRefs), never written.
HTTP_ROUTE: Final = Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")
GATEWAY: Final = Kind("gateway.networking.k8s.io/v1", "Gateway", "gateways")
# KEDA's; rendered instead of the HPA for the load metrics where the cluster serves it.
SCALED_OBJECT: Final = Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
# One Deployment has one autoscaler: switching deletes the other kind's first (KEDA's admission webhook
# refuses a ScaledObject whose Deployment already has an HPA).
AUTOSCALER_KINDS: Final = (HORIZONTAL_POD_AUTOSCALER, SCALED_OBJECT)
# The custom metrics API (served by a metrics adapter such as prometheus-adapter): an HPA Pods metric needs
# its discovery to list ``pods/<metric>``. Newest first; the HPA controller uses either.
CUSTOM_METRICS_VERSIONS: Final = ("custom.metrics.k8s.io/v1beta2", "custom.metrics.k8s.io/v1beta1")
# The Prometheus operator's; a ServiceMonitor per model where its CRDs are installed.
SERVICE_MONITOR: Final = Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors")

EVENT: Final = Kind("v1", "Event", "events")
SENTIMENT_MODEL: Final = Kind(API_VERSION, KIND, PLURAL)

# The children, in pruning order.
CHILD_KINDS: tuple[ChildKind, ...] = (
    ChildKind(NETWORK_POLICY),
    ChildKind(SECRET, watched=False, named=(redis_auth_secret_name,)),
    ChildKind(SERVICE),
    ChildKind(DEPLOYMENT),
    ChildKind(POD_DISRUPTION_BUDGET),
    ChildKind(HORIZONTAL_POD_AUTOSCALER),
    ChildKind(SCALED_OBJECT, optional=True),
    ChildKind(SERVICE_MONITOR, optional=True),
    ChildKind(VIRTUAL_SERVICE, older_versions=("networking.istio.io/v1beta1",), optional=True),
    ChildKind(HTTP_ROUTE, older_versions=("gateway.networking.k8s.io/v1beta1",), optional=True),
)


def pods_metric(metric: str) -> tuple[Kind, ...]:
    """The custom metrics API resource ``pods/<metric>`` under each version, for a discovery check."""
    return tuple(Kind(version, "MetricValueList", f"pods/{metric}") for version in CUSTOM_METRICS_VERSIONS)


def child_kind(kind_name: str) -> ChildKind:
    """The registry entry of a child kind, by its ``kind``."""
    for child in CHILD_KINDS:
        if child.kind.kind == kind_name:
            return child
    raise ValueError(f"The operator does not manage {kind_name}")


def watched_resources() -> Iterator[tuple[str, str, str]]:
    """(group, version, plural) of every watched child kind, for the child watches."""
    for child in CHILD_KINDS:
        if child.watched:
            yield child.kind.group, child.kind.version, child.kind.plural


def child_permissions() -> Iterator[tuple[str, str, str]]:
    """(group, resource, verb) the operator needs on its children (the ClusterRole's child rules)."""
    for child in CHILD_KINDS:
        for verb in child.verbs:
            yield child.kind.group, child.kind.plural, verb


def known_kinds() -> Mapping[tuple[str, str], Kind]:
    """(apiVersion, kind) -> Kind for every kind the operator reads or writes."""
    every = [*(k for child in CHILD_KINDS for k in child.versions), EVENT, SENTIMENT_MODEL]
    return {(k.api_version, k.kind): k for k in every}
