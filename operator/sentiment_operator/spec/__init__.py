"""The SentimentModel spec as pydantic models: the one source of truth for validation and the CRD schema.

Field names are snake_case in Python and camelCase in YAML (aliases); unknown fields are rejected. Cross-field
rules live next to the fields they check, both as Python validators (``SpecFieldError``, which names the
offending field) and as CEL rules (``x-kubernetes-validations``) copied into the generated CRD.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Literal

import sentiment_contract as C
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ..names import RESERVED_INIT_CONTAINERS, SERVER_CONTAINER, canary_name
from ..podsecurity import RESTRICTED_CONTAINER_CONTEXT, container_violations, restricted_pod_context
from .base import (
    _DNS1035,
    DEFAULT_IMAGE,
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_PATH,
    MAX_NAME_LENGTH,
    SERVER_ENV_NAMES,
    SHORT_NAMES,
    SINGULAR,
    InvalidSpecError,
    SpecFieldError,
    _cel,
    _dotted,
    _plain,
    _Spec,
)
from .cache import CacheSpec
from .model import ModelSpec, ResourceRequirements
from .monitoring import MonitoringSpec
from .quantities import parse_duration, parse_quantity, parse_redis_memory
from .rollout import CANARY_STRATEGY, SCRAPES_PER_WINDOW, AnalysisSpec, RolloutSpec
from .routing import PROVIDERS, NetworkPolicySpec, RoutingProvider, RoutingSpec
from .scaling import AutoscalingSpec, DisruptionBudgetSpec
from .server import ServerSpec

__all__ = [
    "CANARY_STRATEGY",
    "DEFAULT_IMAGE",
    "DEFAULT_MODEL_ID",
    "DEFAULT_MODEL_PATH",
    "MAX_NAME_LENGTH",
    "PROVIDERS",
    "SERVER_ENV_NAMES",
    "SHORT_NAMES",
    "SINGULAR",
    "AnalysisSpec",
    "InvalidSpecError",
    "ModelSpec",
    "MonitoringSpec",
    "RolloutSpec",
    "RoutingProvider",
    "SentimentModelSpec",
    "SpecFieldError",
    "check_cluster_support",
    "check_name",
    "parse_duration",
    "parse_quantity",
    "parse_redis_memory",
    "parse_spec",
]

_CONTAINER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class SentimentModelSpec(_Spec):
    """The desired state of one sentiment-analysis service."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!self.autoscaling.enabled || self.autoscaling.minReplicas > 0 || self.routing.enabled",
                    "autoscaling.minReplicas 0 needs routing enabled: the gateway's request rate is what "
                    "wakes a model that runs no pod",
                    ".autoscaling.minReplicas",
                ),
                _cel(
                    "!has(self.rollout) || !has(self.rollout.strategy) || "
                    "self.rollout.strategy != 'Canary' || "
                    "(has(self.routing) && has(self.routing.enabled) && self.routing.enabled)",
                    "rollout strategy Canary moves gateway traffic: it needs routing.enabled",
                    ".rollout.strategy",
                ),
                _cel(
                    "!has(self.rollout) || !has(self.rollout.strategy) || "
                    "self.rollout.strategy != 'Canary' || !has(self.routing) || !has(self.routing.canary)",
                    "rollout strategy Canary and a manual routing.canary cannot be combined",
                    ".routing.canary",
                ),
            ]
        }
    )

    model: ModelSpec = Field(ModelSpec(), description="The model to serve.")
    image: str = Field(DEFAULT_IMAGE, min_length=1, description="Inference server image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of every container from the inference image."
    )
    replicas: int = Field(1, ge=0, description="Server replicas; used only when autoscaling is disabled.")
    resources: ResourceRequirements = Field(
        ResourceRequirements(requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "3", "memory": "2Gi"}),
        description="Server container resources (HPA CPU/memory targets are relative to the requests).",
    )
    env: list[dict[str, Any]] = Field(
        [],
        description="Extra environment variables (Kubernetes EnvVar objects) for the server container.",
        json_schema_extra={
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": True,
            }
        },
    )
    node_selector: dict[str, str] = Field({}, description="Node labels the server pods must match.")
    tolerations: list[dict[str, Any]] = Field([], description="Kubernetes Tolerations of the server pods.")
    topology_spread: list[dict[str, Any]] | None = Field(
        None,
        description="Kubernetes TopologySpreadConstraints of the server pods. Unset: spread across nodes "
        "and zones (maxSkew 1, ScheduleAnyway); [] for none. A constraint without labelSelector selects "
        "this model's server pods.",
    )
    disruption_budget: DisruptionBudgetSpec = Field(
        DisruptionBudgetSpec(), description="PodDisruptionBudget of the server pods."
    )
    init_containers: list[dict[str, Any]] = Field(
        [],
        description="Extra init containers (Kubernetes Container objects), run after the operator's own.",
        json_schema_extra={
            "items": {
                "type": "object",
                "required": ["name", "image"],
                "properties": {"name": {"type": "string"}, "image": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": True,
            }
        },
    )
    pod_security: Literal["restricted", "baseline"] = Field(
        "restricted",
        description='Pod Security level of the server pods; "baseline" is an explicit opt-out for images '
        "that need a writable root filesystem or root.",
    )
    server: ServerSpec = Field(ServerSpec(), description="Server settings.")
    # CRD default {}, not {managed: {}}: a stored managed block would clash with a later `external:`.
    cache: CacheSpec = Field(CacheSpec(), description="Prediction cache.", json_schema_extra={"default": {}})
    autoscaling: AutoscalingSpec = Field(AutoscalingSpec(), description="Horizontal pod autoscaling.")
    routing: RoutingSpec = Field(
        RoutingSpec(),
        description="Routing through gateways: an Istio VirtualService or a Gateway API HTTPRoute.",
    )
    network_policy: NetworkPolicySpec = Field(NetworkPolicySpec(), description="Network isolation.")
    monitoring: MonitoringSpec = Field(
        MonitoringSpec(), description="Prometheus scraping of the server pods."
    )
    rollout: RolloutSpec = Field(
        RolloutSpec(), description="How a new pod template rolls out: at once, or as an analysed canary."
    )

    @field_validator("topology_spread")
    @classmethod
    def _topology_spread(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, item in enumerate(value or []):
            missing = [key for key in ("maxSkew", "topologyKey", "whenUnsatisfiable") if key not in item]
            if missing:
                raise SpecFieldError(f"[{index}]", f"a TopologySpreadConstraint needs {', '.join(missing)}")
            if item["whenUnsatisfiable"] not in ("DoNotSchedule", "ScheduleAnyway"):
                raise SpecFieldError(
                    f"[{index}].whenUnsatisfiable", "must be DoNotSchedule or ScheduleAnyway"
                )
            if (
                not isinstance(item["maxSkew"], int)
                or isinstance(item["maxSkew"], bool)
                or item["maxSkew"] < 1
            ):
                raise SpecFieldError(f"[{index}].maxSkew", "must be an integer of at least 1")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        for index, item in enumerate(value):
            name = item.get("name")
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise SpecFieldError(f"[{index}].name", "must be a valid environment variable name")
            if name in SERVER_ENV_NAMES:
                raise SpecFieldError(f"[{index}].name", f"{name} is set by the operator from the spec")
            if name in seen:
                raise SpecFieldError(f"[{index}].name", f"{name} is listed twice")
            seen.add(name)
        return value

    @field_validator("init_containers")
    @classmethod
    def _init_containers(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        for index, item in enumerate(value):
            name = item.get("name")
            if not isinstance(name, str) or not _CONTAINER_NAME.match(name) or len(name) > 63:
                raise SpecFieldError(f"[{index}].name", "must be a DNS-1123 label")
            if name in RESERVED_INIT_CONTAINERS or name == SERVER_CONTAINER or name in seen:
                raise SpecFieldError(f"[{index}].name", f"{name!r} is already used by another container")
            seen.add(name)
            if not isinstance(item.get("image"), str) or not item["image"]:
                raise SpecFieldError(f"[{index}].image", "is required")
        return value

    @model_validator(mode="after")
    def _rollout_checks(self) -> SentimentModelSpec:
        rollout = self.rollout
        if not rollout.canary:
            return self
        if not self.routing.enabled:
            raise SpecFieldError(
                "rollout.strategy",
                "Canary moves gateway traffic between the stable and the canary version: it needs "
                "routing.enabled: true",
            )
        if self.routing.canary is not None:
            raise SpecFieldError(
                "routing.canary",
                "a manual canary and rollout strategy Canary cannot be combined: remove routing.canary "
                "(the rollout runs its own canary) or use strategy Immediate",
            )
        scrape = parse_duration(self.monitoring.interval)
        if rollout.interval_seconds < SCRAPES_PER_WINDOW * scrape:
            raise SpecFieldError(
                "rollout.interval",
                f"{rollout.interval} holds fewer than {SCRAPES_PER_WINDOW} scrapes of "
                f"monitoring.interval {self.monitoring.interval}: a step's analysis would never have data",
            )
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> SentimentModelSpec:
        models = [("model", self.model)]
        if self.routing.canary is not None and self.routing.canary.model is not None:
            models.append(("routing.canary.model", self.routing.canary.model))
        budget = self.server.batching.max_batch_tokens
        for where, model in models:
            if budget is not None and budget < model.max_sequence_length:
                raise SpecFieldError(
                    "server.batching.maxBatchTokens",
                    f"{budget} cannot hold one text of "
                    f"{where}.maxSequenceLength={model.max_sequence_length} tokens",
                )
        auto = self.autoscaling
        if auto.enabled and auto.min_replicas == 0 and not self.routing.enabled:
            # The server's own series vanish with its last pod: only the gateway sees requests then.
            raise SpecFieldError(
                "autoscaling.minReplicas",
                "0 needs routing enabled: the gateway's request rate is what wakes a model that runs no "
                "pod (its own metrics vanish with the last one)",
            )
        if self.pod_security == "restricted":
            pod_context = restricted_pod_context(10001)
            for index, user in enumerate(self.init_containers):
                merged = {**RESTRICTED_CONTAINER_CONTEXT, **(user.get("securityContext") or {})}
                problems = container_violations({**user, "securityContext": merged}, pod_context, "container")
                if problems:
                    raise SpecFieldError(
                        f"initContainers[{index}].securityContext",
                        f"{'; '.join(p.removeprefix('container: ') for p in problems)} under podSecurity "
                        "restricted (set podSecurity: baseline to opt out)",
                    )
        return self

    # --- derived values used by the builders and the status -------------------------------------------------

    def effective_max_batch_tokens(self, model: ModelSpec | None = None) -> int:
        """The padded-token budget of a pod serving ``model``: maxBatchTokens, or when unset
        max(DEFAULT_BATCH_TOKENS, its maxSequenceLength). Without ``model``: the largest over the stable
        and the canary model."""
        if self.server.batching.max_batch_tokens is not None:
            return self.server.batching.max_batch_tokens
        if model is None:
            models = [self.model]
            if self.routing.canary is not None and self.routing.canary.model is not None:
                models.append(self.routing.canary.model)
            return max(self.effective_max_batch_tokens(m) for m in models)
        return C.batch_token_budget(None, model.max_sequence_length)

    def path_prefix(self, name: str) -> str:
        """The server's path prefix, defaulting to "/<name>"."""
        return self.server.path_prefix or f"/{name}"

    def gateway_prefix(self, name: str) -> str:
        """The path prefix on the gateway, defaulting to the server's."""
        return self.routing.path_prefix or self.path_prefix(name)


def check_name(name: str) -> None:
    """Child names derive from metadata.name, so it must be a short DNS-1035 label."""
    if not _DNS1035.match(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidSpecError(
            "metadata.name",
            f"{name!r} must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) "
            f"of at most {MAX_NAME_LENGTH} characters, so that child names like {canary_name(name)} "
            "are valid",
        )


def check_cluster_support(
    spec: SentimentModelSpec,
    *,
    keda: bool,
    provider: RoutingProvider | None,
    wakes: Collection[RoutingProvider],
) -> None:
    """Refuse what a valid spec asks of a cluster that cannot do it (InvalidSpecError naming the field).

    ``keda``: the cluster serves KEDA's ScaledObject; ``provider``: the routing provider the route is
    written for (None: the cluster serves none that fits); ``wakes``: the providers whose gateway requests
    the operator can count. Scale to zero needs KEDA and such a provider: only KEDA scales a Deployment to
    and from zero (an HPA keeps one pod), and only the gateway sees the requests that should wake a model
    without pods.
    """
    if not spec.autoscaling.scales_to_zero:
        return
    if not keda:
        raise InvalidSpecError(
            "spec.autoscaling.minReplicas",
            "0 needs KEDA, and the cluster serves no keda.sh/v1alpha1 ScaledObject (an HPA never scales to "
            "zero): install KEDA, or set minReplicas to 1 or more",
        )
    if provider is None:
        raise InvalidSpecError(
            "spec.autoscaling.minReplicas",
            "0 needs the gateway's request rate to wake the model, and the cluster serves no route for "
            f"routing.provider {spec.routing.provider} (Istio's VirtualService or Gateway API's HTTPRoute): "
            "install one, or set minReplicas to 1 or more",
        )
    if provider not in wakes:
        raise InvalidSpecError(
            "spec.autoscaling.minReplicas",
            f"0 needs the gateway's request rate to wake the model, which the operator reads for "
            f"{', '.join(sorted(wakes))} only, not for the {provider} route this model gets: set "
            "routing.provider to istio on a cluster with Istio, or minReplicas to 1 or more",
        )


def parse_spec(name: str, spec: Mapping[str, Any] | None) -> SentimentModelSpec:
    """Validate a SentimentModel's spec and resolve name-dependent defaults.

    Raises InvalidSpecError naming the first offending field (dotted path from "spec").
    """
    check_name(name)
    raw = _plain(spec) if spec is not None else {}
    if not isinstance(raw, dict):
        raise InvalidSpecError("spec", "must be an object")
    try:
        parsed = SentimentModelSpec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SpecFieldError):
            raise InvalidSpecError(_dotted(error["loc"], ctx_error.field), ctx_error.message) from None
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        raise InvalidSpecError(_dotted(error["loc"], None), message) from None
    server = parsed.server.model_copy(update={"path_prefix": parsed.path_prefix(name)})
    return parsed.model_copy(update={"server": server})
