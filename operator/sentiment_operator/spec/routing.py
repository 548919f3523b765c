"""Traffic: the Istio route with its optional canary, and the NetworkPolicies."""

from __future__ import annotations

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .base import SpecFieldError, _cel, _Spec
from .model import ModelSpec
from .server import _PATH_PREFIX, _check_path_prefix


class CanarySpec(_Spec):
    """A second Deployment (other image and/or model) that gets ``weight`` percent of the routed traffic."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.weight >= 0 && self.weight <= 100", "weight must be between 0 and 100", ".weight")
            ]
        }
    )

    image: str | None = Field(None, min_length=1, description="Canary image (default: spec.image).")
    model: ModelSpec | None = Field(None, description="Canary model (default: spec.model).")
    weight: int = Field(10, ge=0, le=100, description="Percent of gateway traffic sent to the canary.")


class RoutingSpec(_Spec):
    """An Istio VirtualService that routes a path prefix on gateway(s) to the model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("!has(self.canary) || self.enabled", "canary requires routing to be enabled", ".canary")
            ]
        }
    )

    enabled: bool = Field(False, description="Create the VirtualService.")
    gateways: list[str] = Field(
        ["istio-ingress/sentiment-gateway"], min_length=1, description="Istio gateways (namespace/name)."
    )
    hosts: list[str] = Field(["*"], min_length=1, description="Hosts the route applies to.")
    path_prefix: str | None = Field(
        None,
        description="Gateway path prefix (default: server.pathPrefix); rewritten to the server's prefix.",
        json_schema_extra={"pattern": _PATH_PREFIX.pattern},
    )
    canary: CanarySpec | None = Field(None, description="Optional canary with a traffic weight.")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return _check_path_prefix(value)

    @model_validator(mode="after")
    def _canary_needs_routing(self) -> RoutingSpec:
        if self.canary is not None and not self.enabled:
            raise SpecFieldError(
                "canary", "a canary needs routing.enabled: true (it only gets routed traffic)"
            )
        return self


class AllowFrom(_Spec):
    """A peer allowed to reach the inference server."""

    namespace: str = Field(min_length=1, description="Namespace whose pods may connect (e.g. the gateway's).")


class NetworkPolicySpec(_Spec):
    """NetworkPolicies: Redis only from this model's pods; the server only from the listed namespaces."""

    enabled: bool = Field(True, description="Create the NetworkPolicies.")
    allow_from: list[AllowFrom] = Field(
        [AllowFrom(namespace="istio-ingress")],
        description="Namespaces allowed to reach the server (pods of this model are always allowed).",
    )
