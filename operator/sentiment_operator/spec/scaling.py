"""Replicas under load and under disruption: the HorizontalPodAutoscaler and the PodDisruptionBudget."""

from __future__ import annotations

from typing import Any, Literal

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


class AutoscalingSpec(_Spec):
    """An autoscaling/v2 HorizontalPodAutoscaler; while enabled, the operator leaves replicas alone."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                )
            ]
        },
    )

    enabled: bool = Field(True, description="Create the HPA.")
    min_replicas: int = Field(1, ge=1, description="Lower bound of replicas.")
    max_replicas: int = Field(10, ge=1, description="Upper bound of replicas.")
    target_cpu_utilization_percentage: int = Field(
        70, ge=1, le=1000, alias="targetCPUUtilizationPercentage", description="Average CPU, % of requests."
    )
    target_memory_utilization_percentage: int | None = Field(
        None, ge=1, le=1000, alias="targetMemoryUtilizationPercentage", description="Optional memory target."
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
        return self


class DisruptionBudgetSpec(_Spec):
    """A PodDisruptionBudget for the server pods whenever more than one is wanted: voluntary evictions (node
    drains, cluster upgrades) then take them down a few at a time instead of all at once."""

    enabled: bool = Field(
        True, description="Create the PodDisruptionBudget when more than one pod is wanted."
    )
    max_unavailable: int = Field(1, ge=1, description="Server pods one voluntary disruption may take down.")
