"""Pure functions that compute a SentimentModel's status from its spec and its live children.

Conditions follow the Kubernetes API conventions: a list keyed by ``type``, CamelCase ``reason``, a human
``message``, ``observedGeneration``, and a ``lastTransitionTime`` that changes only when ``status`` flips.
``Ready`` is the summary; ``Available`` (inference Deployment), ``CacheReady``, ``Autoscaling`` and
``Routing`` explain it. A condition is False only when something is wrong or not there yet: a feature that is
turned off is True with reason ``Disabled``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from sentiment_operator.kinds import GATEWAY, HTTP_ROUTE, VIRTUAL_SERVICE
from sentiment_operator.names import ANNOTATION_REVISION, canary_name, redis_name
from sentiment_operator.spec import InvalidSpecError, RoutingProvider, SentimentModelSpec

JSONObj = dict[str, Any]
# Routing asked for and the route written ("applied"), or not written since the cluster serves no API for it.
RoutingState = Literal["disabled", "applied", "not-served"]


class Condition(StrEnum):
    """The SentimentModel's condition types: Ready sums up Available and CacheReady; Autoscaling, Routing and
    Rollout explain the rest."""

    READY = "Ready"
    AVAILABLE = "Available"
    CACHE_READY = "CacheReady"
    AUTOSCALING = "Autoscaling"
    ROUTING = "Routing"
    ROLLOUT = "Rollout"


class Reason(StrEnum):
    """Every reason a SentimentModel condition can give (Autoscaling may also pass on the HPA's own)."""

    # Ready
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEPLOYMENT_NOT_AVAILABLE = "DeploymentNotAvailable"
    CACHE_NOT_READY = "CacheNotReady"
    INVALID_SPEC = "InvalidSpec"
    CHILD_NOT_OWNED = "ChildNotOwned"
    APPLY_FAILED = "ApplyFailed"
    # Available
    DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
    SCALED_TO_ZERO = "ScaledToZero"
    MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
    MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
    REPLICA_FAILURE = "ReplicaFailure"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # CacheReady, Autoscaling, Routing
    DISABLED = "Disabled"
    EXTERNAL_REDIS = "ExternalRedis"
    REDIS_AVAILABLE = "RedisAvailable"
    REDIS_NOT_AVAILABLE = "RedisNotAvailable"
    HPA_NOT_FOUND = "HPANotFound"
    SCALING_INACTIVE = "ScalingInactive"
    HPA_CONFIGURED = "HorizontalPodAutoscalerConfigured"
    METRIC_NOT_SERVED = "MetricNotServed"
    SCALED_OBJECT_NOT_FOUND = "ScaledObjectNotFound"
    SCALED_OBJECT_NOT_READY = "ScaledObjectNotReady"
    SCALED_OBJECT_READY = "ScaledObjectReady"
    AUTOSCALER_SWITCHING = "AutoscalerSwitching"
    ISTIO_NOT_INSTALLED = "IstioNotInstalled"
    GATEWAY_API_NOT_INSTALLED = "GatewayAPINotInstalled"
    ISTIO_AND_GATEWAY_API_NOT_INSTALLED = "IstioAndGatewayAPINotInstalled"
    VIRTUAL_SERVICE_CONFIGURED = "VirtualServiceConfigured"
    HTTP_ROUTE_ACCEPTED = "HTTPRouteAccepted"
    HTTP_ROUTE_PENDING = "HTTPRoutePending"
    HTTP_ROUTE_NOT_ACCEPTED = "HTTPRouteNotAccepted"
    HTTP_ROUTE_REFS_NOT_RESOLVED = "HTTPRouteRefsNotResolved"
    # Rollout: True while the spec's pod template serves all traffic
    IMMEDIATE = "Immediate"
    STABLE = "Stable"
    # Rollout False: a canary in flight (PROGRESSING too), or rolled back
    WAITING_FOR_CANARY = "WaitingForCanary"
    PAUSED = "Paused"
    NO_DATA = "NoData"
    PROMOTING = "Promoting"
    ANALYSIS_FAILED = "AnalysisFailed"
    NO_DATA_TIMEOUT = "NoDataTimeout"
    CANARY_NOT_AVAILABLE = "CanaryNotAvailable"
    ABORTED = "Aborted"


CONDITION_TYPES: Final = tuple(Condition)
# Ready reasons a child's status change cannot resolve: the next child event runs a full reconcile.
UNRESOLVED_REASONS: Final = frozenset({Reason.INVALID_SPEC, Reason.CHILD_NOT_OWNED, Reason.APPLY_FAILED})
# Routing reasons that need someone's attention: each is announced with one Warning Event when it appears.
ROUTING_WARNINGS: Final = frozenset(
    {
        Reason.ISTIO_NOT_INSTALLED,
        Reason.GATEWAY_API_NOT_INSTALLED,
        Reason.ISTIO_AND_GATEWAY_API_NOT_INSTALLED,
        Reason.HTTP_ROUTE_NOT_ACCEPTED,
        Reason.HTTP_ROUTE_REFS_NOT_RESOLVED,
    }
)
# Why no route was written, by the provider asked for: the reason names what the cluster does not serve.
_ISTIO_API = f"Istio's {VIRTUAL_SERVICE.kind} ({VIRTUAL_SERVICE.group})"
_GATEWAY_API = f"Gateway API's {HTTP_ROUTE.kind} ({HTTP_ROUTE.group})"
_NOT_SERVED: Final[dict[str, tuple[Reason, str]]] = {
    "istio": (Reason.ISTIO_NOT_INSTALLED, f"the cluster does not serve {_ISTIO_API}"),
    "gatewayAPI": (Reason.GATEWAY_API_NOT_INSTALLED, f"the cluster does not serve {_GATEWAY_API}"),
    "auto": (
        Reason.ISTIO_AND_GATEWAY_API_NOT_INSTALLED,
        f"the cluster serves neither {_ISTIO_API} nor {_GATEWAY_API}",
    ),
}


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw live after applying the desired objects."""

    inference: Mapping[str, Any] | None = None  # Deployment <name>
    canary: Mapping[str, Any] | None = None  # Deployment <name>-canary
    redis: Mapping[str, Any] | None = None  # Deployment <name>-redis
    hpa: Mapping[str, Any] | None = None  # HorizontalPodAutoscaler <name>
    scaled_object: Mapping[str, Any] | None = None  # KEDA's ScaledObject <name>
    keda: bool = False  # the cluster serves KEDA's ScaledObject (load metrics are scaled by KEDA)
    routing: RoutingState = "disabled"
    routing_provider: RoutingProvider | None = None  # whose route was written
    route: Mapping[str, Any] | None = None  # the route <name> (an HTTPRoute's status: its gateways' verdict)
    # Whether the custom metrics API serves the load metric of an HPA Pods metric (None: not asked).
    metric_served: bool | None = None
    # The other kind of autoscaler, deleted and still there (finalizers): the new one waits for it.
    autoscaler_leaving: str | None = None


@dataclass(frozen=True)
class Replicas:
    desired: int
    ready: int
    updated: int
    available: int


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(epoch: float) -> str:
    """A moment as RFC 3339 with milliseconds (a rollout's steps may be seconds apart)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_of(timestamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (with or without fractions)."""
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def deployment_replicas(deployment: Mapping[str, Any] | None, default_desired: int = 0) -> Replicas:
    """Replica counts of a live Deployment (desired comes from its spec, which the HPA may have changed)."""
    if deployment is None:
        return Replicas(desired=default_desired, ready=0, updated=0, available=0)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = spec.get("replicas")
    return Replicas(
        desired=int(desired) if desired is not None else default_desired,
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
    )


def rolled_out_revision(deployment: Mapping[str, Any] | None) -> str | None:
    """The pod template revision a live Deployment runs on every replica, all of them available (its
    controller has seen the latest spec, no old pod is left); None while it rolls, or when it is missing."""
    if deployment is None:
        return None
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    live = deployment.get("status") or {}
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    revision = annotations.get(ANNOTATION_REVISION)
    desired = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    settled = int(live.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    counts = [int(live.get(key) or 0) for key in ("updatedReplicas", "availableReplicas", "replicas")]
    if revision is None or not settled or counts != [desired] * 3:
        return None
    return str(revision)


def _live_condition(obj: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    """The condition ``ctype`` a live child's controller reports in its status (a Deployment, an HPA)."""
    if obj is None:
        return None
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int | None) -> JSONObj:
    cond: JSONObj = {"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def available_condition(deployment: Mapping[str, Any] | None, name: str, generation: int | None) -> JSONObj:
    if deployment is None:
        return _condition(
            Condition.AVAILABLE,
            False,
            Reason.DEPLOYMENT_NOT_FOUND,
            f"Deployment {name} does not exist yet",
            generation,
        )
    replicas = deployment_replicas(deployment, default_desired=1)
    if replicas.desired == 0:
        return _condition(
            Condition.AVAILABLE, False, Reason.SCALED_TO_ZERO, f"Deployment {name} has 0 replicas", generation
        )
    dep_available = _live_condition(deployment, "Available")
    if replicas.available >= 1 and (dep_available is None or dep_available.get("status") != "False"):
        message = f"{replicas.ready}/{replicas.desired} replicas ready"
        if replicas.updated < replicas.desired:
            message += f", {replicas.updated} updated (rollout in progress)"
        return _condition(Condition.AVAILABLE, True, Reason.MINIMUM_REPLICAS_AVAILABLE, message, generation)
    failure = _live_condition(deployment, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        # The ReplicaSet cannot create pods (quota, admission, a missing ServiceAccount): say why.
        return _condition(
            Condition.AVAILABLE,
            False,
            Reason.REPLICA_FAILURE,
            str(failure.get("message") or failure.get("reason")),
            generation,
        )
    progressing = _live_condition(deployment, "Progressing")
    # The Deployment controller's own reason (Kubernetes' vocabulary, which ours repeats).
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return _condition(
            Condition.AVAILABLE,
            False,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            str(progressing.get("message") or ""),
            generation,
        )
    return _condition(
        Condition.AVAILABLE,
        False,
        Reason.MINIMUM_REPLICAS_UNAVAILABLE,
        f"{replicas.ready}/{replicas.desired} replicas ready; waiting for the model server to become ready",
        generation,
    )


def cache_condition(
    spec: SentimentModelSpec, observed: Observed, name: str, generation: int | None
) -> JSONObj:
    mode = spec.cache.mode
    if mode == "disabled":
        return _condition(
            Condition.CACHE_READY,
            True,
            Reason.DISABLED,
            "cache disabled; only the in-process LRU is used",
            generation,
        )
    if mode == "external":
        assert spec.cache.external is not None
        ref = spec.cache.external.url_secret_ref
        return _condition(
            Condition.CACHE_READY,
            True,
            Reason.EXTERNAL_REDIS,
            f"using the Redis URL from Secret {ref.name} key {ref.key} (reachability is checked by the pods)",
            generation,
        )
    replicas = deployment_replicas(observed.redis, default_desired=1)
    if observed.redis is not None and replicas.available >= 1:
        return _condition(
            Condition.CACHE_READY,
            True,
            Reason.REDIS_AVAILABLE,
            f"Deployment {redis_name(name)} is available",
            generation,
        )
    return _condition(
        Condition.CACHE_READY,
        False,
        Reason.REDIS_NOT_AVAILABLE,
        f"Deployment {redis_name(name)} has no available replica yet",
        generation,
    )


def _scaling_target(spec: SentimentModelSpec) -> str:
    """What the autoscaler aims at, in words: "70% CPU", "32 queued texts per pod (sentiment_queue_depth)"."""
    auto = spec.autoscaling
    if auto.metric == "queueDepth":
        return f"{auto.target_queue_depth} queued texts per pod ({auto.load_series})"
    if auto.metric == "inFlight":
        return f"{auto.target_in_flight} requests in flight per pod ({auto.load_series})"
    if auto.metric == "memory":
        return f"{auto.memory_target}% memory"
    memory = f", {auto.memory_target}% memory" if auto.memory_target is not None else ""
    return f"{auto.target_cpu_utilization_percentage}% CPU{memory}"


def autoscaling_condition(
    spec: SentimentModelSpec, observed: Observed, name: str, generation: int | None
) -> JSONObj:
    auto = spec.autoscaling
    if not auto.enabled:
        return _condition(
            Condition.AUTOSCALING,
            True,
            Reason.DISABLED,
            f"autoscaling disabled; {spec.replicas} fixed replicas",
            generation,
        )
    bounds = f"{auto.min_replicas}-{auto.max_replicas} replicas at {_scaling_target(spec)}"
    if observed.autoscaler_leaving is not None:
        return _condition(
            Condition.AUTOSCALING,
            False,
            Reason.AUTOSCALER_SWITCHING,
            f"waiting for {observed.autoscaler_leaving} to be deleted before its replacement is created "
            "(one autoscaler per Deployment)",
            generation,
        )
    if observed.keda and auto.load_metric:
        return _scaled_object_condition(observed.scaled_object, name, bounds, generation)
    if observed.hpa is None:
        return _condition(
            Condition.AUTOSCALING,
            False,
            Reason.HPA_NOT_FOUND,
            f"HorizontalPodAutoscaler {name} not found",
            generation,
        )
    if auto.load_metric and observed.metric_served is False:
        series = auto.load_series
        return _condition(
            Condition.AUTOSCALING,
            False,
            Reason.METRIC_NOT_SERVED,
            f"HorizontalPodAutoscaler {name} scales on the Pods metric {series}, which the custom metrics "
            f"API (custom.metrics.k8s.io) does not serve: install a metrics adapter that serves it (e.g. "
            "prometheus-adapter with the rule in examples/autoscaling/prometheus-adapter.yaml), or KEDA",
            generation,
        )
    scaling = _live_condition(observed.hpa, "ScalingActive")
    if scaling is not None and scaling.get("status") == "False":
        # The HPA cannot compute a scale (no metrics, no CPU request): it will never scale.
        reason = str(scaling.get("reason") or Reason.SCALING_INACTIVE)
        return _condition(
            Condition.AUTOSCALING, False, reason, str(scaling.get("message") or reason), generation
        )
    return _condition(Condition.AUTOSCALING, True, Reason.HPA_CONFIGURED, bounds, generation)


def _scaled_object_condition(
    scaled_object: Mapping[str, Any] | None, name: str, bounds: str, generation: int | None
) -> JSONObj:
    """Autoscaling by KEDA: what KEDA reports in the ScaledObject's Ready condition (and Active)."""
    if scaled_object is None:
        return _condition(
            Condition.AUTOSCALING,
            False,
            Reason.SCALED_OBJECT_NOT_FOUND,
            f"ScaledObject {name} not found",
            generation,
        )
    ready = _live_condition(scaled_object, "Ready")
    if ready is None or ready.get("status") != "True":
        reason = str((ready or {}).get("reason") or Reason.SCALED_OBJECT_NOT_READY)
        message = str((ready or {}).get("message") or f"waiting for KEDA to report ScaledObject {name} Ready")
        return _condition(Condition.AUTOSCALING, False, reason, message, generation)
    active = _live_condition(scaled_object, "Active")
    state = "active" if (active or {}).get("status") == "True" else "idle"
    return _condition(
        Condition.AUTOSCALING,
        True,
        Reason.SCALED_OBJECT_READY,
        f"KEDA scales {bounds}; {state}",
        generation,
    )


def routing_condition(
    spec: SentimentModelSpec, observed: Observed, name: str, generation: int | None
) -> JSONObj:
    if not spec.routing.enabled:
        return _condition(Condition.ROUTING, True, Reason.DISABLED, "routing disabled; no route", generation)
    if observed.routing == "not-served":
        reason, missing = _NOT_SERVED[spec.routing.provider]
        return _condition(
            Condition.ROUTING,
            False,
            reason,
            f"{missing}; no route was written (the Service still answers inside the cluster)",
            generation,
        )
    where = f"{spec.gateway_prefix(name)} on {', '.join(spec.routing.gateways)}"
    if observed.routing_provider == "gatewayAPI":
        return http_route_condition(observed.route, name, where, generation)
    return _condition(
        Condition.ROUTING,
        True,
        Reason.VIRTUAL_SERVICE_CONFIGURED,
        f"{VIRTUAL_SERVICE.kind} {name} routes {where}",
        generation,
    )


@dataclass(frozen=True)
class ParentReport:
    """What the gateway controllers reported on one of an HTTPRoute's parents, for the route's current
    generation only: its Accepted and ResolvedRefs conditions (None: not reported for this generation)."""

    parent: str  # "namespace/name" of the Gateway
    accepted: Mapping[str, Any] | None
    resolved_refs: Mapping[str, Any] | None
    stale_generation: int | None = None  # the newest earlier generation reported, if any


def _parent_key(ref: Mapping[str, Any], route_namespace: str) -> tuple[str, str, str, str, Any, Any]:
    """A parentRef with Gateway API's defaults filled in, so spec and status references compare equal."""
    return (
        str(ref.get("group") if ref.get("group") is not None else GATEWAY.group),
        str(ref.get("kind") or GATEWAY.kind),
        str(ref.get("namespace") or route_namespace),
        str(ref.get("name")),
        ref.get("sectionName"),
        ref.get("port"),
    )


def route_parent_reports(route: Mapping[str, Any]) -> list[ParentReport]:
    """Per parent of an HTTPRoute (its spec.parentRefs), the conditions its gateway controller reported in
    status.parents whose observedGeneration is the route's current metadata.generation; older ones are stale
    and do not count (a stale Accepted says nothing about the route as it is now)."""
    meta = route.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    generation = meta.get("generation")
    reports: list[ParentReport] = []
    entries = [e for e in (route.get("status") or {}).get("parents") or [] if isinstance(e, Mapping)]
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        key = _parent_key(ref, namespace)
        current: dict[str, Mapping[str, Any]] = {}
        stale: list[int] = []
        for entry in entries:
            if _parent_key(entry.get("parentRef") or {}, namespace) != key:
                continue
            for cond in entry.get("conditions") or []:
                if cond.get("observedGeneration") == generation:
                    ctype = str(cond.get("type"))
                    # Two controllers on one parent: a False from either counts.
                    if current.get(ctype, {}).get("status") != "False":
                        current[ctype] = cond
                elif isinstance(cond.get("observedGeneration"), int):
                    stale.append(int(cond["observedGeneration"]))
        reports.append(
            ParentReport(
                parent=f"{key[2]}/{key[3]}",
                accepted=current.get("Accepted"),
                resolved_refs=current.get("ResolvedRefs"),
                stale_generation=max(stale) if stale else None,
            )
        )
    return reports


def _verdict(cond: Mapping[str, Any]) -> str:
    detail = f"{cond.get('type')}={cond.get('status')} {cond.get('reason') or ''}".rstrip()
    return f"{detail}: {cond['message']}" if cond.get("message") else detail


def http_route_condition(
    route: Mapping[str, Any] | None, name: str, where: str, generation: int | None
) -> JSONObj:
    """Routing from an HTTPRoute's status: True once every parent Gateway accepted the route and resolved
    its references for the route's current generation; otherwise why not, per parent."""
    if route is None:
        return _condition(
            Condition.ROUTING,
            False,
            Reason.HTTP_ROUTE_PENDING,
            f"{HTTP_ROUTE.kind} {name} of this model not found",
            generation,
        )
    route_generation = (route.get("metadata") or {}).get("generation")
    reports = route_parent_reports(route)
    # A parent that said False, on acceptance first: the controller's reason and message, per parent.
    checks: tuple[tuple[Callable[[ParentReport], Mapping[str, Any] | None], Reason, str], ...] = (
        (lambda r: r.accepted, Reason.HTTP_ROUTE_NOT_ACCEPTED, "is not accepted by"),
        (lambda r: r.resolved_refs, Reason.HTTP_ROUTE_REFS_NOT_RESOLVED, "has unresolved references on"),
    )
    for verdict_of, reason, phrase in checks:
        failed = [
            f"{r.parent}: {_verdict(c)}"
            for r in reports
            if (c := verdict_of(r)) is not None and c.get("status") == "False"
        ]
        if failed:
            return _condition(
                Condition.ROUTING,
                False,
                reason,
                f"{HTTP_ROUTE.kind} {name} {phrase} " + "; ".join(failed),
                generation,
            )
    waiting = [
        r.parent + (f" (last report for generation {r.stale_generation})" if r.stale_generation else "")
        for r in reports
        if not all(c is not None and c.get("status") == "True" for c in (r.accepted, r.resolved_refs))
    ]
    if waiting or not reports:
        return _condition(
            Condition.ROUTING,
            False,
            Reason.HTTP_ROUTE_PENDING,
            f"waiting for the gateway controller to accept {HTTP_ROUTE.kind} {name} "
            f"(generation {route_generation}) on " + ", ".join(waiting or ["its gateways"]),
            generation,
        )
    return _condition(
        Condition.ROUTING,
        True,
        Reason.HTTP_ROUTE_ACCEPTED,
        f"{HTTP_ROUTE.kind} {name} routes {where} (accepted, references resolved)",
        generation,
    )


def rollout_condition(
    spec: SentimentModelSpec, rollout: Mapping[str, Any] | None, generation: int | None
) -> JSONObj:
    """True while the spec's pod template serves all traffic; False while a canary is in flight (why, in the
    message) or after a rollback. ``rollout`` is ``status.rollout`` (None with strategy Immediate)."""
    if not spec.rollout.canary or rollout is None:
        return _condition(
            Condition.ROLLOUT,
            True,
            Reason.IMMEDIATE,
            "strategy Immediate: a new pod template rolls out at once (a rolling update)",
            generation,
        )
    stable = rollout.get("phase") == Reason.STABLE.value
    return _condition(
        Condition.ROLLOUT,
        stable,
        str(rollout.get("reason") or Reason.STABLE),
        str(rollout.get("message") or ""),
        generation,
    )


def ready_condition(
    parts: Sequence[Mapping[str, Any]], spec: SentimentModelSpec, generation: int | None
) -> JSONObj:
    by_type = {str(c["type"]): c for c in parts}
    available = by_type[Condition.AVAILABLE]
    if available["reason"] == Reason.SCALED_TO_ZERO and spec.autoscaling.scales_to_zero:
        # Idle at zero is where a scale-to-zero model rests: ready to be woken by the next request.
        return _condition(
            Condition.READY,
            True,
            Reason.SCALED_TO_ZERO,
            "scaled to zero while idle: the next request through the gateway wakes a pod (it is answered "
            "503 until one is ready)",
            generation,
        )
    if available["status"] != "True":
        # Pods on their way up (model loading) are progressing; anything else needs attention.
        reason = (
            Reason.PROGRESSING
            if available["reason"] == Reason.MINIMUM_REPLICAS_UNAVAILABLE
            else Reason.DEPLOYMENT_NOT_AVAILABLE
        )
        return _condition(Condition.READY, False, reason, str(available["message"]), generation)
    cache = by_type[Condition.CACHE_READY]
    if spec.cache.mode == "managed" and cache["status"] != "True":
        return _condition(Condition.READY, False, Reason.CACHE_NOT_READY, str(cache["message"]), generation)
    return _condition(Condition.READY, True, Reason.READY, str(available["message"]), generation)


def canary_message(deployment: Mapping[str, Any] | None, name: str) -> str | None:
    """A note for Ready when the canary exists but is not available yet (it does not block Ready)."""
    if deployment is None:
        return None
    replicas = deployment_replicas(deployment, default_desired=1)
    if replicas.available >= 1 or replicas.desired == 0:
        return None
    return f"canary Deployment {canary_name(name)} is not available yet"


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]], now: str
) -> list[JSONObj]:
    """Give each new condition a lastTransitionTime: kept from the previous one when the status did not flip.

    Conditions of types we no longer report are dropped; the order is the order of ``new``.
    """
    old = {str(c.get("type")): c for c in previous or [] if isinstance(c, Mapping)}
    out: list[JSONObj] = []
    for cond in new:
        merged = dict(cond)
        before = old.get(str(cond["type"]))
        if before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime"):
            merged["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        out.append(merged)
    return out


def compute_status(
    *,
    name: str,
    url: str,
    generation: int | None,
    spec: SentimentModelSpec,
    observed: Observed,
    previous: Mapping[str, Any] | None,
    now: str,
    not_owned: Sequence[str] = (),
    rollout: Mapping[str, Any] | None = None,
) -> JSONObj:
    """The full status of a valid SentimentModel. Keys with None values are to be removed (merge patch).

    ``url`` is where the Service answers inside the cluster (``builders.inference_url``); ``rollout`` is
    ``status.rollout`` as the rollout state machine wrote it (None with strategy Immediate).

    ``not_owned``: why children could not be applied (objects of theirs in the way); Ready is False then.
    """
    routing = routing_condition(spec, observed, name, generation)
    parts = [
        available_condition(observed.inference, name, generation),
        cache_condition(spec, observed, name, generation),
        autoscaling_condition(spec, observed, name, generation),
        routing,
        rollout_condition(spec, rollout, generation),
    ]
    ready = ready_condition(parts, spec, generation)
    if not_owned:
        ready = _condition(Condition.READY, False, Reason.CHILD_NOT_OWNED, "; ".join(not_owned), generation)
    note = canary_message(observed.canary, name)
    if note is not None:
        ready["message"] = f"{ready['message']}; {note}"
    conditions = merge_conditions((previous or {}).get("conditions"), [ready, *parts], now)
    default_desired = spec.autoscaling.min_replicas if spec.autoscaling.enabled else spec.replicas
    replicas = deployment_replicas(observed.inference, default_desired=default_desired)
    routed = routing["status"] == "True" and routing["reason"] != Reason.DISABLED
    return {
        "observedGeneration": generation,
        "conditions": conditions,
        "replicas": replicas.desired,
        "readyReplicas": replicas.ready,
        "updatedReplicas": replicas.updated,
        "replicasSummary": f"{replicas.ready}/{replicas.desired}",
        "url": url,
        # Only what the cluster routes: no path while no route is written, or no gateway accepted it yet.
        "gatewayPath": spec.gateway_prefix(name) if routed else None,
        "routingProvider": observed.routing_provider if observed.routing == "applied" else None,
        "rollout": dict(rollout) if rollout is not None else None,
    }


def invalid_status(
    *, error: InvalidSpecError, generation: int | None, previous: Mapping[str, Any] | None, now: str
) -> JSONObj:
    """Status for a spec that cannot be served: Ready=False/InvalidSpec naming the field; children untouched.

    The other conditions and the replica counts keep describing whatever is still running.
    """
    ready = _condition(
        Condition.READY, False, Reason.INVALID_SPEC, f"{error.field}: {error.message}", generation
    )
    return {"observedGeneration": generation, "conditions": _with_ready(previous, ready, now)}


def failed_status(
    *, message: str, generation: int | None, previous: Mapping[str, Any] | None, now: str
) -> JSONObj:
    """Status after the API refused to store a child (403, 422): Ready=False/ApplyFailed with the object and
    the API's message. observedGeneration stays: this generation was not carried out."""
    ready = _condition(Condition.READY, False, Reason.APPLY_FAILED, message, generation)
    return {"conditions": _with_ready(previous, ready, now)}


def _with_ready(previous: Mapping[str, Any] | None, ready: JSONObj, now: str) -> list[JSONObj]:
    """``previous``'s conditions with Ready replaced (transition time kept if its status did not flip)."""
    old = [c for c in (previous or {}).get("conditions") or [] if isinstance(c, Mapping)]
    others = [dict(c) for c in old if c.get("type") != Condition.READY]
    return merge_conditions(old, [ready], now) + others


def condition_of(status: Mapping[str, Any] | None, ctype: Condition) -> Mapping[str, Any] | None:
    """The condition of type ``ctype`` in a status (as read from the API or computed), if any."""
    for cond in (status or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == ctype:
            return cond
    return None


def ready_of(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return condition_of(status, Condition.READY)


def merge_patch(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> JSONObj:
    """The JSON merge patch (RFC 7386) that writes ``new`` over ``previous``: None values remove a top-level
    key; below the top level ``new`` replaces ``previous`` whole, so a nested key that is gone (a field of
    ``status.rollout``, of the stable spec it holds) is sent as null and removed rather than kept."""
    before = previous or {}
    return {
        key: _replacing(before.get(key), value) if isinstance(value, Mapping) else value
        for key, value in new.items()
    }


def _replacing(before: Any, after: Mapping[str, Any]) -> JSONObj:
    old = before if isinstance(before, Mapping) else {}
    out: JSONObj = {key: None for key in old if key not in after}
    for key, value in after.items():
        out[key] = _replacing(old.get(key), value) if isinstance(value, Mapping) else value
    return out


def status_changed(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether patching ``new`` over ``previous`` would change anything (None values mean removal)."""
    before = previous or {}
    for key, value in new.items():
        if value is None:
            if key in before:
                return True
        elif before.get(key) != value:
            return True
    return False
