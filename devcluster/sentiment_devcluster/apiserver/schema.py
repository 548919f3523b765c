"""Which lists are maps, sets or atomic, per kind: the merge rules server-side apply and strategic merge patch
follow.

Built-in kinds declare them in their Go types (k8s.io/api): ``patchStrategy:"merge" patchMergeKey:"name"``
for strategic merge patch and ``+listType=map +listMapKey=name`` for server-side apply. Custom resources
declare them in the CRD's schema (``x-kubernetes-list-type``, ``x-kubernetes-list-map-keys``); a list with
neither is atomic (https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy), and
strategic merge patch is refused for custom resources (415: "strategic merge patch is not supported").

A path is a tuple of field names, ``"*"`` standing for "each element of the list".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]


@dataclass(frozen=True)
class ListType:
    """How a list merges. ``keys``: server-side apply's listMapKeys (a list-map); ``merge_key``: strategic
    merge patch's patchMergeKey (None: the patch replaces the list); ``is_set``: a set of primitives."""

    keys: tuple[str, ...] = ()
    merge_key: str | None = None
    is_set: bool = False

    @property
    def atomic(self) -> bool:
        return not self.keys and not self.is_set


ATOMIC = ListType()
_BY_NAME = ListType(("name",), "name")
_CONDITIONS = ListType(("type",), "type")

# k8s.io/api/core/v1 types.go: Container.
_CONTAINER: dict[Path, ListType] = {
    ("env",): _BY_NAME,
    ("volumeMounts",): ListType(("mountPath",), "mountPath"),
    ("volumeDevices",): ListType(("devicePath",), "devicePath"),
    ("ports",): ListType(("containerPort", "protocol"), "containerPort"),
    ("resizePolicy",): ListType(("resourceName",), None),
}
# k8s.io/api/core/v1 types.go: PodSpec.
_POD_SPEC: dict[Path, ListType] = {
    ("volumes",): _BY_NAME,
    ("imagePullSecrets",): _BY_NAME,
    ("hostAliases",): ListType(("ip",), "ip"),
    ("topologySpreadConstraints",): ListType(("topologyKey", "whenUnsatisfiable"), "topologyKey"),
    ("resourceClaims",): _BY_NAME,
    ("schedulingGates",): _BY_NAME,
}
for _containers in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC[(_containers,)] = _BY_NAME
    for _path, _type in _CONTAINER.items():
        _POD_SPEC[(_containers, "*", *_path)] = _type

# k8s.io/apimachinery ObjectMeta: ownerReferences merge by uid; finalizers is a set.
_META: dict[Path, ListType] = {
    ("metadata", "ownerReferences"): ListType(("uid",), "uid"),
    ("metadata", "finalizers"): ListType(is_set=True, merge_key=""),
    ("metadata", "managedFields"): ATOMIC,
}


def _under(prefix: Path, table: dict[Path, ListType]) -> dict[Path, ListType]:
    return {(*prefix, *path): value for path, value in table.items()}


BUILTIN: dict[str, dict[Path, ListType]] = {
    "Pod": {**_under(("spec",), _POD_SPEC), ("status", "conditions"): _CONDITIONS},
    "Deployment": {
        **_under(("spec", "template", "spec"), _POD_SPEC),
        ("status", "conditions"): _CONDITIONS,
    },
    "ReplicaSet": {**_under(("spec", "template", "spec"), _POD_SPEC), ("status", "conditions"): _CONDITIONS},
    # ServicePort: patchMergeKey port; listMapKeys port, protocol.
    "Service": {
        ("spec", "ports"): ListType(("port", "protocol"), "port"),
        ("status", "conditions"): _CONDITIONS,
    },
    "HorizontalPodAutoscaler": {("status", "conditions"): _CONDITIONS},
    "NetworkPolicy": {},
    "PodDisruptionBudget": {("status", "conditions"): _CONDITIONS},
    "Secret": {},
    "ConfigMap": {},
    "Namespace": {("status", "conditions"): _CONDITIONS},
    "Event": {},
}


def _crd_list_type(schema: dict[str, Any] | None, path: Path) -> ListType:
    node = schema
    for step in path:
        if node is None:
            return ATOMIC
        if step == "*":
            node = node.get("items")
        else:
            node = (node.get("properties") or {}).get(step) or (
                node.get("additionalProperties")
                if isinstance(node.get("additionalProperties"), dict)
                else None
            )
    if node is None:
        return ATOMIC
    kind = node.get("x-kubernetes-list-type", "atomic")
    if kind == "map":
        return ListType(tuple(node.get("x-kubernetes-list-map-keys") or ()), None)
    if kind == "set":
        return ListType(is_set=True)
    return ATOMIC


# The API groups with dots kube-apiserver serves itself ("kubectl api-versions" on a bare cluster); every
# other dotted group comes from a CustomResourceDefinition, k8s.io-suffixed ones (Gateway API's) included.
BUILTIN_GROUPS: frozenset[str] = frozenset(
    {
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)


@dataclass(frozen=True)
class TypeInfo:
    """The merge rules of one kind: built in (a table) or custom (its CRD's openAPIV3Schema)."""

    kind: str
    crd_schema: dict[str, Any] | None = None
    has_status: bool = False  # a status subresource: main writes ignore status, /status writes the rest

    @property
    def builtin(self) -> bool:
        return self.crd_schema is None

    @classmethod
    def of(cls, kind: str, group: str, *, has_status: bool, crd_schema: dict[str, Any] | None) -> TypeInfo:
        """A served kind: built in (its group is empty, one word, or one of kube-apiserver's *.k8s.io groups)
        or custom (its CRD's schema; without one, everything is kept). A *.k8s.io group is not built in by
        its name alone: Gateway API (gateway.networking.k8s.io) is installed as CRDs."""
        custom = "." in group and group not in BUILTIN_GROUPS
        schema = (crd_schema or {"x-kubernetes-preserve-unknown-fields": True}) if custom else None
        return cls(kind, crd_schema=schema, has_status=has_status)

    def list_type(self, path: Path) -> ListType:
        if path in _META:
            return _META[path]
        if self.crd_schema is not None:
            return _crd_list_type(self.crd_schema, path)
        return BUILTIN.get(self.kind, {}).get(path, ATOMIC)
