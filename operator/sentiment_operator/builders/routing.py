"""Routes: one provider-neutral intent (a path prefix on gateways, the rewrite to the server's prefix,
weighted backends, a mirror), rendered as an Istio VirtualService or a Gateway API HTTPRoute.

Whoever decides the traffic split (the manual canary's weight, a canary rollout's step) hands it to
:func:`route_intent` as a :class:`~sentiment_operator.traffic.TrafficSplit`; the renderers only translate, so
both providers route the same requests the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .. import kinds
from ..kinds import Kind
from ..names import COMPONENT_INFERENCE, canary_name, service_host
from ..spec import RoutingProvider, SentimentModelSpec
from ..spec.routing import ANY_HOST
from ..traffic import ALL_STABLE, TrafficSplit
from .common import Manifest, metadata

# The kind each provider's route is written as (the reconciler asks discovery which version is served).
ROUTE_KINDS: Final[dict[RoutingProvider, Kind]] = {
    "istio": kinds.VIRTUAL_SERVICE,
    "gatewayAPI": kinds.HTTP_ROUTE,
}


@dataclass(frozen=True)
class Backend:
    """A Service (this model's) that gets ``weight`` percent of the routed requests."""

    service: str
    weight: int


@dataclass(frozen=True)
class Mirror:
    """A Service that also gets a copy of ``percent`` percent of the routed requests (answers discarded)."""

    service: str
    percent: int


@dataclass(frozen=True)
class RouteIntent:
    """What a route does, whatever API writes it.

    ``backends`` share 100 % of the requests (a backend with no share is left out); ``gateway_prefix`` is
    matched on the gateways and rewritten to ``server_prefix`` when they differ.
    """

    name: str
    namespace: str
    gateways: tuple[str, ...]
    hosts: tuple[str, ...]
    gateway_prefix: str
    server_prefix: str
    port: int
    backends: tuple[Backend, ...]
    mirror: Mirror | None = None

    @property
    def weighted(self) -> bool:
        """Whether the requests are split (weights are written only then)."""
        return len(self.backends) > 1


def route_intent(
    name: str, namespace: str, spec: SentimentModelSpec, split: TrafficSplit | None = None
) -> RouteIntent:
    """The route of SentimentModel ``namespace/name``.

    ``split``: the stable and canary shares and the mirrored percent, as a canary rollout decides them;
    default: the manual canary's ``routing.canary.weight``, or everything to the stable version.
    """
    canary = spec.routing.canary
    if split is None:
        split = TrafficSplit.to_canary(canary.weight) if canary is not None else ALL_STABLE
    shares = ((name, split.stable), (canary_name(name), split.canary))
    return RouteIntent(
        name=name,
        namespace=namespace,
        gateways=tuple(spec.routing.gateways),
        hosts=tuple(spec.routing.hosts),
        gateway_prefix=spec.gateway_prefix(name),
        server_prefix=spec.path_prefix(name),
        port=spec.server.port,
        backends=tuple(Backend(service, share) for service, share in shares if share > 0),
        mirror=Mirror(canary_name(name), split.mirror) if split.mirror else None,
    )


def render_route(
    provider: RoutingProvider, intent: RouteIntent, uid: str | None, cluster_domain: str
) -> Manifest:
    """The route of ``intent`` as ``provider``'s object."""
    if provider == "istio":
        return virtual_service(intent, uid, cluster_domain)
    return http_route(intent, uid)


# --- Istio ---------------------------------------------------------------------------------------------


def virtual_service(intent: RouteIntent, uid: str | None, cluster_domain: str) -> Manifest:
    """An Istio VirtualService (networking.istio.io/v1)."""
    name, namespace = intent.name, intent.namespace

    def destination(service: str) -> dict[str, Any]:
        return {"host": service_host(service, namespace, cluster_domain), "port": {"number": intent.port}}

    destinations: list[dict[str, Any]] = []
    for backend in intent.backends:
        destinations.append({"destination": destination(backend.service)})
        if intent.weighted:
            destinations[-1]["weight"] = backend.weight

    # Istio's prefix is a string prefix: "/project" must not also match "/projects", so the exact path and
    # the prefix with a slash are matched.
    server_prefix, gateway_prefix = intent.server_prefix, intent.gateway_prefix
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
    mirror: dict[str, Any] = {}
    if intent.mirror is not None:
        mirror = {
            "mirror": destination(intent.mirror.service),
            "mirrorPercentage": {"value": float(intent.mirror.percent)},
        }
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
        "apiVersion": kinds.VIRTUAL_SERVICE.api_version,
        "kind": kinds.VIRTUAL_SERVICE.kind,
        "metadata": metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
        "spec": {"hosts": list(intent.hosts), "gateways": list(intent.gateways), "http": http},
    }


# --- Gateway API ---------------------------------------------------------------------------------------


def parent_ref(gateway: str) -> dict[str, str]:
    """A parentRef to a Gateway written "namespace/name" (or "name": the route's own namespace)."""
    namespace, _, name = gateway.rpartition("/")
    ref = {"group": kinds.GATEWAY.group, "kind": kinds.GATEWAY.kind}
    if namespace:
        ref["namespace"] = namespace
    ref["name"] = name
    return ref


def http_route(intent: RouteIntent, uid: str | None) -> Manifest:
    """A Gateway API HTTPRoute (gateway.networking.k8s.io/v1).

    Gateway API's PathPrefix matches whole path elements ("/project" matches "/project" and "/project/x",
    never "/projects"), so one match is enough, and ReplacePrefixMatch swaps exactly that prefix (the
    API allows this filter only beside a single PathPrefix match).
    """
    name, namespace = intent.name, intent.namespace
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": intent.gateway_prefix}}]}
    filters: list[dict[str, Any]] = []
    if intent.gateway_prefix != intent.server_prefix:
        filters.append(
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": intent.server_prefix}
                },
            }
        )
    if intent.mirror is not None:
        filters.append(
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": intent.mirror.service, "port": intent.port},
                    "percent": intent.mirror.percent,
                },
            }
        )
    if filters:
        rule["filters"] = filters
    rule["backendRefs"] = [
        {"name": b.service, "port": intent.port, **({"weight": b.weight} if intent.weighted else {})}
        for b in intent.backends
    ]
    spec: dict[str, Any] = {"parentRefs": [parent_ref(gateway) for gateway in intent.gateways]}
    if ANY_HOST not in intent.hosts:
        spec["hostnames"] = list(intent.hosts)
    spec["rules"] = [rule]
    return {
        "apiVersion": kinds.HTTP_ROUTE.api_version,
        "kind": kinds.HTTP_ROUTE.kind,
        "metadata": metadata(name, namespace, name, COMPONENT_INFERENCE, uid),
        "spec": spec,
    }
