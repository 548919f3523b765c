"""Traffic: the Istio VirtualService and the NetworkPolicies."""

from __future__ import annotations

from typing import Any

from ..names import (
    APP_INFERENCE,
    COMPONENT_CACHE,
    COMPONENT_INFERENCE,
    LABEL_INSTANCE,
    LABEL_NAME,
    REDIS_PORT,
    canary_name,
    redis_name,
    selector_labels,
    service_host,
)
from ..spec import SentimentModelSpec
from ..traffic import ALL_STABLE, TrafficSplit
from .common import Manifest, metadata


def _virtual_service(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    uid: str | None,
    cluster_domain: str,
    split: TrafficSplit = ALL_STABLE,
) -> Manifest:
    """The route of the model's gateway path to its Service, weighted (and mirrored) to the canary as
    ``split`` says."""
    routing = spec.routing
    server_prefix = spec.path_prefix(name)
    gateway_prefix = spec.gateway_prefix(name)

    def destination(target: str) -> dict[str, Any]:
        return {"host": service_host(target, namespace, cluster_domain), "port": {"number": spec.server.port}}

    destinations: list[dict[str, Any]] = []
    for target, weight in ((name, split.stable), (canary_name(name), split.canary)):
        if weight > 0:
            destinations.append({"destination": destination(target)})
            if split.canary not in (0, 100):
                destinations[-1]["weight"] = weight
    mirror: dict[str, Any] = {}
    if split.mirror > 0:
        # Istio sends the copy with "-shadow" appended to the Host and discards its answer.
        mirror = {
            "mirror": destination(canary_name(name)),
            "mirrorPercentage": {"value": float(split.mirror)},
        }

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
        http.append(
            {"name": name, "match": [{"uri": uri} for uri, _ in pairs], "route": destinations, **mirror}
        )
    else:
        for index, (uri, rewrite) in enumerate(pairs):
            http.append(
                {
                    "name": f"{name}-{index}",
                    "match": [{"uri": uri}],
                    "rewrite": {"uri": rewrite},
                    "route": destinations,
                    **mirror,
                }
            )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
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
        "metadata": metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
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
        "metadata": metadata(redis_name(name), namespace, name, COMPONENT_CACHE, uid),
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
