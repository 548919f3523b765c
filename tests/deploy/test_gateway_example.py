"""The gateways the examples route through: examples/istio/gateway.yaml valid for Istio's CRD schema
(tests/istio_schema.py), examples/gateway-api/gateway.yaml for Gateway API's (tests/gateway_api_schema.py),
each the parent the rendered routes name."""

from __future__ import annotations

import gateway_api_schema
import istio_schema
import yaml
from deploy_support import ROOT
from sentiment_operator.cli import render_documents


def test_istio_gateway_example_is_the_one_the_examples_route_through() -> None:
    gateway = yaml.safe_load((ROOT / "examples" / "istio" / "gateway.yaml").read_text(encoding="utf-8"))
    istio_schema.validate(gateway)
    reference = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    examples = [str(ROOT / "examples" / name) for name in ("project.yaml", "lab.yaml")]
    services = [o for o in render_documents(examples) if o["kind"] == "VirtualService"]
    assert {o["metadata"]["name"] for o in services} == {"project", "lab"}
    for virtual_service in services:
        assert virtual_service["spec"]["gateways"] == [reference]


def test_gateway_api_example_is_the_parent_of_the_http_route_and_admits_it() -> None:
    """The GatewayClass is Envoy Gateway's; the Gateway's listener admits routes from its own namespace,
    which is the SentimentModel's, and the rendered HTTPRoute names exactly that Gateway."""
    path = ROOT / "examples" / "gateway-api" / "gateway.yaml"
    gateway_class, gateway = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    assert gateway_api_schema.problems([gateway_class, gateway]) == [[], []]
    assert gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    assert gateway["spec"]["gatewayClassName"] == gateway_class["metadata"]["name"]
    (route,) = [
        o for o in render_documents([str(ROOT / "examples" / "gateway-api.yaml")]) if o["kind"] == "HTTPRoute"
    ]
    gateway_api_schema.validate(route)
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": gateway["metadata"]["namespace"],
            "name": gateway["metadata"]["name"],
        }
    ]
    (listener,) = gateway["spec"]["listeners"]
    assert listener["allowedRoutes"]["namespaces"]["from"] == "Same"
    assert route["metadata"]["namespace"] == gateway["metadata"]["namespace"]
