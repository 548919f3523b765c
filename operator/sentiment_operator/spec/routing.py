"""Traffic: the route (Istio VirtualService or Gateway API HTTPRoute) with its optional canary, and the
NetworkPolicies."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..names import LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_NAMESPACE_NAME
from .base import SpecFieldError, _cel, _Spec
from .model import ModelSpec
from .server import _PATH_PREFIX, _check_path_prefix

# The APIs a route can be written for, in the order ``provider: auto`` tries them (Istio first).
RoutingProvider = Literal["istio", "gatewayAPI"]
PROVIDERS: Final[tuple[RoutingProvider, ...]] = ("istio", "gatewayAPI")

# Gateway API's Hostname (a precise DNS name, or a "*." wildcard prefix) and a "namespace/name" reference
# whose parts are a DNS-1123 label and a DNS-1123 subdomain, as parentRefs take them.
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GATEWAY_REF = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
ANY_HOST: Final = "*"


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
    """A route from a path prefix on gateway(s) to the model: an Istio VirtualService or a Gateway API
    HTTPRoute."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("!has(self.canary) || self.enabled", "canary requires routing to be enabled", ".canary")
            ]
        }
    )

    enabled: bool = Field(False, description="Create the route.")
    provider: Literal["auto", "istio", "gatewayAPI"] = Field(
        "auto",
        description="Which API routes: istio (a networking.istio.io VirtualService), gatewayAPI (a "
        "gateway.networking.k8s.io HTTPRoute), or auto: whichever the cluster serves, found by API "
        "discovery, Istio first. Switching removes the other provider's route.",
    )
    gateways: list[str] = Field(
        ["istio-ingress/sentiment-gateway"],
        min_length=1,
        description="Gateways the route attaches to, namespace/name (or name: the model's namespace): "
        "Istio Gateways, or the HTTPRoute's parentRefs (Gateway API Gateways).",
    )
    hosts: list[str] = Field(
        [ANY_HOST],
        min_length=1,
        description='Hosts the route applies to; "*" is any host (the HTTPRoute then lists no '
        "hostnames). With gatewayAPI or auto, every other host must be a Gateway API hostname "
        '(a lowercase DNS name, optionally starting with "*.").',
    )
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

    @field_validator("gateways")
    @classmethod
    def _unique_gateways(cls, value: list[str]) -> list[str]:
        for index, gateway in enumerate(value):
            if gateway in value[:index]:
                raise SpecFieldError(f"[{index}]", f"{gateway} is listed twice")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> RoutingSpec:
        if self.canary is not None and not self.enabled:
            raise SpecFieldError(
                "canary", "a canary needs routing.enabled: true (it only gets routed traffic)"
            )
        if self.provider != "istio":
            # An HTTPRoute may be rendered (auto picks Gateway API where Istio is not served): its
            # parentRefs and hostnames must be what the Gateway API schema admits.
            for index, gateway in enumerate(self.gateways):
                if not _GATEWAY_REF.match(gateway) or len(gateway) > 63 + 1 + 253:
                    raise SpecFieldError(
                        f"gateways[{index}]",
                        f"{gateway!r} must be namespace/name or name of a Gateway (lowercase DNS names)",
                    )
            for index, host in enumerate(self.hosts):
                if host != ANY_HOST and (not _HOSTNAME.match(host) or len(host) > 253):
                    raise SpecFieldError(
                        f"hosts[{index}]",
                        f'{host!r} is not a Gateway API hostname (a lowercase DNS name, optionally "*."'
                        ' + name; "*" for any host); set provider: istio for Istio-only host forms',
                    )
        return self

    def choose_provider(self, served: Collection[RoutingProvider] | None) -> RoutingProvider | None:
        """The provider to write the route for, given the ones the cluster ``served`` (API discovery): the
        one asked for if served, for auto the first served of :data:`PROVIDERS`; None when none fits.
        ``served`` None renders without a cluster to ask: the one asked for, Istio for auto."""
        wanted = PROVIDERS if self.provider == "auto" else (self.provider,)
        if served is None:
            return wanted[0]
        return next((provider for provider in wanted if provider in served), None)


class AllowFrom(_Spec):
    """A peer allowed to reach the inference server."""

    namespace: str = Field(min_length=1, description="Namespace whose pods may connect (e.g. monitoring).")


