"""Isolation: the NetworkPolicies of the server and of the managed Redis."""

from __future__ import annotations

from typing import Any

from ..names import (
    APP_INFERENCE,
    COMPONENT_CACHE,
    COMPONENT_INFERENCE,
    LABEL_INSTANCE,
    LABEL_NAME,
    LABEL_NAMESPACE_NAME,
    REDIS_PORT,
    redis_name,
    selector_labels,
)
from ..spec import RoutingProvider, SentimentModelSpec
from .common import Manifest, metadata


def _inference_pods(name: str) -> dict[str, str]:
    """Matches the stable and the canary server pods of one model."""
    return {LABEL_NAME: APP_INFERENCE, LABEL_INSTANCE: name}


def _server_network_policy(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    uid: str | None,
    routing_provider: RoutingProvider | None,
) -> Manifest:
    """Ingress to the server pods: this model's pods, the gateway's data plane while a route is written for
    ``routing_provider``, and the ``allowFrom`` namespaces."""
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": _inference_pods(name)}}]
    if routing_provider is not None:
        peers.append(spec.network_policy.gateway_peer(routing_provider).peer())
    namespaces = sorted({peer.namespace for peer in spec.network_policy.allow_from})
    if namespaces:
        peers.append(
            {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": LABEL_NAMESPACE_NAME, "operator": "In", "values": namespaces}
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
