"""Pure functions that turn a validated SentimentModel spec into the desired child objects (plain dicts).

No I/O and no Kubernetes client here: the same functions serve ``sentiment-operator run`` and ``render``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from ..names import COMPONENT_CANARY, COMPONENT_INFERENCE, DEFAULT_CLUSTER_DOMAIN, canary_name
from ..spec import SentimentModelSpec
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
from .network import _redis_network_policy, _server_network_policy, _virtual_service
from .redis import _redis_deployment, _redis_service, redis_auth_data, redis_auth_secret

__all__ = [
    "APP_UID",
    "REDIS_CONFIG_MOUNT",
    "Children",
    "Manifest",
    "Release",
    "build_children",
    "gateway_path",
    "inference_url",
    "redis_auth_data",
    "redis_auth_secret",
    "server_env",
    "template_revision",
]


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
    service_monitor: Manifest | None = None
    network_policies: tuple[Manifest, ...] = ()

    def __post_init__(self) -> None:
        # Builders reuse small dicts (probes, secret refs); give every object its own copy so a caller that
        # mutates one object (or a YAML dumper that tracks identity) never sees another change.
        for field in fields(self):
            value = getattr(self, field.name)
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
            self.service_monitor,
            self.virtual_service,
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
    release: Release | None = None,
) -> Children:
    """Build every desired child of SentimentModel ``namespace/name``.

    ``uid`` adds controller ownerReferences; ``redis_auth_version`` (e.g. the auth Secret's uid) goes into the
    pod templates that use the managed Redis password, so a regenerated Secret rolls those pods;
    ``cluster_domain`` is the cluster's DNS domain, used in fully qualified Service hosts; ``release`` shapes
    the stable and canary Deployments and the split of a canary rollout (strategy Canary).
    """
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

    managed = spec.cache.mode == "managed"
    policies: list[Manifest] = []
    if spec.network_policy.enabled:
        if managed:
            policies.append(_redis_network_policy(name, namespace, uid))
        policies.append(_server_network_policy(name, namespace, spec, uid))

    autoscaled_canary = canary is not None and not canary.scaled_down and spec.autoscaling.enabled
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
        hpa=_hpa(name, namespace, spec, stable, uid) if spec.autoscaling.enabled else None,
        canary_hpa=_hpa(name, namespace, spec, canary, uid) if canary and autoscaled_canary else None,
        disruption_budget=_disruption_budget(name, namespace, spec, uid),
        virtual_service=(
            _virtual_service(name, namespace, spec, uid, cluster_domain, split)
            if spec.routing.enabled
            else None
        ),
        service_monitor=_service_monitor(name, namespace, spec, uid)
        if spec.monitoring.service_monitor
        else None,
        network_policies=tuple(policies),
    )
