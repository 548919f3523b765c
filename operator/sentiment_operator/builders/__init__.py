"""Pure functions that turn a validated SentimentModel spec into the desired child objects (plain dicts).

No I/O and no Kubernetes client here: the same functions serve ``sentiment-operator run`` and ``render``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Literal

from ..names import COMPONENT_CANARY, COMPONENT_INFERENCE, DEFAULT_CLUSTER_DOMAIN, canary_name
from ..spec import RoutingProvider, SentimentModelSpec, check_cluster_support
from ..traffic import ALL_STABLE, TrafficSplit
from .common import (
    APP_UID,
    REDIS_CONFIG_MOUNT,
    Manifest,
    deep_copy,
    gateway_path,
    inference_url,
)
from .inference import (
    _disruption_budget,
    _hpa,
    _inference_deployment,
    _inference_service,
    _Variant,
    server_env,
    template_revision,
)
from .monitoring import _service_monitor
from .network import _redis_network_policy, _server_network_policy
from .redis import _redis_deployment, _redis_service, redis_auth_data, redis_auth_secret
from .routing import ROUTE_KINDS, RouteIntent, render_route, route_intent
from .scaling import ACTIVATION_QUERIES, scaled_object

__all__ = [
    "APP_UID",
    "REDIS_CONFIG_MOUNT",
    "ROUTE_KINDS",
    "Children",
    "Manifest",
    "Release",
    "RouteIntent",
    "build_children",
    "check_cluster",
    "gateway_path",
    "inference_url",
    "redis_auth_data",
    "redis_auth_secret",
    "route_intent",
    "server_env",
    "template_revision",
]


@dataclass(frozen=True)
class Children:
    """Every object one SentimentModel wants, as plain dicts; None/empty for disabled features.

    ``route`` is written for ``routing_provider`` (None: routing is off, or no provider fits the cluster).
    """

    deployment: Manifest
    service: Manifest
    canary_deployment: Manifest | None = None
    canary_service: Manifest | None = None
    redis_auth_secret: Manifest | None = None
    redis_deployment: Manifest | None = None
    redis_service: Manifest | None = None
    hpa: Manifest | None = None
    canary_hpa: Manifest | None = None
    scaled_object: Manifest | None = None  # KEDA's, instead of the HPA (never both for one Deployment)
    canary_scaled_object: Manifest | None = None
    disruption_budget: Manifest | None = None
    route: Manifest | None = None
    service_monitor: Manifest | None = None
    network_policies: tuple[Manifest, ...] = ()
    routing_provider: RoutingProvider | None = None

    def __post_init__(self) -> None:
        # Builders reuse small dicts (probes, secret refs); give every object its own copy so a caller that
        # mutates one object (or a YAML dumper that tracks identity) never sees another change.
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str):
                continue
            if isinstance(value, tuple):
                object.__setattr__(self, field.name, tuple(deep_copy(item) for item in value))
            elif value is not None:
                object.__setattr__(self, field.name, deep_copy(value))

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
            self.scaled_object,
            self.canary_scaled_object,
            self.service_monitor,
            self.route,
        ]
        return [obj for obj in ordered if obj is not None]

    def keys(self) -> set[tuple[str, str, str]]:
        """(apiVersion, kind, name) of every desired object; anything else with our labels is stale."""
        return {(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in self.objects()}


@dataclass(frozen=True)
class Release:
    """Where a canary rollout stands, as the builders need it (the reconciler makes it from the rollout's
    decision): the spec whose pod template the stable Deployment runs (None: the spec's own), whether the
    canary serves, is kept at zero replicas (rolled back) or is gone, and the traffic split."""

    stable_spec: SentimentModelSpec | None = None
    canary: Literal["none", "serving", "scaled-down"] = "none"
    split: TrafficSplit = ALL_STABLE


def _share(replicas: int, weight: int) -> int:
    """Replicas for ``weight`` percent of the traffic of ``replicas`` (at least one, unless none)."""
    return max(1, math.ceil(replicas * weight / 100)) if replicas > 0 else 0


def build_children(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    *,
    uid: str | None = None,
    redis_auth_version: str | None = None,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    served: Collection[RoutingProvider] | None = None,
    keda: bool = False,
    release: Release | None = None,
) -> Children:
    """Build every desired child of SentimentModel ``namespace/name``.

    ``uid`` adds controller ownerReferences; ``redis_auth_version`` (e.g. the auth Secret's uid) goes into the
    pod templates that use the managed Redis password, so a regenerated Secret rolls those pods;
    ``cluster_domain`` is the cluster's DNS domain, used in fully qualified Service hosts; ``served``: the
    routing providers the cluster serves (API discovery), which decide the route's provider (None: render
    without a cluster, for ``routing.provider``, Istio for auto); ``keda``: the cluster serves KEDA's
    ScaledObject, which then scales on the load metrics instead of an HPA; ``release`` shapes the stable and
    canary Deployments and the split of a canary rollout (strategy Canary).

    Raises InvalidSpecError for a spec this cluster cannot carry out (:func:`check_cluster`).
    """
    provider = check_cluster(spec, served=served, keda=keda)
    template_spec = release.stable_spec if release is not None and release.stable_spec else spec
    # The stable's image and model are its template's; how many replicas run it is the spec's.
    stable = _Variant(name, COMPONENT_INFERENCE, template_spec.image, template_spec.model, spec.replicas)
    canary: _Variant | None = None
    split = ALL_STABLE
    if spec.routing.enabled and spec.routing.canary is not None:
        weight = spec.routing.canary.weight
        split = TrafficSplit.to_canary(weight)
        canary = _Variant(
            canary_name(name),
            COMPONENT_CANARY,
            spec.routing.canary.image or spec.image,
            spec.routing.canary.model or spec.model,
            _share(spec.replicas, weight),
        )
    elif release is not None and release.canary != "none":
        split = release.split
        down = release.canary == "scaled-down"
        replicas = 0 if down else _share(spec.replicas, max(spec.rollout.steps))
        canary = _Variant(canary_name(name), COMPONENT_CANARY, spec.image, spec.model, replicas, down)

    by_keda = spec.autoscaling.enabled and spec.autoscaling.load_metric and keda
    hpa = spec.autoscaling.enabled and not by_keda
    managed = spec.cache.mode == "managed"
    policies: list[Manifest] = []
    if spec.network_policy.enabled:
        if managed:
            policies.append(_redis_network_policy(name, namespace, uid))
        policies.append(_server_network_policy(name, namespace, spec, uid, provider))

    autoscaled_canary = canary is not None and not canary.scaled_down
    return Children(
        deployment=_inference_deployment(
            name, namespace, spec, stable, uid, redis_auth_version, template_spec=template_spec
        ),
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
        hpa=_hpa(name, namespace, spec, stable, uid) if hpa else None,
        canary_hpa=_hpa(name, namespace, spec, canary, uid) if canary and autoscaled_canary and hpa else None,
        scaled_object=_scaled_object(name, namespace, spec, stable, uid, provider) if by_keda else None,
        canary_scaled_object=(
            _scaled_object(name, namespace, spec, canary, uid, provider)
            if canary and autoscaled_canary and by_keda
            else None
        ),
        disruption_budget=_disruption_budget(name, namespace, spec, uid),
        route=(
            render_route(provider, route_intent(name, namespace, spec, split), uid, cluster_domain)
            if provider is not None
            else None
        ),
        service_monitor=_service_monitor(name, namespace, spec, uid)
        if spec.monitoring.service_monitor
        else None,
        network_policies=tuple(policies),
        routing_provider=provider,
    )


def check_cluster(
    spec: SentimentModelSpec, *, served: Collection[RoutingProvider] | None, keda: bool
) -> RoutingProvider | None:
    """The routing provider the route is written for (None: routing off, or no provider fits the cluster),
    after refusing what the cluster cannot carry out (InvalidSpecError): scale to zero needs KEDA and a
    provider whose gateway requests the operator can count (:data:`ACTIVATION_QUERIES`)."""
    provider = spec.routing.choose_provider(served) if spec.routing.enabled else None
    check_cluster_support(spec, keda=keda, provider=provider, wakes=tuple(ACTIVATION_QUERIES))
    return provider


def _scaled_object(
    name: str,
    namespace: str,
    spec: SentimentModelSpec,
    variant: _Variant,
    uid: str | None,
    provider: RoutingProvider | None,
) -> Manifest:
    return scaled_object(
        name,
        namespace,
        spec,
        obj_name=variant.obj_name,
        component=variant.component,
        uid=uid,
        provider=provider,
    )
