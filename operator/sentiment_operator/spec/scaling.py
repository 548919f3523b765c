"""Replicas under load and under disruption: the autoscaler (an HPA, or KEDA's ScaledObject for the load
metrics) and the PodDisruptionBudget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import sentiment_contract as C
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .base import SpecFieldError, _cel, _relative, _Spec
from .quantities import Quantity

AutoscalingMetric = Literal["cpu", "memory", "queueDepth", "inFlight"]
# The metrics the server exports itself (per-pod gauges), scaled on through Prometheus: KEDA's Prometheus
# trigger where KEDA is installed, else an HPA Pods metric that a metrics adapter must serve.
# metric -> the server's gauge (exported per pod under the contract's name).
LOAD_METRIC_SERIES: Final[Mapping[str, str]] = {
    "queueDepth": C.QUEUE_DEPTH_METRIC,
    "inFlight": C.IN_FLIGHT_METRIC,
}
LOAD_METRICS: Final[frozenset[str]] = frozenset(LOAD_METRIC_SERIES)
DEFAULT_MEMORY_TARGET: Final = 80
# The Prometheus of the README's monitoring walkthrough (kube-prometheus-stack in namespace monitoring).
DEFAULT_PROMETHEUS_ADDRESS: Final = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"


class _HPAScalingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=1800)


class _HPAScalingRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stabilization_window_seconds: int | None = Field(None, alias="stabilizationWindowSeconds", ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(None, alias="selectPolicy")
    policies: list[_HPAScalingPolicy] | None = None
    tolerance: Quantity | None = None


class _HPABehavior(BaseModel):
    """Checks the passed-through HPA behavior so mistakes become InvalidSpec rather than a 422 on apply."""

    model_config = ConfigDict(extra="forbid")

    scale_up: _HPAScalingRules | None = Field(None, alias="scaleUp")
    scale_down: _HPAScalingRules | None = Field(None, alias="scaleDown")


class PrometheusSpec(_Spec):
    """Where KEDA's Prometheus trigger reads the load metrics."""

    server_address: str = Field(
        DEFAULT_PROMETHEUS_ADDRESS,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="URL of the Prometheus that scrapes the server pods (with the namespace and service "
        "labels of examples/monitoring/servicemonitor.yaml), as KEDA reaches it.",
    )


class AutoscalingSpec(_Spec):
    """Horizontal autoscaling; while enabled, the operator leaves the Deployment's replicas alone.

    cpu and memory: an autoscaling/v2 HorizontalPodAutoscaler on the pods' resource usage. queueDepth and
    inFlight (the server's own gauges, per pod): KEDA's ScaledObject with a Prometheus trigger where the
    cluster serves KEDA, else an HPA Pods metric that a metrics adapter must serve (never both).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                ),
                _cel(
                    f"!self.enabled || self.minReplicas > 0 || self.metric in {sorted(LOAD_METRICS)}",
                    "minReplicas 0 needs a load metric (queueDepth or inFlight) scaled by KEDA",
                    ".minReplicas",
                ),
            ]
        },
    )

    enabled: bool = Field(True, description="Create the autoscaler (HPA or ScaledObject).")
    metric: AutoscalingMetric = Field(
        "cpu",
        description="What replicas follow: cpu or memory (% of the container's requests), queueDepth (texts "
        "waiting for or inside the model, per pod) or inFlight (predict requests being served, per pod).",
    )
    min_replicas: int = Field(
        1,
        ge=0,
        description="Lower bound of replicas; 0 (scale to zero) only with a load metric, routing enabled "
        "(the gateway's request rate wakes the model up) and KEDA installed.",
    )
    max_replicas: int = Field(10, ge=1, description="Upper bound of replicas.")
    target_cpu_utilization_percentage: int = Field(
        70,
        ge=1,
        le=1000,
        alias="targetCPUUtilizationPercentage",
        description="metric cpu: average CPU, % of requests.",
    )
    target_memory_utilization_percentage: int | None = Field(
        None,
        ge=1,
        le=1000,
        alias="targetMemoryUtilizationPercentage",
        description=f"Average memory, % of requests: the target of metric memory (default "
        f"{DEFAULT_MEMORY_TARGET}), or a second target beside cpu.",
    )
    target_queue_depth: int = Field(
        32, ge=1, description="metric queueDepth: texts waiting for or inside the model, per pod."
    )
    target_in_flight: int = Field(
        8, ge=1, description="metric inFlight: predict requests being served at once, per pod."
    )
    prometheus: PrometheusSpec = Field(
        PrometheusSpec(), description="The Prometheus KEDA queries for queueDepth and inFlight."
    )
    behavior: dict[str, Any] | None = Field(
        None, description="autoscaling/v2 HorizontalPodAutoscalerBehavior, passed through unchanged."
    )

    @field_validator("behavior")
    @classmethod
    def _behavior(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                _HPABehavior.model_validate(value)
            except ValidationError as exc:
                error = exc.errors(include_url=False)[0]
                message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
                raise SpecFieldError(_relative(error["loc"]), message) from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise SpecFieldError(
                "minReplicas",
                f"minReplicas ({self.min_replicas}) must be less than or equal to maxReplicas "
                f"({self.max_replicas})",
            )
        if self.enabled and self.min_replicas == 0 and self.metric not in LOAD_METRICS:
            raise SpecFieldError(
                "minReplicas",
                f"0 needs metric queueDepth or inFlight (KEDA scales to and from zero); with metric "
                f"{self.metric} the HPA keeps at least one pod",
            )
        return self

    @property
    def load_metric(self) -> bool:
        """Whether replicas follow one of the server's own gauges (through Prometheus)."""
        return self.metric in LOAD_METRICS

    @property
    def load_series(self) -> str:
        """The server gauge a load metric follows (KeyError for cpu and memory)."""
        return LOAD_METRIC_SERIES[self.metric]

    @property
    def load_target(self) -> int:
        """The per-pod target of the load metric."""
        return self.target_queue_depth if self.metric == "queueDepth" else self.target_in_flight

    @property
    def scales_to_zero(self) -> bool:
        """Whether the autoscaler may take the Deployment to zero pods (KEDA only)."""
        return self.enabled and self.min_replicas == 0

    @property
    def memory_target(self) -> int | None:
        """The memory utilization target: metric memory's (defaulted), or the optional one beside cpu."""
        if self.metric == "memory":
            return self.target_memory_utilization_percentage or DEFAULT_MEMORY_TARGET
        return self.target_memory_utilization_percentage if self.metric == "cpu" else None


class DisruptionBudgetSpec(_Spec):
    """A PodDisruptionBudget for the server pods whenever more than one is wanted: voluntary evictions (node
    drains, cluster upgrades) then take them down a few at a time instead of all at once."""

    enabled: bool = Field(
        True, description="Create the PodDisruptionBudget when more than one pod is wanted."
    )
    max_unavailable: int = Field(1, ge=1, description="Server pods one voluntary disruption may take down.")
