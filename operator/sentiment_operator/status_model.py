"""The shape of ``.status``: one pydantic model, from which the CRD's status schema and the README's status
reference are generated. ``status.compute_status`` fills it in; this module only says what each field is."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

JsonDict = dict[str, JsonValue]

_INT32: JsonDict = {"format": "int32"}
_INT64: JsonDict = {"format": "int64"}
_NULLABLE: JsonDict = {"nullable": True}


class StatusCondition(BaseModel):
    """One aspect of the SentimentModel's state (Kubernetes API conventions)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        description="Ready (summary), Available, CacheReady, Autoscaling or Routing.", max_length=316
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


class SentimentModelStatus(BaseModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(
        None, description="The metadata.generation the operator last reconciled.", json_schema_extra=_INT64
    )
    conditions: list[StatusCondition] | None = Field(
        None,
        description="Ready is the summary; Available, CacheReady, Autoscaling and Routing explain it. "
        "A list keyed by type.",
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
