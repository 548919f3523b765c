"""The shape of ``.status``: one pydantic model, from which the CRD's status schema and the README's status
reference are generated. ``status.compute_status`` fills it in; this module only says what each field is."""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

JsonDict = dict[str, JsonValue]

_INT32: JsonDict = {"format": "int32"}
_INT64: JsonDict = {"format": "int64"}
_NULLABLE: JsonDict = {"nullable": True}


class StatusCondition(BaseModel):
    """One aspect of the SentimentModel's state (Kubernetes API conventions)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        description="Ready (summary), Available, CacheReady, Autoscaling, Routing or Rollout.", max_length=316
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(None, description="CamelCase reason for the last transition.", max_length=1024)
    message: str | None = Field(None, description="Human-readable details.", max_length=32768)
    lastTransitionTime: datetime.datetime | None = Field(
        None, description="When status last changed (a new reason or message alone does not change it)."
    )
    observedGeneration: int | None = Field(
        None,
        ge=0,
        description="The metadata.generation this condition was computed for.",
        json_schema_extra=_INT64,
    )


class AnalysisCheckStatus(BaseModel):
    """One check of an analysis: the canary's value, the stable's, the threshold."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="errorRate, p99Latency or labelShift.")
    canary: float | None = Field(None, description="The canary's value.")
    stable: float | None = Field(None, description="The stable version's value (for comparison).")
    threshold: float = Field(description="The limit from spec.rollout.analysis.")
    unit: str = Field(description='"%", "ms" or "pp" (percentage points).')
    passed: bool | None = Field(None, description="Absent when there was nothing to compare.")


class AnalysisStatus(BaseModel):
    """The last analysis of a rollout step."""

    model_config = ConfigDict(extra="forbid")

    time: datetime.datetime = Field(description="When it ran.")
    verdict: str = Field(description="Passed, Failed or NoData.")
    message: str = Field(description="The failing checks, or why there was no data, or every check.")
    windowSeconds: float = Field(description="The window the numbers cover (the step's interval).")
    samples: dict[str, int] = Field(description="Predict requests answered in the window, per side.")
    checks: list[AnalysisCheckStatus] = Field(description="Every check, with both sides' values.")


class RolloutStatus(BaseModel):
    """A canary rollout (strategy Canary only): the whole state of the state machine, so that an operator
    restart resumes at the same step."""

    model_config = ConfigDict(extra="forbid")

    phase: str = Field(
        description="Stable (nothing in flight), Initializing (the canary coming up), Progressing (a step "
        "under analysis), Promoting (the stable taking the new template) or RolledBack."
    )
    summary: str = Field(description='E.g. "Progressing 2/3 canary 25%" (shown by kubectl get sm).')
    step: int = Field(description="The current step, 1-based (0 before the first).", json_schema_extra=_INT32)
    steps: int = Field(description="Steps of the plan (a mirrored step included).", json_schema_extra=_INT32)
    stableWeight: int = Field(description="Percent of routed requests to the stable version.")
    canaryWeight: int = Field(description="Percent of routed requests to the canary.")
    mirrorWeight: int = Field(description="Percent of requests copied to the canary (answers discarded).")
    paused: bool = Field(description="Paused by the rollout-action annotation: no step moves.")
    failedChecks: int = Field(
        description="Failed analyses of this rollout (spec.rollout.analysis.failureThreshold rolls back)."
    )
    stableRevision: str = Field(description="The pod template revision the stable Deployment runs.")
    canaryRevision: str | None = Field(None, description="The revision being (or last) rolled out.")
    startedAt: datetime.datetime | None = Field(None, description="When this rollout started.")
    stepStartedAt: datetime.datetime | None = Field(None, description="When the current step started.")
    noDataSince: datetime.datetime | None = Field(
        None, description="Since when the analysis has had no data (a hold).", json_schema_extra=_NULLABLE
    )
    reason: str = Field(description="The Rollout condition's reason.")
    message: str = Field(description="The Rollout condition's message.")
    lastAnalysis: AnalysisStatus | None = Field(None, description="The last step analysis.")
    stableSpec: dict[str, Any] = Field(
        description="The spec, as written, whose pod template the stable Deployment runs."
    )


class SentimentModelStatus(BaseModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(
        None, description="The metadata.generation the operator last reconciled.", json_schema_extra=_INT64
    )
    conditions: list[StatusCondition] | None = Field(
        None,
        description="Ready is the summary; Available, CacheReady, Autoscaling, Routing and Rollout explain "
        "it. A list keyed by type.",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = Field(
        None,
        description="Desired server replicas (the HPA's choice when autoscaling).",
        json_schema_extra=_INT32,
    )
    readyReplicas: int | None = Field(None, description="Ready server replicas.", json_schema_extra=_INT32)
    updatedReplicas: int | None = Field(
        None, description="Server replicas running the current pod template.", json_schema_extra=_INT32
    )
    replicasSummary: str | None = Field(
        None, description='Ready/desired server replicas, e.g. "2/3" (shown by kubectl get sm).'
    )
    url: str | None = Field(
        None,
        description="In-cluster URL of the API, "
        "http://<name>.<namespace>.svc.<cluster domain>:<port><prefix> "
        "(the operator's --cluster-domain, default cluster.local).",
        json_schema_extra=_NULLABLE,
    )
    gatewayPath: str | None = Field(
        None,
        description="Path prefix on the gateways, once the route routes it (Routing is True: the "
        "VirtualService is written, or every parent Gateway accepted the HTTPRoute's current generation).",
        json_schema_extra=_NULLABLE,
    )
    routingProvider: Literal["istio", "gatewayAPI"] | None = Field(
        None,
        description="The API the route is written for (routing.provider auto: the one discovery found).",
        json_schema_extra=_NULLABLE,
    )
    rollout: RolloutStatus | None = Field(
        None,
        description="The canary rollout (spec.rollout.strategy Canary); absent with Immediate.",
        json_schema_extra=_NULLABLE,
    )
