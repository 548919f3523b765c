"""What the API server stores for a built-in object: omitempty zero values dropped, defaults set.

A write goes through the Go types: a field tagged ``omitempty`` that holds its zero value (``""``,
``false`` for a plain bool, an empty list or string map) is not stored; pointer fields (``*bool`` such as
``runAsNonRoot``, structs such as ``emptyDir: {}``) are. Then the defaulting functions run:
k8s.io/kubernetes pkg/apis/core/v1/defaults.go (pods, containers, probes, volumes, Services, Secrets),
pkg/apis/apps/v1/defaults.go (Deployments), pkg/apis/autoscaling/v2/defaults.go (HPA), and
pkg/apis/networking/v1/defaults.go (NetworkPolicy). A client that compares what it sent with what it
reads back sees here what it would see on a real cluster.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import itertools
from typing import Any

# Fields that are maps of strings (map[string]string or ResourceList), dropped when empty; their entries are
# data, never dropped.
_STRING_MAPS = frozenset(
    {"labels", "annotations", "nodeSelector", "matchLabels", "data", "stringData", "limits", "requests"}
)
# String fields without omitempty, kept even when "" (the rest of the optional strings are omitempty).
_REQUIRED_STRINGS = frozenset(
    {"name", "mountPath", "key", "fieldPath", "uid", "kind", "apiVersion", "operator"}
)
# *bool fields: a false is stored (every other optional bool is a plain omitempty bool).
_POINTER_BOOLS = frozenset(
    {
        "readOnlyRootFilesystem",
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "privileged",
        "automountServiceAccountToken",
        "optional",
        "enableServiceLinks",
        "setHostnameAsFQDN",
        "shareProcessNamespace",
        "hostUsers",
        "blockOwnerDeletion",
        "controller",
        "publishNotReadyAddresses",
    }
)
# int32 fields with omitempty (not pointers): a 0 is not stored.
_OMITEMPTY_INTS = frozenset({"initialDelaySeconds", "minReadySeconds", "hostPort", "nodePort"})


def drop_empty(node: Any, key: str | None = None) -> Any:
    """``node`` as the Go types serialize it: omitempty zero values gone (recursively)."""
    if isinstance(node, dict):
        if key in _STRING_MAPS:
            return {k: v for k, v in node.items() if v is not None}
        out = {}
        for k, v in node.items():
            v = drop_empty(v, k)
            if v is None:
                continue
            if isinstance(v, list) and not v:
                continue
            if isinstance(v, dict) and not v and k in _STRING_MAPS:
                continue
            if v == "" and k not in _REQUIRED_STRINGS:
                continue
            if v is False and k not in _POINTER_BOOLS:
                continue
            if type(v) is int and v == 0 and k in _OMITEMPTY_INTS:
                continue
            out[k] = v
        return out
    if isinstance(node, list):
        return [drop_empty(item) for item in node]
    return node


# -------------------------------------------------------------------------------------------- defaulting


def _default_probe(probe: dict[str, Any]) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("scheme", "HTTP")


def _pull_policy(image: str) -> str:
    # SetDefaults_Container: Always for :latest or no tag (a digest is a tag here), else IfNotPresent.
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    tag = name.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if "image" in container:
        container.setdefault("imagePullPolicy", _pull_policy(container["image"]))
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(container.get(name), dict):
            _default_probe(container[name])
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if spec.get("serviceAccountName"):
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            _default_container(container)
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap", "downwardAPI", "projected"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def _default_deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


_CLUSTER_IPS = (str(ipaddress.ip_address("10.96.0.10") + i) for i in itertools.count())


def _default_service(obj: dict[str, Any], live: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        live_spec = (live or {}).get("spec") or {}
        # Allocated once and immutable: an update that leaves it out keeps the allocated address.
        ip = spec.get("clusterIP") or live_spec.get("clusterIP") or next(_CLUSTER_IPS)
        spec["clusterIP"] = ip
        spec.setdefault("clusterIPs", [ip])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def _default_hpa(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):  # only a behavior that is given is completed (SetDefaults_..Behavior)
        up = behavior.setdefault("scaleUp", {})
        up.setdefault("stabilizationWindowSeconds", 0)
        up.setdefault("selectPolicy", "Max")
        up.setdefault(
            "policies",
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        )
        down = behavior.setdefault("scaleDown", {})
        down.setdefault("stabilizationWindowSeconds", 300)
        down.setdefault("selectPolicy", "Max")
        down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def _default_network_policy(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")


def _default_secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _default_namespace(obj: dict[str, Any]) -> None:
    name = obj.get("metadata", {}).get("name", "")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def normalize(kind: str, obj: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the API server stores for ``obj`` of a built-in ``kind`` (``live``: the object it replaces)."""
    managed = (obj.get("metadata") or {}).get("managedFields")
    out: dict[str, Any] = drop_empty(copy.deepcopy(obj))
    if managed:
        out["metadata"]["managedFields"] = managed
    if kind == "Deployment":
        _default_deployment(out)
    elif kind == "Pod":
        default_pod_spec(out.setdefault("spec", {}))
    elif kind == "Service":
        _default_service(out, live)
    elif kind == "HorizontalPodAutoscaler":
        _default_hpa(out)
    elif kind == "NetworkPolicy":
        _default_network_policy(out)
    elif kind == "Secret":
        _default_secret(out)
    elif kind == "Namespace":
        _default_namespace(out)
    return out