class LabelSelectorRequirement(_Spec):
    """One expression of a Kubernetes label selector."""

    key: str = Field(min_length=1, description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How key and values relate."
    )
    values: list[str] = Field([], description="Values (In and NotIn only).")

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise SpecFieldError("values", f"{self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise SpecFieldError("values", f"{self.operator} takes no values")
        return self


class LabelSelector(_Spec):
    """A Kubernetes label selector; an empty one selects everything."""

    match_labels: dict[str, str] = Field({}, description="Labels that must all match.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        [], description="Expressions that must all hold."
    )

    def rendered(self) -> dict[str, object]:
        """The selector as a Kubernetes object (no empty fields)."""
        return self.model_dump(by_alias=True, exclude_defaults=True)

    def describe(self) -> str:
        terms = [f"{key}={value}" for key, value in sorted(self.match_labels.items())]
        terms += [f"{e.key} {e.operator} {','.join(e.values)}".rstrip() for e in self.match_expressions]
        return ", ".join(terms) or "any"


class GatewayPeer(_Spec):
    """Where the gateway's data plane runs: one NetworkPolicy peer (namespaces, and pods in them)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.namespaceSelector) || has(self.podSelector)",
                    "set namespaceSelector, podSelector or both",
                )
            ]
        }
    )

    namespace_selector: LabelSelector | None = Field(
        None,
        description="Namespaces the data plane runs in (unset: the model's own namespace); select one by "
        f"name with matchLabels {LABEL_NAMESPACE_NAME}: NAME.",
    )
    pod_selector: LabelSelector | None = Field(
        None, description="The data plane's pods in those namespaces (unset: every pod)."
    )

    @model_validator(mode="after")
    def _some_selector(self) -> GatewayPeer:
        if self.namespace_selector is None and self.pod_selector is None:
            raise SpecFieldError("namespaceSelector", "set namespaceSelector, podSelector or both")
        return self

    def peer(self) -> dict[str, object]:
        """The NetworkPolicyPeer."""
        out: dict[str, object] = {}
        if self.namespace_selector is not None:
            out["namespaceSelector"] = self.namespace_selector.rendered()
        if self.pod_selector is not None:
            out["podSelector"] = self.pod_selector.rendered()
        return out

    def describe(self) -> str:
        namespaces = self.namespace_selector.describe() if self.namespace_selector else "the model's own"
        pods = self.pod_selector.describe() if self.pod_selector else "any"
        return f"namespaces {namespaces}; pods {pods}"


def _in_namespace(namespace: str, pods: dict[str, str] | None = None) -> GatewayPeer:
    return GatewayPeer(
        namespace_selector=LabelSelector(match_labels={LABEL_NAMESPACE_NAME: namespace}),
        pod_selector=LabelSelector(match_labels=pods) if pods else None,
    )


# The gateway data plane each provider runs by default: the istio/gateway Helm chart's ingress gateway in
# istio-ingress (where the walkthrough installs it), and Envoy Gateway's proxies, which it deploys into its
# own namespace envoy-gateway-system (not the Gateway's) with these labels.
DEFAULT_GATEWAY_PEERS: Final[dict[RoutingProvider, GatewayPeer]] = {
    "istio": _in_namespace("istio-ingress"),
    "gatewayAPI": _in_namespace(
        "envoy-gateway-system",
        {LABEL_NAME: "envoy", LABEL_COMPONENT: "proxy", LABEL_MANAGED_BY: "envoy-gateway"},
    ),
}


class NetworkPolicySpec(_Spec):
    """NetworkPolicies: Redis only from this model's pods; the server only from this model's pods, the
    gateway's data plane (while a route is written) and the listed namespaces."""

    enabled: bool = Field(True, description="Create the NetworkPolicies.")
    allow_from: list[AllowFrom] = Field(
        [],
        description="Other namespaces allowed to reach the server (pods of this model are always allowed; "
        "the gateway's data plane through gateway).",
    )
    gateway: GatewayPeer | None = Field(
        None,
        description="Where the gateway's data plane runs; admitted while a route is written. Unset: the "
        "provider's default: "
        + "; ".join(f"{p}: {DEFAULT_GATEWAY_PEERS[p].describe()}" for p in PROVIDERS)
        + " (Envoy Gateway's proxies; other Gateway API implementations run theirs elsewhere, e.g. in the "
        "Gateway's namespace: set this).",
    )

    def gateway_peer(self, provider: RoutingProvider) -> GatewayPeer:
        """The data plane admitted for a route written for ``provider``."""
        return self.gateway or DEFAULT_GATEWAY_PEERS[provider]
